// kbusd's readiness contract (DESIGN.md §8, docs/reliability.md §7): it
// says it serves - one byte on --ready-fd, READY=1 to $NOTIFY_SOCKET (a
// path or an abstract "@name") - only once its sockets listen; it says
// STOPPING=1 when it stops; a kbusd that cannot start says nothing and
// exits non-zero with a message. SIGHUP (the terminal closed) stops it as
// cleanly as SIGTERM: sockets and lock file removed, exit status 0.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "kbus/ksock.hpp"
#include "support/child_process.hpp"
#include "support/test_daemon.hpp"

namespace kbus::test {
namespace {

namespace fs = std::filesystem;

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A fresh directory, removed at the end of the test.
struct TempDir {
  TempDir() {
    char tmpl[] = "/tmp/kbus-ready-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string path;
};

// A datagram socket standing in for systemd's notify socket. `name` is
// what goes into $NOTIFY_SOCKET: a path, or "@name" for an abstract one.
struct NotifySocket {
  explicit NotifySocket(const std::string& n) : name(n) {
    fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, name.data(), name.size());
    if (name[0] == '@') addr.sun_path[0] = '\0';
    const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size());
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0)
      throw std::runtime_error("cannot bind the notify socket " + name + ": " +
                               std::strerror(errno));
  }
  ~NotifySocket() {
    ::close(fd);
    if (name[0] != '@') ::unlink(name.c_str());
  }
  // The next datagram ("<timeout>" if none within the time given).
  std::string next(std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return "<timeout>";
    char buf[4096];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    return n < 0 ? "<error>" : std::string(buf, static_cast<std::size_t>(n));
  }
  // True if a datagram is waiting right now.
  bool pending() {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, 0) == 1;
  }
  std::string name;
  int fd = -1;
};

std::string abstract_name() {
  return "@kbus-test-notify-" + std::to_string(::getpid()) + "-" +
         std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
}

bool serves(const std::string& dir, int bus) {
  auto k = Ksock::try_open(bus, Mode::read_write, dir);
  return k.ok();
}

// docs/reliability.md §7: one byte, then the descriptor is closed; by
// then every bus accepts.
TEST(Readiness, ReadyFdGetsOneByteOnceServingThenIsClosed) {
  TempDir dir;
  const KbusdChild c = spawn_kbusd({"--devices", "2", "--dir", dir.path}, dir.path + "/log");
  pollfd p{c.ready_fd, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 30000), 1) << read_file(dir.path + "/log");
  char buf[8];
  ASSERT_EQ(::read(c.ready_fd, buf, sizeof buf), 1);
  EXPECT_EQ(buf[0], '\n');
  EXPECT_TRUE(serves(dir.path, 0));
  EXPECT_TRUE(serves(dir.path, 1));
  // Closed by kbusd, which goes on serving: EOF (bounded wait).
  ASSERT_EQ(::poll(&p, 1, 30000), 1);
  EXPECT_EQ(::read(c.ready_fd, buf, sizeof buf), 0);
  ::close(c.ready_fd);
  EXPECT_EQ(::kill(c.pid, 0), 0);
  EXPECT_TRUE(serves(dir.path, 1));
  ::kill(c.pid, SIGTERM);
  EXPECT_EQ(wait_for_exit(c.pid, std::chrono::seconds(30)), 0);
}

void expect_notify_protocol(const std::string& notify_name, const std::string& dir) {
  NotifySocket notify(notify_name);
  const KbusdChild c =
      spawn_kbusd({"--devices", "3", "--dir", dir}, dir + "/log", {{"NOTIFY_SOCKET", notify_name}});
  ::close(c.ready_fd);
  const std::string ready = notify.next();
  EXPECT_EQ(ready, "READY=1\nSTATUS=serving buses 0..2 in " + dir) << read_file(dir + "/log");
  // Ready means serving: every bus accepts now, without waiting.
  for (int bus : {0, 1, 2}) EXPECT_TRUE(serves(dir, bus)) << bus;
  EXPECT_FALSE(notify.pending()) << "READY=1 was sent more than once";
  ::kill(c.pid, SIGTERM);
  EXPECT_EQ(notify.next(), "STOPPING=1");
  EXPECT_EQ(wait_for_exit(c.pid, std::chrono::seconds(30)), 0);
  EXPECT_FALSE(fs::exists(dir + "/kbus0"));
}

TEST(Readiness, NotifySocketPathGetsReadyThenStopping) {
  TempDir dir;
  expect_notify_protocol(dir.path + "/notify", dir.path);
}

TEST(Readiness, AbstractNotifySocketGetsReadyThenStopping) {
  TempDir dir;
  expect_notify_protocol(abstract_name(), dir.path);
}

// A kbusd that cannot start (the directory is another kbusd's) signals
// neither way, and exits non-zero saying why.
TEST(Readiness, FailedStartSignalsNothing) {
  TestDaemon first(1);
  NotifySocket notify(abstract_name());
  const std::string log = first.dir() + "/second.log";
  const KbusdChild c =
      spawn_kbusd({"--devices", "1", "--dir", first.dir()}, log, {{"NOTIFY_SOCKET", notify.name}});
  EXPECT_EQ(wait_ready(c.ready_fd, std::chrono::seconds(30)), Readiness::failed);
  const int code = wait_for_exit(c.pid, std::chrono::seconds(30));
  EXPECT_NE(code, 0);
  EXPECT_NE(code, -1);
  EXPECT_FALSE(notify.pending());
  const std::string text = read_file(log);
  EXPECT_NE(text.find("another kbusd already serves " + first.dir()), std::string::npos) << text;
  EXPECT_EQ(text.find("serving"), std::string::npos) << text;
  // The first one is untouched.
  auto k = first.try_open(0);
  EXPECT_TRUE(k.ok());
}

TEST(Readiness, ReadyFdThatIsNotOpenIsRefused) {
  TempDir dir;
  auto r = run_process({kbusd_path(), "--dir", dir.path, "--ready-fd", "57"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--ready-fd 57: not an open file descriptor"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir.path + "/kbus0"));
  auto neg = run_process({kbusd_path(), "--dir", dir.path, "--ready-fd", "-3"});
  EXPECT_GT(neg.exit_code, 0) << neg.err;
  EXPECT_NE(neg.err.find("--ready-fd"), std::string::npos) << neg.err;
}

// One line when it starts (where it serves), one when it stops cleanly.
// SIGHUP (the terminal closed) and SIGINT stop it as cleanly as SIGTERM:
// sockets and lock file removed, exit status 0, and the directory can be
// served again at once.
TEST(Readiness, SighupSigintAndSigtermStopCleanly) {
  TempDir dir;
  for (auto [sig, name] : {std::pair{SIGHUP, "SIGHUP"}, {SIGINT, "SIGINT"}, {SIGTERM, "SIGTERM"}}) {
    const std::string log = dir.path + "/log-" + name;
    const pid_t pid = start_kbusd({"--devices", "2", "--dir", dir.path}, log);
    EXPECT_TRUE(fs::exists(dir.path + "/.kbusd.lock"));
    ::kill(pid, sig);
    EXPECT_EQ(wait_for_exit(pid, std::chrono::seconds(30)), 0) << name;
    EXPECT_FALSE(fs::exists(dir.path + "/kbus0")) << name;
    EXPECT_FALSE(fs::exists(dir.path + "/kbus1")) << name;
    EXPECT_FALSE(fs::exists(dir.path + "/.kbusd.lock")) << name;
    const std::string text = read_file(log);
    EXPECT_NE(text.find("kbusd: serving buses 0..1 at " + dir.path + "/kbus0 .. kbus1"),
              std::string::npos)
        << text;
    EXPECT_NE(text.find(std::string("kbusd: ") + name + ": stopped; removed " + dir.path +
                        "/kbus0 .. kbus1 and the lock file\n"),
              std::string::npos)
        << text;
  }
}

// A kbusd killed outright leaves its lock file; the next one takes it over.
TEST(Readiness, StaleLockFileDoesNotStopTheNextKbusd) {
  TempDir dir;
  const pid_t first = start_kbusd({"--dir", dir.path}, dir.path + "/log1");
  ::kill(first, SIGKILL);
  EXPECT_EQ(wait_for_exit(first, std::chrono::seconds(30)), 128 + SIGKILL);
  EXPECT_TRUE(fs::exists(dir.path + "/.kbusd.lock"));
  const pid_t second = start_kbusd({"--dir", dir.path}, dir.path + "/log2");
  const std::string text = read_file(dir.path + "/log2");
  EXPECT_NE(text.find("kbusd: serving bus 0 at " + dir.path + "/kbus0"), std::string::npos) << text;
  EXPECT_TRUE(serves(dir.path, 0));
  ::kill(second, SIGTERM);
  EXPECT_EQ(wait_for_exit(second, std::chrono::seconds(30)), 0);
}

}  // namespace
}  // namespace kbus::test
