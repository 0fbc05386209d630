// core/bus_send_test.cpp - the SEND algorithm (KBUS-SPEC.md §1.4-§1.6, §5).
#include "core/bus.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "core/test_helpers.hpp"

namespace kbus::core {
namespace {

using namespace test;

class BusSendTest : public BusTest {
 protected:
  // Makes k full: queue limit 1 and one "$.Fill" message queued. Returns
  // the filler's id.
  MessageId fill(KsockId k) {
    if (filler_ == 0) filler_ = bus.open(rw());
    EXPECT_TRUE(bus.bind(k, 0, "$.Fill").ok());
    EXPECT_EQ(bus.max_msgs(k, 1), 1u);
    MessageId id = send_ok(bus, filler_, announcement("$.Fill"));
    EXPECT_EQ(bus.num_msgs(k), 1u);
    return id;
  }
  KsockId filler_ = 0;
};

// §1.5-3/-4: serials come from the bus counter starting at 1 and overwrite
// whatever the sender put there when network_id == 0; a non-zero network
// id is preserved and consumes no serial.
TEST_F(BusSendTest, MessageIds) {
  KsockId s = bus.open(rw());
  KsockId l = bus.open(rw());
  ASSERT_TRUE(bus.bind(l, 0, "$.Fred").ok());
  Message a = announcement("$.Fred");
  EXPECT_EQ(send_ok(bus, s, a), (MessageId{0, 1}));
  a.hdr.id = {0, 999};
  EXPECT_EQ(send_ok(bus, s, a), (MessageId{0, 2}));
  a.hdr.id = {5, 77};
  EXPECT_EQ(send_ok(bus, s, a), (MessageId{5, 77}));
  EXPECT_EQ(bus.last_sent(s), (MessageId{5, 77}));
  a.hdr.id = {0, 0};
  EXPECT_EQ(send_ok(bus, l, a), (MessageId{0, 3}));
  std::vector<MessageId> seen;
  while (auto m = receive(bus, l)) seen.push_back(m->hdr.id);
  EXPECT_EQ(seen, (std::vector<MessageId>{{0, 1}, {0, 2}, {5, 77}, {0, 3}}));
}

// §1.6: from always overwritten [K]; extra forced to 0; SYNTHETIC cleared;
// WANT_YOU_TO_REPLY recomputed; reserved and user bits, to, orig_from,
// final_to preserved.
TEST_F(BusSendTest, HeaderFieldsAtSend) {
  KsockId s = bus.open(rw());
  KsockId l = bus.open(rw());
  ASSERT_TRUE(bus.bind(l, 0, "$.Fred").ok());
  Message a = announcement("$.Fred", "d", 0xFFFFFCF6);  // user, reserved, SYN, YOU
  a.hdr.from = 99;
  a.hdr.extra = 0xDEAD;
  a.hdr.to = 42;
  a.hdr.orig_from = {3, 4};
  a.hdr.final_to = {5, 6};
  MessageId id = send_ok(bus, s, a);
  Message got = receive_one(bus, l);
  EXPECT_EQ(got.hdr.id, id);
  EXPECT_EQ(got.hdr.from, s);
  EXPECT_EQ(got.hdr.extra, 0u);
  EXPECT_EQ(got.hdr.flags, 0xFFFFFCF0u);
  EXPECT_EQ(got.hdr.to, 42u);
  EXPECT_EQ(got.hdr.orig_from, (OrigFrom{3, 4}));
  EXPECT_EQ(got.hdr.final_to, (OrigFrom{5, 6}));
  EXPECT_TRUE(got.hdr.in_reply_to.is_zero());
  EXPECT_EQ(got.data, "d");
}

// §1.3 / §5.2-8 / §5.4: one copy per matching listener binding, including
// the sender's own.
TEST_F(BusSendTest, AnnouncementCopies) {
  KsockId s = bus.open(rw());
  KsockId l1 = bus.open(rw());
  KsockId l2 = bus.open(rw());
  KsockId l3 = bus.open(rw());
  ASSERT_TRUE(bus.bind(l1, 0, "$.Fred").ok());
  ASSERT_TRUE(bus.bind(l1, 0, "$.*").ok());
  ASSERT_TRUE(bus.bind(l2, 0, "$.%").ok());
  ASSERT_TRUE(bus.bind(l3, 0, "$.Fred.*").ok());
  ASSERT_TRUE(bus.bind(s, 0, "$.Fred").ok());
  MessageId id = send_ok(bus, s, announcement("$.Fred"));
  EXPECT_EQ(bus.num_msgs(l1), 2u);
  EXPECT_EQ(bus.num_msgs(l2), 1u);
  EXPECT_EQ(bus.num_msgs(l3), 0u);
  EXPECT_EQ(bus.num_msgs(s), 1u);
  EXPECT_EQ(receive_one(bus, s).hdr.id, id);
  EXPECT_EQ(receive_one(bus, l1).hdr.id, id);
  EXPECT_EQ(receive_one(bus, l1).hdr.id, id);
}

// §1.4 / §5.2 consequences: an Announcement nobody listens to succeeds.
TEST_F(BusSendTest, AnnouncementToNobody) {
  KsockId s = bus.open(rw());
  SendOutcome o = send(bus, s, announcement("$.Nobody"));
  EXPECT_EQ(o.error, Errc::ok);
  EXPECT_EQ(o.id, (MessageId{0, 1}));
  EXPECT_EQ(bus.num_msgs(s), 0u);
}

// §1.3 / §5.2-11: a replier binding never receives Announcements or Replies.
TEST_F(BusSendTest, ReplierBindingGetsOnlyRequests) {
  KsockId p = bus.open(rw());
  KsockId s = bus.open(rw());
  ASSERT_TRUE(bus.bind(p, 1, "$.Fred").ok());
  send_ok(bus, s, announcement("$.Fred"));
  EXPECT_EQ(bus.num_msgs(p), 0u);
  MessageId r = send_ok(bus, s, request("$.Fred"));
  Message req = receive_one(bus, p);
  EXPECT_EQ(req.hdr.id, r);
  send_ok(bus, p, reply_to(req));  // the Reply goes to s only
  EXPECT_EQ(bus.num_msgs(p), 0u);
  EXPECT_EQ(bus.num_msgs(s), 1u);
}

// §5.2-14b/c, §5.3-2, §5.4: the replier's copy has WANT_YOU_TO_REPLY, the
// listeners' copies do not; the requester gets nothing unless it listens.
TEST_F(BusSendTest, RequestCopies) {
  KsockId p = bus.open(rw());
  KsockId l = bus.open(rw());
  KsockId q = bus.open(rw());
  ASSERT_TRUE(bus.bind(p, 1, "$.Fred").ok());
  ASSERT_TRUE(bus.bind(l, 0, "$.Fred").ok());
  MessageId r = send_ok(bus, q, request("$.Fred", "q", flag::kWantYouToReply));
  EXPECT_EQ(r, (MessageId{0, 1}));
  Message atp = receive_one(bus, p);
  EXPECT_EQ(atp.hdr.id, r);
  EXPECT_EQ(atp.hdr.flags, flag::kWantAReply | flag::kWantYouToReply);
  EXPECT_EQ(atp.hdr.from, q);
  EXPECT_EQ(atp.hdr.to, 0u);
  EXPECT_EQ(atp.data, "q");
  Message atl = receive_one(bus, l);
  EXPECT_EQ(atl.hdr.id, r);
  EXPECT_EQ(atl.hdr.flags, flag::kWantAReply);
  EXPECT_EQ(bus.num_msgs(q), 0u);
  EXPECT_EQ(bus.num_msgs(p), 0u);
}

// §5.2-9 / §5.2-7: a Request with no replier → EADDRNOTAVAIL after id
// assignment: LASTSENT is set and the serial consumed; nothing delivered.
TEST_F(BusSendTest, RequestWithoutReplier) {
  KsockId q = bus.open(rw());
  KsockId l = bus.open(rw());
  ASSERT_TRUE(bus.bind(l, 0, "$.Fred").ok());
  SendOutcome o = send(bus, q, request("$.Fred"));
  EXPECT_EQ(o.error, Errc::eaddrnotavail);
  EXPECT_EQ(o.id, (MessageId{0, 1}));
  EXPECT_EQ(bus.last_sent(q), (MessageId{0, 1}));
  EXPECT_EQ(bus.num_msgs(l), 0u);
  EXPECT_FALSE(bus.sending(q));
  EXPECT_EQ(bus.send(q).error, Errc::enomsg);
  EXPECT_EQ(send_ok(bus, q, announcement("$.Fred")), (MessageId{0, 2}));
}

// §5.2 consequences: a Ksock may be its own replier; a replier that also
// listens gets the replier copy first, then a listener copy, and a listener
// copy of its own Reply.
TEST_F(BusSendTest, ReplierThatAlsoListens) {
  KsockId p = bus.open(rw());
  KsockId q = bus.open(rw());
  ASSERT_TRUE(bus.bind(p, 0, "$.Fred").ok());
  ASSERT_TRUE(bus.bind(p, 1, "$.Fred").ok());
  MessageId r = send_ok(bus, q, request("$.Fred"));
  Message first = receive_one(bus, p);
  Message second = receive_one(bus, p);
  EXPECT_EQ(first.hdr.id, r);
  EXPECT_EQ(first.hdr.flags, flag::kWantAReply | flag::kWantYouToReply);
  EXPECT_EQ(second.hdr.id, r);
  EXPECT_EQ(second.hdr.flags, flag::kWantAReply);
  EXPECT_EQ(bus.unreplied_to(p), 1u);
  MessageId rep = send_ok(bus, p, reply_to(first, "a"));
  Message echo = receive_one(bus, p);
  EXPECT_EQ(echo.hdr.id, rep);
  EXPECT_EQ(echo.hdr.in_reply_to, r);
  EXPECT_EQ(echo.hdr.flags, 0u);
  Message got = receive_one(bus, q);
  EXPECT_EQ(got.hdr.id, rep);
  EXPECT_EQ(got.data, "a");
  EXPECT_EQ(bus.unreplied_to(p), 0u);
}

// §1.3: a Ksock can send a Request to itself and answer it.
TEST_F(BusSendTest, OwnReplier) {
  KsockId p = bus.open(rw());
  ASSERT_TRUE(bus.bind(p, 1, "$.Fred").ok());
  MessageId r = send_ok(bus, p, request("$.Fred"));
  Message req = receive_one(bus, p);
  EXPECT_TRUE(req.wants_us_to_reply());
  EXPECT_EQ(req.hdr.from, p);
  MessageId rep = send_ok(bus, p, reply_to(req));
  Message got = receive_one(bus, p);
  EXPECT_EQ(got.hdr.id, rep);
  EXPECT_EQ(got.hdr.in_reply_to, r);
  EXPECT_EQ(got.hdr.to, p);
  EXPECT_EQ(got.hdr.from, p);
}

// §5.2-10, §5.2-14a, §5.4: the Reply reaches the requester (which listens
// to nothing), consumes its outstanding entry, and clears the owed reply;
// a second Reply is ECONNREFUSED (id consumed).
TEST_F(BusSendTest, ReplyDelivery) {
  KsockId p = bus.open(rw());
  KsockId q = bus.open(rw());
  KsockId l = bus.open(rw());
  ASSERT_TRUE(bus.bind(p, 1, "$.Fred").ok());
  ASSERT_TRUE(bus.bind(l, 0, "$.Fred").ok());
  MessageId r = send_ok(bus, q, request("$.Fred"));
  Message req = receive_one(bus, p);
  EXPECT_EQ(bus.unreplied_to(p), 1u);
  Message rep = reply_to(req, "answer");
  EXPECT_EQ(send_ok(bus, p, rep), (MessageId{0, 2}));
  EXPECT_EQ(bus.unreplied_to(p), 0u);
  Message got = receive_one(bus, q);
  EXPECT_EQ(got.name, "$.Fred");
  EXPECT_EQ(got.hdr.id, (MessageId{0, 2}));
  EXPECT_EQ(got.hdr.in_reply_to, r);
  EXPECT_EQ(got.hdr.to, q);
  EXPECT_EQ(got.hdr.from, p);
  EXPECT_EQ(got.hdr.flags, 0u);
  EXPECT_EQ(got.data, "answer");
  EXPECT_TRUE(got.is_reply());
  EXPECT_FALSE(got.is_status());
  // Listener copies: the Request and the Reply.
  EXPECT_EQ(receive_one(bus, l).hdr.id, r);
  EXPECT_EQ(receive_one(bus, l).hdr.id, (MessageId{0, 2}));
  // Already answered.
  SendOutcome again = send(bus, p, rep);
  EXPECT_EQ(again.error, Errc::econnrefused);
  EXPECT_EQ(again.id, (MessageId{0, 3}));
  EXPECT_EQ(bus.last_sent(p), (MessageId{0, 3}));
  EXPECT_EQ(bus.num_msgs(q), 0u);
  EXPECT_EQ(bus.num_msgs(l), 0u);
}

// §5.2-10a/b: Reply addressee missing → EADDRNOTAVAIL; not awaiting that
// id (wrong id or wrong Ksock) → ECONNREFUSED.
TEST_F(BusSendTest, ReplyErrors) {
  KsockId p = bus.open(rw());
  KsockId q = bus.open(rw());
  KsockId x = bus.open(rw());
  ASSERT_TRUE(bus.bind(p, 1, "$.Fred").ok());
  MessageId r = send_ok(bus, q, request("$.Fred"));
  Message req = receive_one(bus, p);

  Message bad = reply_to(req);
  bad.hdr.to = 99;
  EXPECT_EQ(send(bus, p, bad).error, Errc::eaddrnotavail);
  bad = reply_to(req);
  bad.hdr.in_reply_to = {0, r.serial_num + 100};
  EXPECT_EQ(send(bus, p, bad).error, Errc::econnrefused);
  bad = reply_to(req);
  bad.hdr.to = x;
  EXPECT_EQ(send(bus, p, bad).error, Errc::econnrefused);
  bad = reply_to(req);
  bad.hdr.in_reply_to = {1, r.serial_num};
  EXPECT_EQ(send(bus, p, bad).error, Errc::econnrefused);
  EXPECT_EQ(bus.num_msgs(q), 0u);
  EXPECT_EQ(bus.num_msgs(x), 0u);
  EXPECT_EQ(bus.unreplied_to(p), 1u);
  // §7.2-2: once the requester has closed, Replies to it → EADDRNOTAVAIL.
  bus.close(q);
  EXPECT_EQ(send(bus, p, reply_to(req)).error, Errc::eaddrnotavail);
}

// §5.1: the Reply uses the requester's reserved slot: a requester with
// queue limit 1 and one outstanding Request still gets its Reply.
TEST_F(BusSendTest, ReplyUsesReservedSlot) {
  KsockId p = bus.open(rw());
  KsockId q = bus.open(rw());
  ASSERT_TRUE(bus.bind(p, 1, "$.Fred").ok());
  ASSERT_EQ(bus.max_msgs(q, 1), 1u);
  send_ok(bus, q, request("$.Fred"));
  Message req = receive_one(bus, p);
  EXPECT_EQ(send(bus, p, reply_to(req)).error, Errc::ok);
  EXPECT_EQ(bus.num_msgs(q), 1u);
}

// §5.1 / §5.2-10c / §14-7: a requester full even for its reply credit:
// Reply → EBUSY (also with ALL_OR_FAIL), EAGAIN with ALL_OR_WAIT.
TEST_F(BusSendTest, ReplyToFullRequester) {
  KsockId p = bus.open(rw());
  KsockId q = bus.open(rw());
  KsockId s = bus.open(rw());
  ASSERT_TRUE(bus.bind(p, 1, "$.Fred").ok());
  ASSERT_TRUE(bus.bind(q, 0, "$.Noise").ok());
  send_ok(bus, s, announcement("$.Noise"));
  MessageId r = send_ok(bus, q, request("$.Fred"));
  Message req = receive_one(bus, p);
  ASSERT_EQ(bus.max_msgs(q, 1), 1u);  // accounted 2: 2 - 1 >= 1
  SendOutcome o = send(bus, p, reply_to(req));
  EXPECT_EQ(o.error, Errc::ebusy);
  EXPECT_EQ(send(bus, p, reply_to(req, "", flag::kAllOrFail)).error, Errc::ebusy);
  EXPECT_EQ(bus.num_msgs(q), 1u);
  EXPECT_FALSE(bus.sending(p));
  o = send(bus, p, reply_to(req, "w", flag::kAllOrWait));
  EXPECT_EQ(o.error, Errc::eagain);
  EXPECT_TRUE(bus.sending(p));
  // Room appears: the pending Reply is delivered at once (decision 1).
  Message noise = receive_one(bus, q);
  EXPECT_EQ(noise.name, "$.Noise");
  EXPECT_FALSE(bus.sending(p));
  Message got = receive_one(bus, q);
  EXPECT_EQ(got.hdr.id, o.id);
  EXPECT_EQ(got.hdr.in_reply_to, r);
  EXPECT_EQ(got.data, "w");
  EXPECT_EQ(got.hdr.flags, flag::kAllOrWait);
  SendOutcome done = bus.send(p);
  EXPECT_EQ(done.error, Errc::ok);
  EXPECT_EQ(done.id, o.id);
}

// §14-7: ALL_OR_FAIL is honoured for a Reply's listeners; nothing is
// delivered and the requester still awaits the Reply.
TEST_F(BusSendTest, ReplyAllOrFailWithFullListener) {
  KsockId p = bus.open(rw());
  KsockId q = bus.open(rw());
  KsockId l = bus.open(rw());
  ASSERT_TRUE(bus.bind(p, 1, "$.Fred").ok());
  MessageId r = send_ok(bus, q, request("$.Fred"));
  Message req = receive_one(bus, p);
  fill(l);
  ASSERT_TRUE(bus.bind(l, 0, "$.Fred").ok());
  EXPECT_EQ(send(bus, p, reply_to(req, "", flag::kAllOrFail)).error, Errc::ebusy);
  EXPECT_EQ(bus.num_msgs(q), 0u);
  EXPECT_EQ(send(bus, p, reply_to(req)).error, Errc::ok);  // l silently skipped
  EXPECT_EQ(receive_one(bus, q).hdr.in_reply_to, r);
  EXPECT_EQ(bus.num_msgs(l), 1u);
}

// §5.2-5: a Request from a full sender → ENOLCK: message discarded, no id
// assigned (LASTSENT unchanged, no serial consumed), no sending state; it
// comes before the no-replier check; non-Requests are not affected.
TEST_F(BusSendTest, Enolck) {
  KsockId p = bus.open(rw());
  KsockId q = bus.open(rw());
  ASSERT_TRUE(bus.bind(p, 1, "$.Fred").ok());
  ASSERT_EQ(bus.max_msgs(q, 1), 1u);
  MessageId r = send_ok(bus, q, request("$.Fred"));
  EXPECT_EQ(r, (MessageId{0, 1}));
  SendOutcome o = send(bus, q, request("$.Fred"));
  EXPECT_EQ(o.error, Errc::enolck);
  EXPECT_TRUE(o.id.is_zero());
  EXPECT_EQ(bus.last_sent(q), r);
  EXPECT_FALSE(bus.sending(q));
  EXPECT_EQ(bus.send(q).error, Errc::enomsg);
  EXPECT_EQ(send(bus, q, request("$.Nobody")).error, Errc::enolck);
  EXPECT_EQ(send(bus, q, request("$.Fred", "", flag::kAllOrWait)).error, Errc::enolck);
  EXPECT_FALSE(bus.sending(q));
  EXPECT_EQ(send_ok(bus, q, announcement("$.Fred")), (MessageId{0, 2}));
  EXPECT_EQ(bus.num_msgs(p), 1u);  // only the first Request reached p
  // The Reply frees the slot but itself fills the queue; reading it frees it.
  Message req = receive_one(bus, p);
  send_ok(bus, p, reply_to(req));
  EXPECT_EQ(send(bus, q, request("$.Fred")).error, Errc::enolck);
  ASSERT_TRUE(receive(bus, q).has_value());
  EXPECT_EQ(send(bus, q, request("$.Fred")).error, Errc::ok);
}

// §5.1 note: outstanding requests reduce the room for every kind of
// delivery.
TEST_F(BusSendTest, OutstandingRequestsReduceRoom) {
  KsockId p = bus.open(rw());
  KsockId q = bus.open(rw());
  KsockId s = bus.open(rw());
  ASSERT_TRUE(bus.bind(p, 1, "$.Fred").ok());
  ASSERT_TRUE(bus.bind(q, 0, "$.Ann").ok());
  ASSERT_EQ(bus.max_msgs(q, 2), 2u);
  send_ok(bus, q, request("$.Fred"));
  send_ok(bus, s, announcement("$.Ann", "1"));
  send_ok(bus, s, announcement("$.Ann", "2"));
  EXPECT_EQ(bus.num_msgs(q), 1u);
  EXPECT_EQ(send(bus, s, announcement("$.Ann", "3", flag::kAllOrFail)).error, Errc::ebusy);
  EXPECT_EQ(receive_one(bus, q).data, "1");
}

// §1.4 / §5.2-12: Stateful Requests: to must be the selected replier, else
// EPIPE; with no replier at all EADDRNOTAVAIL; EPIPE comes before the
// replier-full check.
TEST_F(BusSendTest, StatefulRequests) {
  KsockId p = bus.open(rw());
  KsockId q = bus.open(rw());
  KsockId x = bus.open(rw());
  ASSERT_TRUE(bus.bind(p, 1, "$.Fred").ok());
  Message st = request("$.Fred");
  st.hdr.to = p;
  MessageId r = send_ok(bus, q, st);
  Message got = receive_one(bus, p);
  EXPECT_EQ(got.hdr.id, r);
  EXPECT_EQ(got.hdr.to, p);
  EXPECT_TRUE(got.is_stateful_request());
  EXPECT_TRUE(got.wants_us_to_reply());

  Message wrong = request("$.Fred");
  wrong.hdr.to = x;
  SendOutcome o = send(bus, q, wrong);
  EXPECT_EQ(o.error, Errc::epipe);
  EXPECT_EQ(o.id, (MessageId{0, 2}));
  EXPECT_EQ(bus.num_msgs(p), 0u);

  fill(p);  // EPIPE wins over "replier full"
  EXPECT_EQ(send(bus, q, wrong).error, Errc::epipe);
  EXPECT_EQ(send(bus, q, st).error, Errc::ebusy);

  ASSERT_TRUE(bus.unbind(p, 1, "$.Fred").ok());
  EXPECT_EQ(send(bus, q, st).error, Errc::eaddrnotavail);
  ASSERT_TRUE(bus.bind(x, 1, "$.Fred").ok());
  EXPECT_EQ(send(bus, q, st).error, Errc::epipe);
  EXPECT_EQ(bus.num_msgs(x), 0u);
}

// §5.2-12: replier full → EBUSY with or without ALL_OR_FAIL, EAGAIN with
// ALL_OR_WAIT; nothing reaches the listeners.
TEST_F(BusSendTest, ReplierFull) {
  KsockId p = bus.open(rw());
  KsockId q = bus.open(rw());
  KsockId l = bus.open(rw());
  ASSERT_TRUE(bus.bind(p, 1, "$.Fred").ok());
  ASSERT_TRUE(bus.bind(l, 0, "$.Fred").ok());
  fill(p);
  SendOutcome o = send(bus, q, request("$.Fred"));
  EXPECT_EQ(o.error, Errc::ebusy);
  EXPECT_FALSE(o.id.is_zero());
  EXPECT_EQ(bus.last_sent(q), o.id);
  EXPECT_EQ(send(bus, q, request("$.Fred", "", flag::kAllOrFail)).error, Errc::ebusy);
  EXPECT_EQ(bus.num_msgs(l), 0u);
  EXPECT_FALSE(bus.sending(q));
  SendOutcome w = send(bus, q, request("$.Fred", "", flag::kAllOrWait));
  EXPECT_EQ(w.error, Errc::eagain);
  EXPECT_EQ(w.id.serial_num, o.id.serial_num + 2);
  EXPECT_TRUE(bus.sending(q));
  EXPECT_EQ(bus.num_msgs(l), 0u);
}

// §5.2-13 (no flags) / decision 3: a full listener silently gets nothing,
// others get their copy; fullness is evaluated at each push.
TEST_F(BusSendTest, FullListenerSilentlySkipped) {
  KsockId s = bus.open(rw());
  KsockId full = bus.open(rw());
  KsockId ok = bus.open(rw());
  KsockId twice = bus.open(rw());
  fill(full);
  ASSERT_TRUE(bus.bind(full, 0, "$.Fred").ok());
  ASSERT_TRUE(bus.bind(ok, 0, "$.Fred").ok());
  ASSERT_TRUE(bus.bind(twice, 0, "$.Fred").ok());
  ASSERT_TRUE(bus.bind(twice, 0, "$.Fred").ok());
  ASSERT_EQ(bus.max_msgs(twice, 1), 1u);
  EXPECT_EQ(send(bus, s, announcement("$.Fred")).error, Errc::ok);
  EXPECT_EQ(bus.num_msgs(full), 1u);
  EXPECT_EQ(bus.num_msgs(ok), 1u);
  EXPECT_EQ(bus.num_msgs(twice), 1u);
  EXPECT_EQ(receive_one(bus, full).name, "$.Fill");
}

// §5.2-13/-14: ALL_OR_FAIL with a full listener → EBUSY, nothing delivered
// to anybody, id consumed.
TEST_F(BusSendTest, AllOrFailWithFullListener) {
  KsockId s = bus.open(rw());
  KsockId full = bus.open(rw());
  KsockId ok = bus.open(rw());
  fill(full);
  ASSERT_TRUE(bus.bind(full, 0, "$.Fred").ok());
  ASSERT_TRUE(bus.bind(ok, 0, "$.Fred").ok());
  SendOutcome o = send(bus, s, announcement("$.Fred", "", flag::kAllOrFail));
  EXPECT_EQ(o.error, Errc::ebusy);
  EXPECT_FALSE(o.id.is_zero());
  EXPECT_EQ(bus.last_sent(s), o.id);
  EXPECT_EQ(bus.num_msgs(ok), 0u);
  EXPECT_FALSE(bus.sending(s));
  EXPECT_EQ(bus.send(s).error, Errc::enomsg);
}

// §5.2-13/-15, §5.5, §14-2, decision 1: ALL_OR_WAIT with a full listener →
// EAGAIN with the id; writes get EALREADY and leave the message intact;
// SEND again → EAGAIN, same id; when room appears the Bus delivers it at
// once to everybody; the next SEND returns success with that id.
TEST_F(BusSendTest, AllOrWaitPendingThenDelivered) {
  KsockId s = bus.open(rw());
  KsockId full = bus.open(rw());
  KsockId ok = bus.open(rw());
  fill(full);
  ASSERT_TRUE(bus.bind(full, 0, "$.Fred").ok());
  ASSERT_TRUE(bus.bind(ok, 0, "$.Fred").ok());
  const MessageId before = bus.last_sent(filler_);
  SendOutcome o = send(bus, s, announcement("$.Fred", "pending", flag::kAllOrWait));
  EXPECT_EQ(o.error, Errc::eagain);
  EXPECT_EQ(o.id, (MessageId{0, before.serial_num + 1}));
  EXPECT_EQ(bus.last_sent(s), o.id);
  EXPECT_TRUE(bus.sending(s));
  EXPECT_FALSE(bus.writable(s));
  EXPECT_EQ(bus.num_msgs(ok), 0u);

  EXPECT_EQ(bus.write(s, entire("$.Fred", "other")).error(), Errc::ealready);
  EXPECT_EQ(bus.write(s, "").error(), Errc::ealready);
  SendOutcome again = bus.send(s);
  EXPECT_EQ(again.error, Errc::eagain);
  EXPECT_EQ(again.id, o.id);
  EXPECT_TRUE(bus.sending(s));

  EXPECT_EQ(receive_one(bus, full).name, "$.Fill");
  EXPECT_FALSE(bus.sending(s));
  EXPECT_TRUE(bus.writable(s));
  EXPECT_EQ(bus.num_msgs(full), 1u);
  EXPECT_EQ(bus.num_msgs(ok), 1u);
  for (KsockId k : {full, ok}) {
    Message got = receive_one(bus, k);
    EXPECT_EQ(got.hdr.id, o.id);
    EXPECT_EQ(got.data, "pending");
    EXPECT_EQ(got.hdr.from, s);
    EXPECT_EQ(got.hdr.flags, flag::kAllOrWait);
  }
  SendOutcome done = bus.send(s);
  EXPECT_EQ(done.error, Errc::ok);
  EXPECT_EQ(done.id, o.id);
  EXPECT_EQ(bus.send(s).error, Errc::enomsg);
  EXPECT_EQ(send_ok(bus, s, announcement("$.Other")), (MessageId{0, o.id.serial_num + 1}));
}

// Decision 1 (§4.4 / §14-18): the Bus retries pending sends after every
// operation: raising a full listener's MAXMSGS delivers at once; the
// sender is reported by take_touched.
TEST_F(BusSendTest, PendingRetriedWhenLimitRaised) {
  KsockId s = bus.open(rw());
  KsockId full = bus.open(rw());
  fill(full);
  ASSERT_TRUE(bus.bind(full, 0, "$.Fred").ok());
  SendOutcome o = send(bus, s, announcement("$.Fred", "x", flag::kAllOrWait));
  ASSERT_EQ(o.error, Errc::eagain);
  (void)bus.take_touched();
  ASSERT_EQ(bus.max_msgs(full, 2), 2u);
  EXPECT_FALSE(bus.sending(s));
  EXPECT_EQ(bus.num_msgs(full), 2u);
  std::vector<KsockId> t = bus.take_touched();
  EXPECT_NE(std::find(t.begin(), t.end(), s), t.end());
  EXPECT_NE(std::find(t.begin(), t.end(), full), t.end());
  EXPECT_EQ(bus.send(s).id, o.id);
}

// Decision 1: a full listener that closes makes room too: the pending
// message goes to the others.
TEST_F(BusSendTest, PendingRetriedWhenFullListenerCloses) {
  KsockId s = bus.open(rw());
  KsockId full = bus.open(rw());
  KsockId ok = bus.open(rw());
  fill(full);
  ASSERT_TRUE(bus.bind(full, 0, "$.Fred").ok());
  ASSERT_TRUE(bus.bind(ok, 0, "$.Fred").ok());
  SendOutcome o = send(bus, s, announcement("$.Fred", "x", flag::kAllOrWait));
  ASSERT_EQ(o.error, Errc::eagain);
  bus.close(full);
  EXPECT_FALSE(bus.sending(s));
  Message got = receive_one(bus, ok);
  EXPECT_EQ(got.hdr.id, o.id);
  EXPECT_EQ(got.data, "x");
}

// docs/protocol.md §4.1 / §5.5-2: a pointy pending send keeps the name and
// data captured at the first SEND; a payload given on a retry is ignored.
TEST_F(BusSendTest, PointyPendingKeepsCapturedPayload) {
  KsockId s = bus.open(rw());
  KsockId full = bus.open(rw());
  fill(full);
  ASSERT_TRUE(bus.bind(full, 0, "$.Fred").ok());
  ASSERT_TRUE(bus.write(s, pointy_header(6, 4, flag::kAllOrWait)).ok());
  SendOutcome o = bus.send(s, std::string_view("$.Freddada"));
  ASSERT_EQ(o.error, Errc::eagain);
  SendOutcome again = bus.send(s, std::string_view("$.Jimmxxxx"));
  EXPECT_EQ(again.error, Errc::eagain);
  EXPECT_EQ(again.id, o.id);
  EXPECT_EQ(receive_one(bus, full).name, "$.Fill");
  Message got = receive_one(bus, full);
  EXPECT_EQ(got.name, "$.Fred");
  EXPECT_EQ(got.data, "dada");
  EXPECT_EQ(got.hdr.id, o.id);
}

// §2.4-4 through SEND: the R1/R2/R3 example; only the selected replier gets
// the WANT_YOU_TO_REPLY copy.
TEST_F(BusSendTest, ReplierSelectionExample) {
  KsockId r1 = bus.open(rw());
  KsockId r2 = bus.open(rw());
  KsockId r3 = bus.open(rw());
  KsockId q = bus.open(rw());
  ASSERT_TRUE(bus.bind(r1, 1, "$.Sensors.*").ok());
  ASSERT_TRUE(bus.bind(r2, 1, "$.Sensors.%").ok());
  ASSERT_TRUE(bus.bind(r3, 1, "$.Sensors.Kitchen.Temperature").ok());
  struct Case {
    const char* name;
    KsockId replier;
  };
  for (Case c : {Case{"$.Sensors.Kitchen.Temperature", r3}, Case{"$.Sensors.Kitchen", r2},
                 Case{"$.Sensors.LivingRoom", r2}, Case{"$.Sensors.LivingRoom.Temperature", r1}}) {
    MessageId id = send_ok(bus, q, request(c.name));
    for (KsockId r : {r1, r2, r3}) EXPECT_EQ(bus.num_msgs(r), r == c.replier ? 1u : 0u) << c.name;
    Message got = receive_one(bus, c.replier);
    EXPECT_EQ(got.hdr.id, id);
    EXPECT_TRUE(got.wants_us_to_reply());
    send_ok(bus, c.replier, reply_to(got));
    ASSERT_TRUE(receive(bus, q).has_value());
  }
  EXPECT_EQ(send(bus, q, request("$.Sensors")).error, Errc::eaddrnotavail);
}

// §5.5-1 / §4.6 DISCARD: abandons a pending send, no Status, never delivered.
TEST_F(BusSendTest, DiscardAbandonsPending) {
  KsockId s = bus.open(rw());
  KsockId full = bus.open(rw());
  KsockId ok = bus.open(rw());
  fill(full);
  ASSERT_TRUE(bus.bind(full, 0, "$.Fred").ok());
  ASSERT_TRUE(bus.bind(ok, 0, "$.Fred").ok());
  ASSERT_EQ(send(bus, s, announcement("$.Fred", "", flag::kAllOrWait)).error, Errc::eagain);
  bus.discard(s);
  EXPECT_FALSE(bus.sending(s));
  EXPECT_TRUE(bus.writable(s));
  EXPECT_EQ(bus.send(s).error, Errc::enomsg);
  EXPECT_EQ(receive_one(bus, full).name, "$.Fill");
  EXPECT_EQ(bus.num_msgs(full), 0u);
  EXPECT_EQ(bus.num_msgs(ok), 0u);
  EXPECT_EQ(bus.num_msgs(s), 0u);
  EXPECT_EQ(send(bus, s, announcement("$.Fred", "new")).error, Errc::ok);
  EXPECT_EQ(receive_one(bus, ok).data, "new");
}

// §5.5-1 / §7.2-1: CLOSE abandons a pending Request: never delivered, no
// Status.
TEST_F(BusSendTest, CloseAbandonsPending) {
  KsockId p = bus.open(rw());
  KsockId q = bus.open(rw());
  ASSERT_TRUE(bus.bind(p, 1, "$.Fred").ok());
  fill(p);
  ASSERT_EQ(send(bus, q, request("$.Fred", "", flag::kAllOrWait)).error, Errc::eagain);
  bus.close(q);
  EXPECT_EQ(receive_one(bus, p).name, "$.Fill");
  EXPECT_EQ(bus.num_msgs(p), 0u);
  EXPECT_EQ(bus.unreplied_to(p), 0u);
}

// §5.5-2: SEND on a pending Request re-runs the ENOLCK check; ENOLCK ends
// the sending state and drops the message.
TEST_F(BusSendTest, PendingResendChecksEnolck) {
  KsockId p = bus.open(rw());
  KsockId q = bus.open(rw());
  KsockId s = bus.open(rw());
  ASSERT_TRUE(bus.bind(p, 1, "$.Fred").ok());
  fill(p);
  ASSERT_EQ(bus.max_msgs(q, 1), 1u);
  ASSERT_TRUE(bus.bind(q, 0, "$.Ann").ok());
  ASSERT_EQ(send(bus, q, request("$.Fred", "", flag::kAllOrWait)).error, Errc::eagain);
  send_ok(bus, s, announcement("$.Ann"));  // q is now full (no slot was taken yet)
  EXPECT_EQ(bus.num_msgs(q), 1u);
  EXPECT_TRUE(bus.sending(q));
  EXPECT_EQ(bus.send(q).error, Errc::enolck);
  EXPECT_FALSE(bus.sending(q));
  EXPECT_EQ(bus.send(q).error, Errc::enomsg);
  EXPECT_EQ(receive_one(bus, p).name, "$.Fill");
  EXPECT_EQ(bus.num_msgs(p), 0u);
}

// §5.5-4: the outstanding slot of a pending Request is taken only on
// delivery: while pending, the sender's room is not reduced.
TEST_F(BusSendTest, PendingRequestTakesSlotOnlyOnDelivery) {
  KsockId p = bus.open(rw());
  KsockId q = bus.open(rw());
  KsockId s = bus.open(rw());
  ASSERT_TRUE(bus.bind(p, 1, "$.Fred").ok());
  ASSERT_TRUE(bus.bind(q, 0, "$.Ann").ok());
  fill(p);
  ASSERT_EQ(bus.max_msgs(q, 1), 1u);
  SendOutcome o = send(bus, q, request("$.Fred", "", flag::kAllOrWait));
  ASSERT_EQ(o.error, Errc::eagain);
  send_ok(bus, s, announcement("$.Ann"));
  EXPECT_EQ(bus.num_msgs(q), 1u);  // delivered: no slot reserved yet
  ASSERT_TRUE(receive(bus, q).has_value());
  EXPECT_EQ(receive_one(bus, p).name, "$.Fill");  // the Request is delivered
  EXPECT_FALSE(bus.sending(q));
  Message req = receive_one(bus, p);
  EXPECT_EQ(req.hdr.id, o.id);
  EXPECT_TRUE(req.wants_us_to_reply());
  send_ok(bus, s, announcement("$.Ann"));  // now q's slot is reserved: skipped
  EXPECT_EQ(bus.num_msgs(q), 0u);
}

// §5.3-3: URGENT messages go to the front: two urgent ones are read
// newest-first; URGENT applies to Replies too.
TEST_F(BusSendTest, UrgentGoesToTheFront) {
  KsockId s = bus.open(rw());
  KsockId l = bus.open(rw());
  ASSERT_TRUE(bus.bind(l, 0, "$.Fred").ok());
  send_ok(bus, s, announcement("$.Fred", "1"));
  send_ok(bus, s, announcement("$.Fred", "2", flag::kUrgent));
  send_ok(bus, s, announcement("$.Fred", "3", flag::kUrgent));
  send_ok(bus, s, announcement("$.Fred", "4"));
  std::vector<std::string> order;
  while (auto m = receive(bus, l)) order.push_back(m->data);
  EXPECT_EQ(order, (std::vector<std::string>{"3", "2", "1", "4"}));

  KsockId p = bus.open(rw());
  ASSERT_TRUE(bus.bind(p, 1, "$.Ask").ok());
  send_ok(bus, l, request("$.Ask"));
  Message req = receive_one(bus, p);
  send_ok(bus, s, announcement("$.Fred", "before"));
  send_ok(bus, p, reply_to(req, "urgent reply", flag::kUrgent));
  Message first = receive_one(bus, l);
  EXPECT_EQ(first.data, "urgent reply");
  EXPECT_EQ(first.hdr.flags, flag::kUrgent);
  EXPECT_EQ(receive_one(bus, l).data, "before");
}

// §5.3-1 / §5.6: only-once: one copy per send; the copy is attributed to
// the most recently made matching binding.
TEST_F(BusSendTest, OnlyOnceListener) {
  KsockId s = bus.open(rw());
  KsockId l = bus.open(rw());
  ASSERT_TRUE(bus.bind(l, 0, "$.Fred").ok());
  ASSERT_TRUE(bus.bind(l, 0, "$.*").ok());
  send_ok(bus, s, announcement("$.Fred", "two copies"));
  EXPECT_EQ(bus.num_msgs(l), 2u);
  ASSERT_EQ(*bus.only_once(l, 1), 0u);
  EXPECT_EQ(bus.num_msgs(l), 2u);  // queued duplicates stay
  send_ok(bus, s, announcement("$.Fred", "one copy"));
  EXPECT_EQ(bus.num_msgs(l), 3u);
  EXPECT_EQ(drain_names(bus, l).size(), 3u);

  send_ok(bus, s, announcement("$.Fred", "attributed to $.*"));
  ASSERT_TRUE(bus.unbind(l, 0, "$.Fred").ok());
  EXPECT_EQ(bus.num_msgs(l), 1u);
  ASSERT_TRUE(bus.unbind(l, 0, "$.*").ok());
  EXPECT_EQ(bus.num_msgs(l), 0u);
}

// §5.3-1: an only-once replier that also listens gets only the
// WANT_YOU_TO_REPLY copy; an only-once requester that listens gets only the
// SENDER copy of the Reply.
TEST_F(BusSendTest, OnlyOncePrefersReplierAndSenderCopies) {
  KsockId p = bus.open(rw());
  KsockId q = bus.open(rw());
  ASSERT_TRUE(bus.bind(p, 0, "$.Fred").ok());
  ASSERT_TRUE(bus.bind(p, 1, "$.Fred").ok());
  ASSERT_TRUE(bus.bind(q, 0, "$.Fred").ok());
  ASSERT_EQ(*bus.only_once(p, 1), 0u);
  ASSERT_EQ(*bus.only_once(q, 1), 0u);
  MessageId r = send_ok(bus, q, request("$.Fred"));
  EXPECT_EQ(bus.num_msgs(p), 1u);
  Message req = receive_one(bus, p);
  EXPECT_EQ(req.hdr.flags, flag::kWantAReply | flag::kWantYouToReply);
  MessageId rep = send_ok(bus, p, reply_to(req));
  EXPECT_EQ(bus.num_msgs(p), 1u);  // the listener copy of its own Reply
  ASSERT_EQ(bus.num_msgs(q), 2u);  // listener copy of its Request, then the Reply
  Message a = receive_one(bus, q);
  EXPECT_EQ(a.hdr.id, r);
  EXPECT_EQ(a.hdr.flags, flag::kWantAReply);
  Message b = receive_one(bus, q);
  EXPECT_EQ(b.hdr.id, rep);
  EXPECT_EQ(b.hdr.in_reply_to, r);
  EXPECT_EQ(bus.num_msgs(q), 0u);
}

// §1.4 / §5.2-14a/b: a message with WANT_A_REPLY and in_reply_to gets both
// the Reply and the Request processing: it answers the addressee's
// Request (SENDER copy) and is delivered to the replier (who is the
// addressee here, as `to` must name the replier) with WANT_YOU_TO_REPLY.
TEST_F(BusSendTest, RequestThatIsAlsoAReply) {
  KsockId p = bus.open(rw());
  KsockId q = bus.open(rw());
  ASSERT_TRUE(bus.bind(p, 1, "$.Fred").ok());
  ASSERT_TRUE(bus.bind(q, 1, "$.Q.Ask").ok());
  MessageId r1 = send_ok(bus, q, request("$.Fred"));
  Message req = receive_one(bus, p);
  Message both = reply_to(req, "and you?", flag::kWantAReply);
  both.name = "$.Q.Ask";
  MessageId r2 = send_ok(bus, p, both);
  EXPECT_EQ(bus.unreplied_to(p), 0u);
  ASSERT_EQ(bus.num_msgs(q), 2u);
  Message a = receive_one(bus, q);
  EXPECT_EQ(a.hdr.id, r2);
  EXPECT_EQ(a.hdr.in_reply_to, r1);
  EXPECT_EQ(a.hdr.flags, flag::kWantAReply);
  Message b = receive_one(bus, q);
  EXPECT_EQ(b.hdr.id, r2);
  EXPECT_EQ(b.hdr.flags, flag::kWantAReply | flag::kWantYouToReply);
  EXPECT_EQ(bus.unreplied_to(q), 1u);
  Message answer = reply_to(b);
  answer.hdr.in_reply_to = r2;
  MessageId r3 = send_ok(bus, q, answer);
  Message got = receive_one(bus, p);
  EXPECT_EQ(got.hdr.id, r3);
  EXPECT_EQ(got.hdr.in_reply_to, r2);
  EXPECT_EQ(bus.unreplied_to(q), 0u);
}

// §5.3 / §14-22: only-once compares with the last pushed id only.
TEST_F(BusSendTest, OnlyOnceComparesLastPushedOnly) {
  KsockId s = bus.open(rw());
  KsockId l = bus.open(rw());
  ASSERT_TRUE(bus.bind(l, 0, "$.Fred").ok());
  ASSERT_TRUE(bus.bind(l, 0, "$.Jim").ok());
  ASSERT_EQ(*bus.only_once(l, 1), 0u);
  Message a = announcement("$.Fred");
  a.hdr.id = {7, 1};
  send_ok(bus, s, a);
  send_ok(bus, s, a);  // same preserved id, pushed last: suppressed
  EXPECT_EQ(bus.num_msgs(l), 1u);
  Message b = announcement("$.Jim");
  b.hdr.id = {7, 2};
  send_ok(bus, s, b);
  send_ok(bus, s, a);  // no longer the last pushed: delivered
  EXPECT_EQ(bus.num_msgs(l), 3u);
}

}  // namespace
}  // namespace kbus::core
