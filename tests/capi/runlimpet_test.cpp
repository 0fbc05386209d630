// capi/runlimpet_test.cpp - the C Limpet library (<libkbus/limpet.h>,
// KBUS-SPEC.md §10.7) through tests/capi/runlimpet.c, a program written as
// the original utils/runlimpet.c was (§13.3), paired with kbus's own
// `kbus-limpet` at the other end: bus 0 of kbusd A <- runlimpet ==
// kbus-limpet -> bus 0 of kbusd B, over a Unix socket and over TCP on
// 127.0.0.1, with either program as the socket server.
//
// Waits are bounded and wait on real signals: a line from a program, a
// replier binding appearing (each check a round trip to kbusd), a message
// arriving. Nothing sleeps.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "kbus/ksock.hpp"
#include "kbus/message.hpp"
#include "limpet/limpet_fixture.hpp"
#include "support/child_process.hpp"
#include "support/test_daemon.hpp"

namespace kbus::test {
namespace {

using namespace std::chrono_literals;

constexpr std::uint32_t kCId = 7;     // runlimpet's network id (bus A)
constexpr std::uint32_t kKbusId = 9;  // kbus-limpet's network id (bus B)

// A runlimpet process with KBUS_DIR pointing at `dir`.
class RunLimpet {
 public:
  RunLimpet(const std::string& dir, std::vector<std::string> args) {
    std::vector<std::string> argv = {RUNLIMPET_PATH};
    argv.insert(argv.end(), args.begin(), args.end());
    proc_ = std::make_unique<SpawnedProcess>(argv, Env{{"KBUS_DIR", dir}});
    banner_ = proc_->line(10s);
    seen_ = banner_ + "\n";
    const auto at = banner_.find(" port ");
    if (at != std::string::npos) port_ = std::atoi(banner_.c_str() + at + 6);
  }
  const std::string& banner() const { return banner_; }
  int port() const { return port_; }
  bool wait_for_line(const std::string& text) {
    for (;;) {
      std::string l = proc_->line(10s);
      if (l == "<timeout>" || l == "<eof>") return false;
      seen_ += l + "\n";
      if (l.find(text) != std::string::npos) return true;
    }
  }
  const std::string& seen() const { return seen_; }
  SpawnedProcess& proc() { return *proc_; }

 private:
  std::unique_ptr<SpawnedProcess> proc_;
  std::string banner_;
  std::string seen_;
  int port_ = 0;
};

struct PairSetup {
  bool tcp;
  bool c_is_server;
};

std::string setup_name(const ::testing::TestParamInfo<PairSetup>& p) {
  return std::string(p.param.tcp ? "Tcp" : "Unix") +
         (p.param.c_is_server ? "RunlimpetServer" : "KbusLimpetServer");
}

class RunlimpetInterop : public ::testing::TestWithParam<PairSetup> {
 protected:
  void SetUp() override {
    const PairSetup s = GetParam();
    const std::string address = s.tcp ? "127.0.0.1:0" : a_.dir() + "/limpet.sock";
    const std::vector<std::string> common_c = {"-id", std::to_string(kCId), "-t", "$.Stop"};
    if (s.c_is_server) {
      std::vector<std::string> args = {"-s", address};
      args.insert(args.end(), common_c.begin(), common_c.end());
      c_ = std::make_unique<RunLimpet>(a_.dir(), args);
      // KBUS-SPEC.md §13.3: the banner.
      const std::string via =
          s.tcp ? "via TCP/IP, address '127.0.0.1' port " : "via Unix domain socket '" + address + "'";
      ASSERT_EQ(c_->banner().rfind("C Limpet: Server " + via, 0), 0u) << c_->banner();
      EXPECT_NE(c_->banner().find("for KBUS 0, using network id 7, listening for '$.*'"),
                std::string::npos)
          << c_->banner();
      const std::string to =
          s.tcp ? "127.0.0.1:" + std::to_string(c_->port()) : address;
      k_ = std::make_unique<LimpetProc>(std::vector<std::string>{
          "-c", "-id", std::to_string(kKbusId), "-d", b_.dir(), to});
    } else {
      k_ = std::make_unique<LimpetProc>(std::vector<std::string>{
          "-s", "-id", std::to_string(kKbusId), "-d", b_.dir(), address});
      const std::string to = s.tcp ? "127.0.0.1:" + std::to_string(k_->port()) : address;
      std::vector<std::string> args = {"-c", to};
      args.insert(args.end(), common_c.begin(), common_c.end());
      c_ = std::make_unique<RunLimpet>(a_.dir(), args);
      ASSERT_EQ(c_->banner().rfind("C Limpet: Client via", 0), 0u) << c_->banner();
    }
    ASSERT_TRUE(c_->wait_for_line("linked to the limpet with network id 9"))
        << c_->seen() << c_->proc().err(1s);
    ASSERT_TRUE(k_->wait_for_line("linked with")) << k_->seen() << k_->err();
  }

  // A replier on `d` bus 0 (a child process) and its proxy on `other`.
  std::unique_ptr<Actor> replier(const TestDaemon& d, const TestDaemon& other,
                                 const std::string& name, int answer_first = 1 << 30) {
    auto r = start_replier(d.dir(), name, answer_first);
    Ksock k = other.open(0);
    EXPECT_TRUE(wait_replier(k, name)) << name << " was not proxied";
    return r;
  }

  TestDaemon a_{1};  // runlimpet's bus
  TestDaemon b_{1};  // kbus-limpet's bus
  std::unique_ptr<RunLimpet> c_;
  std::unique_ptr<LimpetProc> k_;
};

// §10.4-§10.6: Requests and Replies both ways, ids and orig_from as the
// limpets set them.
TEST_P(RunlimpetInterop, RequestsAndRepliesCrossBothWays) {
  auto g = replier(b_, a_, "$.Gulp");
  Ksock qa = a_.open(0);
  auto id = qa.send_msg(make_request("$.Gulp", "from A"));
  auto got = collect_answers(qa, {id});
  ASSERT_EQ(got[id].size(), 1u);
  const Message& rep = got[id][0];
  EXPECT_EQ(rep.data, "from A") << "the replier on B echoes";
  EXPECT_FALSE(rep.is_status());
  EXPECT_EQ(rep.hdr.orig_from.network_id, kKbusId) << rep.to_string();
  EXPECT_EQ(rep.hdr.from, *qa.find_replier("$.Gulp")) << "sent on A by runlimpet, the proxy";

  auto e = replier(a_, b_, "$.Echo");
  Ksock qb = b_.open(0);
  auto id2 = qb.send_msg(make_request("$.Echo", "from B"));
  auto got2 = collect_answers(qb, {id2});
  ASSERT_EQ(got2[id2].size(), 1u);
  EXPECT_EQ(got2[id2][0].data, "from B");
  EXPECT_EQ(got2[id2][0].hdr.orig_from.network_id, kCId);

  // Several in flight at once, each answered exactly once (§6.1).
  std::set<MessageId> ids;
  for (int i = 0; i < 20; ++i) ids.insert(qa.send_msg(make_request("$.Gulp", std::to_string(i))));
  auto many = collect_answers(qa, ids);
  for (auto& i : ids) EXPECT_EQ(many[i].size(), 1u) << i.to_string();
}

// §10.5-1, §7: a replier on the far side that dies holding a Request, or
// unbinds before reading one: KBUS answers the limpet, and the Status
// crosses back to the requester as a Reply of that name.
TEST_P(RunlimpetInterop, StatusesComeBackWhenTheReplierIsKilledOrUnbinds) {
  // The replier on B (kbus-limpet's side) is killed holding the Request.
  auto holder = replier(b_, a_, "$.Hold", 0);
  Ksock qa = a_.open(0);
  auto id = qa.send_msg(make_request("$.Hold", "x"));
  ASSERT_EQ(holder->hear(), "holding");
  holder->kill(SIGKILL);
  auto got = collect_answers(qa, {id});
  ASSERT_EQ(got[id].size(), 1u);
  EXPECT_EQ(got[id][0].name, "$.KBUS.Replier.Ignored");
  ASSERT_TRUE(wait_no_replier(qa, "$.Hold")) << "the unbind event crossed too";

  // The replier on A (runlimpet's side) unbinds with the Request queued.
  Ksock r = a_.open(0);
  r.bind("$.Slow", true);
  Ksock qb = b_.open(0);
  ASSERT_TRUE(wait_replier(qb, "$.Slow"));
  auto id2 = qb.send_msg(make_request("$.Slow", "y"));
  ASSERT_TRUE(r.wait(ready::kReadable, std::chrono::milliseconds(10000)) & ready::kReadable)
      << "the Request reached the replier's queue";
  r.unbind("$.Slow", true);
  auto got2 = collect_answers(qb, {id2});
  ASSERT_EQ(got2[id2].size(), 1u);
  EXPECT_EQ(got2[id2][0].name, "$.KBUS.Replier.Unbound");
  EXPECT_TRUE(wait_no_replier(qb, "$.Slow"));

  // And one on A killed: the Ignored/GoneAway crosses the other way.
  auto dying = replier(a_, b_, "$.Die", 0);
  auto id3 = qb.send_msg(make_request("$.Die", "z"));
  ASSERT_EQ(dying->hear(), "holding");
  dying->kill(SIGKILL);
  auto got3 = collect_answers(qb, {id3});
  ASSERT_EQ(got3[id3].size(), 1u);
  EXPECT_EQ(got3[id3][0].name, "$.KBUS.Replier.Ignored");
}

// §10.4, §10.6: Announcements cross both ways, exactly once, stamped with
// the sending side's network id.
TEST_P(RunlimpetInterop, AnnouncementsCrossBothWaysOnce) {
  auto g = replier(b_, a_, "$.Gulp");
  auto e = replier(a_, b_, "$.Echo");
  Ksock sa = a_.open(0), ha = a_.open(0), sb = b_.open(0), hb = b_.open(0);
  ha.bind("$.News");
  hb.bind("$.News");
  auto id = sa.send_msg(make_announcement("$.News", "from A"));
  auto m = hb.wait_for_msg(std::chrono::milliseconds(10000));
  ASSERT_TRUE(m);
  EXPECT_EQ(m->data, "from A");
  EXPECT_EQ(m->hdr.id, (MessageId{kCId, id.serial_num}));
  EXPECT_EQ(m->hdr.orig_from, (OrigFrom{kCId, sa.id()}));

  auto id2 = sb.send_msg(make_announcement("$.News", "from B"));
  auto own = ha.wait_for_msg(std::chrono::milliseconds(10000));  // A's own, heard on A
  ASSERT_TRUE(own);
  EXPECT_EQ(own->data, "from A");
  auto n = ha.wait_for_msg(std::chrono::milliseconds(10000));
  ASSERT_TRUE(n);
  EXPECT_EQ(n->data, "from B");
  EXPECT_EQ(n->hdr.id, (MessageId{kKbusId, id2.serial_num}));
  EXPECT_EQ(n->hdr.orig_from, (OrigFrom{kKbusId, sb.id()}));
  auto own_b = hb.wait_for_msg(std::chrono::milliseconds(10000));
  ASSERT_TRUE(own_b);
  EXPECT_EQ(own_b->data, "from B");

  // A round trip each way after them: anything else they caused is queued
  // by now (one stream, kept in order), so no echo and no duplicate.
  ASSERT_TRUE(round_trip(sa, "$.Gulp"));
  ASSERT_TRUE(round_trip(sb, "$.Echo"));
  EXPECT_EQ(ha.num_messages(), 0u);
  EXPECT_EQ(hb.num_messages(), 0u);
}

// §5.5, §10.5-4: an ALL_OR_WAIT Announcement that finds a full listener on
// runlimpet's bus is pending (-EAGAIN): runlimpet stops taking messages
// from the other limpet until its Ksock is writable again, so every
// message arrives, in order.
TEST_P(RunlimpetInterop, AllOrWaitFromTheOtherSideWaitsForRoomAndKeepsOrder) {
  Ksock ha = a_.open(0), sb = b_.open(0);
  ha.set_max_messages(1);
  ha.bind("$.Flood");
  constexpr int kN = 5;
  for (int i = 0; i < kN; ++i) {
    sb.send_msg(make_announcement("$.Flood", std::to_string(i), flag::kAllOrWait));
  }
  // The second one is pending on runlimpet's Ksock (§9.2: "sending"; only
  // runlimpet sends on bus A here), with ha full.
  ASSERT_TRUE(eventually([&] { return ha.stats_report().find("), sending") != std::string::npos; }))
      << ha.stats_report();
  std::vector<std::string> got;
  for (int i = 0; i < kN; ++i) {
    auto m = ha.wait_for_msg(std::chrono::milliseconds(10000));
    ASSERT_TRUE(m) << "got " << got.size() << " of " << kN << "\n" << c_->proc().err(1s);
    got.push_back(m->data);
  }
  EXPECT_EQ(got, (std::vector<std::string>{"0", "1", "2", "3", "4"}));
}

// §13.3, §14-20: -t ends runlimpet (status 0) when it reads that message,
// at the default verbosity; closing its Ksock answers what it held.
TEST_P(RunlimpetInterop, TheTerminationMessageEndsRunlimpet) {
  Ksock s = a_.open(0);
  s.send_msg(make_announcement("$.Stop"));
  EXPECT_TRUE(c_->wait_for_line("read the termination message $.Stop")) << c_->seen();
  EXPECT_EQ(c_->proc().wait(10s), 0);
}

INSTANTIATE_TEST_SUITE_P(Pairs, RunlimpetInterop,
                         ::testing::Values(PairSetup{false, true}, PairSetup{false, false},
                                           PairSetup{true, true}, PairSetup{true, false}),
                         setup_name);

// §13.3: -v 2 traces every message, runlimpet's own lines and the
// context's (verbosity given to kbus_limpet_new_context).
TEST(RunlimpetVerbose, LevelTwoTracesEveryMessage) {
  TestDaemon a(1), b(1);
  LimpetProc k({"-s", "-id", std::to_string(kKbusId), "-d", b.dir(), "127.0.0.1:0"});
  RunLimpet c(a.dir(), {"-c", "-v", "2", "-id", std::to_string(kCId),
                        "127.0.0.1:" + std::to_string(k.port())});
  ASSERT_TRUE(c.wait_for_line("linked to the limpet with network id 9")) << c.seen();
  ASSERT_TRUE(k.wait_for_line("linked with")) << k.seen();
  Ksock s = a.open(0);
  s.send_msg(make_announcement("$.Traced", "hi"));
  EXPECT_TRUE(c.wait_for_line("From KBUS: <Announcement '$.Traced'")) << c.seen();
  EXPECT_TRUE(c.wait_for_line("limpet 7: bus -> peer")) << c.seen();
  EXPECT_TRUE(c.wait_for_line("To the other limpet: <Announcement '$.Traced' id=[7:")) << c.seen();
}

// ---- the library itself (§10.7) ----

// Every function of <libkbus/limpet.h>, its return conventions and error
// paths, called directly by a C program (tests/capi/capi_limpet_functions.c).
TEST(CLimpetLibrary, EveryFunctionOfLimpetH) {
  TestDaemon d(1);
  auto r = run_process({CAPI_LIMPET_FUNCTIONS_PATH}, {{"KBUS_DIR", d.dir()}}, {}, 60s);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find(" checks, 0 failed"), std::string::npos) << r.out << r.err;
}

// ---- usage and exit codes (§13.3) ----

ProcessResult run_runlimpet(std::vector<std::string> args, const std::string& dir = "/nonexistent") {
  std::vector<std::string> argv = {RUNLIMPET_PATH};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_process(argv, {{"KBUS_DIR", dir}}, {}, 20s);
}

TEST(RunlimpetUsage, NoArgumentsOrHelpPrintUsageAndSucceed) {
  for (auto args : std::vector<std::vector<std::string>>{{}, {"-h"}, {"-help"}, {"--help"},
                                                         {"-s", "-h", "x"}}) {
    auto r = run_runlimpet(args);
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_NE(r.out.find("Usage: runlimpet"), std::string::npos) << r.out;
  }
}

TEST(RunlimpetUsage, BadArgumentsExitOneWithAMessage) {
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  const std::vector<Case> cases = {
      {{"/tmp/x.sock"}, "-s (server) or -c (client)"},
      {{"-s"}, "<host>:<port> or a socket <path>"},
      {{"-c", "-fish", "/tmp/x.sock"}, "unknown switch '-fish'"},
      {{"-c", "-id", "0", "/tmp/x.sock"}, "-id needs a whole number >= 1, not '0'"},
      {{"-c", "-id", "seven", "/tmp/x.sock"}, "-id needs a whole number >= 1, not 'seven'"},
      {{"-c", "-k", "-1", "/tmp/x.sock"}, "-k needs a whole number >= 0, not '-1'"},
      {{"-c", "/tmp/x.sock", "-v"}, "-v needs a value"},
      {{"-c", "/tmp/x.sock", "-m"}, "-m needs a message name"},
      {{"-c", "/tmp/x.sock", "-t"}, "-t needs a message name"},
  };
  for (const auto& c : cases) {
    auto r = run_runlimpet(c.args);
    EXPECT_EQ(r.exit_code, 1) << c.says;
    EXPECT_NE(r.err.find(c.says), std::string::npos) << r.err;
  }
}

TEST(RunlimpetUsage, NoPeerToConnectToExitsTwo) {
  TestDaemon a(1);
  auto r = run_runlimpet({"-c", a.dir() + "/nobody.sock"}, a.dir());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("cannot connect to '" + a.dir() + "/nobody.sock'"), std::string::npos)
      << r.err;
}

// §10.2-1: equal network ids at both ends: both refuse.
TEST(RunlimpetUsage, EqualNetworkIdsExitThree) {
  TestDaemon a(1), b(1);
  LimpetProc k({"-s", "-id", "5", "-d", b.dir(), "127.0.0.1:0"});
  auto r = run_runlimpet({"-c", "-id", "5", "127.0.0.1:" + std::to_string(k.port())}, a.dir());
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.err.find("the other limpet uses network id 5"), std::string::npos) << r.err;
  EXPECT_EQ(k.wait(), 3) << "kbus-limpet refuses too";
}

// §10.7: kbus_limpet_new_context refuses a message name shorter than 3
// (-EBADMSG): runlimpet says so and exits 1, binding nothing.
TEST(RunlimpetUsage, AShortMessageNameIsRefused) {
  TestDaemon a(1), b(1);
  LimpetProc k({"-s", "-id", "9", "-d", b.dir(), "127.0.0.1:0"});
  auto r = run_runlimpet({"-c", "-m", "$.", "127.0.0.1:" + std::to_string(k.port())}, a.dir());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("cannot set up the limpet on KBUS 0: Bad message"), std::string::npos)
      << r.err;
}

}  // namespace
}  // namespace kbus::test
