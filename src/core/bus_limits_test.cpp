// core/bus_limits_test.cpp - the bus rules of docs/reliability.md: Ksocks
// per bus, queued bytes per Ksock, and who may send a Reply
// (docs/decisions.md D10).
#include "core/bus.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/test_helpers.hpp"

namespace kbus::core {
namespace {

using namespace test;

BusLimits limits(std::uint32_t max_ksocks, std::uint64_t max_queued_bytes) {
  BusLimits l;
  l.max_msg_size = 409600;
  l.max_ksocks = max_ksocks;
  l.max_queued_bytes = max_queued_bytes;
  return l;
}

// ---------------------------------------------------------------- Ksocks per bus

// docs/decisions.md D16, docs/reliability.md §4: by default no limit that
// the original did not have (KBUS-SPEC.md §4.7 lists the original's).
TEST(BusLimits, DefaultsAreDocumented) {
  BusLimits l;
  EXPECT_EQ(l.max_ksocks, 0u);
  EXPECT_EQ(l.max_queued_bytes, 0u);
  EXPECT_EQ(l.default_max_msgs, 100u);
  EXPECT_EQ(l.set_aside_capacity, 1000u);
}

// KBUS-SPEC.md §4.6 MAXMSGS, §5.1: with the default limits a Ksock's queue
// is bounded by its message count only, as in the original: one program
// queues 50 messages of 400 kB for one Ksock with MAXMSGS 100 and all 50
// are queued (20 MB; the old 16 MiB byte budget refused the 41st).
TEST(BusLimits, DefaultsQueueFiftyMessagesOf400kB) {
  BusLimits lim;
  lim.max_msg_size = 409600;
  Bus bus(0, lim);
  KsockId l = bus.open(rw());
  KsockId s = bus.open(rw());
  ASSERT_EQ(bus.max_msgs(l, 100), 100u);
  ASSERT_TRUE(bus.bind(l, 0, "$.Big").ok());
  const std::string data(400 * 1000, 'b');
  for (int i = 0; i < 50; ++i)
    send_ok(bus, s, announcement("$.Big", data, flag::kAllOrFail));  // EBUSY if it were full
  EXPECT_EQ(bus.num_msgs(l), 50u);
  EXPECT_GT(bus.queued_bytes(l), 50u * 400 * 1000);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(receive_one(bus, l).data.size(), data.size());
  bus.check_invariants();
}

// KBUS-SPEC.md §1.2: the original had no per-bus count of Ksocks; with the
// default limits a bus holds more than 4096 (the old default).
TEST(BusLimits, DefaultsOpenMoreThan4096Ksocks) {
  Bus bus(0);
  for (int i = 0; i < 5000; ++i) ASSERT_TRUE(bus.try_open(rw()).ok()) << i;
  EXPECT_EQ(bus.ksock_count(), 5000u);
}

TEST(BusLimits, KsocksPerBusZeroOneMany) {
  Bus one(0, limits(1, 0));
  auto a = one.try_open(rw());
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a, 1u);
  EXPECT_EQ(one.try_open(rw()).error(), Errc::enfile);
  EXPECT_EQ(one.ksock_count(), 1u);
  one.close(*a);
  auto b = one.try_open(rw());
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(*b, 2u);  // §1.2-2: a refused open consumed no id
  one.check_invariants();

  Bus many(0, limits(50, 0));
  std::vector<KsockId> ids;
  for (int i = 0; i < 50; ++i) {
    auto k = many.try_open(rw());
    ASSERT_TRUE(k.ok()) << i;
    ids.push_back(*k);
  }
  EXPECT_EQ(many.try_open(rw()).error(), Errc::enfile);
  for (KsockId k : ids) many.close(k);
  EXPECT_EQ(many.ksock_count(), 0u);
  EXPECT_TRUE(many.try_open(rw()).ok());

  Bus unlimited(0, limits(0, 0));
  for (int i = 0; i < 5000; ++i) ASSERT_TRUE(unlimited.try_open(rw()).ok());
}

// ---------------------------------------------------------------- queued bytes

class QueuedBytesTest : public ::testing::Test {
 protected:
  void TearDown() override { bus.check_invariants(); }
  // Room for two 1000-byte messages and a bit: the third makes it full.
  Bus bus{0, limits(0, 2 * (88 + 6 + 1000) + 10)};
  std::string kilo = std::string(1000, 'x');
};

TEST_F(QueuedBytesTest, CountsNameDataAndHeader) {
  KsockId l = bus.open(rw());
  KsockId s = bus.open(rw());
  ASSERT_TRUE(bus.bind(l, 0, "$.Fred").ok());
  EXPECT_EQ(bus.queued_bytes(l), 0u);
  send_ok(bus, s, announcement("$.Fred", kilo));
  EXPECT_EQ(bus.queued_bytes(l), 88u + 6 + 1000);
  send_ok(bus, s, announcement("$.Fred"));
  EXPECT_EQ(bus.queued_bytes(l), 2 * 88u + 12 + 1000);
  receive_one(bus, l);
  EXPECT_EQ(bus.queued_bytes(l), 88u + 6);
  receive_one(bus, l);
  EXPECT_EQ(bus.queued_bytes(l), 0u);
  EXPECT_EQ(bus.queued_bytes(s), 0u);
}

// A listener whose queue holds the byte limit misses further messages
// silently (§5.2-13), far below its MAXMSGS; reading frees the room.
TEST_F(QueuedBytesTest, AListenerOverTheByteLimitIsFull) {
  KsockId l = bus.open(rw());
  KsockId s = bus.open(rw());
  ASSERT_EQ(bus.max_msgs(l, 1000000), 1000000u);
  ASSERT_TRUE(bus.bind(l, 0, "$.Fred").ok());
  for (int i = 0; i < 5; ++i) send_ok(bus, s, announcement("$.Fred", kilo));
  EXPECT_EQ(bus.num_msgs(l), 3u);  // full once at or over the limit
  EXPECT_EQ(send(bus, s, announcement("$.Fred", "x", flag::kAllOrFail)).error, Errc::ebusy);
  receive_one(bus, l);
  receive_one(bus, l);
  send_ok(bus, s, announcement("$.Fred", "x", flag::kAllOrFail));
  EXPECT_EQ(bus.num_msgs(l), 2u);
}

// A replier over the limit: Requests fail with EBUSY (§5.2-12), pending
// with ALL_OR_WAIT until it reads.
TEST_F(QueuedBytesTest, AReplierOverTheByteLimitIsFull) {
  KsockId r = bus.open(rw());
  KsockId s = bus.open(rw());
  ASSERT_EQ(bus.max_msgs(s, 1000), 1000u);
  ASSERT_TRUE(bus.bind(r, 1, "$.Fred").ok());
  for (int i = 0; i < 3; ++i) send_ok(bus, s, request("$.Fred", kilo));
  EXPECT_EQ(send(bus, s, request("$.Fred")).error, Errc::ebusy);
  EXPECT_EQ(send(bus, s, request("$.Fred", "", flag::kAllOrWait)).error, Errc::eagain);
  EXPECT_TRUE(bus.sending(s));
  Message req = receive_one(bus, r);  // frees room: the retry completes
  EXPECT_FALSE(bus.sending(s));
  EXPECT_EQ(bus.num_msgs(r), 3u);
  send_ok(bus, r, reply_to(req));
}

// A requester whose own queue is over the byte limit cannot send a Request
// (§5.2-5, ENOLCK), but still gets the Replies it is owed (bypassing the
// count, not the bytes: the answer is its reserved slot, §5.1).
TEST_F(QueuedBytesTest, ARequesterOverTheByteLimit) {
  KsockId q = bus.open(rw());
  KsockId r = bus.open(rw());
  KsockId s = bus.open(rw());
  ASSERT_TRUE(bus.bind(r, 1, "$.Fred").ok());
  ASSERT_TRUE(bus.bind(q, 0, "$.Ann").ok());
  MessageId id = send_ok(bus, q, request("$.Fred"));
  for (int i = 0; i < 3; ++i) send_ok(bus, s, announcement("$.Ann", kilo));
  EXPECT_EQ(send(bus, q, request("$.Fred")).error, Errc::enolck);
  Message req = receive_one(bus, r);
  EXPECT_EQ(send(bus, r, reply_to(req)).error, Errc::ebusy);
  // The Request still gets its one answer when the replier goes.
  bus.close(r);
  EXPECT_EQ(bus.num_msgs(q), 3u + 1);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(receive_one(bus, q).name, "$.Ann");
  Message st = receive_one(bus, q);
  EXPECT_EQ(st.name, status_name::kReplierIgnored);
  EXPECT_EQ(st.hdr.in_reply_to, id);
}

// Status messages bypass every fullness check (§6.2), bytes included: a
// Request is always answered.
TEST_F(QueuedBytesTest, StatusesBypassTheByteLimit) {
  KsockId q = bus.open(rw());
  KsockId r = bus.open(rw());
  KsockId s = bus.open(rw());
  ASSERT_TRUE(bus.bind(r, 1, "$.Fred").ok());
  ASSERT_TRUE(bus.bind(q, 0, "$.Ann").ok());
  MessageId id = send_ok(bus, q, request("$.Fred"));
  for (int i = 0; i < 3; ++i) send_ok(bus, s, announcement("$.Ann", kilo));
  ASSERT_TRUE(bus.unbind(r, 1, "$.Fred").ok());
  ASSERT_EQ(bus.num_msgs(q), 4u);
  for (int i = 0; i < 3; ++i) receive_one(bus, q);
  Message st = receive_one(bus, q);
  EXPECT_EQ(st.name, status_name::kReplierUnbound);
  EXPECT_EQ(st.hdr.in_reply_to, id);
}

TEST_F(QueuedBytesTest, UnbindAndCloseReleaseTheBytes) {
  KsockId l = bus.open(rw());
  KsockId s = bus.open(rw());
  ASSERT_TRUE(bus.bind(l, 0, "$.Fred").ok());
  ASSERT_TRUE(bus.bind(l, 0, "$.Jim").ok());
  send_ok(bus, s, announcement("$.Fred", kilo));
  send_ok(bus, s, announcement("$.Jim", "j"));
  ASSERT_TRUE(bus.unbind(l, 0, "$.Fred").ok());
  EXPECT_EQ(bus.queued_bytes(l), 88u + 5 + 1);
  bus.close(l);
  bus.check_invariants();
}

// A data_len near 4 GiB wrapped the padded length to 0, passed the
// message-size check and made the parser reserve 4 GiB (found by
// fuzz/fuzz_message): it is EMSGSIZE, in either ABI, entire or pointy.
TEST(BusLimits, HugeDataLengthsAreEMSGSIZE) {
  Bus bus(0);
  for (std::uint32_t h : {kHeaderLen64, kHeaderLen32}) {
    OpenOptions o;
    o.header_len = h;
    KsockId k = bus.open(o);
    for (std::uint32_t d : {0xFFFFFFFFu, 0xFFFFFFFDu, 0xFFFFFFFCu, 0x80000000u, 409600u}) {
      RawHeader r;
      r.name_len = 6;
      r.data_len = d;
      EXPECT_EQ(bus.write(k, raw_header(r, h)).error(), Errc::emsgsize) << h << " " << d;
      r.name_ptr = 1;
      r.data_ptr = 2;
      EXPECT_EQ(bus.write(k, raw_header(r, h)).error(), Errc::emsgsize) << h << " " << d;
    }
    EXPECT_EQ(bus.queued_bytes(k), 0u);
  }
  bus.check_invariants();
}

// ---------------------------------------------------------------- who may reply (D10)

class ReplyHolderTest : public BusTest {
 protected:
  void SetUp() override {
    r = bus.open(rw());
    q = bus.open(rw());
    x = bus.open(rw());
    ASSERT_TRUE(bus.bind(r, 1, "$.Fred").ok());
  }
  KsockId r = 0, q = 0, x = 0;
};

// A replier that unbinds after popping still owes the answer (§7.1-4) and
// may still send it; nobody else may.
TEST_F(ReplyHolderTest, HolderMayReplyAfterUnbind) {
  send_ok(bus, q, request("$.Fred"));
  Message req = receive_one(bus, r);
  ASSERT_TRUE(bus.unbind(r, 1, "$.Fred").ok());
  ASSERT_TRUE(bus.bind(x, 1, "$.Fred").ok());  // the new replier does not hold it
  EXPECT_EQ(send(bus, x, reply_to(req)).error, Errc::econnrefused);
  send_ok(bus, r, reply_to(req));
  EXPECT_TRUE(receive_one(bus, q).is_reply());
}

// A listener copy of a Request gives no right to answer it.
TEST_F(ReplyHolderTest, ListenerCopyGivesNoRight) {
  ASSERT_TRUE(bus.bind(x, 0, "$.Fred").ok());
  send_ok(bus, q, request("$.Fred"));
  Message copy = receive_one(bus, x);
  EXPECT_FALSE(copy.wants_us_to_reply());
  Message forged = copy;
  forged.hdr.flags = 0;
  forged.hdr.in_reply_to = copy.hdr.id;
  forged.hdr.to = copy.hdr.from;
  EXPECT_EQ(send(bus, x, forged).error, Errc::econnrefused);
  EXPECT_EQ(bus.num_msgs(q), 0u);
}

// A proxy (as a Limpet is, KBUS-SPEC.md §10.5-2) pops the Request as the
// replier, so it holds it and may answer with whatever its peer sent back,
// including a Reply that carries a network id and orig_from.
TEST_F(ReplyHolderTest, AProxyHoldsWhatItPopped) {
  MessageId id = send_ok(bus, q, request("$.Fred"));
  Message req = receive_one(bus, r);
  Message answer = reply_to(req, "from far away");
  answer.hdr.orig_from = {7, 3};
  answer.name = "$.KBUS.Replier.NotSameKsock";  // a Limpet-made error Reply
  send_ok(bus, r, answer);
  Message got = receive_one(bus, q);
  EXPECT_EQ(got.hdr.in_reply_to, id);
  EXPECT_EQ(got.hdr.from, r);
  EXPECT_EQ(got.hdr.orig_from, (OrigFrom{7, 3}));
}

// After the holder closes (Ignored sent), nobody can answer any more.
TEST_F(ReplyHolderTest, NobodyAnswersAfterTheHolderCloses) {
  send_ok(bus, q, request("$.Fred"));
  Message req = receive_one(bus, r);
  bus.close(r);
  EXPECT_EQ(receive_one(bus, q).name, status_name::kReplierIgnored);
  EXPECT_EQ(send(bus, x, reply_to(req)).error, Errc::econnrefused);
}

// D13: a Request with an explicit id (§3.2-3, as Limpets send) may not reuse
// the id of one of the sender's Requests still awaiting its answer - the
// replier could answer only one of them. Once answered, the id is free.
TEST_F(ReplyHolderTest, AnIdStillAwaitingItsAnswerIsEADDRINUSE) {
  ASSERT_TRUE(bus.bind(x, 1, "$.Jim").ok());
  Message req = request("$.Fred");
  req.hdr.id = {7, 1};
  EXPECT_EQ(send_ok(bus, q, req), (MessageId{7, 1}));
  EXPECT_EQ(send(bus, q, req).error, Errc::eaddrinuse);
  Message other = request("$.Jim");
  other.hdr.id = {7, 1};
  EXPECT_EQ(send(bus, q, other).error, Errc::eaddrinuse);  // to another replier too
  send_ok(bus, x, req);  // another sender may
  Message got = receive_one(bus, r);
  EXPECT_EQ(bus.unreplied_to(r), 1u);
  bus.check_invariants();
  send_ok(bus, r, reply_to(got));
  ASSERT_EQ(receive_one(bus, q).hdr.in_reply_to, (MessageId{7, 1}));
  EXPECT_EQ(send_ok(bus, q, req), (MessageId{7, 1}));  // answered: free again
  EXPECT_EQ(bus.unreplied_to(r), 0u);
  bus.check_invariants();
}

// 'from' is always the sender's id (§5.2-6), whatever was written.
TEST_F(ReplyHolderTest, FromIsAlwaysTheSender) {
  ASSERT_TRUE(bus.bind(q, 0, "$.Ann").ok());
  Message m = announcement("$.Ann");
  m.hdr.from = r;
  send_ok(bus, x, m);
  EXPECT_EQ(receive_one(bus, q).hdr.from, x);
  Message req = request("$.Fred");
  req.hdr.from = x;
  send_ok(bus, q, req);
  EXPECT_EQ(receive_one(bus, r).hdr.from, q);
}

}  // namespace
}  // namespace kbus::core
