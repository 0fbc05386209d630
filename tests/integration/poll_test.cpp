// The poll fd (docs/protocol.md §3.1, KBUS-SPEC.md §4.4), wait() and
// wait_for_msg(), and what the client does when the daemon goes away.
#include <poll.h>
#include <signal.h>

#include <thread>

#include "integration/fixture.hpp"

namespace kbus::test {
namespace {

using PollTest = KbusTest;
using namespace std::chrono_literals;

TEST_F(PollTest, ReadableExactlyWhenTheQueueIsNonEmpty) {
  Ksock l = open(0);
  Ksock s = open(0);
  l.bind("$.Fred");
  settle(l);
  EXPECT_FALSE(poll_readable(l.fileno()));
  s.send_msg(make_announcement("$.Fred", "1"));
  settle(l);
  EXPECT_TRUE(poll_readable(l.fileno()));
  s.send_msg(make_announcement("$.Fred", "2"));
  EXPECT_TRUE(poll_readable(l.fileno()));
  l.read_next_msg();
  EXPECT_TRUE(poll_readable(l.fileno()));
  // The current read message does not count.
  EXPECT_GT(l.next_msg(), 0u);
  EXPECT_FALSE(poll_readable(l.fileno()));
  s.send_msg(make_announcement("$.Fred", "3"));
  settle(l);
  EXPECT_TRUE(poll_readable(l.fileno()));
  l.unbind("$.Fred");  // removes the queued copy
  EXPECT_FALSE(poll_readable(l.fileno()));
}

TEST_F(PollTest, ReadinessAfterTheSendersReplyWithoutSettlingTheReceiver) {
  Ksock l = open(0);
  Ksock s = open(0);
  l.bind("$.Fred");
  s.send_msg(make_announcement("$.Fred"));
  // The daemon updates every touched poll fd before it replies to the sender.
  EXPECT_TRUE(poll_readable(l.fileno()));
}

TEST_F(PollTest, WritableExactlyWhenOpenForWritingAndNotPending) {
  Ksock rw = open(0);
  Ksock r = open(0, Mode::read);
  Ksock w = open(0, Mode::write);
  settle(rw);
  EXPECT_TRUE(poll_writable(rw.fileno()));
  EXPECT_TRUE(poll_writable(w.fileno()));
  EXPECT_FALSE(poll_writable(r.fileno()));
  EXPECT_FALSE(poll_readable(w.fileno()));

  // A read-only Ksock is never writable, even with messages queued.
  r.bind("$.Fred");
  rw.send_msg(make_announcement("$.Fred"));
  settle(r);
  EXPECT_TRUE(poll_readable(r.fileno()));
  EXPECT_FALSE(poll_writable(r.fileno()));

  // Pending ALL_OR_WAIT: not writable until it completes.
  r.set_max_messages(1);
  EXPECT_EQ(err(rw.try_send_msg(make_announcement("$.Fred", "", flag::kAllOrWait))), Errc::eagain);
  EXPECT_FALSE(poll_writable(rw.fileno()));
  r.read_next_msg();
  settle(rw);
  EXPECT_TRUE(poll_writable(rw.fileno()));
  EXPECT_TRUE(poll_readable(r.fileno()));
}

TEST_F(PollTest, WaitHelper) {
  Ksock l = open(0);
  Ksock s = open(0);
  l.bind("$.Fred");
  EXPECT_EQ(l.wait(ready::kReadable, 0ms), 0u);
  EXPECT_EQ(l.wait(ready::kWritable, 0ms), ready::kWritable);
  EXPECT_EQ(l.wait(ready::kReadable, 20ms), 0u);
  s.send_msg(make_announcement("$.Fred"));
  EXPECT_EQ(l.wait(ready::kReadable, 1s), ready::kReadable);
  EXPECT_EQ(l.wait(ready::kReadable | ready::kWritable), ready::kReadable | ready::kWritable);
  Ksock ro = open(0, Mode::read);
  EXPECT_EQ(ro.wait(ready::kWritable, 10ms), 0u);
}

TEST_F(PollTest, WaitForMsgTimesOutAndTheKsockStaysUsable) {
  Ksock l = open(0);
  Ksock s = open(0);
  l.bind("$.Fred");
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(l.wait_for_msg(50ms), std::nullopt);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 50ms);
  // The reply stream is still in step.
  EXPECT_EQ(l.ksock_id(), 1u);
  EXPECT_EQ(l.num_messages(), 0u);
  EXPECT_EQ(l.wait_for_msg(0ms), std::nullopt);
  EXPECT_EQ(l.max_messages(), 100u);
  s.send_msg(make_announcement("$.Fred", "x"));
  auto m = l.wait_for_msg(1s);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->data, "x");
  EXPECT_EQ(l.wait_for_msg(1ms), std::nullopt);
  EXPECT_EQ(l.find_replier("$.Fred"), std::nullopt);
}

TEST_F(PollTest, WaitForMsgGetsAMessageSentByAnotherProcess) {
  Ksock l = open(0);
  l.bind("$.Fred");
  std::string dir = daemon_.dir();
  Actor sender([dir](Channel& ch) {
    Ksock s = Ksock::open(0, Mode::read_write, dir);
    ch.say("ready");
    for (int i = 0; i < 3; ++i) {
      if (ch.hear() != "go") return 1;
      s.send_msg(make_announcement("$.Fred", "msg" + std::to_string(i)));
    }
    return 0;
  });
  ASSERT_EQ(sender.hear(), "ready");
  for (int i = 0; i < 3; ++i) {
    sender.tell("go");
    auto m = i == 1 ? l.wait_for_msg() : l.wait_for_msg(10s);
    ASSERT_TRUE(m) << i;
    EXPECT_EQ(m->data, "msg" + std::to_string(i));
  }
  EXPECT_EQ(sender.wait(), 0);
}

// A timed wait leaves the connection's receive timeout set (the client sets
// it only when it changes); a later wait without timeout must outlast it.
TEST_F(PollTest, AWaitWithoutTimeoutOutlastsAnEarlierTimedWait) {
  Ksock l = open(0);
  l.bind("$.Fred");
  EXPECT_EQ(l.wait_for_msg(20ms), std::nullopt);
  std::string dir = daemon_.dir();
  Actor sender([dir](Channel& ch) {
    Ksock s = Ksock::open(0, Mode::read_write, dir);
    if (ch.hear() != "go") return 1;
    std::this_thread::sleep_for(150ms);  // several times the earlier timeout
    s.send_msg(make_announcement("$.Fred", "late"));
    return 0;
  });
  sender.tell("go");
  auto start = std::chrono::steady_clock::now();
  auto m = l.wait_for_msg();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->data, "late");
  EXPECT_GE(std::chrono::steady_clock::now() - start, 100ms);
  // And a timed wait after that one still times out.
  EXPECT_EQ(l.wait_for_msg(30ms), std::nullopt);
  EXPECT_EQ(sender.wait(), 0);
}

TEST_F(PollTest, WaitForMsgWithoutTimeoutReturnsAQueuedMessageAtOnce) {
  Ksock l = open(0);
  Ksock s = open(0);
  l.bind("$.Fred");
  s.send_msg(make_announcement("$.Fred", "here"));
  auto m = l.wait_for_msg();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->data, "here");
}

TEST(DaemonGoneTest, OperationsFailWithConnectionErrorsNotSignals) {
  // SIGPIPE must not kill us: leave its default disposition in place.
  struct sigaction old {};
  ::sigaction(SIGPIPE, nullptr, &old);
  ASSERT_EQ(old.sa_handler, SIG_DFL);

  TestDaemon d(1);
  Ksock k = d.open(0);
  Ksock never_polled = d.open(0);
  k.bind("$.Fred");
  ASSERT_GE(k.fileno(), 0);
  d.stop();
  auto r = k.try_ksock_id();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), Errc::econnreset) << errc_name(r.error());
  // Every later call fails the same way, at once.
  EXPECT_EQ(err(k.try_num_messages()), r.error());
  EXPECT_FALSE(k.try_send_msg(make_announcement("$.Fred")).ok());
  EXPECT_THROW(k.wait_for_msg(), Error);
  // The poll fd reports the hang-up.
  EXPECT_EQ(err(k.try_wait(ready::kReadable, 1s)), Errc::econnreset);
  // A Ksock that never asked for its poll fd cannot get one now.
  auto w = never_polled.try_wait(ready::kReadable, 1s);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error(), Errc::econnreset) << errc_name(w.error());
  EXPECT_EQ(never_polled.fileno(), -1);
}

TEST(DaemonGoneTest, ABlockedWaitForMsgReturnsWhenTheDaemonDies) {
  TestDaemon d(1);
  Ksock k = d.open(0);
  pid_t daemon_pid = d.pid();
  Actor killer([daemon_pid](Channel& ch) {
    if (ch.hear() != "kill") return 1;
    ::kill(daemon_pid, SIGKILL);
    return 0;
  });
  killer.tell("kill");
  auto r = k.try_wait_for_msg();  // no timeout: only the daemon's death ends it
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), Errc::econnreset) << errc_name(r.error());
  EXPECT_EQ(killer.wait(), 0);
  d.kill_hard();
}

TEST(DaemonGoneTest, OpeningWhenNoDaemonServesTheSocketIsENOENT) {
  std::string dir;
  {
    TestDaemon d(1);
    dir = d.dir();
    d.kill_hard();  // leaves a stale socket file behind
    EXPECT_EQ(err(Ksock::try_open(0, Mode::read_write, dir)), Errc::enoent);
  }
}

}  // namespace
}  // namespace kbus::test
