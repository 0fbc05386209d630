// support/test_daemon.cpp - see test_daemon.hpp.
#include "support/test_daemon.hpp"
#include "support/child_process.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace kbus::test {

namespace {

using Clock = std::chrono::steady_clock;

bool can_connect(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

std::string kbusd_path() { return KBUSD_PATH; }
std::string kbus_cli_path() { return KBUS_CLI_PATH; }

TestDaemon::TestDaemon(int devices, std::vector<std::string> extra_args) {
  char tmpl[] = "/tmp/kbus-test-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
  dir_ = tmpl;

  std::vector<std::string> args = {kbusd_path(), "--devices", std::to_string(devices), "--dir",
                                   dir_};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  const std::string log_path = dir_ + "/kbusd.log";
  std::fflush(nullptr);
  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    // The daemon's log (and any sanitizer report) goes to a file, shown
    // when the test fails.
    int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (log >= 0) {
      ::dup2(log, 1);
      ::dup2(log, 2);
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }

  // Wait until the last bus accepts connections: the daemon creates its
  // buses in order, so then all of them do. Bounded: 10 s.
  const std::string last = dir_ + "/kbus" + std::to_string(devices - 1);
  auto deadline = Clock::now() + std::chrono::seconds(10);
  // Woken by the creation of files in the directory; the short timeout
  // covers the moment between the daemon's bind() and listen().
  int ino = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (ino >= 0) ::inotify_add_watch(ino, dir_.c_str(), IN_CREATE | IN_MOVED_TO);
  struct InotifyCloser {
    int fd;
    ~InotifyCloser() {
      if (fd >= 0) ::close(fd);
    }
  } closer{ino};
  for (;;) {
    if (can_connect(last)) break;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("kbusd exited during start-up");
    }
    if (Clock::now() >= deadline) {
      stop();
      throw std::runtime_error("kbusd did not start within 10 s");
    }
    pollfd p{ino, POLLIN, 0};
    ::poll(&p, ino >= 0 ? 1 : 0, 20);
    char buf[4096];
    while (ino >= 0 && ::read(ino, buf, sizeof buf) > 0) {
    }
  }
}

TestDaemon::~TestDaemon() {
  stop();
  if (::testing::Test::HasFailure()) {
    std::string text = log();
    if (!text.empty()) std::fprintf(stderr, "---- kbusd log (%s) ----\n%s----\n", dir_.c_str(), text.c_str());
  }
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

int TestDaemon::stop() {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  int code = wait_for_exit(pid_, std::chrono::seconds(10));
  if (code == -1) {
    ::kill(pid_, SIGKILL);
    code = wait_for_exit(pid_, std::chrono::seconds(10));
  }
  pid_ = -1;
  return code;
}

std::string TestDaemon::log() const {
  std::ifstream in(dir_ + "/kbusd.log");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void TestDaemon::kill_hard() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
}

Result<Ksock> TestDaemon::try_open(int bus, Mode mode) const {
  return Ksock::try_open(bus, mode, dir_);
}

Ksock TestDaemon::open(int bus, Mode mode) const { return Ksock::open(bus, mode, dir_); }

void settle(Ksock& k) { k.reset(); }

bool poll_readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

bool poll_writable(int fd) {
  pollfd p{fd, POLLOUT, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & POLLOUT);
}

}  // namespace kbus::test
