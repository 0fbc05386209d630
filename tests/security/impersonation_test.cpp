// A Ksock can never act as another (docs/reliability.md §5), shown with
// processes of two Unix users on one daemon: 'from' is always set by the
// daemon, a Reply to a Request the sender does not hold is refused
// (docs/decisions.md D10), and one bus never leaks to another. Needs root
// (to switch users); skipped with a message otherwise.
#include <gtest/gtest.h>

#include <filesystem>

#include "kbus/ksock.hpp"
#include "security/security_support.hpp"
#include "support/child_process.hpp"

namespace kbus::test {
namespace {

using namespace std::chrono_literals;

class ImpersonationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    auto users = test_users(why);
    if (!users) GTEST_SKIP() << why;
    a = users->first;
    b = users->second;
    dir = make_public_dir();
    daemon = std::make_unique<KbusdProcess>(dir, 3);
  }
  void TearDown() override {
    if (daemon) {
      EXPECT_EQ(daemon->stop(), 0) << daemon->log();
    }
    daemon.reset();
    if (!dir.empty()) std::filesystem::remove_all(dir);
  }

  TestUser a, b;
  std::string dir;
  std::unique_ptr<KbusdProcess> daemon;
};

// User b writes 'from' = a's Ksock id (and a forged orig_from); every
// recipient sees b's own id as 'from', and the answer to b's Request goes
// to b, never to the Ksock it named.
TEST_F(ImpersonationTest, FromIsAlwaysTheDaemons) {
  Actor alice([&](Channel& ch) {
    become(a);
    Ksock k = Ksock::open(0, Mode::read_write, dir);
    k.bind("$.Chat");
    k.bind("$.Ask", true);
    ch.say(std::to_string(k.id()));
    for (;;) {
      auto m = k.wait_for_msg(10s);
      if (!m) return 1;
      ch.say(m->name + " from=" + std::to_string(m->hdr.from) + " to=" + std::to_string(m->hdr.to));
      if (m->wants_us_to_reply()) k.send_msg(make_reply(*m, "answer").value());
      if (m->name == "$.Ask") return 0;
    }
  });
  const std::string alice_id = alice.hear();
  Actor bob([&](Channel& ch) {
    become(b);
    Ksock k = Ksock::open(0, Mode::read_write, dir);
    ch.say(std::to_string(k.id()));
    Message m = make_announcement("$.Chat", "I am alice");
    m.hdr.from = std::stoul(alice_id);
    k.send_msg(m);
    Message q = make_request("$.Ask", "who am I?");
    q.hdr.from = std::stoul(alice_id);
    k.send_msg(q);
    auto answer = k.wait_for_msg(10s);
    ch.say(answer ? answer->name + " to=" + std::to_string(answer->hdr.to) : "none");
    return 0;
  });
  const std::string bob_id = bob.hear();
  EXPECT_NE(bob_id, alice_id);
  EXPECT_EQ(alice.hear(), "$.Chat from=" + bob_id + " to=0");
  EXPECT_EQ(alice.hear(), "$.Ask from=" + bob_id + " to=0");
  EXPECT_EQ(bob.hear(), "$.Ask to=" + bob_id);  // the Reply came back to bob
  EXPECT_EQ(alice.wait(), 0);
  EXPECT_EQ(bob.wait(), 0);
}

// Alice asks, her replier (also user a) holds the Request; bob, who sees a
// listener copy of it, cannot answer it in either Ksock's name; the one
// true answer arrives, once.
TEST_F(ImpersonationTest, RepliesToRequestsNotHeldAreRefused) {
  Actor replier([&](Channel& ch) {
    become(a);
    Ksock k = Ksock::open(0, Mode::read_write, dir);
    k.bind("$.Secret", true);
    ch.say("bound");
    auto req = k.wait_for_msg(10s);
    if (!req) return 1;
    ch.say("holding " + req->hdr.id.to_string());
    if (ch.hear(10s) != "answer") return 2;
    k.send_msg(make_reply(*req, "the real answer").value());
    ch.say("answered");
    return 0;
  });
  ASSERT_EQ(replier.hear(), "bound");
  Actor bob([&](Channel& ch) {
    become(b);
    Ksock k = Ksock::open(0, Mode::read_write, dir);
    k.bind("$.Secret");  // a listener: sees a copy of the Request
    ch.say("listening");
    auto copy = k.wait_for_msg(10s);
    if (!copy) return 1;
    // A Reply built from the copy (to = requester, in_reply_to = its id).
    Message forged = make_announcement(copy->name, "forged answer");
    forged.hdr.in_reply_to = copy->hdr.id;
    forged.hdr.to = copy->hdr.from;
    ch.say(errno_name(to_errno(k.try_send_msg(forged).error())));
    forged.hdr.from = 0;
    forged.hdr.flags = flag::kSynthetic;  // pretending to be a Status
    forged.name = "$.KBUS.Replier.GoneAway";
    ch.say(errno_name(to_errno(k.try_send_msg(forged).error())));
    return 0;
  });
  ASSERT_EQ(bob.hear(), "listening");
  Ksock requester = Ksock::open(0, Mode::read_write, dir);
  const MessageId id = requester.send_msg(make_request("$.Secret", "tell me"));
  EXPECT_EQ(replier.hear(), "holding " + id.to_string());
  EXPECT_EQ(bob.hear(), "ECONNREFUSED");
  EXPECT_EQ(bob.hear(), "ECONNREFUSED");
  EXPECT_EQ(bob.wait(), 0);
  EXPECT_EQ(requester.num_messages(), 0u);  // nothing forged arrived
  replier.tell("answer");
  EXPECT_EQ(replier.hear(), "answered");
  auto m = requester.wait_for_msg(10s);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->data, "the real answer");
  EXPECT_EQ(m->hdr.in_reply_to, id);
  EXPECT_EQ(requester.wait_for_msg(50ms), std::nullopt);  // exactly one answer
  EXPECT_EQ(replier.wait(), 0);
}

// Bob listens to everything on buses 1 and 2 while alice talks on bus 0:
// he sees only his own traffic; names, repliers and ids are per bus.
TEST_F(ImpersonationTest, OneBusNeverLeaksToAnother) {
  Actor bob([&](Channel& ch) {
    become(b);
    Ksock k1 = Ksock::open(1, Mode::read_write, dir);
    Ksock k2 = Ksock::open(2, Mode::read_write, dir);
    k1.bind("$.*");
    k2.bind("$.*");
    k1.bind("$.Ask", true);  // the same name as alice's replier, on bus 1
    ch.say("ready " + std::to_string(k1.id()) + " " + std::to_string(k2.id()));
    if (ch.hear(10s) != "check") return 1;
    // Settle with his own marker on each bus: it must be the only message.
    for (Ksock* k : {&k1, &k2}) {
      k->send_msg(make_announcement("$.Marker"));
      auto m = k->read_next_msg();
      ch.say(m ? m->name : "none");
      ch.say(std::to_string(k->num_messages()));
    }
    return 0;
  });
  ASSERT_EQ(bob.hear(), "ready 1 1");  // ids are per bus
  Actor alice([&](Channel& ch) {
    become(a);
    Ksock r = Ksock::open(0, Mode::read_write, dir);
    Ksock s = Ksock::open(0, Mode::read_write, dir);
    r.bind("$.Ask", true);  // no EADDRINUSE: bob's binding is on bus 1
    r.bind("$.*");
    for (int i = 0; i < 10; ++i) s.send_msg(make_announcement("$.News", std::to_string(i)));
    s.send_msg(make_request("$.Ask"));
    for (;;) {
      auto m = r.read_next_msg();
      if (!m) break;
      if (m->wants_us_to_reply()) r.send_msg(make_reply(*m).value());
    }
    auto answer = s.wait_for_msg(10s);
    ch.say(answer && !answer->is_status() ? "answered on bus 0" : "no answer");
    auto who = s.find_replier("$.Ask");
    ch.say("replier " + std::to_string(who.value_or(0)));
    return 0;
  });
  EXPECT_EQ(alice.hear(), "answered on bus 0");
  EXPECT_EQ(alice.hear(), "replier 1");  // alice's own replier, not bob's
  EXPECT_EQ(alice.wait(), 0);
  bob.tell("check");
  EXPECT_EQ(bob.hear(), "$.Marker");
  EXPECT_EQ(bob.hear(), "0");
  EXPECT_EQ(bob.hear(), "$.Marker");
  EXPECT_EQ(bob.hear(), "0");
  EXPECT_EQ(bob.wait(), 0);
}

}  // namespace
}  // namespace kbus::test
