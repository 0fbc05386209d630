// The `kbus` command-line tool (KBUS_CLI_PATH) against a private daemon,
// found through KBUS_DIR.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "integration/fixture.hpp"

namespace kbus::test {
namespace {

using namespace std::chrono_literals;

// This process's command name, as the CLI shows it beside its pid.
std::string process_comm() {
  std::ifstream in("/proc/self/comm");
  std::string name;
  std::getline(in, name);
  return name;
}

class CliTest : public KbusTest {
 protected:
  Env env() const { return {{"KBUS_DIR", daemon_.dir()}}; }
  std::vector<std::string> argv(std::initializer_list<std::string> args) const {
    std::vector<std::string> v = {kbus_cli_path()};
    v.insert(v.end(), args);
    return v;
  }
  ProcessResult run(std::initializer_list<std::string> args, const std::string& input = {}) {
    return run_process(argv(args), env(), input);
  }
  // Waits until the bindings report shows `line` (a spawned CLI has bound),
  // or the process has died, or 10 s have passed. Each check is a round trip.
  bool wait_for_binding(SpawnedProcess& p, const std::string& line) {
    Ksock k = open(2);
    for (int i = 0; i < 1000; ++i) {
      if (k.bindings_report().find(line) != std::string::npos) return true;
      if (!p.alive()) return false;
      p.out().ready(10ms);  // waits on the child's output, not on a clock
    }
    return false;
  }
};

TEST_F(CliTest, SendPrintsTheIdAndDeliversTheData) {
  Ksock l = open(0);
  l.bind("$.Fred");
  auto r = run({"send", "$.Fred", "hello"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "[0:1]\n");
  Message m = next(l);
  EXPECT_EQ(m.data, "hello");
  EXPECT_EQ(m.hdr.flags, 0u);
  EXPECT_EQ(m.kind(), "Announcement");

  auto r2 = run({"send", "$.Fred", "-"}, std::string("bin\0ary\n", 8));
  EXPECT_EQ(r2.exit_code, 0) << r2.err;
  EXPECT_EQ(r2.out, "[0:2]\n");
  EXPECT_EQ(next(l).data, std::string("bin\0ary\n", 8));

  auto r3 = run({"send", "--urgent", "$.Fred"});
  EXPECT_EQ(r3.exit_code, 0) << r3.err;
  Message u = next(l);
  EXPECT_EQ(u.hdr.flags, flag::kUrgent);
  EXPECT_EQ(u.data, "");
}

TEST_F(CliTest, SendOnAnotherBus) {
  Ksock l = open(1);
  l.bind("$.Fred");
  auto r = run({"send", "-b", "1", "$.Fred", "one"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(next(l).data, "one");
  auto r2 = run({"send", "--bus", "2", "$.Fred", "two"});
  EXPECT_EQ(r2.exit_code, 0) << r2.err;
  EXPECT_EQ(l.num_messages(), 0u);
}

// Errors name what went wrong and how to fix it (KBUS-SPEC.md §2.1, §2.2,
// §4.7, §13.5): the offending name and the rule it breaks, the size limit
// and how to raise it, the socket path and "is kbusd running?".
TEST_F(CliTest, SendFailuresSayWhatWentWrongAndHowToFixIt) {
  auto bad = run({"send", "$.Fred.*", "x"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_EQ(bad.err,
            "kbus send: EBADMSG: '$.Fred.*' is not a valid message name: it is a wildcard: a "
            "message is sent to one name, and only bindings may use * or %\n");
  EXPECT_EQ(bad.out, "");
  auto hello = run({"send", "Hello", "x"});
  EXPECT_EQ(hello.err,
            "kbus send: EBADMSG: 'Hello' is not a valid message name: it does not start with "
            "\"$.\" (names look like $.Sensors.Kitchen)\n");
  auto dots = run({"send", "$.Fred..Jim"});
  EXPECT_EQ(dots.err,
            "kbus send: EBADMSG: '$.Fred..Jim' is not a valid message name: component 2 is empty "
            "(\"..\")\n");

  auto big = run({"send", "$.Fred", std::string(2000, 'a')});
  EXPECT_EQ(big.exit_code, 1);
  EXPECT_EQ(big.err,
            "kbus send: EMSGSIZE: the message is " +
                std::to_string(entire_len(kNativeHeaderLen, 6, 2000)) +
                " bytes (header, name and data); bus 0 takes at most 1024: raise the limit with "
                "`kbus max-size -b 0 " +
                std::to_string(entire_len(kNativeHeaderLen, 6, 2000)) + "` (up to 409600)\n");
  // ... and that advice works.
  auto raise = run({"max-size", std::to_string(entire_len(kNativeHeaderLen, 6, 2000))});
  EXPECT_EQ(raise.exit_code, 0) << raise.err;
  EXPECT_EQ(run({"send", "$.Fred", std::string(2000, 'a')}).exit_code, 0);
  auto huge = run({"max-size", "409601"});
  EXPECT_EQ(huge.exit_code, 1);
  EXPECT_EQ(huge.err, "kbus max-size: EINVAL: 409601 is not a size bus 0 can take: give 100 .. 409600\n");

  auto nobus = run({"send", "-b", "9", "$.Fred"});
  EXPECT_EQ(nobus.exit_code, 1);
  EXPECT_EQ(nobus.err, "kbus send: ENOENT: no bus 9 at " + daemon_.dir() +
                           "/kbus9: is kbusd running? Start it (kbusd --dir DIR, --devices N for "
                           "buses 0..N-1), or point --dir or $KBUS_DIR at the directory it serves\n");

  Ksock l = open(0);
  l.bind("$.Full");
  l.set_max_messages(1);
  run({"send", "$.Full"});
  auto full = run({"send", "--all-or-fail", "$.Full"});
  EXPECT_NE(full.exit_code, 0);
  EXPECT_NE(full.err.find("EBUSY"), std::string::npos) << full.err;

  auto both = run({"send", "--all-or-fail", "--all-or-wait", "$.Full"});
  EXPECT_NE(both.exit_code, 0);
}

TEST_F(CliTest, SendAllOrWaitWaitsForRoom) {
  Ksock l = open(0);
  l.bind("$.Full");
  l.set_max_messages(1);
  run({"send", "$.Full", "first"});
  SpawnedProcess p(argv({"send", "--all-or-wait", "$.Full", "second"}), env());
  // The CLI is pending until the listener makes room.
  Ksock probe = open(2);
  for (int i = 0; i < 1000 && probe.stats_report().find(", sending") == std::string::npos; ++i) {
    ASSERT_TRUE(p.alive());
    p.out().ready(10ms);
  }
  EXPECT_EQ(next(l).data, "first");
  EXPECT_EQ(p.line(), "[0:2]");
  EXPECT_EQ(p.wait(), 0);
  EXPECT_EQ(next(l).data, "second");
}

// The form the talk shows (KBUS-SPEC.md §11.3, the original's Python 2
// str()): data='Ahem' without Python 3's b prefix; bytes that are not
// printable escaped. --json keeps the exact bytes (ListenJson below).
TEST_F(CliTest, ListenPrintsMessagesInTheTalkForm) {
  SpawnedProcess p(argv({"listen", "--count", "3", "$.Fred", "$.Jim.*"}), env());
  ASSERT_TRUE(wait_for_binding(p, "L  $.Jim.*"));
  Ksock s = open(0);
  MessageId a = s.send_msg(make_announcement("$.Fred", "Ahem"));
  s.send_msg(make_announcement("$.Jim.Bob", std::string("\x01\xff'", 3)));
  s.send_msg(make_announcement("$.Nobody"));
  s.send_msg(make_announcement("$.Fred"));
  EXPECT_EQ(p.line(), "<Announcement '$.Fred', id=" + a.to_string() + ", from=" +
                          std::to_string(s.id()) + ", data='Ahem'>");
  EXPECT_EQ(p.line(), "<Announcement '$.Jim.Bob', id=[0:2], from=" + std::to_string(s.id()) +
                          ", data=\"\\x01\\xff'\">");
  EXPECT_EQ(p.line(), "<Announcement '$.Fred', id=[0:4], from=" + std::to_string(s.id()) + ">");
  EXPECT_EQ(p.wait(), 0);
  EXPECT_EQ(p.line(), "<eof>");
}

TEST_F(CliTest, ListenJson) {
  SpawnedProcess p(argv({"listen", "--json", "--count", "2", "-b", "1", "$.*"}), env());
  ASSERT_TRUE(wait_for_binding(p, "  1:        1 "));
  Ksock s = open(1);
  Message m = make_announcement("$.Fred", "caf\xc3\xa9 \"q\"\n", flag::kUrgent);
  m.hdr.orig_from = {1, 2};
  s.send_msg(m);
  s.send_msg(make_announcement("$.Bin", std::string("\xff\x00\x01", 3)));
  EXPECT_EQ(p.line(),
            "{\"id\":{\"network_id\":0,\"serial_num\":1},\"in_reply_to\":{\"network_id\":0,"
            "\"serial_num\":0},\"to\":0,\"from\":2,\"orig_from\":{\"network_id\":1,\"local_id\":2},"
            "\"final_to\":{\"network_id\":0,\"local_id\":0},\"flags\":8,\"name\":\"$.Fred\","
            "\"data\":\"caf\xc3\xa9 \\\"q\\\"\\n\"}");
  std::string bin = p.line();
  EXPECT_NE(bin.find("\"name\":\"$.Bin\",\"data\":null,\"data_base64\":\"/wAB\"}"),
            std::string::npos)
      << bin;
  EXPECT_EQ(p.wait(), 0);
}

TEST_F(CliTest, ListenStopsCleanlyOnSigterm) {
  SpawnedProcess p(argv({"listen", "$.Fred"}), env());
  ASSERT_TRUE(wait_for_binding(p, "L  $.Fred"));
  p.kill(SIGTERM);
  EXPECT_EQ(p.wait(), 0);
  Ksock k = open(0);
  EXPECT_EQ(k.bindings_report().find("$.Fred"), std::string::npos);
}

TEST_F(CliTest, ListenFailures) {
  auto r = run({"listen", "$.Fred..Jim"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("EBADMSG"), std::string::npos) << r.err;
  auto r2 = run({"listen", "-b", "3", "$.Fred"});
  EXPECT_NE(r2.exit_code, 0);
  EXPECT_NE(r2.err.find("ENOENT"), std::string::npos) << r2.err;
}

TEST_F(CliTest, RequestPrintsTheReply) {
  Ksock r = open(0);
  r.bind("$.Q", true);
  SpawnedProcess p(argv({"request", "--timeout", "10", "$.Q", "question"}), env());
  auto req = r.wait_for_msg(10s);
  ASSERT_TRUE(req);
  EXPECT_EQ(req->data, "question");
  EXPECT_TRUE(req->wants_us_to_reply());
  MessageId rid = r.send_msg(make_reply(*req, "answer").value());
  EXPECT_EQ(p.line(), "<Reply '$.Q', id=" + rid.to_string() + ", to=" +
                          std::to_string(req->hdr.from) + ", from=" + std::to_string(r.id()) +
                          ", in_reply_to=" + req->hdr.id.to_string() + ", data='answer'>");
  EXPECT_EQ(p.wait(), 0);
}

TEST_F(CliTest, RequestPrintsTheStatusThatReplacedTheReply) {
  Ksock r = open(0);
  r.bind("$.Q", true);
  SpawnedProcess p(argv({"request", "$.Q"}), env());
  auto req = r.wait_for_msg(10s);
  ASSERT_TRUE(req);
  r.close();
  std::string line = p.line();
  EXPECT_EQ(line.rfind("<Status '$.KBUS.Replier.Ignored', id=", 0), 0u) << line;
  EXPECT_NE(line.find("in_reply_to=" + req->hdr.id.to_string() + ", flags=0x4 (SYN)>"),
            std::string::npos)
      << line;
  EXPECT_EQ(p.wait(), 3);
}

TEST_F(CliTest, StatefulRequestWithTo) {
  Ksock r = open(0);
  r.bind("$.Q", true);
  auto wrong = run({"request", "--to", std::to_string(r.id() + 100), "$.Q"});
  EXPECT_NE(wrong.exit_code, 0);
  EXPECT_NE(wrong.err.find("EPIPE"), std::string::npos) << wrong.err;
  SpawnedProcess p(argv({"request", "--to", std::to_string(r.id()), "$.Q"}), env());
  auto req = r.wait_for_msg(10s);
  ASSERT_TRUE(req);
  EXPECT_EQ(req->hdr.to, r.id());
  r.send_msg(make_reply(*req).value());
  EXPECT_EQ(p.line().rfind("<Reply '$.Q'", 0), 0u);
  EXPECT_EQ(p.wait(), 0);
}

TEST_F(CliTest, RequestFailuresAndTimeout) {
  auto none = run({"request", "$.Nobody"});
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_EQ(none.err,
            "kbus request: EADDRNOTAVAIL: nobody is bound as replier for '$.Nobody' on bus 0 (see "
            "`kbus bindings -b 0`)\n");

  Ksock r = open(0);
  r.bind("$.Slow", true);
  auto slow = run({"request", "--timeout", "0.2", "$.Slow"});
  EXPECT_NE(slow.exit_code, 0);
  EXPECT_NE(slow.err.find("ETIMEDOUT"), std::string::npos) << slow.err;
  EXPECT_EQ(slow.out, "");
}

TEST_F(CliTest, ReplyAnswersEveryRequestUntilSigterm) {
  SpawnedProcess p(argv({"reply", "$.Q", "fixed answer"}), env());
  ASSERT_TRUE(wait_for_binding(p, "R  $.Q"));
  Ksock s = open(0);
  for (int i = 0; i < 3; ++i) {
    MessageId id = s.send_msg(make_request("$.Q", "q" + std::to_string(i)));
    auto rep = s.wait_for_msg(10s);
    ASSERT_TRUE(rep);
    EXPECT_EQ(rep->hdr.in_reply_to, id);
    EXPECT_EQ(rep->data, "fixed answer");
    EXPECT_FALSE(rep->is_status());
    std::string line = p.line();  // the request, as it was received
    EXPECT_NE(line.find("data='q" + std::to_string(i) + "'"), std::string::npos) << line;
  }
  p.kill(SIGTERM);
  EXPECT_EQ(p.wait(), 0);
  settle(s);
  EXPECT_EQ(s.find_replier("$.Q"), std::nullopt);
}

TEST_F(CliTest, ReplyExecRunsACommandOnTheRequestData) {
  SpawnedProcess p(
      argv({"reply", "-b", "1", "$.Upper", "--exec", "tr a-z A-Z; printf ' %s' \"$KBUS_MSG_NAME\""}),
      env());
  ASSERT_TRUE(wait_for_binding(p, "R  $.Upper"));
  Ksock s = open(1);
  std::string big(100, 'x');
  s.send_msg(make_request("$.Upper", "shout " + big));
  auto rep = s.wait_for_msg(10s);
  ASSERT_TRUE(rep);
  EXPECT_EQ(rep->data, "SHOUT " + std::string(100, 'X') + " $.Upper");
  p.kill(SIGINT);
  EXPECT_EQ(p.wait(), 0);
}

// A failing command gives no empty "success": the requester gets
// $.KBUS.Replier.CommandFailed (docs/decisions.md D15); output loses its
// trailing newlines as with $(...).
TEST_F(CliTest, ReplyExecFailureIsNotAnEmptySuccess) {
  SpawnedProcess p(argv({"reply", "$.Cmd", "--exec",
                         "if [ \"$(cat)\" = fail ]; then exit 3; fi; echo ok; echo"}),
                   env());
  ASSERT_TRUE(wait_for_binding(p, "R  $.Cmd"));
  Ksock s = open(0);
  Message ok = s.request(make_request("$.Cmd", "go"), 10s);
  EXPECT_EQ(ok.name, "$.Cmd");
  EXPECT_EQ(ok.data, "ok");
  EXPECT_FALSE(ok.is_status());
  Message failed = s.request(make_request("$.Cmd", "fail"), 10s);
  EXPECT_EQ(failed.name, "$.KBUS.Replier.CommandFailed");
  EXPECT_EQ(failed.data, "the command exited with status 3");
  EXPECT_TRUE(failed.is_status());
  // `kbus request` shows it as a Status: exit 3.
  auto req = run({"request", "--timeout", "10", "$.Cmd", "fail"});
  EXPECT_EQ(req.exit_code, 3) << req.err;
  EXPECT_NE(req.out.find("<Status '$.KBUS.Replier.CommandFailed'"), std::string::npos) << req.out;
  p.kill(SIGTERM);
  EXPECT_EQ(p.wait(), 0);
}

// --timestamps, --max-messages, and a warning when the queue was full
// (KBUS-SPEC.md §5.2: a full listener misses messages).
TEST_F(CliTest, ListenTimestampsQueueSizeAndMissedMessages) {
  SpawnedProcess p(argv({"listen", "-t", "--max-messages", "3", "--count", "4", "$.Ts"}), env());
  ASSERT_TRUE(wait_for_binding(p, "L  $.Ts"));
  Ksock probe = open(2);
  // The listener's queue limit is 3 (stats report: "queue 0 of 3").
  EXPECT_NE(probe.stats_report().find(" of 3\n"), std::string::npos) << probe.stats_report();
  Ksock s = open(0);
  s.send_msg(make_announcement("$.Ts", "one"));
  std::string line = p.line();
  // 2026-12-03T13:05:46.519641Z <Announcement ...>
  ASSERT_GT(line.size(), 28u) << line;
  EXPECT_EQ(line[4], '-');
  EXPECT_EQ(line[10], 'T');
  EXPECT_EQ(line.substr(26, 2), "Z ");
  EXPECT_NE(line.find("<Announcement '$.Ts'"), std::string::npos) << line;
  EXPECT_NE(line.find("data='one'"), std::string::npos) << line;
  p.kill(SIGSTOP);  // the listener stops reading; its queue fills
  for (int i = 0; i < 5; ++i) s.send_msg(make_announcement("$.Ts", "m" + std::to_string(i)));
  p.kill(SIGCONT);
  for (int i = 0; i < 3; ++i) {
    std::string m = p.line();
    EXPECT_NE(m.find("data='m" + std::to_string(i) + "'"), std::string::npos) << m;
  }
  EXPECT_EQ(p.wait(), 0);
  const std::string err = p.err();
  EXPECT_NE(err.find("kbus listen: the queue was full (3 messages): messages sent "
                     "meanwhile may have been missed; raise --max-messages"),
            std::string::npos)
      << err;
}

// A monitor binds nothing, so no report shows when it is ready: probes are
// sent until one is printed, then a marker, and the lines up to the marker
// are skipped. What follows is exactly what was sent after the marker.
void sync_monitor(SpawnedProcess& p, Ksock& s) {
  for (int i = 0; i < 1000 && p.alive(); ++i) {
    s.send_msg(make_announcement("$.Probe"));
    if (p.out().ready(10ms)) break;  // waits on the monitor's output, not on a clock
  }
  s.send_msg(make_announcement("$.Marker"));
  for (int i = 0; i < 2000; ++i) {
    const std::string line = p.line();
    if (line.find("$.Marker") != std::string::npos) return;
    ASSERT_NE(line, "<eof>") << p.err();
  }
  FAIL() << "the monitor never printed the marker";
}

// `kbus monitor` (docs/decisions.md D25): every message on the bus, once, in
// the form of `kbus listen` - an Announcement nobody listens to, a Request
// and its Reply, and the Status that only the requester gets (KBUS-SPEC.md
// §6.2), in bus order.
TEST_F(CliTest, MonitorShowsAllTrafficWithStatusMessages) {
  SpawnedProcess p(argv({"monitor"}), env());
  Ksock s = open(0);
  sync_monitor(p, s);
  Ksock replier = open(0), requester = open(0);
  replier.bind("$.Fred", true);
  const std::string rq = std::to_string(requester.id()), rp = std::to_string(replier.id());
  const MessageId a = s.send_msg(make_announcement("$.Nobody", "hi"));
  const MessageId r1 = requester.send_msg(make_request("$.Fred", "q1"));
  Message got = replier.wait_for_msg(10s).value();
  const MessageId rep = replier.send_msg(make_reply(got, "a1").value());
  const MessageId r2 = requester.send_msg(make_request("$.Fred", "q2", flag::kUrgent));
  replier.close();  // GoneAway for r2 (§7.2-3)
  EXPECT_EQ(p.line(), "<Announcement '$.Nobody', id=" + a.to_string() + ", from=" + std::to_string(s.id()) +
                          ", data='hi'>");
  EXPECT_EQ(p.line(), "<Request '$.Fred', id=" + r1.to_string() + ", from=" + rq +
                          ", flags=0x1 (REQ), data='q1'>");
  EXPECT_EQ(p.line(), "<Reply '$.Fred', id=" + rep.to_string() + ", to=" + rq + ", from=" + rp +
                          ", in_reply_to=" + r1.to_string() + ", data='a1'>");
  EXPECT_EQ(p.line(), "<Request '$.Fred', id=" + r2.to_string() + ", from=" + rq +
                          ", flags=0x9 (REQ,URG), data='q2'>");
  const MessageId st = requester.wait_for_msg(10s).value().hdr.id;  // rep first
  (void)st;
  Message gone = requester.wait_for_msg(10s).value();
  EXPECT_EQ(p.line(), "<Status '$.KBUS.Replier.GoneAway', id=" + gone.hdr.id.to_string() + ", to=" + rq +
                          ", from=" + rp + ", in_reply_to=" + r2.to_string() + ", flags=0x4 (SYN)>");
  p.kill(SIGTERM);
  EXPECT_EQ(p.wait(), 0);
  EXPECT_EQ(p.line(), "<eof>");
  EXPECT_EQ(p.err(), "");
}

// --json and --timestamps as for listen; a full queue makes the monitor miss
// copies, never a sender fail (§5.2-13), and it says how many it missed.
// (The default queue, 1000, so that the probes of sync_monitor never fill it.)
TEST_F(CliTest, MonitorJsonAndMissedMessages) {
  SpawnedProcess p(argv({"monitor", "--json", "-t"}), env());
  Ksock s = open(0);
  sync_monitor(p, s);
  Ksock l = open(0);
  l.set_max_messages(2000);
  l.bind("$.Flow");
  s.send_msg(make_announcement("$.Flow", "one"));
  const std::string line = p.line();
  ASSERT_GT(line.size(), 40u) << line;
  EXPECT_EQ(line.substr(0, 9), "{\"time\":\"") << line;
  EXPECT_NE(line.find("\"name\":\"$.Flow\",\"data\":\"one\"}"), std::string::npos) << line;
  p.kill(SIGSTOP);  // the monitor stops reading; its queue (1000) fills
  for (int i = 0; i < 1005; ++i) {
    ASSERT_TRUE(s.try_send_msg(make_announcement("$.Flow", "m" + std::to_string(i), flag::kAllOrFail)).ok());
  }
  EXPECT_EQ(l.num_messages(), 1006u);
  p.kill(SIGCONT);
  for (int i = 0; i < 1000; ++i) {
    const std::string m = p.line();
    ASSERT_NE(m.find("\"data\":\"m" + std::to_string(i) + "\"}"), std::string::npos) << m;
  }
  s.send_msg(make_announcement("$.Flow", "last"));
  EXPECT_NE(p.line().find("\"data\":\"last\"}"), std::string::npos);
  p.kill(SIGTERM);
  EXPECT_EQ(p.wait(), 0);
  EXPECT_EQ(p.err(),
            "kbus monitor: missed 5 messages: the queue was full (1000 messages); raise --max-messages\n"
            "kbus monitor: missed 5 messages in all\n");
}

TEST_F(CliTest, MonitorFailures) {
  auto r = run({"monitor", "-b", "3"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("kbus monitor: ENOENT"), std::string::npos) << r.err;
  auto bad = run({"monitor", "$.Fred"});
  EXPECT_EQ(bad.exit_code, 2);
}

// kbus listen and reply wait for kbusd to come back and bind again; with
// --no-reconnect they exit 1, saying kbusd went away (ECONNRESET, never
// EPIPE).
TEST_F(CliTest, ListenAndReplyReconnectWhenKbusdComesBack) {
  TestDaemon d(1);
  const Env e = {{"KBUS_DIR", d.dir()}};
  SpawnedProcess l(argv({"listen", "$.Back"}), e);
  SpawnedProcess r(argv({"reply", "$.BackQ", "pong"}), e);
  SpawnedProcess once(argv({"listen", "--no-reconnect", "$.Once"}), e);
  auto bound = [&](SpawnedProcess& p, const std::string& line) {
    for (int i = 0; i < 1000; ++i) {
      auto k = d.try_open(0);
      if (k && k->bindings_report().find(line) != std::string::npos) return true;
      if (!p.alive()) return false;
      p.out().ready(10ms);  // waits on the child's output, not on a clock
    }
    return false;
  };
  ASSERT_TRUE(bound(l, "L  $.Back"));
  ASSERT_TRUE(bound(r, "R  $.BackQ"));
  ASSERT_TRUE(bound(once, "L  $.Once"));
  EXPECT_EQ(d.stop(), 0);
  EXPECT_EQ(once.wait(), 1);
  EXPECT_EQ(once.err(), "kbus listen: ECONNRESET: kbusd went away (the bus socket " + d.dir() +
                            "/kbus0 closed): it stopped or crashed\n");
  // A new kbusd on the same directory: both bind again by themselves.
  const pid_t again = start_kbusd({"--devices", "1", "--dir", d.dir()}, d.dir() + "/again.log");
  ASSERT_TRUE(bound(l, "L  $.Back"));
  ASSERT_TRUE(bound(r, "R  $.BackQ"));
  Ksock s = d.open(0);
  s.send_msg(make_announcement("$.Back", "after"));
  EXPECT_NE(l.line().find("data='after'"), std::string::npos);
  Message rep = s.request(make_request("$.BackQ", "ping"), 10s);
  EXPECT_EQ(rep.data, "pong");
  s.close();
  l.kill(SIGTERM);
  r.kill(SIGTERM);
  EXPECT_EQ(l.wait(), 0);
  EXPECT_EQ(r.wait(), 0);
  const std::string lerr = l.err();
  EXPECT_NE(lerr.find("kbus listen: kbusd went away (" + d.dir() +
                      "/kbus0); waiting for it to come back (--no-reconnect to exit instead)"),
            std::string::npos)
      << lerr;
  EXPECT_NE(lerr.find("kbus listen: kbusd is back (" + d.dir() + "/kbus0)"), std::string::npos)
      << lerr;
  EXPECT_NE(r.err().find("kbus reply: kbusd is back"), std::string::npos);
  ::kill(again, SIGTERM);
  EXPECT_EQ(wait_for_exit(again, 10s), 0);
}

TEST_F(CliTest, ReplyFailures) {
  Ksock r = open(0);
  r.bind("$.Taken", true);
  auto taken = run({"reply", "$.Taken", "x"});
  EXPECT_EQ(taken.exit_code, 1);
  EXPECT_EQ(taken.err, "kbus reply: bind $.Taken: EADDRINUSE: another Ksock already replies to "
                       "'$.Taken' on bus 0 (one replier per name): Ksock " +
                           std::to_string(r.id()) + " of process " + std::to_string(::getpid()) +
                           " (" + process_comm() + ")\n");
  auto neither = run({"reply", "$.Q"});
  EXPECT_NE(neither.exit_code, 0);
}

TEST_F(CliTest, BindingsAndStats) {
  Ksock k = open(0);
  k.bind("$.Sensors.*", true);
  // --raw: the original's /proc/kbus/bindings text, byte for byte (§9.1).
  auto b = run({"bindings", "--raw"});
  EXPECT_EQ(b.exit_code, 0) << b.err;
  EXPECT_EQ(b.out, k.bindings_report());
  std::string pid = std::to_string(::getpid());
  EXPECT_NE(b.out.find("  0:        1 " + std::string(8 - pid.size(), ' ') + pid +
                       "  R  $.Sensors.*\n"),
            std::string::npos)
      << b.out;
  auto s = run({"stats", "--raw"});
  EXPECT_EQ(s.exit_code, 0) << s.err;
  EXPECT_EQ(s.out.rfind("dev  0: next ksock ", 0), 0u) << s.out;
  EXPECT_NE(s.out.find("dev  2: "), std::string::npos) << s.out;
}

// The readable forms: only the bus -b names, process names beside pids, the
// stats in words; and JSON.
TEST_F(CliTest, BindingsAndStatsReadableAndJson) {
  Ksock k = open(0);
  k.bind("$.Sensors.*", true);
  Ksock k1 = open(1);
  k1.bind("$.Other");
  const std::string pid = std::to_string(::getpid());
  const std::string comm = process_comm();
  auto all = run({"bindings"});
  EXPECT_EQ(all.exit_code, 0) << all.err;
  EXPECT_NE(all.out.find("$.Sensors.*"), std::string::npos) << all.out;
  EXPECT_NE(all.out.find("$.Other"), std::string::npos) << all.out;
  auto one = run({"bindings", "-b", "0"});
  char line[200];
  std::snprintf(line, sizeof line, "%5u %6u %8s %-16s %-9s $.Sensors.*\n", 0u, k.id(), pid.c_str(),
                comm.c_str(), "replier");
  EXPECT_EQ(one.out, std::string("# bus  ksock      pid process          role      name\n") + line);
  auto raw1 = run({"bindings", "--raw", "-b", "1"});
  EXPECT_EQ(raw1.out.find("$.Sensors"), std::string::npos) << raw1.out;
  EXPECT_NE(raw1.out.find("  1:        1 "), std::string::npos) << raw1.out;
  auto json = run({"bindings", "--json", "-b", "1"});
  EXPECT_EQ(json.out, "[{\"bus\":1,\"ksock\":" + std::to_string(k1.id()) + ",\"pid\":" + pid +
                          ",\"process\":\"" + comm +
                          "\",\"role\":\"listener\",\"name\":\"$.Other\"}]\n");

  k.send_msg(make_announcement("$.Nobody"));
  auto st = run({"stats", "-b", "0"});
  EXPECT_EQ(st.exit_code, 0) << st.err;
  EXPECT_EQ(st.out.rfind("bus 0: 2 Ksock(s) open; the next Ksock gets id ", 0), 0u) << st.out;
  EXPECT_NE(st.out.find("  Ksock " + std::to_string(k.id()) +
                        ": 0 of 100 messages queued, last sent [0:1]; awaiting 0 replies"),
            std::string::npos)
      << st.out;
  EXPECT_EQ(st.out.find("bus 1"), std::string::npos) << st.out;
  auto sj = run({"stats", "--json", "-b", "1"});
  EXPECT_EQ(sj.out.rfind("[{\"bus\":1,\"next_ksock\":", 0), 0u) << sj.out;
  EXPECT_NE(sj.out.find("\"max_messages\":100"), std::string::npos) << sj.out;
}

TEST_F(CliTest, NewDevice) {
  auto r = run({"new-device"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "3\n");
  EXPECT_TRUE(daemon_.try_open(3).ok());
  auto r2 = run({"new-device", "-b", "3"});
  EXPECT_EQ(r2.out, "4\n");
}

TEST_F(CliTest, ErrnoExplainsNumbersAndNames) {
  auto byname = run({"errno", "EPIPE"});
  EXPECT_EQ(byname.exit_code, 0);
  EXPECT_EQ(byname.out, "EPIPE is error 32 (0x20): Broken pipe\n\nKBUS:\n" +
                            kbus_meaning(EPIPE) + "\n");
  auto bynum = run({"errno", "32"});
  EXPECT_EQ(bynum.out, "Error 32 (0x20) is EPIPE: Broken pipe\n\nKBUS:\n" +
                           kbus_meaning(EPIPE) + "\n");
  // No KBUS meaning: one line only.
  auto eperm = run({"errno", "1"});
  EXPECT_EQ(eperm.exit_code, 0);
  EXPECT_EQ(eperm.out, "Error 1 (0x1) is EPERM: Operation not permitted\n");
  auto hex = run({"errno", "EADDRNOTAVAIL"});
  EXPECT_EQ(hex.out.rfind("EADDRNOTAVAIL is error 99 (0x63): ", 0), 0u) << hex.out;
  auto unknown = run({"errno", "9999"});
  EXPECT_NE(unknown.exit_code, 0);
  EXPECT_EQ(unknown.out, "Unrecognised error code number 9999\n");
  auto badname = run({"errno", "EFRED"});
  EXPECT_NE(badname.exit_code, 0);
  EXPECT_EQ(badname.out, "Unrecognised error code mnemonic EFRED\n");
  auto list = run({"errno", "--list"});
  EXPECT_EQ(list.exit_code, 0);
  EXPECT_NE(list.out.find(" 32: EPIPE                Broken pipe\n"), std::string::npos);
}

TEST_F(CliTest, HelpCommand) {
  auto send = run({"help", "send"});
  EXPECT_EQ(send.exit_code, 0) << send.err;
  EXPECT_NE(send.out.find("--urgent"), std::string::npos) << send.out;
  EXPECT_EQ(send.out, run({"send", "--help"}).out);
  auto all = run({"help"});
  EXPECT_EQ(all.exit_code, 0);
  EXPECT_NE(all.out.find("max-size"), std::string::npos) << all.out;
  auto none = run({"help", "frobnicate"});
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_EQ(none.err, "kbus help: no command 'frobnicate'; the commands are listed by `kbus help`\n");
}

TEST_F(CliTest, HelpVersionAndUsage) {
  auto help = run({"--help"});
  EXPECT_EQ(help.exit_code, 0);
  for (const char* cmd : {"send", "listen", "request", "reply", "bindings", "stats", "new-device",
                          "errno"})
    EXPECT_NE(help.out.find(cmd), std::string::npos) << cmd;
  auto sub = run({"send", "--help"});
  EXPECT_EQ(sub.exit_code, 0);
  EXPECT_NE(sub.out.find("--urgent"), std::string::npos);
  auto version = run({"--version"});
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_EQ(version.out.rfind("kbus ", 0), 0u) << version.out;
  EXPECT_NE(run({}).exit_code, 0);
  EXPECT_NE(run({"frobnicate"}).exit_code, 0);
  EXPECT_NE(run({"send"}).exit_code, 0);
}

TEST_F(CliTest, NoDaemonIsENOENT) {
  auto r = run_process(argv({"send", "$.Fred"}), {{"KBUS_DIR", daemon_.dir() + "/none"}});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("ENOENT"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace kbus::test
