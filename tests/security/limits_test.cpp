// Resource limits (docs/reliability.md §4): Ksocks per bus and per user
// are refused at open (ENFILE, EMFILE) with a log line; a client that
// floods without reading, sends garbage or an impossible frame is cut off
// with a log line; a Ksock that never reads is held to its queued-bytes
// limit; and meanwhile everybody else keeps full service, which the test
// measures as the round-trip times of another requester and replier.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>

#include "kbus/ksock.hpp"
#include "security/security_support.hpp"
#include "support/child_process.hpp"
#include "support/raw_client.hpp"

namespace kbus::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

class LimitsTest : public ::testing::Test {
 protected:
  void SetUp() override { dir = make_public_dir(); }
  void TearDown() override {
    if (HasFailure() && daemon) std::fprintf(stderr, "---- kbusd log ----\n%s----\n", daemon->log().c_str());
    if (daemon) {
      EXPECT_EQ(daemon->stop(), 0);
    }
    daemon.reset();
    std::filesystem::remove_all(dir);
  }
  void start(int devices, std::vector<std::string> args) {
    daemon = std::make_unique<KbusdProcess>(dir, devices, std::move(args));
  }
  std::string dir;
  std::unique_ptr<KbusdProcess> daemon;
};

TEST_F(LimitsTest, KsocksPerBusAreLimited) {
  start(2, {"--max-ksocks-per-bus", "3"});
  std::vector<Ksock> open;
  for (int i = 0; i < 3; ++i) open.push_back(Ksock::open(0, Mode::read_write, dir));
  auto refused = Ksock::try_open(0, Mode::read_write, dir);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error(), Errc::enfile);
  EXPECT_TRUE(Ksock::try_open(1, Mode::read_write, dir).ok());  // another bus
  open.pop_back();  // closing one frees its place
  auto again = Ksock::try_open(0, Mode::read_write, dir);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->id(), 4u);
  EXPECT_NE(daemon->log().find("(--max-ksocks-per-bus): refused"), std::string::npos);
}

TEST_F(LimitsTest, KsocksPerUserAreLimited) {
  start(2, {"--max-ksocks-per-user", "4"});
  std::vector<Ksock> open;
  for (int i = 0; i < 4; ++i) open.push_back(Ksock::open(i % 2, Mode::read_write, dir));
  for (int bus : {0, 1}) {
    auto refused = Ksock::try_open(bus, Mode::read_write, dir);
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.error(), Errc::emfile);
  }
  EXPECT_NE(daemon->log().find("(--max-ksocks-per-user): refused"), std::string::npos);
  // Another user is not affected.
  std::string why;
  if (auto users = test_users(why)) {
    Actor other([&](Channel& ch) {
      become(users->first);
      auto k = Ksock::try_open(0, Mode::read_write, dir);
      ch.say(k.ok() ? "ok" : errno_name(to_errno(k.error())));
      return 0;
    });
    EXPECT_EQ(other.hear(), "ok");
    other.wait();
  }
  open.pop_back();
  EXPECT_TRUE(Ksock::try_open(0, Mode::read_write, dir).ok());
}

// Percentiles of a set of durations, in microseconds.
struct Figures {
  std::size_t n = 0;
  double p50 = 0, p99 = 0, max = 0;
};
Figures figures(std::vector<double> us) {
  Figures f;
  f.n = us.size();
  if (us.empty()) return f;
  std::sort(us.begin(), us.end());
  f.p50 = us[us.size() / 2];
  f.p99 = us[std::min(us.size() - 1, us.size() * 99 / 100)];
  f.max = us.back();
  return f;
}

TEST_F(LimitsTest, MisbehavingClientsAreCutOffWhileOthersKeepFullService) {
  start(1, {"--stall-timeout-ms", "300", "--max-output-buffer", "65536", "--max-queued-bytes",
            "1048576", "--abs-max-msg-size", "409600"});
  {
    Ksock settle = Ksock::open(0, Mode::read_write, dir);  // start-up probes are gone after this
    settle.reset();
  }
  const auto before = daemon->status();

  // The well-behaved pair: a replier in its own process, a requester here.
  Actor replier([&](Channel& ch) {
    Ksock k = Ksock::open(0, Mode::read_write, dir);
    k.bind("$.Ping", true);
    ch.say("ready");
    for (;;) {
      auto m = k.wait_for_msg(20s);
      if (!m) return 0;
      k.send_msg(make_reply(*m, m->data).value());
    }
  });
  ASSERT_EQ(replier.hear(), "ready");
  Ksock requester = Ksock::open(0, Mode::read_write, dir);
  auto round_trip = [&]() -> double {
    const auto t0 = Clock::now();
    const MessageId id = requester.send_msg(make_request("$.Ping", "x"));
    auto m = requester.wait_for_msg(10s);
    if (!m || m->hdr.in_reply_to != id || m->is_status()) return -1;
    return std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
  };
  std::vector<double> baseline;
  for (int i = 0; i < 300; ++i) baseline.push_back(round_trip());
  ASSERT_TRUE(std::none_of(baseline.begin(), baseline.end(), [](double d) { return d < 0; }));

  const std::string bus0 = dir + "/kbus0";
  // 1. A flooder: pipelines requests and never reads a reply.
  Actor flooder([&](Channel& ch) {
    RawClient c(bus0);
    if (!c.hello()) return 1;
    const std::string frame = frame_bytes(1, "");  // RESET
    std::string burst;
    for (int i = 0; i < 512; ++i) burst += frame;
    std::size_t sent = 0;
    const auto start = Clock::now();
    while (Clock::now() - start < 20s) {
      const ssize_t n = ::send(c.fd(), burst.data(), burst.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        sent += static_cast<std::size_t>(n);
        continue;
      }
      if (n < 0 && errno != EAGAIN && errno != EINTR) break;  // EPIPE/ECONNRESET: cut off
      pollfd p{c.fd(), POLLOUT, 0};
      ::poll(&p, 1, 50);
      if (p.revents & (POLLHUP | POLLERR)) break;
    }
    ch.say("cut off after " + std::to_string(sent) + " bytes");
    return 0;
  });
  // 2. Garbage: connections that send random bytes.
  Actor garbage([&](Channel& ch) {
    std::mt19937 rng(42);
    int closed = 0, tried = 0;
    const auto start = Clock::now();
    while (Clock::now() - start < 1500ms) {
      RawClient c(bus0);
      std::string junk(64, '\0');
      for (char& x : junk) x = static_cast<char>(rng());
      if (tried % 2) c.hello();  // garbage after a good HELLO, too
      junk.replace(0, 4, u32_bytes(0x7FFF0000u + (rng() & 0xFF)));  // an impossible length
      c.send_bytes(junk);
      ++tried;
      if (c.wait_closed(5s)) ++closed;
    }
    ch.say(std::to_string(closed) + " of " + std::to_string(tried) + " closed");
    return 0;
  });
  // 3. A Ksock that never reads its queue, asking for a huge MAXMSGS, and
  //    a sender of big messages to it.
  Actor hoarder([&](Channel& ch) {
    Ksock k = Ksock::open(0, Mode::read_write, dir);
    k.set_max_messages(1000000);
    k.bind("$.Bulk");
    ch.say("ready");
    ch.hear(30s);  // then report, without having read anything
    ch.say(std::to_string(k.num_messages()));
    return 0;
  });
  ASSERT_EQ(hoarder.hear(), "ready");
  Actor spammer([&](Channel& ch) {
    Ksock k = Ksock::open(0, Mode::read_write, dir);
    k.set_max_message_size(409600);
    const std::string data(64 * 1024, 'b');
    int sent = 0;
    const auto start = Clock::now();
    while (Clock::now() - start < 1500ms) {
      if (k.try_send_msg(make_announcement("$.Bulk", data)).ok()) ++sent;
    }
    ch.say(std::to_string(sent));
    return 0;
  });

  // Meanwhile: round trips, for as long as the misbehaviour lasts.
  std::vector<double> during;
  const auto start_t = Clock::now();
  while (Clock::now() - start_t < 1500ms) during.push_back(round_trip());
  const std::string spam_count = spammer.hear(20s);
  const std::string flood = flooder.hear(20s);
  const std::string junk = garbage.hear(20s);
  hoarder.tell("report");
  const std::string hoarded = hoarder.hear();
  for (int i = 0; i < 100; ++i) during.push_back(round_trip());  // and after

  EXPECT_TRUE(std::none_of(during.begin(), during.end(), [](double d) { return d < 0; }))
      << "a round trip failed";
  const Figures b = figures(baseline), d = figures(during);
  std::printf(
      "limits: round trips baseline n=%zu p50=%.0fus p99=%.0fus max=%.0fus; while misbehaving "
      "n=%zu p50=%.0fus p99=%.0fus max=%.0fus\n"
      "limits: flooder %s; garbage %s; spammer sent %s messages of 64 KiB, the hoarder holds %s\n",
      b.n, b.p50, b.p99, b.max, d.n, d.p50, d.p99, d.max, flood.c_str(), junk.c_str(),
      spam_count.c_str(), hoarded.c_str());
  // Full service: every round trip answered, none stuck behind the others.
  EXPECT_GT(d.n, 200u);
  EXPECT_LT(d.p99, 250000.0);
  EXPECT_LT(d.max, 2000000.0);
  EXPECT_EQ(flood.rfind("cut off", 0), 0u) << flood;
  EXPECT_GT(std::stoi(spam_count), 20);
  // 1 MiB of 64 KiB messages (plus the one that crossed the line).
  EXPECT_LE(std::stoi(hoarded), 17);
  EXPECT_GE(std::stoi(hoarded), 16);
  int junk_closed = -1, junk_tried = -2;
  std::sscanf(junk.c_str(), "%d of %d closed", &junk_closed, &junk_tried);
  EXPECT_EQ(junk_closed, junk_tried) << junk;
  EXPECT_GT(junk_tried, 10) << junk;

  const std::string log = daemon->log();
  EXPECT_NE(log.find("did not drain its replies within"), std::string::npos);
  EXPECT_NE(log.find("out of range: disconnecting"), std::string::npos);
  replier.kill(SIGKILL);
  replier.wait();
  hoarder.wait();
  requester.close();
  // Everything the misbehavers held is released.
  ASSERT_EQ(before.size(), 5u);
  std::vector<std::pair<std::string, long long>> now;
  EXPECT_TRUE(eventually([&] {
    now = daemon->status();
    return now.size() == 5 && now[0].second == 0 && now[1].second == 0 &&
           now[2].second == before[2].second;
  })) << "connections " << (now.empty() ? -1 : now[0].second) << ", fds "
      << (now.empty() ? -1 : now[2].second) << " (at start " << before[2].second << ")";
}

}  // namespace
}  // namespace kbus::test
