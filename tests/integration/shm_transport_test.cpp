// The generic receive calls over both negotiated transports: the shared-
// memory receive queue (docs/protocol.md §7) and the socket only
// (KBUS_TRANSPORT=socket). Every rule they touch must read the same.
// No timing: each step waits on a message, a reply or a readiness fd.
#include <poll.h>
#include <signal.h>
#include <stdlib.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <thread>

#include "integration/fixture.hpp"

namespace kbus::test {
namespace {

using namespace std::chrono_literals;

// The shared-memory rings this process has mapped (the client's mappings
// are named after kbusd's memfd).
std::vector<std::uintptr_t> ring_mappings() {
  std::vector<std::uintptr_t> out;
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    if (line.find("memfd:kbus-ring") == std::string::npos) continue;
    out.push_back(std::stoull(line.substr(0, line.find('-')), nullptr, 16));
  }
  return out;
}

class ShmTransportTest : public KbusTest, public ::testing::WithParamInterface<bool> {
 protected:
  void SetUp() override {
    if (GetParam())
      ::unsetenv("KBUS_TRANSPORT");
    else
      ::setenv("KBUS_TRANSPORT", "socket", 1);
  }
  void TearDown() override {
    ::unsetenv("KBUS_TRANSPORT");
    KbusTest::TearDown();
  }
  bool shm() const { return GetParam(); }
};

INSTANTIATE_TEST_SUITE_P(Transports, ShmTransportTest, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "shm" : "socket"; });

// docs/protocol.md §7: negotiated; the socket-only choice maps no ring.
TEST_P(ShmTransportTest, TheRingIsNegotiatedOnlyWhenWanted) {
  const auto before = ring_mappings().size();
  Ksock r = open();
  (void)r.read_next_msg();  // the first generic read sets the transport up
  EXPECT_EQ(ring_mappings().size(), before + (shm() ? 1 : 0));
  Ksock w = open(0, Mode::write);  // a Ksock that cannot read never gets one
  (void)w.fileno();
  EXPECT_EQ(ring_mappings().size(), before + (shm() ? 1 : 0));
}

// KBUS-SPEC.md §5.3: messages are read in the order they were queued;
// URGENT ones go to the front of the queue, even when the others are
// already in the ring.
TEST_P(ShmTransportTest, MessagesAreReadInQueueOrderUrgentFirst) {
  Ksock r = open();
  Ksock s = open();
  r.bind("$.Order");
  EXPECT_EQ(r.read_next_msg(), std::nullopt);
  std::vector<MessageId> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(s.send_msg(make_announcement("$.Order", std::to_string(i))));
  Message urgent = make_announcement("$.Order", "u");
  urgent.hdr.flags |= flag::kUrgent;
  const MessageId uid = s.send_msg(urgent);
  EXPECT_EQ(next(r).hdr.id, uid);
  for (const auto& id : ids) EXPECT_EQ(next(r).hdr.id, id);
  EXPECT_EQ(r.read_next_msg(), std::nullopt);
  EXPECT_EQ(r.num_messages(), 0u);
}

// More messages than the ring holds (16), and messages longer than a slot
// (920 data bytes: 1020 in all, more than the 1008 a slot takes):
// all arrive, in order, each once.
TEST_P(ShmTransportTest, LongQueuesAndLongMessagesArriveWhole) {
  Ksock r = open();
  Ksock s = open();
  r.bind("$.Many");
  std::vector<MessageId> ids;
  for (int i = 0; i < 40; ++i) {
    const std::string data = i % 7 == 3 ? std::string(920, 'x') : std::to_string(i);
    ids.push_back(s.send_msg(make_announcement("$.Many", data)));
  }
  for (int i = 0; i < 40; ++i) {
    Message m = next(r);
    EXPECT_EQ(m.hdr.id, ids[i]);
    EXPECT_EQ(m.data.size(), i % 7 == 3 ? 920u : std::to_string(i).size());
  }
  EXPECT_EQ(r.read_next_msg(), std::nullopt);
}

// KBUS-SPEC.md §5.2-12 with §4.6 MAXMSGS: the count a sender meets is
// exact - a message read from the ring frees its place at once.
TEST_P(ShmTransportTest, AMessageReadFreesItsPlaceForTheNextSender) {
  Ksock r = open();
  Ksock s = open();
  r.bind("$.Q", true);
  ASSERT_EQ(r.set_max_messages(2), 2u);
  (void)r.read_next_msg();
  s.send_msg(make_request("$.Q", "1"));
  s.send_msg(make_request("$.Q", "2"));
  EXPECT_EQ(err(s.try_send_msg(make_request("$.Q", "3"))), Errc::ebusy);
  Message m = next(r);  // from the ring: no word to kbusd
  EXPECT_EQ(m.data, "1");
  // Popped: its place is free, and the Request is owed a reply.
  EXPECT_TRUE(s.try_send_msg(make_request("$.Q", "3")));
  EXPECT_EQ(r.num_unreplied_to(), 1u);
  EXPECT_EQ(r.num_messages(), 2u);
}

// §5.2 ALL_OR_WAIT: a sender waiting for room goes on when the reader
// takes a message from its ring.
TEST_P(ShmTransportTest, AWaitingSenderGoesOnWhenTheReaderTakes) {
  Ksock r = open();
  Ksock s = open();
  r.bind("$.W");
  ASSERT_EQ(r.set_max_messages(1), 1u);
  (void)r.read_next_msg();
  s.send_msg(make_announcement("$.W", "1"));
  Message second = make_announcement("$.W", "2");
  second.hdr.flags |= flag::kAllOrWait;
  EXPECT_EQ(err(s.try_send_msg(second)), Errc::eagain);  // pending (§5.2-9)
  EXPECT_EQ(s.wait(ready::kWritable, 0ms), 0u);
  EXPECT_EQ(next(r).data, "1");
  // The pending send completes; the sender becomes writable again.
  EXPECT_EQ(s.wait(ready::kWritable, 10s), ready::kWritable);
  auto m = r.wait_for_msg(10s);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->data, "2");
}

// §4.4: the Ksock's fd is readable exactly when a message is waiting, also
// after the last one was taken from the ring without a word to kbusd.
TEST_P(ShmTransportTest, PollReadinessFollowsTheQueue) {
  Ksock r = open();
  Ksock s = open();
  r.bind("$.P");
  const int fd = r.fileno();
  (void)r.read_next_msg();
  EXPECT_FALSE(poll_readable(fd));
  s.send_msg(make_announcement("$.P", "1"));
  s.send_msg(make_announcement("$.P", "2"));
  EXPECT_EQ(r.wait(ready::kReadable, 10s), ready::kReadable);
  EXPECT_TRUE(poll_readable(fd));
  EXPECT_EQ(next(r).data, "1");
  EXPECT_TRUE(poll_readable(fd));  // one still waits
  EXPECT_EQ(next(r).data, "2");
  EXPECT_FALSE(poll_readable(fd));
  s.send_msg(make_announcement("$.P", "3"));
  pollfd p{fd, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 10000), 1);
  EXPECT_EQ(next(r).data, "3");
  EXPECT_FALSE(poll_readable(fd));
  // UNBIND removes what came through that binding (§7.1): not readable.
  s.send_msg(make_announcement("$.P", "4"));
  ASSERT_EQ(r.wait(ready::kReadable, 10s), ready::kReadable);
  r.unbind("$.P");
  settle(r);
  EXPECT_FALSE(poll_readable(fd));
  EXPECT_EQ(r.read_next_msg(), std::nullopt);
}

// docs/protocol.md §4.6 READBATCH, which the limpet reads with: up to
// `max_count`, never past `max_bytes` except for the first message, every
// message once and in queue order, short messages and messages longer than
// a ring's slot (920 data bytes) alike, on both transports (with a ring,
// kbusd rebuilds it after each batch). The fd stays readable exactly while
// messages wait, also when a batch stopped at its count.
TEST_P(ShmTransportTest, BatchReadsTakeInOrderWithinTheirLimits) {
  Ksock r = open();
  Ksock s = open();
  r.bind("$.Batch");
  const int fd = r.fileno();
  EXPECT_TRUE(r.read_msgs(8).empty());
  std::vector<MessageId> ids;
  std::vector<std::size_t> sizes;
  for (int i = 0; i < 30; ++i) {
    const std::string data = i % 9 == 4 ? std::string(920, 'L') : std::string(100 + i, 'x');
    ids.push_back(s.send_msg(make_announcement("$.Batch", data)));
    sizes.push_back(data.size());
  }
  ASSERT_EQ(r.wait(ready::kReadable, 10s), ready::kReadable);
  std::vector<Message> got;
  auto take = [&](std::uint32_t count, std::uint32_t bytes) {
    auto batch = r.read_msgs(count, bytes);
    EXPECT_FALSE(batch.empty());  // messages wait: at least one
    EXPECT_LE(batch.size(), count);
    std::size_t total = 0;
    for (const Message& m : batch)
      total += entire_len(kNativeHeaderLen, static_cast<std::uint32_t>(m.name.size()),
                          static_cast<std::uint32_t>(m.data.size()));
    if (batch.size() > 1) {
      EXPECT_LE(total, bytes);
    }
    for (Message& m : batch) got.push_back(std::move(m));
  };
  take(3, 1u << 20);
  EXPECT_TRUE(poll_readable(fd));  // stopped at its count: the rest still shows
  take(100, 1);                    // one, however small max_bytes is
  take(100, 1500);                 // at most 1500 bytes, unless one
  while (got.size() < ids.size()) take(7, 4096);
  ASSERT_EQ(got.size(), ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(got[i].hdr.id, ids[i]) << "message " << i;
    EXPECT_EQ(got[i].data.size(), sizes[i]) << "message " << i;
  }
  EXPECT_FALSE(poll_readable(fd));
  EXPECT_TRUE(r.read_msgs(8).empty());
  EXPECT_EQ(r.num_messages(), 0u);
}

// §4.6 READBATCH with wait: returns what is queued at once, waits for the
// first message otherwise, and comes back empty when its time is up.
TEST_P(ShmTransportTest, BatchWaitsForTheFirstMessage) {
  Ksock r = open();
  Ksock s = open();
  r.bind("$.BatchWait");
  EXPECT_TRUE(r.wait_for_msgs(8, 0ms).empty());
  const MessageId a = s.send_msg(make_announcement("$.BatchWait", "a"));
  const MessageId b = s.send_msg(make_announcement("$.BatchWait", "b"));
  auto batch = r.wait_for_msgs(8, 10s);
  ASSERT_FALSE(batch.empty());
  if (batch.size() == 1) batch.push_back(next(r));
  ASSERT_EQ(batch.size(), 2u);
  EXPECT_EQ(batch[0].hdr.id, a);
  EXPECT_EQ(batch[1].hdr.id, b);
  std::thread later([&] { s.send_msg(make_announcement("$.BatchWait", "c")); });
  batch = r.wait_for_msgs(8, 10s);
  later.join();
  ASSERT_EQ(batch.size(), 1u);
  EXPECT_EQ(batch[0].data, "c");
  EXPECT_TRUE(r.wait_for_msgs(8, 20ms).empty());
}

// Request/reply through the generic calls on both ends (§5.2, §5.3).
TEST_P(ShmTransportTest, RequestAndReplyThroughTheGenericCalls) {
  Ksock replier = open();
  Ksock requester = open();
  replier.bind("$.Echo", true);
  for (int i = 0; i < 50; ++i) {
    const MessageId id = requester.send_msg(make_request("$.Echo", std::to_string(i)));
    auto req = replier.wait_for_msg(10s);
    ASSERT_TRUE(req);
    EXPECT_EQ(req->hdr.id, id);
    EXPECT_TRUE(req->hdr.flags & flag::kWantYouToReply);
    replier.send_msg(*make_reply(*req, req->data));
    auto rep = requester.wait_for_msg(10s);
    ASSERT_TRUE(rep);
    EXPECT_EQ(rep->hdr.in_reply_to, id);
    EXPECT_EQ(rep->data, std::to_string(i));
  }
  EXPECT_EQ(replier.num_unreplied_to(), 0u);
}

// §7.2: a replier killed while its Requests sit in its ring (never taken)
// gives GoneAway for each; the one it took and did not answer, Ignored.
TEST_P(ShmTransportTest, KilledReplierWithRequestsInItsRingAnswersEach) {
  Actor replier([dir = daemon_.dir()](Channel& ch) {
    Ksock r = Ksock::open(0, Mode::read_write, dir);
    r.bind("$.Dies", true);
    (void)r.read_next_msg();
    ch.say("bound");
    if (ch.hear(60s) != "take") return 1;
    auto m = r.wait_for_msg(30s);
    ch.say(m ? m->data : "none");
    ch.hear(60s);  // killed while waiting here
    return 0;
  });
  ASSERT_EQ(replier.hear(), "bound");
  Ksock s = open();
  std::vector<MessageId> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(s.send_msg(make_request("$.Dies", std::to_string(i))));
  replier.tell("take");
  EXPECT_EQ(replier.hear(), "0");
  replier.kill(SIGKILL);
  EXPECT_EQ(replier.wait(), 128 + SIGKILL);
  const std::vector<std::pair<std::string_view, MessageId>> expected = {
      {status_name::kReplierGoneAway, ids[1]},
      {status_name::kReplierGoneAway, ids[2]},
      {status_name::kReplierIgnored, ids[0]},
  };
  for (const auto& [name, id] : expected) {
    auto m = s.wait_for_msg(10s);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->name, name);
    EXPECT_EQ(m->hdr.in_reply_to, id);
  }
  EXPECT_EQ(s.read_next_msg(), std::nullopt);  // exactly one answer each
}

// A client that scribbles on its ring's state word is disconnected at the
// next operation on the bus; kbusd goes on serving everyone else.
TEST_P(ShmTransportTest, AScribblingClientHurtsOnlyItself) {
  if (!shm()) GTEST_SKIP() << "no shared memory on the socket-only transport";
  const auto before = ring_mappings();
  Ksock bad = open();
  bad.bind("$.Bad");
  (void)bad.read_next_msg();
  const auto after = ring_mappings();
  ASSERT_EQ(after.size(), before.size() + 1);
  std::uintptr_t base = 0;
  for (auto a : after)
    if (std::find(before.begin(), before.end(), a) == before.end()) base = a;
  Ksock good = open();
  Ksock s = open();
  good.bind("$.Good");
  s.send_msg(make_announcement("$.Bad", "x"));  // now kbusd reads its state word
  // R far beyond anything published (offset 64: the state word).
  auto* state = reinterpret_cast<volatile std::uint64_t*>(base + 64);
  *state = *state + 1000;
  s.send_msg(make_announcement("$.Good", "still served"));
  EXPECT_EQ(next(good).data, "still served");
  // The scribbler's Ksock was closed by kbusd.
  auto r = bad.try_num_messages();
  EXPECT_FALSE(r);
  EXPECT_TRUE(s.try_send_msg(make_announcement("$.Bad", "y")));  // nobody listens: fine
}

// D28: a Ksock's shared-memory queue (all its pages, kRingBytes) is
// charged to its user. Over budget the Ksock reads through its socket and
// misses nothing (kbusd logs why); a closed Ksock's queue is given back.
TEST(ShmTransportBudget, QueuesAreChargedToTheirUser) {
  ::unsetenv("KBUS_TRANSPORT");
  // Root's budget (--max-bytes-privileged): two queues and a little more.
  TestDaemon d(1, {"--max-bytes-privileged", "40000"});
  const auto before = ring_mappings().size();
  Ksock s = d.open(0, Mode::write);
  std::vector<Ksock> readers;
  for (int i = 0; i < 3; ++i) {
    readers.push_back(d.open());
    readers.back().bind("$.Budget");
    EXPECT_EQ(readers.back().read_next_msg(), std::nullopt);  // sets the transport up
  }
  EXPECT_EQ(ring_mappings().size(), before + 2);
  EXPECT_NE(d.log().find("no shared-memory queue (16640 bytes would pass a budget): uid 0 holds"),
            std::string::npos)
      << d.log();
  EXPECT_NE(d.log().find("--max-bytes-privileged 40000"), std::string::npos) << d.log();
  const MessageId id = s.send_msg(make_announcement("$.Budget", "to all three"));
  for (Ksock& r : readers) {
    auto m = r.wait_for_msg(10s);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->hdr.id, id);
  }
  // The first closes (it is told apart by the replier binding it held):
  // once kbusd has seen that, its queue's bytes are free for a new Ksock.
  readers[0].bind("$.Budget.Closing", true);
  readers[0].close();
  readers.erase(readers.begin());  // (its mapping goes with the Ksock object)
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (s.find_replier("$.Budget.Closing").value_or(0) != 0 &&
         std::chrono::steady_clock::now() < deadline) {
    pollfd none{-1, 0, 0};
    (void)::poll(&none, 0, 1);
  }
  ASSERT_EQ(s.find_replier("$.Budget.Closing").value_or(0), 0u);
  Ksock again = d.open();
  again.bind("$.Budget");
  EXPECT_EQ(again.read_next_msg(), std::nullopt);
  EXPECT_EQ(ring_mappings().size(), before + 2);  // one unmapped at close, one new
}

}  // namespace
}  // namespace kbus::test
