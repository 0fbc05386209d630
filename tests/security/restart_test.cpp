// Daemon restart (docs/reliability.md §6): when kbusd stops (SIGTERM) or
// dies (SIGKILL), every client call returns a clear error at once
// (ECONNRESET, never EPIPE; ENOENT for a new open), nothing hangs, including a
// blocked receive and a poll on the Ksock's poll fd; once kbusd is back in
// the same directory, clients open new Ksocks and carry on.
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>

#include "kbus/ksock.hpp"
#include "security/security_support.hpp"
#include "support/child_process.hpp"
#include "support/test_daemon.hpp"

namespace kbus::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// "kbusd went away" is ECONNRESET, never EPIPE (KBUS's own meaning).
bool is_gone_error(Errc e) { return e == Errc::econnreset; }

class RestartTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override { dir = make_public_dir(); }
  void TearDown() override { std::filesystem::remove_all(dir); }
  std::string dir;
};

TEST_P(RestartTest, EveryCallFailsClearlyAndClientsReopenOnceItIsBack) {
  const int sig = GetParam();
  auto daemon = std::make_unique<KbusdProcess>(dir, 2);
  Ksock idle = Ksock::open(0, Mode::read_write, dir);
  idle.bind("$.Idle");
  // A receive blocked in the daemon (WAITREAD) and a poll() on a poll fd,
  // each in its own process.
  Actor waiter([&](Channel& ch) {
    Ksock k = Ksock::open(0, Mode::read_write, dir);
    ch.say("waiting");
    auto r = k.try_wait_for_msg();
    ch.say(r.ok() ? "message?" : errno_name(to_errno(r.error())));
    return 0;
  });
  Actor poller([&](Channel& ch) {
    Ksock k = Ksock::open(1, Mode::read_write, dir);
    ch.say("polling");
    auto r = k.try_wait(ready::kReadable);
    ch.say(r.ok() ? "ready?" : errno_name(to_errno(r.error())));
    return 0;
  });
  ASSERT_EQ(waiter.hear(), "waiting");
  ASSERT_EQ(poller.hear(), "polling");
  Ksock other = Ksock::open(0, Mode::read_write, dir);
  other.reset();  // the waiter's WAITREAD has been received by now

  const auto t0 = Clock::now();
  if (sig == SIGKILL)
    daemon->kill_hard();
  else
    EXPECT_EQ(daemon->stop(), 0);
  // The blocked ones return at once with a clear error.
  const std::string w = waiter.hear(5s), p = poller.hear(5s);
  EXPECT_EQ(w, "ECONNRESET");
  EXPECT_EQ(p, "ECONNRESET");
  // Every call on an open Ksock fails at once.
  EXPECT_TRUE(is_gone_error(idle.try_reset().error()));
  EXPECT_TRUE(is_gone_error(idle.try_send_msg(make_announcement("$.Idle")).error()));
  EXPECT_TRUE(is_gone_error(idle.try_read_next_msg().error()));
  EXPECT_TRUE(is_gone_error(other.try_bind("$.X").error()));
  EXPECT_TRUE(is_gone_error(other.try_wait_for_msg(1s).error()));
  EXPECT_TRUE(is_gone_error(other.try_wait(ready::kReadable, 1s).error()));
  // New opens: ENOENT (no socket, or a stale one with nobody behind it).
  EXPECT_EQ(Ksock::try_open(0, Mode::read_write, dir).error(), Errc::enoent);
  // The CLI says so and fails.
  auto cli = run_process({kbus_cli_path(), "send", "$.Hello", "hi"}, {{"KBUS_DIR", dir}});
  EXPECT_NE(cli.exit_code, 0);
  EXPECT_NE(cli.err, "");
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  EXPECT_LT(secs, 3.0) << "some call waited for the dead daemon";
  EXPECT_EQ(waiter.wait(), 0);
  EXPECT_EQ(poller.wait(), 0);

  // Back again, in the same directory: new Ksocks work; old ones stay broken.
  daemon = std::make_unique<KbusdProcess>(dir, 2);
  Ksock fresh = Ksock::open(0, Mode::read_write, dir);
  EXPECT_EQ(fresh.id(), 1u);  // a new daemon, a new bus
  fresh.bind("$.Again");
  fresh.send_msg(make_announcement("$.Again", "yes"));
  auto m = fresh.read_next_msg();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->data, "yes");
  EXPECT_TRUE(is_gone_error(idle.try_reset().error()));
  idle.close();  // closing a broken Ksock does not wait
  EXPECT_EQ(daemon->stop(), 0);
}

INSTANTIATE_TEST_SUITE_P(Signals, RestartTest, ::testing::Values(SIGTERM, SIGKILL),
                         [](const auto& info) { return info.param == SIGKILL ? "Killed" : "Stopped"; });

}  // namespace
}  // namespace kbus::test
