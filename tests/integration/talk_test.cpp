// The walk-through of Tony Ibbs' KBUS talk (shared/seed/000_*.txt):
// Rosencrantz, Audience, Guildenstern and Falstaff, each in its own process
// with its own Ksock, as the four terminals of the talk.
//
// What is compared is what the talk shows, in the Python 3 str() form
// (b'...' data) with ids relative to the talk's: the talk's first message id
// is 337 and Rosencrantz is Ksock 113; on a fresh bus they are whatever the
// daemon assigns first, and everything else follows from them. The talk's
// typing slips ('$$.Actor.Speak', 'Pssst! ' with a stray space, a reply
// shown as 343 then 344) are read as the corrected commands the talk itself
// moves on with.
#include <poll.h>

#include <map>
#include <regex>
#include <sstream>

#include "integration/fixture.hpp"

namespace kbus::test {
namespace {

using namespace std::chrono_literals;

// One actor of the talk: a Ksock in a child process, driven line by line.
// Commands are tab-separated; see the switch below. In "pump" mode every
// message that arrives is printed as "> <str>" (the talk's `while 1: print
// ksock.wait_for_msg()` loops); in "coin" mode Guildenstern also answers
// each coin toss as in the talk.
int actor_main(Channel& ch, const std::string& dir) {
  Ksock k = Ksock::open(0, Mode::read_write, dir);
  ch.say(k.to_string());
  std::optional<Message> last;     // last message read
  std::optional<Message> request;  // last request we must reply to
  std::optional<Message> saved;    // Rosencrantz's `rep`
  std::optional<Message> reply;    // a reply made but not sent
  bool pump = false;
  bool coin = false;
  int heads = 0;
  auto result = [&](const Result<void>& r) {
    ch.say(r.ok() ? "ok" : errno_name(to_errno(r.error())));
  };
  auto id_or_errno = [&](const Result<MessageId>& r) {
    ch.say(r.ok() ? r->to_string() : errno_name(to_errno(r.error())));
  };
  for (;;) {
    if (!ch.line_ready(0ms)) {
      pollfd p[2] = {{ch.in_fd(), POLLIN, 0}, {k.is_open() ? k.fileno() : -1, POLLIN, 0}};
      int rc = ::poll(p, (pump && k.is_open()) ? 2 : 1, 60000);
      if (rc <= 0) return 2;
      if (pump && k.is_open() && (p[1].revents & POLLIN) && !ch.line_ready(0ms)) {
        auto m = k.read_next_msg();
        if (!m) continue;
        ch.say("> " + m->to_string());
        if (coin && m->wants_us_to_reply()) {
          if (m->data == "Head") {
            ch.say("A head - amazing");
            ++heads;
          } else {
            ch.say("Bah, tails");
          }
          auto rep = make_reply(*m, "Head count is " + std::to_string(heads));
          id_or_errno(k.try_send_msg(rep.value()));
        }
        continue;
      }
    }
    std::string line = ch.hear();
    std::vector<std::string> f;
    std::stringstream ss(line);
    for (std::string part; std::getline(ss, part, '\t');) f.push_back(part);
    if (f.empty()) continue;
    const std::string& cmd = f[0];
    auto arg = [&](std::size_t i) { return i < f.size() ? f[i] : std::string(); };
    if (cmd == "quit" || cmd == "<eof>" || cmd == "<timeout>") return 0;
    if (cmd == "id") {
      ch.say(std::to_string(k.ksock_id()));
    } else if (cmd == "bind") {
      result(k.try_bind(arg(1)));
    } else if (cmd == "bindr") {
      result(k.try_bind(arg(1), true));
    } else if (cmd == "unbind") {
      result(k.try_unbind(arg(1)));
    } else if (cmd == "announce") {
      id_or_errno(k.try_send_msg(make_announcement(arg(1), arg(2))));
    } else if (cmd == "request") {
      id_or_errno(k.try_send_msg(make_request(arg(1), arg(2))));
    } else if (cmd == "read") {
      auto m = k.read_next_msg();
      if (m) {
        last = m;
        if (m->wants_us_to_reply()) request = m;
      }
      ch.say(m ? m->to_string() : "None");
    } else if (cmd == "wants") {
      ch.say(last && last->wants_us_to_reply() ? "True" : "False");
    } else if (cmd == "from") {
      ch.say(last ? std::to_string(last->hdr.from) : "None");
    } else if (cmd == "data") {
      ch.say(last ? last->data : "None");
    } else if (cmd == "keep") {  // rep = <the message just read>
      saved = last;
      ch.say("ok");
    } else if (cmd == "mkreply") {
      reply = make_reply(*request, arg(1)).value();
      ch.say(reply->to_string());
    } else if (cmd == "sendreply") {
      id_or_errno(k.try_send_msg(*reply));
    } else if (cmd == "stateful") {
      Message sreq = make_stateful_request(*saved, arg(1), arg(2)).value();
      ch.say(sreq.to_string());
      id_or_errno(k.try_send_msg(sreq));
    } else if (cmd == "pump") {
      pump = true;
      ch.say("ok");
    } else if (cmd == "coin") {
      pump = coin = true;
      ch.say("ok");
    } else if (cmd == "stop") {  // <CTRL-C>
      pump = coin = false;
      ch.say("ok");
    } else if (cmd == "count") {
      ch.say(std::to_string(k.num_messages()));
    } else if (cmd == "close") {
      k.close();
      ch.say("ok");
    } else {
      ch.say("unknown command " + cmd);
    }
  }
}

class TalkTest : public KbusTest {
 protected:
  // Rewrites the talk's numbers: {337}..{350} are message serials relative
  // to 337, {113}..{116} Ksock ids relative to 113.
  std::string T(const std::string& s) const {
    static const std::regex re(R"(\{(\d+)\})");
    std::string out;
    auto begin = std::sregex_iterator(s.begin(), s.end(), re);
    std::size_t pos = 0;
    for (auto it = begin; it != std::sregex_iterator(); ++it) {
      out += s.substr(pos, it->position() - pos);
      long v = std::stol((*it)[1]);
      long mapped = v >= 300 ? base_serial_ + (v - 337) : base_ksock_ + (v - 113);
      out += std::to_string(mapped);
      pos = it->position() + it->length();
    }
    return out + s.substr(pos);
  }
  std::string talk_cmd(std::initializer_list<std::string> parts) {
    std::string s;
    for (const auto& p : parts) s += (s.empty() ? "" : "\t") + p;
    return s;
  }
  // Tell an actor something and return its (first) answer.
  std::string ask(Actor& a, std::initializer_list<std::string> parts) {
    a.tell(talk_cmd(parts));
    return a.hear();
  }

  long base_serial_ = 0;
  long base_ksock_ = 0;
};

TEST_F(TalkTest, RosencrantzAudienceGuildensternAndFalstaff) {
  const std::string dir = daemon_.dir();
  auto actor = [dir](Channel& ch) { return actor_main(ch, dir); };

  // Terminal 1: Rosencrantz.
  Actor ros(actor);
  std::string hello = ros.hear();
  ASSERT_EQ(hello.rfind("Ksock device 0, id ", 0), 0u) << hello;
  base_ksock_ = std::stol(hello.substr(19));
  EXPECT_EQ(hello, T("Ksock device 0, id {113}, mode read/write"));

  // rosenkrantz.send_msg(ahem) -> MessageId(0, 337): nobody listens yet.
  std::string first = ask(ros, {"announce", "$.Actor.Speak", "Ahem"});
  ASSERT_EQ(first.rfind("[0:", 0), 0u) << first;
  base_serial_ = std::stol(first.substr(3));

  // Terminal 2: Audience. The first bind has the talk's typo.
  Actor aud(actor);
  EXPECT_EQ(aud.hear(), T("Ksock device 0, id {114}, mode read/write"));
  EXPECT_EQ(ask(aud, {"bind", "$Actor.Speak"}), "EBADMSG");
  EXPECT_EQ(ask(aud, {"bind", "$.Actor.Speak"}), "ok");

  EXPECT_EQ(ask(ros, {"announce", "$.Actor.Speak", "Ahem"}), T("[0:{338}]"));
  EXPECT_EQ(ask(aud, {"read"}), T("<Announcement '$.Actor.Speak', id=[0:{338}], from={113}, "
                                  "data=b'Ahem'>"));
  EXPECT_EQ(ask(ros, {"id"}), T("{113}"));
  EXPECT_EQ(ask(aud, {"read"}), "None");

  // Audience: while 1: select(); print audience.read_next_msg()
  EXPECT_EQ(ask(aud, {"pump"}), "ok");
  EXPECT_EQ(ask(ros, {"announce", "$.Actor.Speak", "Hello there"}), T("[0:{339}]"));
  EXPECT_EQ(ask(ros, {"announce", "$.Actor.Speak", "Can you hear me?"}), T("[0:{340}]"));
  EXPECT_EQ(aud.hear(), T("> <Announcement '$.Actor.Speak', id=[0:{339}], from={113}, "
                          "data=b'Hello there'>"));
  EXPECT_EQ(aud.hear(), T("> <Announcement '$.Actor.Speak', id=[0:{340}], from={113}, "
                          "data=b'Can you hear me?'>"));

  // Terminal 3: Guildenstern.
  Actor gui(actor);
  EXPECT_EQ(gui.hear(), T("Ksock device 0, id {115}, mode read/write"));
  EXPECT_EQ(ask(gui, {"bind", "$.Actor.*"}), "ok");
  EXPECT_EQ(ask(aud, {"stop"}), "ok");  // <CTRL-C>
  EXPECT_EQ(ask(aud, {"bind", "$.Actor.*"}), "ok");
  EXPECT_EQ(ask(aud, {"pump"}), "ok");  // while 1: print audience.wait_for_msg()
  EXPECT_EQ(ask(ros, {"bind", "$.Actor.*"}), "ok");

  EXPECT_EQ(ask(gui, {"announce", "$.Actor.Speak", "Pssst!"}), T("[0:{341}]"));
  const std::string pssst =
      T("<Announcement '$.Actor.Speak', id=[0:{341}], from={115}, data=b'Pssst!'>");
  EXPECT_EQ(ask(gui, {"read"}), pssst);
  EXPECT_EQ(ask(ros, {"read"}), pssst);
  EXPECT_EQ(aud.hear(), "> " + pssst);  // once for '$.Actor.Speak' ...
  EXPECT_EQ(aud.hear(), "> " + pssst);  // ... and once for '$.Actor.*'

  EXPECT_EQ(ask(aud, {"stop"}), "ok");
  EXPECT_EQ(ask(aud, {"unbind", "$.Actor.Speak"}), "ok");
  EXPECT_EQ(ask(aud, {"pump"}), "ok");

  // Simple use: Requests and Repliers.
  EXPECT_EQ(ask(gui, {"bindr", "$.Actor.Ask.Guildenstern"}), "ok");
  EXPECT_EQ(ask(ros, {"request", "$.Actor.Ask.Guildenstern", "Were you speaking to me?"}),
            T("[0:{342}]"));
  const std::string req342 = "<Request '$.Actor.Ask.Guildenstern', id=[0:{342}], from={113}, ";
  EXPECT_EQ(ask(ros, {"read"}),
            T(req342 + "flags=0x1 (REQ), data=b'Were you speaking to me?'>"));
  EXPECT_EQ(ask(ros, {"unbind", "$.Actor.*"}), "ok");
  EXPECT_EQ(ask(gui, {"read"}),
            T(req342 + "flags=0x3 (REQ,YOU), data=b'Were you speaking to me?'>"));
  EXPECT_EQ(ask(gui, {"wants"}), "True");
  EXPECT_EQ(ask(gui, {"read"}),
            T(req342 + "flags=0x1 (REQ), data=b'Were you speaking to me?'>"));
  EXPECT_EQ(ask(gui, {"unbind", "$.Actor.*"}), "ok");
  EXPECT_EQ(ask(gui, {"mkreply", "Yes, yes I was"}),
            T("<Reply '$.Actor.Ask.Guildenstern', to={113}, in_reply_to=[0:{342}], "
              "data=b'Yes, yes I was'>"));
  EXPECT_EQ(ask(gui, {"sendreply"}), T("[0:{343}]"));
  EXPECT_EQ(ask(gui, {"read"}), "None");
  EXPECT_EQ(ask(ros, {"read"}),
            T("<Reply '$.Actor.Ask.Guildenstern', id=[0:{343}], to={113}, from={115}, "
              "in_reply_to=[0:{342}], data=b'Yes, yes I was'>"));
  EXPECT_EQ(aud.hear(), T("> " + req342 + "flags=0x1 (REQ), data=b'Were you speaking to me?'>"));
  EXPECT_EQ(aud.hear(), T("> <Reply '$.Actor.Ask.Guildenstern', id=[0:{343}], to={113}, "
                          "from={115}, in_reply_to=[0:{342}], data=b'Yes, yes I was'>"));

  // Simple use: Stateful Requests.
  EXPECT_EQ(ask(ros, {"request", "$.Actor.Ask.Guildenstern", "Will you count heads for me?"}),
            T("[0:{344}]"));
  EXPECT_EQ(ask(gui, {"read"}),
            T("<Request '$.Actor.Ask.Guildenstern', id=[0:{344}], from={113}, flags=0x3 "
              "(REQ,YOU), data=b'Will you count heads for me?'>"));
  ask(gui, {"mkreply", "I shall"});
  EXPECT_EQ(ask(gui, {"sendreply"}), T("[0:{345}]"));
  EXPECT_EQ(ask(gui, {"bindr", "$.Actor.CoinToss"}), "ok");
  EXPECT_EQ(ask(gui, {"coin"}), "ok");

  ask(ros, {"read"});
  EXPECT_EQ(ask(ros, {"keep"}), "ok");  // rep = rosenkrantz.read_next_msg()
  EXPECT_EQ(ask(ros, {"from"}), T("{115}"));
  // Throws a head.
  EXPECT_EQ(ask(ros, {"stateful", "$.Actor.CoinToss", "Head"}),
            T("<Request '$.Actor.CoinToss', to={115}, flags=0x1 (REQ), data=b'Head'>"));
  EXPECT_EQ(ros.hear(), T("[0:{346}]"));
  EXPECT_EQ(gui.hear(), T("> <Request '$.Actor.CoinToss', id=[0:{346}], to={115}, from={113}, "
                          "flags=0x3 (REQ,YOU), data=b'Head'>"));
  EXPECT_EQ(gui.hear(), "A head - amazing");
  EXPECT_EQ(gui.hear(), T("[0:{347}]"));
  ask(ros, {"read"});  // count = rosenkrantz.read_next_msg()
  EXPECT_EQ("So, " + ask(ros, {"data"}), "So, Head count is 1");

  // Throws a head.
  ask(ros, {"stateful", "$.Actor.CoinToss", "Head"});
  EXPECT_EQ(ros.hear(), T("[0:{348}]"));
  EXPECT_EQ(gui.hear(), T("> <Request '$.Actor.CoinToss', id=[0:{348}], to={115}, from={113}, "
                          "flags=0x3 (REQ,YOU), data=b'Head'>"));
  EXPECT_EQ(gui.hear(), "A head - amazing");
  EXPECT_EQ(gui.hear(), T("[0:{349}]"));
  ask(ros, {"read"});
  EXPECT_EQ("So, " + ask(ros, {"data"}), "So, Head count is 2");

  // Guildenstern: <CTRL-C>; 'Falstaff! No! Ouch!'; guildenstern.close()
  EXPECT_EQ(ask(gui, {"stop"}), "ok");
  EXPECT_EQ(ask(gui, {"close"}), "ok");
  gui.tell("quit");
  EXPECT_EQ(gui.wait(), 0);

  // Terminal 4: Falstaff takes over the coin toss.
  Actor fal(actor);
  EXPECT_EQ(fal.hear(), T("Ksock device 0, id {116}, mode read/write"));
  EXPECT_EQ(ask(fal, {"bindr", "$.Actor.CoinToss"}), "ok");

  // Rosencrantz throws a head: IOError: [Errno 32] Broken pipe.
  ask(ros, {"stateful", "$.Actor.CoinToss", "Head"});
  EXPECT_EQ(ros.hear(), "EPIPE");
  EXPECT_EQ(to_errno(Errc::epipe), 32);

  // $ errno.py 32
  ProcessResult e = run_process({kbus_cli_path(), "errno", "32"});
  EXPECT_EQ(e.exit_code, 0);
  EXPECT_EQ(e.out,
            "Error 32 (0x20) is EPIPE: Broken pipe\n"
            "\n"
            "KBUS:\n"
            "On attempting to send 'to' a specific replier, the replier with that id is no longer "
            "bound to the given message's name.\n");

  // Terminal 2: everything the Audience saw on '$.Actor.*'.
  const char* const audience[] = {
      "> <Request '$.Actor.Ask.Guildenstern', id=[0:{344}], from={113}, flags=0x1 (REQ), "
      "data=b'Will you count heads for me?'>",
      "> <Reply '$.Actor.Ask.Guildenstern', id=[0:{345}], to={113}, from={115}, "
      "in_reply_to=[0:{344}], data=b'I shall'>",
      "> <Request '$.Actor.CoinToss', id=[0:{346}], to={115}, from={113}, flags=0x1 (REQ), "
      "data=b'Head'>",
      "> <Reply '$.Actor.CoinToss', id=[0:{347}], to={113}, from={115}, in_reply_to=[0:{346}], "
      "data=b'Head count is 1'>",
      "> <Request '$.Actor.CoinToss', id=[0:{348}], to={115}, from={113}, flags=0x1 (REQ), "
      "data=b'Head'>",
      "> <Reply '$.Actor.CoinToss', id=[0:{349}], to={113}, from={115}, in_reply_to=[0:{348}], "
      "data=b'Head count is 2'>",
  };
  for (const char* line : audience) EXPECT_EQ(aud.hear(), T(line));
  // The refused request reached nobody.
  EXPECT_EQ(ask(aud, {"stop"}), "ok");
  EXPECT_EQ(ask(aud, {"count"}), "0");
  EXPECT_EQ(ask(fal, {"count"}), "0");

  for (Actor* a : {&ros, &aud, &fal}) {
    a->tell("quit");
    EXPECT_EQ(a->wait(), 0);
  }
}

}  // namespace
}  // namespace kbus::test
