// core/bus_status_test.cpp - Status messages and the effects of UNBIND and
// CLOSE (KBUS-SPEC.md §5.5-3, §6, §7, §14-1, §14-10, §14-23, §14-28).
#include "core/bus.hpp"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

#include "core/test_helpers.hpp"

namespace kbus::core {
namespace {

using namespace test;

// §6.2 common properties of a Status message.
void expect_status(const Message& m, std::string_view name, KsockId from, KsockId to,
                   MessageId in_reply_to) {
  EXPECT_EQ(m.name, name);
  EXPECT_EQ(m.hdr.from, from) << m.name;
  EXPECT_EQ(m.hdr.to, to) << m.name;
  EXPECT_EQ(m.hdr.in_reply_to, in_reply_to) << m.name;
  EXPECT_EQ(m.hdr.flags, flag::kSynthetic) << m.name;
  EXPECT_EQ(m.hdr.id.network_id, 0u) << m.name;
  EXPECT_NE(m.hdr.id.serial_num, 0u) << m.name;
  EXPECT_TRUE(m.hdr.orig_from.is_zero()) << m.name;
  EXPECT_TRUE(m.hdr.final_to.is_zero()) << m.name;
  EXPECT_EQ(m.hdr.extra, 0u) << m.name;
  EXPECT_EQ(m.data, "") << m.name;
  EXPECT_TRUE(m.is_status()) << m.name;
}

class BusStatusTest : public BusTest {
 protected:
  void SetUp() override {
    p = bus.open(rw());
    q = bus.open(rw());
    ASSERT_TRUE(bus.bind(p, 1, "$.Fred").ok());
  }
  Message stateful(KsockId to) {
    Message m = request("$.Fred");
    m.hdr.to = to;
    return m;
  }
  KsockId p = 0;  // the replier of $.Fred
  KsockId q = 0;  // a requester
};

// §6.2 / §7.1-3 / §1.5-4: Unbound from the replier to the requester, with a
// fresh serial; listeners (even of $.*) never see Status messages; the
// requester's outstanding entry is consumed.
TEST_F(BusStatusTest, Unbound) {
  KsockId l = bus.open(rw());
  ASSERT_TRUE(bus.bind(l, 0, "$.*").ok());
  MessageId r = send_ok(bus, q, request("$.Fred"));
  EXPECT_EQ(r, (MessageId{0, 1}));
  ASSERT_TRUE(bus.unbind(p, 1, "$.Fred").ok());
  EXPECT_EQ(bus.num_msgs(p), 0u);
  Message st = receive_one(bus, q);
  expect_status(st, status_name::kReplierUnbound, p, q, r);
  EXPECT_EQ(st.hdr.id, (MessageId{0, 2}));
  EXPECT_EQ(bus.num_msgs(q), 0u);
  EXPECT_EQ(bus.num_msgs(l), 1u);  // the Request copy only
  EXPECT_EQ(receive_one(bus, l).hdr.id, r);
  EXPECT_EQ(send_ok(bus, l, announcement("$.Next")), (MessageId{0, 3}));
  // q no longer awaits r.
  Message late = request("$.Fred");
  late.hdr.in_reply_to = r;
  late.hdr.flags = 0;
  late.hdr.to = q;
  EXPECT_EQ(send(bus, p, late).error, Errc::econnrefused);
}

// §7.1-3 / §14-1 [DEV]: a Stateful Request removed by UNBIND is answered too.
TEST_F(BusStatusTest, UnboundForStatefulRequest) {
  MessageId r = send_ok(bus, q, stateful(p));
  ASSERT_TRUE(bus.unbind(p, 1, "$.Fred").ok());
  expect_status(receive_one(bus, q), status_name::kReplierUnbound, p, q, r);
}

// §6.2 / §7.2-3 / §14-1 [DEV]: CLOSE with Requests queued → GoneAway for
// each, in queue order, Stateful ones included.
TEST_F(BusStatusTest, GoneAway) {
  MessageId r1 = send_ok(bus, q, request("$.Fred"));
  MessageId r2 = send_ok(bus, q, stateful(p));
  bus.close(p);
  Message a = receive_one(bus, q);
  Message b = receive_one(bus, q);
  expect_status(a, status_name::kReplierGoneAway, p, q, r1);
  expect_status(b, status_name::kReplierGoneAway, p, q, r2);
  EXPECT_EQ(a.hdr.id, (MessageId{0, 3}));
  EXPECT_EQ(b.hdr.id, (MessageId{0, 4}));
  EXPECT_EQ(bus.num_msgs(q), 0u);
}

// §6.2 / §4.6 NEXTMSG / §7.2-6: a Request popped (even unread) and not
// answered → Ignored at CLOSE.
TEST_F(BusStatusTest, Ignored) {
  MessageId r = send_ok(bus, q, request("$.Fred"));
  EXPECT_EQ(bus.unreplied_to(p), 0u);
  ASSERT_EQ(bus.next_msg(p), 100u);
  EXPECT_EQ(bus.unreplied_to(p), 1u);
  bus.close(p);
  expect_status(receive_one(bus, q), status_name::kReplierIgnored, p, q, r);
  EXPECT_EQ(bus.num_msgs(q), 0u);
}

// §7.2 / §14-28: GoneAway in queue order, then Ignored in reverse pop order;
// each answer exactly once (§6.1).
TEST_F(BusStatusTest, CloseOrder) {
  std::vector<MessageId> r;
  for (int i = 0; i < 5; ++i) r.push_back(send_ok(bus, q, request("$.Fred", std::to_string(i))));
  Message first = receive_one(bus, p);  // r0: answered
  MessageId rep = send_ok(bus, p, reply_to(first));
  ASSERT_EQ(bus.next_msg(p), 104u);  // r1 popped
  ASSERT_EQ(bus.next_msg(p), 104u);  // r2 popped
  EXPECT_EQ(bus.unreplied_to(p), 2u);
  bus.close(p);
  ASSERT_EQ(bus.num_msgs(q), 5u);
  Message a = receive_one(bus, q);
  EXPECT_EQ(a.hdr.id, rep);
  EXPECT_EQ(a.hdr.in_reply_to, r[0]);
  expect_status(receive_one(bus, q), status_name::kReplierGoneAway, p, q, r[3]);
  expect_status(receive_one(bus, q), status_name::kReplierGoneAway, p, q, r[4]);
  expect_status(receive_one(bus, q), status_name::kReplierIgnored, p, q, r[2]);
  Message last = receive_one(bus, q);
  expect_status(last, status_name::kReplierIgnored, p, q, r[1]);
  EXPECT_EQ(last.hdr.id, (MessageId{0, 10}));
}

// §14-1 [DEV]: at CLOSE the Status is skipped only when the requester is the
// closing Ksock itself.
TEST_F(BusStatusTest, CloseSkipsStatusToItselfOnly) {
  send_ok(bus, p, request("$.Fred"));  // to itself
  MessageId r = send_ok(bus, q, request("$.Fred"));
  bus.close(p);
  ASSERT_EQ(bus.num_msgs(q), 1u);
  expect_status(receive_one(bus, q), status_name::kReplierGoneAway, p, q, r);
}

// docs/decisions.md D10 (tightens §5.2-10, §14-10): a Reply from a Ksock
// that does not hold the Request is refused with ECONNREFUSED, whatever it
// claims; the holder can still answer, and its answer is the only one.
TEST_F(BusStatusTest, ReplyByAnotherKsockIsRefused) {
  KsockId x = bus.open(rw());
  MessageId r = send_ok(bus, q, request("$.Fred"));
  Message req = receive_one(bus, p);
  EXPECT_EQ(bus.unreplied_to(p), 1u);
  SendOutcome o = send(bus, x, reply_to(req, "from x"));
  EXPECT_EQ(o.error, Errc::econnrefused);
  EXPECT_NE(o.id, MessageId{});  // §5.2-7: the id was consumed
  EXPECT_EQ(bus.last_sent(x), o.id);
  EXPECT_FALSE(bus.sending(x));
  EXPECT_EQ(bus.num_msgs(q), 0u);
  EXPECT_EQ(bus.unreplied_to(p), 1u);
  // Not even with ALL_OR_WAIT: refused at once, never pending.
  EXPECT_EQ(send(bus, x, reply_to(req, "", flag::kAllOrWait)).error, Errc::econnrefused);
  EXPECT_FALSE(bus.sending(x));
  MessageId rep = send_ok(bus, p, reply_to(req, "from p"));
  EXPECT_EQ(bus.unreplied_to(p), 0u);
  Message got = receive_one(bus, q);
  EXPECT_EQ(got.hdr.id, rep);
  EXPECT_EQ(got.hdr.from, p);
  EXPECT_EQ(got.hdr.in_reply_to, r);
  bus.close(p);
  EXPECT_EQ(bus.num_msgs(q), 0u);
}

// D10: nobody holds a Request still queued at its replier, so nobody can
// answer it there (not even the replier itself, which has not read it);
// the replier's UNBIND then answers it with Unbound, exactly once.
TEST_F(BusStatusTest, QueuedRequestCannotBeAnswered) {
  KsockId x = bus.open(rw());
  MessageId r1 = send_ok(bus, q, request("$.Fred"));
  MessageId r2 = send_ok(bus, q, request("$.Fred"));
  Message fake = request("$.Fred");
  fake.hdr.flags = 0;
  fake.hdr.to = q;
  fake.hdr.in_reply_to = r1;
  EXPECT_EQ(send(bus, x, fake).error, Errc::econnrefused);
  EXPECT_EQ(send(bus, p, fake).error, Errc::econnrefused);
  fake.hdr.in_reply_to = r2;
  EXPECT_EQ(send(bus, x, fake).error, Errc::econnrefused);
  EXPECT_EQ(bus.num_msgs(q), 0u);
  ASSERT_TRUE(bus.unbind(p, 1, "$.Fred").ok());  // removes r1 and r2
  EXPECT_EQ(bus.num_msgs(p), 0u);
  ASSERT_EQ(bus.num_msgs(q), 2u);
  expect_status(receive_one(bus, q), status_name::kReplierUnbound, p, q, r1);
  expect_status(receive_one(bus, q), status_name::kReplierUnbound, p, q, r2);
}

// §6.2: Status messages bypass the fullness check (the slot was reserved).
TEST_F(BusStatusTest, StatusBypassesFullness) {
  KsockId s = bus.open(rw());
  ASSERT_TRUE(bus.bind(q, 0, "$.Ann").ok());
  send_ok(bus, s, announcement("$.Ann"));
  MessageId r = send_ok(bus, q, request("$.Fred"));
  ASSERT_EQ(bus.max_msgs(q, 1), 1u);
  ASSERT_TRUE(bus.unbind(p, 1, "$.Fred").ok());
  EXPECT_EQ(bus.num_msgs(q), 2u);
  EXPECT_EQ(receive_one(bus, q).name, "$.Ann");
  expect_status(receive_one(bus, q), status_name::kReplierUnbound, p, q, r);
}

// §6.2: if the requester no longer exists the Status is silently dropped.
TEST_F(BusStatusTest, StatusToClosedRequesterDropped) {
  KsockId l = bus.open(rw());
  ASSERT_TRUE(bus.bind(l, 0, "$.*").ok());
  send_ok(bus, q, request("$.Fred"));
  send_ok(bus, q, request("$.Fred"));
  ASSERT_EQ(bus.next_msg(p), 100u);
  bus.close(q);
  ASSERT_TRUE(bus.unbind(p, 1, "$.Fred").ok());
  EXPECT_EQ(bus.num_msgs(p), 0u);
  bus.close(p);
  EXPECT_EQ(bus.num_msgs(l), 2u);  // just the two Request copies
}

// §7.1-2: the test-derived example: 5 queued, unbind $.Fred leaves 2,
// unbind $.* leaves 0.
TEST_F(BusStatusTest, UnbindRemovesThatBindingsMessages) {
  KsockId l = bus.open(rw());
  KsockId s = bus.open(rw());
  ASSERT_TRUE(bus.bind(l, 0, "$.Fred").ok());
  send_ok(bus, s, announcement("$.Fred", "m1"));
  ASSERT_TRUE(bus.bind(l, 0, "$.*").ok());
  send_ok(bus, s, announcement("$.Fred", "m2"));
  send_ok(bus, s, announcement("$.Fred", "m3"));
  EXPECT_EQ(bus.num_msgs(l), 5u);
  ASSERT_TRUE(bus.unbind(l, 0, "$.Fred").ok());
  EXPECT_EQ(bus.num_msgs(l), 2u);
  ASSERT_TRUE(bus.unbind(l, 0, "$.*").ok());
  EXPECT_EQ(bus.num_msgs(l), 0u);
}

// §7.1-2 / §4.6 UNBIND: with identical bindings the most recent is removed,
// with only the copies attributed to it.
TEST_F(BusStatusTest, UnbindIdenticalBindingRemovesNewest) {
  KsockId l = bus.open(rw());
  KsockId s = bus.open(rw());
  ASSERT_TRUE(bus.bind(l, 0, "$.Fred").ok());
  send_ok(bus, s, announcement("$.Fred", "m1"));
  ASSERT_TRUE(bus.bind(l, 0, "$.Fred").ok());
  send_ok(bus, s, announcement("$.Fred", "m2"));
  ASSERT_EQ(bus.num_msgs(l), 3u);
  ASSERT_TRUE(bus.unbind(l, 0, "$.Fred").ok());
  ASSERT_EQ(bus.num_msgs(l), 2u);
  EXPECT_EQ(receive_one(bus, l).data, "m1");
  EXPECT_EQ(receive_one(bus, l).data, "m2");
  send_ok(bus, s, announcement("$.Fred", "m3"));
  EXPECT_EQ(bus.num_msgs(l), 1u);
}

// §7.1-2: Replies and Status messages are never removed by UNBIND.
TEST_F(BusStatusTest, UnbindKeepsRepliesAndStatuses) {
  ASSERT_TRUE(bus.bind(q, 0, "$.*").ok());
  MessageId r1 = send_ok(bus, q, request("$.Fred"));
  MessageId r2 = send_ok(bus, q, request("$.Fred"));
  Message req = receive_one(bus, p);
  MessageId rep = send_ok(bus, p, reply_to(req));
  ASSERT_TRUE(bus.unbind(p, 1, "$.Fred").ok());  // Unbound for r2
  // q: r1 copy, r2 copy, Reply (SENDER), Reply (listener), Unbound.
  ASSERT_EQ(bus.num_msgs(q), 5u);
  ASSERT_TRUE(bus.unbind(q, 0, "$.*").ok());
  ASSERT_EQ(bus.num_msgs(q), 2u);
  Message a = receive_one(bus, q);
  EXPECT_EQ(a.hdr.id, rep);
  EXPECT_EQ(a.hdr.in_reply_to, r1);
  expect_status(receive_one(bus, q), status_name::kReplierUnbound, p, q, r2);
}

// §7.1-4: the current read message and popped Requests are not affected by
// UNBIND; owed replies stay owed and can be answered.
TEST_F(BusStatusTest, UnbindLeavesCurrentAndPopped) {
  MessageId r1 = send_ok(bus, q, request("$.Fred", "one"));
  MessageId r2 = send_ok(bus, q, request("$.Fred", "two"));
  ASSERT_EQ(bus.next_msg(p), 104u);
  std::string out;
  ASSERT_EQ(*bus.read(p, 10, out), 10u);
  ASSERT_TRUE(bus.unbind(p, 1, "$.Fred").ok());
  EXPECT_EQ(bus.len_left(p), 94u);
  ASSERT_EQ(*bus.read(p, 200, out), 94u);
  Message req = *decode_entire(out, kH);
  EXPECT_EQ(req.hdr.id, r1);
  EXPECT_EQ(bus.unreplied_to(p), 1u);
  MessageId rep = send_ok(bus, p, reply_to(req));
  EXPECT_EQ(bus.unreplied_to(p), 0u);
  expect_status(receive_one(bus, q), status_name::kReplierUnbound, p, q, r2);
  Message got = receive_one(bus, q);
  EXPECT_EQ(got.hdr.id, rep);
  EXPECT_EQ(got.hdr.in_reply_to, r1);
}

// §7.2-3: messages queued for a closing listener vanish; nobody is told.
TEST_F(BusStatusTest, ListenerCloseTellsNobody) {
  KsockId l = bus.open(rw());
  ASSERT_TRUE(bus.bind(l, 0, "$.Fred").ok());
  send_ok(bus, q, announcement("$.Fred"));
  send_ok(bus, q, request("$.Fred"));  // l has a listener copy of it
  bus.close(l);
  EXPECT_EQ(bus.num_msgs(q), 0u);
  EXPECT_EQ(bus.num_msgs(p), 1u);
}

// §5.5-3 / §6.2 / decision 1: a pending Request whose retry finds no
// replier → Replier.Disappeared (from 0) to the sender; the sending state
// ends and the next SEND returns success with the pending id.
TEST_F(BusStatusTest, Disappeared) {
  KsockId s = bus.open(rw());
  ASSERT_TRUE(bus.bind(p, 0, "$.Fill").ok());
  ASSERT_EQ(bus.max_msgs(p, 1), 1u);
  send_ok(bus, s, announcement("$.Fill"));
  SendOutcome o = send(bus, q, request("$.Fred", "", flag::kAllOrWait));
  ASSERT_EQ(o.error, Errc::eagain);
  EXPECT_EQ(o.id, (MessageId{0, 2}));
  ASSERT_TRUE(bus.sending(q));
  ASSERT_TRUE(bus.unbind(p, 1, "$.Fred").ok());
  EXPECT_FALSE(bus.sending(q));
  EXPECT_TRUE(bus.writable(q));
  Message st = receive_one(bus, q);
  expect_status(st, status_name::kReplierDisappeared, 0, q, o.id);
  EXPECT_EQ(st.hdr.id, (MessageId{0, 3}));
  SendOutcome done = bus.send(q);
  EXPECT_EQ(done.error, Errc::ok);
  EXPECT_EQ(done.id, o.id);
  EXPECT_EQ(bus.num_msgs(p), 1u);  // just the filler
}

// §5.5-3 / §6.2: a pending Request whose retry fails otherwise (here EPIPE:
// a more specific replier appeared) → ErrorSending (from 0) to the sender.
TEST_F(BusStatusTest, ErrorSending) {
  KsockId p1 = bus.open(rw());
  KsockId p2 = bus.open(rw());
  KsockId s = bus.open(rw());
  ASSERT_TRUE(bus.bind(p1, 1, "$.Jim.*").ok());
  ASSERT_TRUE(bus.bind(p1, 0, "$.Fill").ok());
  ASSERT_EQ(bus.max_msgs(p1, 1), 1u);
  send_ok(bus, s, announcement("$.Fill"));
  Message st = request("$.Jim.X", "", flag::kAllOrWait);
  st.hdr.to = p1;
  SendOutcome o = send(bus, q, st);
  ASSERT_EQ(o.error, Errc::eagain);
  ASSERT_TRUE(bus.bind(p2, 1, "$.Jim.%").ok());
  EXPECT_FALSE(bus.sending(q));
  expect_status(receive_one(bus, q), status_name::kErrorSending, 0, q, o.id);
  EXPECT_EQ(bus.num_msgs(p2), 0u);
  EXPECT_EQ(receive_one(bus, p1).name, "$.Fill");
  EXPECT_EQ(bus.num_msgs(p1), 0u);
}

// §14-23 / §5.5-3: a pending Reply whose addressee has closed →
// Replier.Disappeared to the Ksock that tried to send it, in_reply_to = the
// Reply's own id (decision 2: never dropped).
TEST_F(BusStatusTest, DisappearedForPendingReply) {
  KsockId s = bus.open(rw());
  ASSERT_TRUE(bus.bind(q, 0, "$.Ann").ok());
  send_ok(bus, s, announcement("$.Ann"));
  send_ok(bus, q, request("$.Fred"));
  Message req = receive_one(bus, p);
  ASSERT_EQ(bus.max_msgs(q, 1), 1u);  // q now has no reply credit
  SendOutcome o = send(bus, p, reply_to(req, "", flag::kAllOrWait));
  ASSERT_EQ(o.error, Errc::eagain);
  bus.close(q);
  EXPECT_FALSE(bus.sending(p));
  Message st = receive_one(bus, p);
  expect_status(st, status_name::kReplierDisappeared, 0, p, o.id);
}

// §5.5-3 with D10: a pending Reply can only be the holder's, and the
// holder cannot lose the Request while its Reply is pending, so a retry
// ends in success, EAGAIN or (requester gone, above) EADDRNOTAVAIL. A
// non-holder's Reply never becomes pending (refused first, §5.2-10b); the
// Request is answered once, by the holder's CLOSE.
TEST_F(BusStatusTest, PendingReplyOnlyByTheHolder) {
  KsockId s = bus.open(rw());
  KsockId x = bus.open(rw());
  ASSERT_TRUE(bus.bind(q, 0, "$.Ann").ok());
  send_ok(bus, s, announcement("$.Ann"));
  MessageId r = send_ok(bus, q, request("$.Fred"));
  Message req = receive_one(bus, p);
  ASSERT_EQ(bus.max_msgs(q, 1), 1u);  // no reply credit left
  SendOutcome o = send(bus, x, reply_to(req, "", flag::kAllOrWait));
  ASSERT_EQ(o.error, Errc::econnrefused);
  EXPECT_FALSE(bus.sending(x));
  o = send(bus, p, reply_to(req, "", flag::kAllOrWait));
  ASSERT_EQ(o.error, Errc::eagain);
  EXPECT_TRUE(bus.sending(p));
  bus.close(p);  // abandons its pending Reply; Ignored for r (bypasses fullness)
  EXPECT_EQ(bus.num_msgs(x), 0u);
  ASSERT_EQ(bus.num_msgs(q), 2u);
  EXPECT_EQ(receive_one(bus, q).name, "$.Ann");
  expect_status(receive_one(bus, q), status_name::kReplierIgnored, p, q, r);
  EXPECT_EQ(bus.num_msgs(q), 0u);
}

// §1.5-4 / §6.2: a Status whose requester has gone is not built, so it
// uses no serial (as in the original): GoneAway (§7.2-3), Ignored (§7.2-6)
// and Unbound (§7.1-3) for a closed requester leave the counter alone,
// while each one that is built uses exactly one.
TEST_F(BusStatusTest, NoSerialForAStatusWhoseRequesterHasGone) {
  KsockId s = bus.open(rw());
  KsockId q2 = bus.open(rw());
  ASSERT_TRUE(bus.bind(p, 1, "$.Jim").ok());
  EXPECT_EQ(send_ok(bus, q, request("$.Fred")), (MessageId{0, 1}));   // popped by p
  EXPECT_EQ(send_ok(bus, q, request("$.Fred")), (MessageId{0, 2}));   // left queued
  EXPECT_EQ(send_ok(bus, q, request("$.Jim")), (MessageId{0, 3}));    // unbound below
  EXPECT_EQ(send_ok(bus, q2, request("$.Fred")), (MessageId{0, 4}));  // q2 stays
  receive_one(bus, p);
  bus.close(q);
  ASSERT_TRUE(bus.unbind(p, 1, "$.Jim").ok());  // Unbound for q: not built
  EXPECT_EQ(send_ok(bus, s, announcement("$.X")), (MessageId{0, 5}));
  bus.close(p);  // GoneAway for q (not built), GoneAway for q2 ([0:6]), Ignored for q (not built)
  Message st = receive_one(bus, q2);
  expect_status(st, status_name::kReplierGoneAway, p, q2, {0, 4});
  EXPECT_EQ(st.hdr.id, (MessageId{0, 6}));
  EXPECT_EQ(send_ok(bus, s, announcement("$.X")), (MessageId{0, 7}));
}

}  // namespace
}  // namespace kbus::core
