// The shared pieces of src/util: Fd, the socket directory rule, the signal
// pipe, the little-endian u32, Deadline and the argument reader.
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <string>

#include "util/args.hpp"
#include "util/deadline.hpp"
#include "util/dirs.hpp"
#include "util/endian.hpp"
#include "util/fd.hpp"
#include "util/signals.hpp"

namespace kbus::util {
namespace {

bool is_open(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

TEST(Fd, ClosesOnceWhenDestroyed) {
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  { Fd r(p[0]); }
  EXPECT_FALSE(is_open(p[0]));
  ::close(p[1]);
}

TEST(Fd, MoveTransfersOwnership) {
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  Fd a(p[0]);
  Fd b(std::move(a));
  EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move): moved-from is empty
  EXPECT_EQ(b.get(), p[0]);
  Fd c;
  c = std::move(b);
  EXPECT_TRUE(is_open(p[0]));
  c.reset(p[1]);  // closes the old one, holds the new
  EXPECT_FALSE(is_open(p[0]));
  EXPECT_TRUE(is_open(p[1]));
  const int released = c.release();
  EXPECT_EQ(released, p[1]);
  EXPECT_FALSE(c);
  EXPECT_TRUE(is_open(p[1]));  // released: not closed by c
  ::close(released);
}

// docs/protocol.md §1: the one directory rule.
class DirRule : public ::testing::Test {
 protected:
  void SetUp() override {
    save("KBUS_DIR", kbus_);
    save("XDG_RUNTIME_DIR", xdg_);
  }
  void TearDown() override {
    restore("KBUS_DIR", kbus_);
    restore("XDG_RUNTIME_DIR", xdg_);
  }
  static void save(const char* name, std::pair<bool, std::string>& v) {
    const char* s = std::getenv(name);
    v = {s != nullptr, s ? s : ""};
  }
  static void restore(const char* name, const std::pair<bool, std::string>& v) {
    if (v.first)
      ::setenv(name, v.second.c_str(), 1);
    else
      ::unsetenv(name);
  }
  std::pair<bool, std::string> kbus_, xdg_;
};

TEST_F(DirRule, KbusDirWins) {
  ::setenv("KBUS_DIR", "/some/where", 1);
  ::setenv("XDG_RUNTIME_DIR", "/run/user/1", 1);
  EXPECT_EQ(default_bus_dir(), "/some/where");
}

TEST_F(DirRule, EmptyKbusDirIsUnset) {
  ::setenv("KBUS_DIR", "", 1);
  ::setenv("XDG_RUNTIME_DIR", "/run/user/1", 1);
  EXPECT_EQ(default_bus_dir(), ::geteuid() == 0 ? "/run/kbus" : "/run/user/1/kbus");
}

TEST_F(DirRule, WithoutEitherVariable) {
  ::unsetenv("KBUS_DIR");
  ::unsetenv("XDG_RUNTIME_DIR");
  EXPECT_EQ(default_bus_dir(), ::geteuid() == 0 ? std::string("/run/kbus")
                                                : "/tmp/kbus-" + std::to_string(::geteuid()));
}

TEST(SignalPipe, ASignalBecomesAReadableByte) {
  SignalPipe sp({SIGUSR2});
  EXPECT_EQ(sp.take(), 0);  // nothing yet
  EXPECT_FALSE(sp.stopped());
  ASSERT_EQ(::raise(SIGUSR2), 0);
  pollfd p{sp.fd(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 10000), 1);  // the byte is there (bounded wait)
  EXPECT_TRUE(sp.stopped());
  EXPECT_EQ(sp.take(), SIGUSR2);
  EXPECT_EQ(sp.take(), 0);
}

TEST(SignalPipe, RestoresTheOldDisposition) {
  struct sigaction before {};
  ::sigaction(SIGUSR2, nullptr, &before);
  { SignalPipe sp({SIGUSR2}); }
  struct sigaction after {};
  ::sigaction(SIGUSR2, nullptr, &after);
  EXPECT_EQ(before.sa_handler, after.sa_handler);
}

TEST(Endian, LittleEndianU32) {
  std::string s;
  put_u32(s, 0x04030201u);
  EXPECT_EQ(s, std::string("\x01\x02\x03\x04", 4));
  EXPECT_EQ(get_u32(s.data()), 0x04030201u);
  put_u32_at(s.data(), 7);
  EXPECT_EQ(get_u32(s.data()), 7u);
}

TEST(Deadline, NeverAndPast) {
  EXPECT_EQ(Deadline().remaining_ms(), -1);
  EXPECT_FALSE(Deadline::never().expired());
  EXPECT_EQ(Deadline(-5).remaining_ms(), -1);  // negative: never
  const Deadline past(0);
  EXPECT_TRUE(past.expired());
  EXPECT_EQ(past.remaining_ms(), 0);
  const Deadline later(3600 * 1000);
  EXPECT_FALSE(later.expired());
  EXPECT_GT(later.remaining_ms(), 0);
  EXPECT_LE(later.remaining_ms(), 3600 * 1000);
}

// util/args.hpp: the numbers kbus-limpet's and kbus-bridge's switches take.
TEST(Args, ParseIntegerTakesOnlyAWholeDecimalNumberInRange) {
  EXPECT_EQ(parse_integer("0", 0, 255), 0);
  EXPECT_EQ(parse_integer("255", 0, 255), 255);
  EXPECT_EQ(parse_integer("-3", -5, 5), -3);
  EXPECT_EQ(parse_integer("4294967295", 1, 0xFFFFFFFFLL), 0xFFFFFFFFLL);
  EXPECT_FALSE(parse_integer("256", 0, 255));  // above the range
  EXPECT_FALSE(parse_integer("0", 1, 255));    // below it
  EXPECT_FALSE(parse_integer("", 0, 255));
  EXPECT_FALSE(parse_integer("12x", 0, 255));  // trailing text
  EXPECT_FALSE(parse_integer(" 12", 0, 255));  // spaces
  EXPECT_FALSE(parse_integer("+12", 0, 255));
  EXPECT_FALSE(parse_integer("0x10", 0, 255));  // decimal only
  EXPECT_FALSE(parse_integer("99999999999999999999", 0, 0x7FFFFFFFFFFFFFFFLL));  // overflow
}

TEST(Args, ReaderHandsOutSwitchesAndTheirValues) {
  const std::vector<std::string> args = {"-k", "3", "--id", "x", "addr", "-m"};
  ArgReader r(args);
  const std::string* a = r.next();
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(*a, "-k");
  auto n = r.number(0, 255);
  EXPECT_TRUE(n.ok());
  EXPECT_EQ(n.value, 3);
  ASSERT_NE(a = r.next(), nullptr);
  EXPECT_EQ(*a, "--id");
  n = r.number(1, 10);  // "x" is consumed as the value, and is bad
  EXPECT_EQ(n.status, ArgReader::Number::Status::kBad);
  EXPECT_EQ(n.text, "x");
  ASSERT_NE(a = r.next(), nullptr);
  EXPECT_EQ(*a, "addr");
  ASSERT_NE(a = r.next(), nullptr);
  EXPECT_EQ(*a, "-m");
  EXPECT_FALSE(r.value());  // -m at the end has no value
  EXPECT_EQ(r.number(0, 1).status, ArgReader::Number::Status::kMissing);
  EXPECT_EQ(r.next(), nullptr);
}

TEST(Args, ReaderValueMayLookLikeASwitch) {
  // As runlimpet: the argument after a switch is its value, whatever it is.
  const std::vector<std::string> args = {"-t", "-s", "-d"};
  ArgReader r(args);
  ASSERT_NE(r.next(), nullptr);
  EXPECT_EQ(r.value(), std::optional<std::string>("-s"));
  ASSERT_NE(r.next(), nullptr);
  std::string dir = "unchanged";
  EXPECT_FALSE(r.value(dir));  // nothing after -d
  EXPECT_EQ(dir, "unchanged");
  EXPECT_EQ(r.next(), nullptr);
}

}  // namespace
}  // namespace kbus::util
