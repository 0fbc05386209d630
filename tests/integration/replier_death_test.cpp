// A replier killed with SIGKILL while it holds queued and popped requests:
// every request still gets exactly one answer, in the order of
// KBUS-SPEC.md §7.2 (GoneAway in queue order, then Ignored in reverse pop
// order). "Always get a reply to a request."
#include <signal.h>

#include <map>

#include "integration/fixture.hpp"

namespace kbus::test {
namespace {

using ReplierDeathTest = KbusTest;
using namespace std::chrono_literals;

// A replier in its own process: binds, reports its id, pops on command.
Actor start_replier(const std::string& dir, const std::string& name) {
  return Actor([dir, name](Channel& ch) {
    Ksock r = Ksock::open(0, Mode::read_write, dir);
    r.bind(name, true);
    ch.say(std::to_string(r.id()));
    for (;;) {
      std::string cmd = ch.hear(60s);
      if (cmd == "pop") {
        auto m = r.read_next_msg();
        ch.say(m ? m->hdr.id.to_string() : "None");
      } else if (cmd == "count") {
        ch.say(std::to_string(r.num_messages()) + " " + std::to_string(r.num_unreplied_to()));
      } else {
        return 0;  // "<eof>", "<timeout>" or "quit"
      }
    }
  });
}

TEST_F(ReplierDeathTest, KilledReplierAnswersEveryRequestInSpecOrder) {
  Actor replier = start_replier(daemon_.dir(), "$.Q");
  std::uint32_t rid = std::stoul(replier.hear());
  Ksock s = open(0);
  Ksock watcher = open(0);
  watcher.bind("$.*");

  std::vector<MessageId> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(s.send_msg(make_request("$.Q", std::to_string(i))));
  replier.tell("pop");
  EXPECT_EQ(replier.hear(), ids[0].to_string());
  replier.tell("pop");
  EXPECT_EQ(replier.hear(), ids[1].to_string());
  replier.tell("count");
  EXPECT_EQ(replier.hear(), "3 2");
  EXPECT_EQ(s.num_unreplied_to(), 0u);

  replier.kill(SIGKILL);
  EXPECT_EQ(replier.wait(), 128 + SIGKILL);

  // Queued ones first, front to back; then popped ones, most recent first.
  const std::vector<std::pair<std::string_view, MessageId>> expected = {
      {status_name::kReplierGoneAway, ids[2]},
      {status_name::kReplierGoneAway, ids[3]},
      {status_name::kReplierGoneAway, ids[4]},
      {status_name::kReplierIgnored, ids[1]},
      {status_name::kReplierIgnored, ids[0]},
  };
  MessageId last{};
  for (const auto& [name, id] : expected) {
    auto m = s.wait_for_msg(10s);
    ASSERT_TRUE(m) << "missing " << name << " for " << id.to_string();
    EXPECT_EQ(m->name, name);
    EXPECT_EQ(m->hdr.in_reply_to, id);
    EXPECT_EQ(m->hdr.from, rid);
    EXPECT_EQ(m->hdr.to, s.id());
    EXPECT_EQ(m->hdr.flags, flag::kSynthetic);
    EXPECT_GT(m->hdr.id, last);  // fresh, increasing serials
    last = m->hdr.id;
  }
  // Exactly one answer each: nothing more arrives.
  EXPECT_EQ(s.wait_for_msg(50ms), std::nullopt);
  // Listeners saw the requests but never the statuses.
  for (const auto& id : ids) EXPECT_EQ(next(watcher).hdr.id, id);
  EXPECT_EQ(watcher.num_messages(), 0u);
  // The bus carries on: a new replier can bind the name.
  Ksock r2 = open(0);
  EXPECT_TRUE(r2.try_bind("$.Q", true).ok());
}

TEST_F(ReplierDeathTest, RequestersOfSeveralRepliersAreAllAnswered) {
  Actor a = start_replier(daemon_.dir(), "$.A");
  Actor b = start_replier(daemon_.dir(), "$.B");
  a.hear();
  b.hear();
  Ksock s1 = open(0);
  Ksock s2 = open(0);
  MessageId a1 = s1.send_msg(make_request("$.A"));
  MessageId b1 = s2.send_msg(make_request("$.B"));
  MessageId a2 = s2.send_msg(make_request("$.A"));
  a.tell("pop");
  EXPECT_EQ(a.hear(), a1.to_string());
  a.kill(SIGKILL);
  b.kill(SIGKILL);
  a.wait();
  b.wait();
  std::map<MessageId, std::string> got;
  for (Ksock* k : {&s1, &s2, &s2}) {
    auto m = k->wait_for_msg(10s);
    ASSERT_TRUE(m);
    got[m->hdr.in_reply_to] = m->name;
  }
  EXPECT_EQ(got[a1], status_name::kReplierIgnored);
  EXPECT_EQ(got[b1], status_name::kReplierGoneAway);
  EXPECT_EQ(got[a2], status_name::kReplierGoneAway);
}

}  // namespace
}  // namespace kbus::test
