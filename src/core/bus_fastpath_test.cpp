// core/bus_fastpath_test.cpp - the core side of the one-round-trip calls
// (docs/protocol.md §4.5-4.6): take_answer (REQUEST) and next_read_batch
// (READBATCH). They must mean exactly what NEXTMSG + read would.
#include <gtest/gtest.h>

#include "core/bus.hpp"
#include "core/test_helpers.hpp"

namespace kbus::core {
namespace {

using namespace test;

class BusFastPathTest : public BusTest {};

// take_answer removes only the requester's own copy (kind SENDER, §5.3),
// not a listener copy of the same Reply, and leaves the rest in order.
TEST_F(BusFastPathTest, TakeAnswerTakesOnlyTheRequestersOwnCopy) {
  KsockId q = bus.open(rw());
  KsockId r = bus.open(rw());
  ASSERT_TRUE(bus.bind(r, 1, "$.Q").ok());
  ASSERT_TRUE(bus.bind(q, 0, "$.Q").ok());  // q hears its own request and the reply
  const MessageId id = send_ok(bus, q, request("$.Q", "ask"));
  std::string out;
  auto none = bus.take_answer(q, id, out);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(*none);
  EXPECT_TRUE(out.empty());
  Message req = receive_one(bus, r);
  send_ok(bus, r, reply_to(req, "yes", flag::kUrgent));  // urgent: listener copy goes first
  EXPECT_EQ(bus.num_msgs(q), 3u);  // request copy, reply (own), reply (listener)
  auto got = bus.take_answer(q, id, out);
  ASSERT_TRUE(got.ok());
  ASSERT_TRUE(*got);
  auto ans = decode_entire(out, kH);
  ASSERT_TRUE(ans.ok());
  EXPECT_EQ(ans->data, "yes");
  EXPECT_EQ(bus.num_msgs(q), 2u);
  // What remains: the listener copy of the Reply (urgent, at the front), then
  // the listener copy of the Request.
  Message a = receive_one(bus, q);
  EXPECT_TRUE(a.is_reply());
  Message b = receive_one(bus, q);
  EXPECT_TRUE(b.is_request());
  // The answer consumed the outstanding entry: another answer is refused.
  EXPECT_EQ(send(bus, r, reply_to(req, "again")).error, Errc::econnrefused);
  {  // a Ksock not open for reading
    KsockId wo = bus.open(write_only());
    std::string o;
    EXPECT_EQ(bus.take_answer(wo, id, o).error(), Errc::ebadf);
  }
}

// next_read_batch = NEXTMSG + whole read, repeated: owed replies are taken
// on at each pop (§4.6) and set-aside events move in after each pop (§8.4-5).
TEST_F(BusFastPathTest, ReadBatchPopsAsNextMsgWould) {
  KsockId s = bus.open(rw());
  KsockId r = bus.open(rw());
  ASSERT_TRUE(bus.bind(r, 1, "$.Q").ok());
  send_ok(bus, s, request("$.Q", "1"));
  send_ok(bus, s, request("$.Q", "2"));
  send_ok(bus, s, request("$.Q", "3"));
  std::string out;
  auto n = bus.next_read_batch(r, 2, 1u << 20, out);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 2u);
  EXPECT_EQ(bus.unreplied_to(r), 2u);
  EXPECT_EQ(bus.num_msgs(r), 1u);
  const std::uint64_t one = entire_len(kH, 3, 1);  // "$.Q", one data byte
  EXPECT_EQ(out.size(), 2 * one);
  auto first = decode_entire(std::string_view(out).substr(0, one), kH);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->data, "1");
  EXPECT_TRUE(first->wants_us_to_reply());
  // max_bytes below one message still returns one; an empty queue returns 0.
  out.clear();
  EXPECT_EQ(*bus.next_read_batch(r, 5, 1, out), 1u);
  out.clear();
  EXPECT_EQ(*bus.next_read_batch(r, 5, 1u << 20, out), 0u);
  EXPECT_TRUE(out.empty());
  KsockId wo = bus.open(write_only());
  EXPECT_EQ(bus.next_read_batch(wo, 1, 100, out).error(), Errc::ebadf);
}

TEST_F(BusFastPathTest, ReadBatchMovesSetAsideEventsInAfterEachPop) {
  KsockId l = bus.open(rw());
  KsockId b = bus.open(rw());
  ASSERT_TRUE(bus.bind(l, 0, "$.KBUS.ReplierBindEvent").ok());
  ASSERT_TRUE(bus.report_replier_binds(l, 1).ok());
  ASSERT_EQ(bus.max_msgs(l, 1), 1u);
  ASSERT_TRUE(bus.bind(b, 1, "$.Fred").ok());  // bind event fills l's queue
  bus.close(b);                                // unbind event is set aside
  EXPECT_EQ(bus.num_msgs(l), 2u);
  std::string out;
  EXPECT_EQ(*bus.next_read_batch(l, 10, 1u << 20, out), 2u);
  EXPECT_EQ(bus.num_msgs(l), 0u);
}

}  // namespace
}  // namespace kbus::core
