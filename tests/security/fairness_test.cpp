// Fair scheduling and the connection-level limits (docs/reliability.md §4,
// issue 13), against a real kbusd:
//   - connections count against --max-ksocks-per-user from accept; those
//     over it are answered EMFILE and closed at once, so silent ones cannot
//     pile up descriptors, and another uid is still served;
//   - a connection that has not completed HELLO within --hello-timeout-ms
//     is closed (silent, or half a HELLO);
//   - a client over --max-output-buffer that does not drain its replies
//     within --stall-timeout-ms is cut off, even if it reads a little now
//     and then;
//   - a flooder is served at most its share of a turn (16 frames, 256 KiB
//     read), checked through the figures of kbusd's status line (SIGUSR1),
//     not through timing.
// Every wait is on a real signal (EOF, a hang-up, a reply, a log line),
// bounded; nothing asserts a duration.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <thread>

#include "kbus/ksock.hpp"
#include "security/security_support.hpp"
#include "support/child_process.hpp"
#include "support/raw_client.hpp"

namespace kbus::test {
namespace {

using namespace std::chrono_literals;

// The figures that follow the first six of kbusd's status line.
struct TurnFigures {
  long long busiest_frames = -1, busiest_read = -1, refused = -1, hello_timeouts = -1, stalls = -1;
};

class FairnessTest : public ::testing::Test {
 protected:
  void SetUp() override { dir = make_public_dir(); }
  void TearDown() override {
    if (HasFailure() && daemon)
      std::fprintf(stderr, "---- kbusd log ----\n%s----\n", daemon->log().c_str());
    if (daemon) {
      EXPECT_EQ(daemon->stop(), 0);
    }
    daemon.reset();
    std::filesystem::remove_all(dir);
  }
  void start(std::vector<std::string> args) {
    daemon = std::make_unique<KbusdProcess>(dir, 1, std::move(args));
  }
  long long fds() {
    for (const auto& [name, value] : daemon->status())
      if (name == "fds") return value;
    return -1;
  }
  TurnFigures figures() {
    TurnFigures t;
    if (daemon->status().empty()) return t;  // makes kbusd log a fresh line
    const std::string log = daemon->log();
    const std::size_t at = log.rfind("kbusd: status:");
    const std::size_t tail = log.find("; busiest turn", at);
    if (at == std::string::npos || tail == std::string::npos) return t;
    std::sscanf(log.c_str() + tail,
                "; busiest turn of one connection %lld frames, %lld bytes read; refused over "
                "--max-ksocks-per-user %lld, no HELLO in time %lld, stalled %lld",
                &t.busiest_frames, &t.busiest_read, &t.refused, &t.hello_timeouts, &t.stalls);
    return t;
  }
  std::string bus0() const { return dir + "/kbus0"; }

  std::string dir;
  std::unique_ptr<KbusdProcess> daemon;
};

// docs/reliability.md §4: Ksocks per user are counted from accept; those
// over the limit are answered EMFILE and closed at once (KBUS-SPEC.md §4.1:
// open fails), so silent connections cannot hold kbusd's descriptors.
TEST_F(FairnessTest, SilentConnectionsOverThePerUserLimitAreClosedAtOnce) {
  // No HELLO deadline: only the per-user count may bound them here.
  start({"--max-ksocks-per-user", "8", "--hello-timeout-ms", "0"});
  const long long fds_before = fds();
  ASSERT_GT(fds_before, 0);
  std::vector<std::unique_ptr<RawClient>> admitted;
  for (int i = 0; i < 8; ++i) admitted.push_back(std::make_unique<RawClient>(bus0()));
  int refused_with_emfile = 0, closed = 0;
  constexpr int kOver = 300;
  for (int i = 0; i < kOver; ++i) {
    RawClient silent(bus0());  // says nothing
    auto r = silent.read_reply(30s);
    if (r && r->status == -EMFILE) ++refused_with_emfile;
    if (silent.wait_closed(30s)) ++closed;
  }
  EXPECT_EQ(refused_with_emfile, kOver);
  EXPECT_EQ(closed, kOver);
  // The eight admitted ones hold one descriptor each, the refused none.
  EXPECT_LE(fds(), fds_before + 8);
  const TurnFigures t = figures();
  EXPECT_EQ(t.refused, kOver);
  // Refusals are logged, at most once a second, with the number left out.
  EXPECT_NE(daemon->log().find("(--max-ksocks-per-user): refused and closed"), std::string::npos);
  // The client library reports the refusal as EMFILE from open.
  auto k = Ksock::try_open(0, Mode::read_write, dir);
  ASSERT_FALSE(k.ok());
  EXPECT_EQ(k.error(), Errc::emfile);

  // Another uid is still served.
  std::string why;
  auto users = test_users(why);
  if (!users) GTEST_SKIP() << why;
  Actor other([&](Channel& ch) {
    become(users->first);
    auto mine = Ksock::try_open(0, Mode::read_write, dir);
    ch.say(mine.ok() ? "ok" : errno_name(to_errno(mine.error())));
    return 0;
  });
  EXPECT_EQ(other.hear(), "ok");
  other.wait();
  // A place freed by the first uid is its again.
  admitted.pop_back();
  bool reopened = false;
  for (int i = 0; i < 1000 && !reopened; ++i) {  // until kbusd has seen the close
    auto again = Ksock::try_open(0, Mode::read_write, dir);
    if (again.ok()) {
      reopened = true;
    } else {
      ASSERT_EQ(again.error(), Errc::emfile);
    }
    if (!reopened) daemon->status();  // one turn of kbusd's loop: a real signal
  }
  EXPECT_TRUE(reopened);
}

// docs/reliability.md §4: a connection that has not completed HELLO within
// --hello-timeout-ms is closed, whether it said nothing or half a HELLO;
// one that said HELLO is not.
TEST_F(FairnessTest, ConnectionsWithoutHelloAreClosedAfterTheHelloTimeout) {
  start({"--hello-timeout-ms", "300"});
  RawClient good(bus0());
  auto hello = good.hello();
  ASSERT_TRUE(hello && hello->status == 0);
  RawClient silent(bus0());
  RawClient half(bus0());
  ASSERT_TRUE(half.send_bytes(
      frame_bytes(64, u32_bytes(1) + u32_bytes(3) + u32_bytes(88)).substr(0, 9)));  // half a HELLO
  EXPECT_TRUE(silent.wait_closed(60s));
  EXPECT_TRUE(half.wait_closed(60s));
  EXPECT_FALSE(silent.read_reply(1ms).has_value());  // closed without an answer
  // The one that said HELLO is still served.
  ASSERT_TRUE(good.send_frame(4));  // KSOCKID
  auto id = good.read_reply(30s);
  ASSERT_TRUE(id.has_value());
  EXPECT_EQ(id->status, 0);
  const std::string log = daemon->log();
  EXPECT_NE(log.find("no HELLO within 300 ms of connecting (--hello-timeout-ms)"),
            std::string::npos);
  EXPECT_EQ(figures().hello_timeouts, 2);
}

// docs/reliability.md §4 (D9): once over --max-output-buffer (1 MiB), a
// client has --stall-timeout-ms to drain its replies below half of it;
// reading some now and then - enough for kbusd to write more every few
// hundred ms, far too little to drain 512 KiB in time - does not keep it
// connected.
TEST_F(FairnessTest, ASlowReaderIsCutOffAtTheStallTimeout) {
  start({"--stall-timeout-ms", "1500"});
  RawClient slow(bus0());
  auto hello = slow.hello();
  ASSERT_TRUE(hello && hello->status == 0);
  // Pipeline STATS requests until kbusd stops reading us (our sends block).
  const std::string frame = frame_bytes(71, "");  // STATS
  std::string burst;
  for (int i = 0; i < 1024; ++i) burst += frame;
  bool blocked = false;
  std::size_t sent = 0;
  for (int round = 0; round < 100000 && !blocked; ++round) {
    const ssize_t n = ::send(slow.fd(), burst.data(), burst.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
      continue;
    }
    ASSERT_TRUE(errno == EAGAIN || errno == EINTR) << std::strerror(errno);
    pollfd p{slow.fd(), POLLOUT, 0};
    blocked = ::poll(&p, 1, 1000) == 0;  // a second without room: kbusd has paused us
  }
  ASSERT_TRUE(blocked) << "kbusd kept reading " << sent << " bytes";
  // Read at most 32 KiB at a time, waiting for the hang-up up to 100 ms in
  // between: at most 320 KiB a second, and slower if the machine is busy.
  bool hung_up = false;
  std::size_t read_bytes = 0;
  static char buf[32 * 1024];
  for (int i = 0; i < 1200 && !hung_up; ++i) {  // bounded: 2 minutes
    pollfd p{slow.fd(), POLLRDHUP, 0};
    if (::poll(&p, 1, 100) > 0 && (p.revents & (POLLRDHUP | POLLHUP))) hung_up = true;
    const ssize_t n = ::recv(slow.fd(), buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) read_bytes += static_cast<std::size_t>(n);
  }
  EXPECT_TRUE(hung_up) << "still connected after reading " << read_bytes << " bytes";
  EXPECT_NE(daemon->log().find("did not drain its replies within 1500 ms (--stall-timeout-ms)"),
            std::string::npos);
  EXPECT_EQ(figures().stalls, 1);
}

// docs/reliability.md §4: a flooder gets at most its share of a turn -
// kFramesPerTurn (16) frames and 256 KiB read - however much it has sent;
// the status line reports the most one connection got in one turn. Another
// client's request/reply goes on meanwhile.
TEST_F(FairnessTest, AFlooderIsServedNoMoreThanItsShareOfATurn) {
  start({});
  RawClient flooder(bus0());
  auto hello = flooder.hello();
  ASSERT_TRUE(hello && hello->status == 0);
  constexpr int kFrames = 200000;
  std::atomic<int> replies{0};
  std::thread reader([&] {  // reads every reply, as fast as it can
    while (replies.load() < kFrames) {
      auto r = flooder.read_reply(30s);
      if (!r) return;
      replies.fetch_add(1);
    }
  });
  std::thread writer([&] {
    const std::string frame = frame_bytes(4, "");  // KSOCKID
    std::string burst;
    for (int i = 0; i < 4096; ++i) burst += frame;
    for (int sent = 0; sent < kFrames; sent += 4096)
      if (!flooder.send_bytes(burst.substr(0, frame.size() * std::min(4096, kFrames - sent))))
        return;
  });
  // Meanwhile another client's round trips, all answered.
  Ksock replier = Ksock::open(0, Mode::read_write, dir);
  replier.bind("$.Fair.Ping", true);
  Ksock requester = Ksock::open(0, Mode::read_write, dir);
  int answered = 0;
  for (int i = 0; i < 100; ++i) {
    const MessageId id = requester.send_msg(make_request("$.Fair.Ping", "x"));
    auto req = replier.wait_for_msg(30s);
    ASSERT_TRUE(req.has_value());
    replier.send_msg(make_reply(*req, "y").value());
    auto rep = requester.wait_for_msg(30s);
    if (rep && rep->hdr.in_reply_to == id) ++answered;
  }
  writer.join();
  reader.join();
  EXPECT_EQ(answered, 100);
  EXPECT_EQ(replies.load(), kFrames);
  const TurnFigures t = figures();
  // The flooder always had more than a turn's share buffered: it got that
  // share exactly, never more.
  EXPECT_EQ(t.busiest_frames, 16);
  EXPECT_GT(t.busiest_read, 0);
  EXPECT_LE(t.busiest_read, 256 * 1024);
}

}  // namespace
}  // namespace kbus::test
