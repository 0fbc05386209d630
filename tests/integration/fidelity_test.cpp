// Rules where kbusd must answer as the original kernel module did, checked
// through a real kbusd: bind events and the set-aside list (KBUS-SPEC.md
// §8, docs/decisions.md D4), serial numbers (§1.5-4), the stats report
// (§9.2) and the default limits (docs/decisions.md D16).
//
// A Ksock's CLOSE is a hang-up that kbusd applies on its own time (D7), so
// a test that closes a Ksock waits for a real signal that the CLOSE was
// applied: the Ksock being closed holds a Request from a witness, which
// receives $.KBUS.Replier.GoneAway (§7.2-3) from that same CLOSE.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "integration/fixture.hpp"

namespace kbus::test {
namespace {

using namespace std::chrono_literals;

constexpr const char* kEvent = "$.KBUS.ReplierBindEvent";

class FidelityTest : public KbusTest {
 protected:
  // Closes `k`, which must be the replier of `name`, and returns once kbusd
  // has applied the CLOSE (the witness's Request is answered by it).
  void close_replier(Ksock& k, const std::string& name) {
    const MessageId req = witness.send_msg(make_request(name));
    k.close();
    auto st = witness.wait_for_msg(10s);
    ASSERT_TRUE(st) << "no GoneAway for " << name;
    EXPECT_EQ(st->name, status_name::kReplierGoneAway);
    EXPECT_EQ(st->hdr.in_reply_to, req);
  }
  // Makes k full: it listens to $.Fill, MAXMSGS 1, one $.Fill queued.
  void fill(Ksock& k) {
    k.bind("$.Fill");
    k.set_max_messages(1);
    filler.send_msg(make_announcement("$.Fill"));
    ASSERT_EQ(k.num_messages(), 1u);
  }
  static void expect_event(const std::optional<Message>& m, bool is_bind, std::uint32_t binder,
                           const std::string& name) {
    ASSERT_TRUE(m) << "expected a bind event for " << name;
    EXPECT_EQ(m->name, kEvent);
    auto ev = decode_replier_bind_event(m->data);
    ASSERT_TRUE(ev.ok());
    EXPECT_EQ(ev->is_bind, is_bind);
    EXPECT_EQ(ev->binder, binder);
    EXPECT_EQ(ev->name, name);
  }
  static std::string first_line(const std::string& s) { return s.substr(0, s.find('\n') + 1); }

  Ksock witness = open(0);
  Ksock filler = open(0);
};

// §8.2-3, §8.3, §13.5 EAGAIN; docs/decisions.md D4. While a listener of
// bind events is full, every replier BIND and UNBIND fails with EAGAIN (as
// in the original), even when that listener also has set-aside events;
// they add nothing to the set-aside list, so one stalled listener never
// makes another listener's unbind events $.KBUS.UnbindEventsLost (§8.4-3).
TEST_F(FidelityTest, StalledBindEventListenerGivesEAGAINAndNeverLost) {
  witness.report_replier_binds(Toggle::on);
  Ksock stalled = open(0);
  Ksock active = open(0);
  stalled.bind(kEvent);
  active.bind(kEvent);
  Ksock p1 = open(0);
  Ksock p2 = open(0);
  const std::uint32_t id1 = p1.id(), id2 = p2.id();
  p1.bind("$.P1", true);
  p2.bind("$.P2", true);
  for (Ksock* k : {&stalled, &active}) {
    expect_event(k->read_next_msg(), true, id1, "$.P1");
    expect_event(k->read_next_msg(), true, id2, "$.P2");
  }
  fill(stalled);
  close_replier(p1, "$.P1");  // its unbind event is set aside for both
  EXPECT_EQ(stalled.num_messages(), 2u);
  EXPECT_EQ(active.num_messages(), 1u);
  EXPECT_NE(first_line(witness.stats_report()).find(" unsent unbindings 2\n"), std::string::npos);

  Ksock b = open(0);
  for (int i = 0; i < 1100; ++i)  // more than the set-aside list holds (§4.7: 1000)
    ASSERT_EQ(err(b.try_bind("$.B" + std::to_string(i), true)), Errc::eagain) << i;
  EXPECT_EQ(err(p2.try_unbind("$.P2", true)), Errc::eagain);
  EXPECT_EQ(b.find_replier("$.P2"), std::optional<std::uint32_t>(id2));
  EXPECT_EQ(b.find_replier("$.B0"), std::nullopt);
  EXPECT_EQ(first_line(witness.stats_report()).find("(gone tragic)"), std::string::npos);

  close_replier(p2, "$.P2");
  const std::string st = first_line(witness.stats_report());
  EXPECT_NE(st.find(" unsent unbindings 4\n"), std::string::npos) << st;  // not lost
  active.bind("$.Poke");
  filler.send_msg(make_announcement("$.Poke"));
  EXPECT_EQ(active.read_next_msg()->name, "$.Poke");
  expect_event(active.read_next_msg(), false, id1, "$.P1");
  expect_event(active.read_next_msg(), false, id2, "$.P2");
  EXPECT_EQ(active.num_messages(), 0u);
  EXPECT_EQ(stalled.read_next_msg()->name, "$.Fill");
  expect_event(stalled.read_next_msg(), false, id1, "$.P1");
  expect_event(stalled.read_next_msg(), false, id2, "$.P2");
  EXPECT_EQ(stalled.num_messages(), 0u);
}

// §14-17 with D4: a listener with set-aside events and room in its queue
// gets them before a newer bind event; a listener whose queue was empty
// (so that NEXTMSG could never move them in) becomes readable.
TEST_F(FidelityTest, SetAsideEventsComeBeforeANewerEvent) {
  witness.report_replier_binds(Toggle::on);
  Ksock slow = open(0);
  Ksock idle = open(0);
  slow.bind(kEvent);
  idle.bind(kEvent);
  Ksock p = open(0);
  const std::uint32_t pid = p.id();
  p.bind("$.P", true);
  for (Ksock* k : {&slow, &idle}) expect_event(k->read_next_msg(), true, pid, "$.P");
  fill(slow);
  close_replier(p, "$.P");
  EXPECT_EQ(idle.num_messages(), 1u);
  EXPECT_EQ(idle.read_next_msg(), std::nullopt);  // set aside: NEXTMSG finds nothing
  slow.set_max_messages(10);
  Ksock q = open(0);
  q.bind("$.Q", true);
  expect_event(idle.read_next_msg(), false, pid, "$.P");
  expect_event(idle.read_next_msg(), true, q.id(), "$.Q");
  EXPECT_EQ(slow.read_next_msg()->name, "$.Fill");
  expect_event(slow.read_next_msg(), false, pid, "$.P");
  expect_event(slow.read_next_msg(), true, q.id(), "$.Q");
  EXPECT_NE(first_line(witness.stats_report()).find(" unsent unbindings 0\n"), std::string::npos);
}

// §8.4-5 / §5.3-1 / §5.6: moving a set-aside event into the queue is a
// listener delivery, so MSGONLYONCE applies to it: a Ksock bound twice for
// bind events reads the one unbind event once.
TEST_F(FidelityTest, SetAsideMoveHonoursOnlyOnce) {
  witness.report_replier_binds(Toggle::on);
  Ksock p = open(0);
  const std::uint32_t pid = p.id();
  p.bind("$.Fred", true);
  Ksock l = open(0);
  l.bind(kEvent);
  l.bind("$.KBUS.*");
  EXPECT_FALSE(l.only_once(Toggle::on));
  fill(l);
  close_replier(p, "$.Fred");
  EXPECT_EQ(l.num_messages(), 3u);  // $.Fill + a set-aside copy per binding
  EXPECT_EQ(l.read_next_msg()->name, "$.Fill");
  expect_event(l.read_next_msg(), false, pid, "$.Fred");
  EXPECT_EQ(l.read_next_msg(), std::nullopt);
  EXPECT_EQ(l.num_messages(), 0u);
}

// §8.4-3 / §6.2 / §1.5-4: $.KBUS.UnbindEventsLost, set aside for several
// listeners, is one message with one id, like every other message, and
// uses one serial. (601 bindings fit the set-aside list, §4.7's 1000; two
// unbind events' worth do not.)
TEST_F(FidelityTest, UnbindEventsLostIsOneMessageWithOneId) {
  witness.report_replier_binds(Toggle::on);
  Ksock p1 = open(0);
  Ksock p2 = open(0);
  const std::uint32_t id1 = p1.id();
  p1.bind("$.P1", true);
  p2.bind("$.P2", true);
  Ksock many = open(0);
  Ksock one = open(0);
  for (int i = 0; i < 600; ++i) many.bind(kEvent);
  one.bind(kEvent);
  fill(many);
  fill(one);
  close_replier(p1, "$.P1");  // 601 entries set aside
  const MessageId before = filler.send_msg(make_announcement("$.Nobody"));
  close_replier(p2, "$.P2");  // Request, GoneAway, event (refused), one Lost message
  EXPECT_EQ(filler.send_msg(make_announcement("$.Nobody")),
            (MessageId{0, before.serial_num + 5}));
  const std::string st = first_line(witness.stats_report());
  EXPECT_NE(st.find(" unsent unbindings 603(gone tragic)\n"), std::string::npos) << st;

  EXPECT_EQ(one.read_next_msg()->name, "$.Fill");
  expect_event(one.read_next_msg(), false, id1, "$.P1");
  auto lost1 = one.read_next_msg();
  ASSERT_TRUE(lost1);
  EXPECT_EQ(lost1->name, status_name::kUnbindEventsLost);
  EXPECT_EQ(lost1->hdr.id, (MessageId{0, before.serial_num + 4}));
  EXPECT_EQ(many.read_next_msg()->name, "$.Fill");
  for (int i = 0; i < 600; ++i) expect_event(many.read_next_msg(), false, id1, "$.P1");
  auto lost2 = many.read_next_msg();
  ASSERT_TRUE(lost2);
  EXPECT_EQ(lost2->name, status_name::kUnbindEventsLost);
  EXPECT_EQ(lost2->hdr.id, lost1->hdr.id);  // one message
  EXPECT_EQ(many.num_messages(), 0u);
  EXPECT_EQ(first_line(witness.stats_report()).find("(gone tragic)"), std::string::npos);
}

// §1.5-4 / §6.2: a Status for a requester that has gone is not built and
// uses no serial, as in the original.
TEST_F(FidelityTest, NoSerialForAStatusWhoseRequesterHasGone) {
  Ksock p = open(0);
  p.bind("$.P", true);
  Ksock q = open(0);
  q.bind("$.Q", true);
  witness.send_msg(make_request("$.P"));  // queued first at p
  q.send_msg(make_request("$.P"));        // then q's
  close_replier(q, "$.Q");                // q is gone
  const MessageId gone_away = [&] {
    p.close();
    auto st = witness.wait_for_msg(10s);
    EXPECT_TRUE(st);
    return st ? st->hdr.id : MessageId{};
  }();
  // p's CLOSE built the witness's GoneAway, then none for q.
  EXPECT_EQ(filler.send_msg(make_announcement("$.Nobody")),
            (MessageId{0, gone_away.serial_num + 1}));
}

// §4.6 REPORTREPLIERBINDS / §1.5-4: the event that found the caller full
// (EBUSY) was built, so it used its serial.
TEST_F(FidelityTest, ReportBindsEventRefusedWithEBUSYUsedItsSerial) {
  Ksock a = open(0);
  Ksock b = open(0);
  a.bind("$.A", true);
  b.bind("$.B", true);
  Ksock c = open(0);
  c.set_max_messages(1);
  EXPECT_EQ(err(c.try_report_replier_binds(Toggle::on)), Errc::ebusy);
  auto ev = c.read_next_msg();
  expect_event(ev, true, b.id(), "$.B");
  EXPECT_EQ(c.send_msg(make_announcement("$.Nobody")), (MessageId{0, ev->hdr.id.serial_num + 2}));
}

// §9.2: "next ksock" and "next msg" are the next Ksock id and message
// serial the bus will assign, byte for byte as the original printed them
// (0 on a bus never used).
TEST_F(FidelityTest, StatsShowTheNextIdsToAssign) {
  // The fixture opened witness (1) and filler (2) on bus 0.
  EXPECT_EQ(first_line(witness.stats_report()),
            "dev  0: next ksock 3 next msg 0 unsent unbindings 0\n");
  EXPECT_EQ(witness.send_msg(make_announcement("$.Fred")), (MessageId{0, 1}));
  const std::string s = witness.stats_report();
  EXPECT_EQ(first_line(s), "dev  0: next ksock 3 next msg 2 unsent unbindings 0\n");
  EXPECT_NE(s.find("dev  1: next ksock 0 next msg 0 unsent unbindings 0\n"), std::string::npos)
      << s;
  Ksock k = open(0);
  EXPECT_EQ(k.id(), 3u);
  EXPECT_EQ(k.send_msg(make_announcement("$.Fred")), (MessageId{0, 2}));
}

// docs/decisions.md D16, §4.6 MAXMSGS: with kbusd's default flags a queue
// is bounded by MAXMSGS alone, as in the original: 50 messages of 400 kB
// for one Ksock with MAXMSGS 100 are all queued.
TEST_F(FidelityTest, FiftyMessagesOf400kBAreAllQueuedByDefault) {
  Ksock l = open(0);
  ASSERT_EQ(l.max_messages(), 100u);
  l.bind("$.Big");
  ASSERT_EQ(filler.set_max_message_size(409600), 409600u);
  const std::string data(400 * 1000, 'k');
  for (int i = 0; i < 50; ++i)  // ALL_OR_FAIL: EBUSY if l counted as full
    ASSERT_TRUE(filler.try_send_msg(make_announcement("$.Big", data, flag::kAllOrFail)).ok()) << i;
  EXPECT_EQ(l.num_messages(), 50u);
  for (int i = 0; i < 50; ++i) {
    auto m = l.read_next_msg();
    ASSERT_TRUE(m) << i;
    EXPECT_EQ(m->data.size(), data.size());
  }
  EXPECT_EQ(l.num_messages(), 0u);
}

// docs/decisions.md D16, §1.2: with kbusd's default flags one user opens
// more than 4096 Ksocks on one bus (the original had no such limit; the
// process's own descriptor limit applied, which this test raises).
TEST_F(FidelityTest, OneUserOpensMoreThan4096KsocksOnOneBusByDefault) {
  constexpr int kCount = 4200;
  rlimit rl{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &rl), 0);
  const rlimit saved = rl;
  if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < kCount + 200)
    GTEST_SKIP() << "the hard descriptor limit (" << rl.rlim_max << ") is below " << kCount + 200;
  rl.rlim_cur = std::max<rlim_t>(rl.rlim_cur, kCount + 200);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &rl), 0);
  {
    std::vector<Ksock> ksocks;
    ksocks.reserve(kCount);
    for (int i = 0; i < kCount; ++i) {
      auto k = daemon_.try_open(0);
      ASSERT_TRUE(k.ok()) << "Ksock " << i << ": " << errc_name(k.error());
      ksocks.push_back(std::move(k).value());
    }
    EXPECT_EQ(ksocks.back().ksock_id(), static_cast<std::uint32_t>(kCount + 2));
    ksocks.back().bind("$.Last");
    filler.send_msg(make_announcement("$.Last"));
    EXPECT_EQ(ksocks.back().read_next_msg()->name, "$.Last");
  }
  ::setrlimit(RLIMIT_NOFILE, &saved);
}

}  // namespace
}  // namespace kbus::test
