// The one-round-trip calls (docs/protocol.md §4.5: REQUEST, SENDWAIT,
// SENDBATCH, READBATCH): they change the cost, never the meaning.
#include <poll.h>

#include <chrono>
#include <thread>

#include "integration/fixture.hpp"

namespace kbus::test {
namespace {

using namespace std::chrono_literals;

class FastPathsTest : public KbusTest {};

// REQUEST returns the Reply; listener copies and other queued messages stay
// queued, in order (§5.3 order is kept for everything else).
TEST_F(FastPathsTest, RequestReturnsTheReplyAndLeavesTheRestQueued) {
  Ksock requester = open();
  Ksock replier = open();
  replier.bind("$.Q", true);
  requester.bind("$.Other");
  requester.bind("$.Q");  // it will also get listener copies of its request and reply
  Ksock other = open();
  other.send_msg(make_announcement("$.Other", "before"));

  std::thread t([&] {
    auto req = replier.wait_for_msg(5000ms);
    ASSERT_TRUE(req);
    replier.send_msg(*make_reply(*req, "answer"));
  });
  const Message ans = requester.request(make_request("$.Q", "question"), 5000ms);
  t.join();
  EXPECT_EQ(ans.kind(), "Reply");
  EXPECT_EQ(ans.data, "answer");
  EXPECT_EQ(ans.hdr.to, requester.id());
  EXPECT_EQ(ans.hdr.from, replier.id());
  // Still queued, in bus order: the Announcement, the listener copy of the
  // Request, the listener copy of the Reply.
  Message a = next(requester);
  EXPECT_EQ(a.data, "before");
  Message b = next(requester);
  EXPECT_TRUE(b.is_request());
  EXPECT_EQ(b.data, "question");
  Message c = next(requester);
  EXPECT_TRUE(c.is_reply());
  EXPECT_EQ(c.data, "answer");
  EXPECT_FALSE(requester.read_next_msg());
  EXPECT_EQ(requester.num_messages(), 0u);
}

// §6.1 through REQUEST: a replier that dies holding the request answers
// with a Status.
TEST_F(FastPathsTest, RequestGetsTheStatusWhenTheReplierCloses) {
  Ksock requester = open();
  auto replier = std::make_unique<Ksock>(open());
  replier->bind("$.Q", true);
  std::thread t([&] {
    auto req = replier->wait_for_msg(5000ms);
    ASSERT_TRUE(req);
    replier->close();  // popped, never answered: Ignored
  });
  const Message ans = requester.request(make_request("$.Q"), 5000ms);
  t.join();
  EXPECT_EQ(ans.kind(), "Status");
  EXPECT_EQ(ans.name, "$.KBUS.Replier.Ignored");
}

TEST_F(FastPathsTest, RequestErrorsAreTheSendErrors) {
  Ksock requester = open();
  EXPECT_EQ(err(requester.try_request(make_request("$.Nobody"))), Errc::eaddrnotavail);
  EXPECT_EQ(err(requester.try_request(make_announcement("$.Nobody"))), Errc::einval);
  Ksock ro = open(0, Mode::read);
  EXPECT_EQ(err(ro.try_request(make_request("$.Nobody"))), Errc::ebadf);
}

// A timed-out REQUEST leaves the answer to be read later, and the Ksock
// stays usable.
TEST_F(FastPathsTest, RequestTimeoutLeavesTheAnswerQueued) {
  Ksock requester = open();
  Ksock replier = open();
  replier.bind("$.Q", true);
  EXPECT_EQ(err(requester.try_request(make_request("$.Q", "late"), 50ms)), Errc::etimedout);
  auto req = replier.read_next_msg();
  ASSERT_TRUE(req);
  replier.send_msg(*make_reply(*req, "late answer"));
  auto ans = requester.wait_for_msg(5000ms);
  ASSERT_TRUE(ans);
  EXPECT_EQ(ans->data, "late answer");
  EXPECT_EQ(requester.ksock_id(), requester.id());
}

// SENDWAIT: a replier's loop in one round trip per request.
TEST_F(FastPathsTest, SendAndWaitSendsThenReceives) {
  Ksock a = open();
  Ksock b = open();
  b.bind("$.Ping");
  a.bind("$.Pong");
  b.send_msg(make_announcement("$.Ping", "queued first"));  // b hears itself
  auto r = b.send_and_wait(make_announcement("$.Pong", "hi"), 5000ms);
  EXPECT_FALSE(r.sent.is_zero());
  ASSERT_TRUE(r.received);
  EXPECT_EQ(r.received->data, "queued first");
  auto at_a = a.read_next_msg();
  ASSERT_TRUE(at_a);
  EXPECT_EQ(at_a->hdr.id, r.sent);
  // Nothing queued: times out with nothing received, message still sent.
  auto r2 = b.send_and_wait(make_announcement("$.Pong", "again"), 30ms);
  EXPECT_FALSE(r2.received);
  EXPECT_TRUE(a.read_next_msg());
  EXPECT_EQ(err(b.try_send_and_wait(make_announcement("$.Bad*"))), Errc::ebadmsg);
}

// SENDBATCH = SENDMSG repeated, stopping at the first failure.
TEST_F(FastPathsTest, SendBatchStopsAtTheFirstFailure) {
  Ksock s = open();
  Ksock l = open();
  l.bind("$.B");
  std::vector<Message> msgs = {make_announcement("$.B", "1"), make_announcement("$.B", "2"),
                               make_request("$.NoReplier"), make_announcement("$.B", "4")};
  Ksock::SendBatch r = s.try_send_msgs(msgs);
  EXPECT_EQ(r.error, Errc::eaddrnotavail);
  ASSERT_EQ(r.ids.size(), 3u);
  EXPECT_EQ(r.ids[1].serial_num, r.ids[0].serial_num + 1);
  EXPECT_EQ(r.ids[2].serial_num, r.ids[1].serial_num + 1);  // assigned, then failed (§5.2-7)
  EXPECT_EQ(s.last_sent(), r.ids[2]);
  auto got = l.read_msgs(10);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].data, "1");
  EXPECT_EQ(got[1].data, "2");
  EXPECT_THROW(s.send_msgs(msgs), Error);
  auto ok = s.send_msgs({make_announcement("$.B", "x"), make_announcement("$.B", "y")});
  EXPECT_EQ(ok.size(), 2u);
}

// A batch longer than one frame kbusd accepts (1 MiB by default) goes in
// several SENDBATCH frames, in order; a message too long for any frame is
// EMSGSIZE, as kbusd answers any over-long message, and the Ksock lives on.
TEST_F(FastPathsTest, LongBatchesAreSplitAndOverlongMessagesAreEMSGSIZE) {
  Ksock s = open();
  Ksock l = open();
  l.bind("$.B");
  l.set_max_messages(5000);
  std::vector<Message> msgs;
  for (int i = 0; i < 3000; ++i) msgs.push_back(make_announcement("$.B", std::string(500, 'x')));
  const auto ids = s.send_msgs(msgs);  // ~1.8 MB in all
  ASSERT_EQ(ids.size(), 3000u);
  for (std::size_t i = 1; i < ids.size(); ++i) EXPECT_EQ(ids[i].serial_num, ids[0].serial_num + i);
  EXPECT_EQ(l.num_messages(), 3000u);

  const Message huge = make_announcement("$.B", std::string(2u << 20, 'h'));
  EXPECT_EQ(err(s.try_send_msg(huge)), Errc::emsgsize);
  EXPECT_EQ(err(s.try_request(make_request("$.B", std::string(2u << 20, 'h')))), Errc::emsgsize);
  Ksock::SendBatch r =
      s.try_send_msgs({make_announcement("$.B", "a"), huge, make_announcement("$.B", "c")});
  EXPECT_EQ(r.error, Errc::emsgsize);
  ASSERT_EQ(r.ids.size(), 2u);  // "a" was sent, "huge" attempted, "c" not
  EXPECT_EQ(r.ids[1], MessageId{});
  EXPECT_EQ(l.num_messages(), 3001u);
  EXPECT_EQ(s.send_msg(make_announcement("$.B", "still here")).serial_num, r.ids[0].serial_num + 1);
}

// READBATCH pops in order, bounded by count and bytes, at least one.
TEST_F(FastPathsTest, ReadBatchIsBoundedByCountAndBytes) {
  Ksock s = open();
  Ksock l = open();
  l.bind("$.B");
  for (int i = 0; i < 5; ++i) s.send_msg(make_announcement("$.B", std::to_string(i)));
  auto two = l.read_msgs(2);
  ASSERT_EQ(two.size(), 2u);
  EXPECT_EQ(two[0].data, "0");
  EXPECT_EQ(two[1].data, "1");
  EXPECT_EQ(l.num_messages(), 3u);
  auto one = l.read_msgs(10, 1);  // max_bytes below one message: still one
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].data, "2");
  auto rest = l.wait_for_msgs(10, 1000ms);
  ASSERT_EQ(rest.size(), 2u);
  EXPECT_EQ(rest[1].data, "4");
  EXPECT_TRUE(l.read_msgs(10).empty());
  EXPECT_TRUE(l.wait_for_msgs(10, 20ms).empty());
  // The poll fd follows: nothing queued, not readable.
  pollfd p{l.fileno(), POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 0), 0);
  Ksock wo = open(0, Mode::write);
  EXPECT_EQ(err(wo.try_read_msgs(1)), Errc::ebadf);
}

// A blocked batch wait is answered as soon as something arrives.
TEST_F(FastPathsTest, WaitForMsgsWakesOnArrival) {
  Ksock s = open();
  Ksock l = open();
  l.bind("$.B");
  std::thread t([&] {
    auto got = l.wait_for_msgs(10, 5000ms);
    ASSERT_FALSE(got.empty());
    EXPECT_EQ(got[0].data, "wake");
  });
  s.send_msg(make_announcement("$.B", "wake"));
  t.join();
}

}  // namespace
}  // namespace kbus::test
