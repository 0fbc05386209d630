// core/bus_monitor_test.cpp - MONITOR (docs/decisions.md D25): a monitor
// sees every message of its bus, Status messages included, in bus order,
// and changes no KBUS rule: the send algorithm (KBUS-SPEC.md §5.2), the
// Status messages (§6.2), Replier Bind Events (§8) and the limits (§4.7)
// behave exactly as without it.
#include "core/bus.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/test_helpers.hpp"

namespace kbus::core {
namespace {

using namespace test;

constexpr std::uint32_t kOn = 1, kOff = 0, kQueryMonitor = 0xFFFFFFFF;

// The value of a Result that must be one (99 and a failure if it is not).
std::uint32_t value_of(const Result<std::uint32_t>& r) {
  EXPECT_TRUE(r.ok()) << errno_name(to_errno(r.error()));
  return r.ok() ? *r : 99u;
}

class BusMonitorTest : public BusTest {
 protected:
  void SetUp() override {
    m = bus.open(read_only());
    ASSERT_EQ(value_of(bus.monitor(m, kOn)), 0u);
    p = bus.open(rw());
    q = bus.open(rw());
    ASSERT_TRUE(bus.bind(p, 1, "$.Fred").ok());
  }
  KsockId m = 0;  // the monitor
  KsockId p = 0;  // the replier of $.Fred
  KsockId q = 0;  // a requester and sender
};

// §5.4: every message sent, once, whoever gets it - an Announcement nobody
// listens to, a Request (YOU clear in the monitor's copy), its Reply - in the
// order the bus sent them; the recipients get exactly what they would get.
TEST_F(BusMonitorTest, SeesEveryMessageSentOnceInBusOrder) {
  KsockId l = bus.open(rw());
  ASSERT_TRUE(bus.bind(l, 0, "$.Fred").ok());
  ASSERT_TRUE(bus.bind(l, 0, "$.Fred").ok());  // bound twice: two listener copies
  const MessageId a = send_ok(bus, q, announcement("$.Nobody", "n"));
  const MessageId r = send_ok(bus, q, request("$.Fred", "ask"));
  Message got = receive_one(bus, p);
  EXPECT_TRUE(got.wants_us_to_reply());
  const MessageId rep = send_ok(bus, p, reply_to(got, "answer"));

  Message m1 = receive_one(bus, m);
  EXPECT_EQ(m1.name, "$.Nobody");
  EXPECT_EQ(m1.hdr.id, a);
  EXPECT_EQ(m1.data, "n");
  Message m2 = receive_one(bus, m);
  EXPECT_EQ(m2.hdr.id, r);
  EXPECT_EQ(m2.hdr.from, q);
  EXPECT_TRUE(m2.hdr.flags & flag::kWantAReply);
  EXPECT_FALSE(m2.hdr.flags & flag::kWantYouToReply);  // only the replier's copy has it
  Message m3 = receive_one(bus, m);
  EXPECT_EQ(m3.hdr.id, rep);
  EXPECT_EQ(m3.hdr.in_reply_to, r);
  EXPECT_EQ(m3.hdr.to, q);
  EXPECT_EQ(m3.data, "answer");
  EXPECT_FALSE(receive(bus, m).has_value());
  // Reading them never made the monitor owe a reply (§4.7 UNREPLIEDTO).
  EXPECT_EQ(bus.unreplied_to(m), 0u);
  // The recipients: q its Reply, l two copies of the Request and two of the Reply.
  EXPECT_EQ(receive_one(bus, q).hdr.id, rep);
  EXPECT_EQ(bus.num_msgs(l), 4u);
}

// §6.2: the Status messages go only to the requester, bypassing bindings
// (a listener of $.* never sees them); the monitor sees each one too.
TEST_F(BusMonitorTest, SeesStatusMessages) {
  KsockId l = bus.open(rw());
  ASSERT_TRUE(bus.bind(l, 0, "$.*").ok());
  const MessageId r1 = send_ok(bus, q, request("$.Fred"));
  ASSERT_TRUE(bus.unbind(p, 1, "$.Fred").ok());  // §7.1-3: Unbound
  ASSERT_TRUE(bus.bind(p, 1, "$.Fred").ok());
  const MessageId r2 = send_ok(bus, q, request("$.Fred"));
  (void)receive_one(bus, p);
  bus.close(p);  // §7.2-6: Ignored

  std::vector<Message> seen;
  while (auto msg = receive(bus, m)) seen.push_back(*msg);
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen[0].hdr.id, r1);
  EXPECT_EQ(seen[1].name, status_name::kReplierUnbound);
  EXPECT_EQ(seen[1].hdr.in_reply_to, r1);
  EXPECT_EQ(seen[1].hdr.to, q);
  EXPECT_EQ(seen[1].hdr.flags, flag::kSynthetic);
  EXPECT_EQ(seen[2].hdr.id, r2);
  EXPECT_EQ(seen[3].name, status_name::kReplierIgnored);
  EXPECT_EQ(seen[3].hdr.in_reply_to, r2);
  // The requester got both Status messages, the listener neither (§6.2).
  EXPECT_EQ(drain_names(bus, q),
            (std::vector<std::string>{std::string(status_name::kReplierUnbound),
                                      std::string(status_name::kReplierIgnored)}));
  EXPECT_EQ(drain_names(bus, l), (std::vector<std::string>{"$.Fred", "$.Fred"}));
}

// §5.2-13: ALL_OR_FAIL fails only for a full listener; a full monitor is no
// listener. The copy is dropped for the monitor alone and counted, and
// MONITOR answers the count once.
TEST_F(BusMonitorTest, FullMonitorNeverFailsASendAndCountsWhatItMissed) {
  ASSERT_EQ(bus.max_msgs(m, 1), 1u);
  KsockId l = bus.open(rw());
  ASSERT_TRUE(bus.bind(l, 0, "$.Flow").ok());
  send_ok(bus, q, announcement("$.Flow", "1"));
  EXPECT_EQ(send(bus, q, announcement("$.Flow", "2", flag::kAllOrFail)).error, Errc::ok);
  EXPECT_EQ(send(bus, q, announcement("$.Flow", "3", flag::kAllOrWait)).error, Errc::ok);
  EXPECT_FALSE(bus.sending(q));  // §5.5: nothing pending because of the monitor
  EXPECT_EQ(bus.num_msgs(l), 3u);
  EXPECT_EQ(value_of(bus.monitor(m, kQueryMonitor)), 2u);
  EXPECT_EQ(value_of(bus.monitor(m, kQueryMonitor)), 0u);  // reset by the answer
  EXPECT_EQ(receive_one(bus, m).data, "1");
}

// §5.2-12: a Request whose replier is full still fails (EBUSY), with or
// without a monitor; a send that fails is not traffic: no copy.
TEST_F(BusMonitorTest, FailedSendsAreNotCopied) {
  EXPECT_EQ(send(bus, q, request("$.NoSuchReplier")).error, Errc::eaddrnotavail);  // §5.2-9
  ASSERT_EQ(bus.max_msgs(p, 1), 1u);
  send_ok(bus, q, request("$.Fred", "1"));
  EXPECT_EQ(send(bus, q, request("$.Fred", "2")).error, Errc::ebusy);
  EXPECT_EQ(drain_names(bus, m), (std::vector<std::string>{"$.Fred"}));
}

// §5.3-3: URGENT puts a message at the front of its recipients' queues; the
// monitor's copies stay in the order the bus sent them.
TEST_F(BusMonitorTest, UrgentCopiesKeepBusOrder) {
  KsockId l = bus.open(rw());
  ASSERT_TRUE(bus.bind(l, 0, "$.U").ok());
  send_ok(bus, q, announcement("$.U", "first"));
  send_ok(bus, q, announcement("$.U", "urgent", flag::kUrgent));
  EXPECT_EQ(receive_one(bus, l).data, "urgent");
  EXPECT_EQ(receive_one(bus, m).data, "first");
  Message u = receive_one(bus, m);
  EXPECT_EQ(u.data, "urgent");
  EXPECT_TRUE(u.hdr.flags & flag::kUrgent);
}

// §5.5-3: a pending ALL_OR_WAIT send is traffic once it completes, and only
// then; the poll-time retry's Status (Disappeared) is seen too.
TEST_F(BusMonitorTest, PendingSendIsCopiedWhenItCompletes) {
  KsockId l = bus.open(rw());
  ASSERT_TRUE(bus.bind(l, 0, "$.W").ok());
  ASSERT_EQ(bus.max_msgs(l, 1), 1u);
  send_ok(bus, q, announcement("$.W", "fills"));
  EXPECT_EQ(send(bus, q, announcement("$.W", "waits", flag::kAllOrWait)).error, Errc::eagain);
  EXPECT_EQ(drain_names(bus, m), (std::vector<std::string>{"$.W"}));
  EXPECT_EQ(receive_one(bus, l).data, "fills");  // room: the retry completes it
  EXPECT_FALSE(bus.sending(q));
  EXPECT_EQ(receive_one(bus, m).data, "waits");

  ASSERT_EQ(bus.max_msgs(p, 1), 1u);
  send_ok(bus, q, request("$.Fred", "fills"));
  const MessageId w = send(bus, q, request("$.Fred", "waits", flag::kAllOrWait)).id;
  ASSERT_TRUE(bus.sending(q));
  bus.close(p);  // GoneAway for the first; the retry finds no replier: Disappeared
  std::vector<std::string> names = drain_names(bus, m);
  ASSERT_EQ(names.size(), 3u);
  EXPECT_EQ(names[0], "$.Fred");
  EXPECT_EQ(names[1], status_name::kReplierGoneAway);
  EXPECT_EQ(names[2], status_name::kReplierDisappeared);
  (void)w;
}

// §8.2/§8.3: Replier Bind Events, which go to their listeners, are seen too.
TEST_F(BusMonitorTest, SeesReplierBindEvents) {
  KsockId l = bus.open(rw());
  ASSERT_TRUE(bus.bind(l, 0, "$.KBUS.ReplierBindEvent").ok());
  ASSERT_EQ(value_of(bus.report_replier_binds(q, 1)), 0u);
  (void)drain_names(bus, q);  // the flood of existing bindings (§4.6)
  (void)drain_names(bus, m);
  ASSERT_TRUE(bus.bind(q, 1, "$.Jim").ok());
  ASSERT_TRUE(bus.unbind(q, 1, "$.Jim").ok());
  EXPECT_EQ(drain_names(bus, m), (std::vector<std::string>{std::string(status_name::kReplierBindEvent),
                                                          std::string(status_name::kReplierBindEvent)}));
  EXPECT_EQ(bus.num_msgs(l), 2u);
}

// §4.6 REPORTREPLIERBINDS floods the Ksock that turns it on with one event
// per replier binding; a monitor that turns it on sees each event once
// (it is the flood's recipient), and other monitors get their copies.
TEST_F(BusMonitorTest, AMonitorAskingForTheFloodSeesItOnce) {
  KsockId other = bus.open(read_only());
  ASSERT_TRUE(bus.monitor(other, kOn).ok());
  ASSERT_EQ(value_of(bus.report_replier_binds(m, 1)), 0u);
  EXPECT_EQ(drain_names(bus, m), (std::vector<std::string>{std::string(status_name::kReplierBindEvent)}));
  EXPECT_EQ(drain_names(bus, other),
            (std::vector<std::string>{std::string(status_name::kReplierBindEvent)}));
}

// D25: a monitor takes no part in KBUS - it may not bind or write; only a
// Ksock with no part in it yet may become one; MONITOR 0 ends it.
TEST_F(BusMonitorTest, AMonitorTakesNoPart) {
  EXPECT_EQ(bus.bind(m, 0, "$.Fred").error(), Errc::ebusy);
  EXPECT_EQ(bus.bind(m, 1, "$.Jim").error(), Errc::ebusy);
  KsockId rwm = bus.open(rw());
  ASSERT_TRUE(bus.monitor(rwm, kOn).ok());
  EXPECT_EQ(bus.write(rwm, entire("$.X")).error(), Errc::ebusy);
  // A stateful Request to a monitor: it is no replier (§5.2-12).
  Message st = request("$.Fred");
  st.hdr.to = rwm;
  EXPECT_EQ(send(bus, q, st).error, Errc::epipe);

  EXPECT_EQ(bus.monitor(p, kOn).error(), Errc::ebusy);  // bound
  send_ok(bus, q, request("$.Fred"));
  EXPECT_EQ(bus.monitor(q, kOn).error(), Errc::ebusy);  // awaits a reply
  (void)receive_one(bus, p);
  ASSERT_TRUE(bus.unbind(p, 1, "$.Fred").ok());
  EXPECT_EQ(bus.monitor(p, kOn).error(), Errc::ebusy);  // owes a reply
  KsockId wo = bus.open(write_only());
  EXPECT_EQ(bus.monitor(wo, kOn).error(), Errc::ebadf);
  EXPECT_EQ(bus.monitor(m, 2).error(), Errc::einval);

  EXPECT_TRUE(bus.is_monitor(m));
  ASSERT_TRUE(bus.monitor(m, kOff).ok());
  EXPECT_FALSE(bus.is_monitor(m));
  (void)drain_names(bus, m);
  EXPECT_TRUE(bus.bind(m, 0, "$.Fred").ok());
  send_ok(bus, q, announcement("$.Other"));
  EXPECT_EQ(bus.num_msgs(m), 0u);  // no longer a monitor: only what it binds
}

// §7.2: a monitor that closes gets nothing more, and the bus goes on.
TEST_F(BusMonitorTest, ClosedMonitorGetsNothing) {
  KsockId m2 = bus.open(read_only());
  ASSERT_TRUE(bus.monitor(m2, kOn).ok());
  bus.close(m);
  send_ok(bus, q, announcement("$.After"));
  EXPECT_EQ(drain_names(bus, m2), (std::vector<std::string>{"$.After"}));
}

}  // namespace
}  // namespace kbus::core
