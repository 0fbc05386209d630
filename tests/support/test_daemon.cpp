// support/test_daemon.cpp - see test_daemon.hpp.
#include "support/test_daemon.hpp"
#include "support/child_process.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
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

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

std::string kbusd_path() { return KBUSD_PATH; }
std::string kbus_cli_path() { return KBUS_CLI_PATH; }

KbusdChild spawn_kbusd(const std::vector<std::string>& args, const std::string& log_path,
                       const std::vector<std::pair<std::string, std::string>>& env) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
  std::vector<std::string> argv = {kbusd_path()};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back("--ready-fd");
  argv.push_back("3");
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    // The daemon's log (and any sanitizer report) goes to a file.
    const int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log >= 0) {
      ::dup2(log, 1);
      ::dup2(log, 2);
    }
    // The write end becomes fd 3 (dup2 clears close-on-exec); nothing else
    // is inherited.
    if (p[1] == 3) {
      ::fcntl(3, F_SETFD, 0);
    } else {
      ::dup2(p[1], 3);
    }
    ::close_range(4, ~0U, 0);
    ::unsetenv("NOTIFY_SOCKET");
    for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
    std::vector<char*> v;
    for (auto& a : argv) v.push_back(a.data());
    v.push_back(nullptr);
    ::execv(v[0], v.data());
    ::_exit(127);
  }
  ::close(p[1]);
  return {pid, p[0]};
}

Readiness wait_ready(int ready_fd, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return Readiness::timeout;
    pollfd p{ready_fd, POLLIN, 0};
    const int n = ::poll(&p, 1, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) return Readiness::timeout;
    char byte = 0;
    ssize_t r;
    do r = ::read(ready_fd, &byte, 1);
    while (r < 0 && errno == EINTR);
    ::close(ready_fd);
    return r == 1 ? Readiness::ready : Readiness::failed;
  }
}

pid_t start_kbusd(const std::vector<std::string>& args, const std::string& log_path) {
  const KbusdChild c = spawn_kbusd(args, log_path);
  switch (wait_ready(c.ready_fd, std::chrono::seconds(30))) {
    case Readiness::ready:
      return c.pid;
    case Readiness::failed: {
      const int code = wait_for_exit(c.pid, std::chrono::seconds(10));
      if (code == -1) {
        ::kill(c.pid, SIGKILL);
        ::waitpid(c.pid, nullptr, 0);
      }
      throw std::runtime_error("kbusd did not start (exit " + std::to_string(code) +
                               "): " + read_file(log_path));
    }
    case Readiness::timeout:
      break;
  }
  ::close(c.ready_fd);
  ::kill(c.pid, SIGKILL);
  ::waitpid(c.pid, nullptr, 0);
  throw std::runtime_error("kbusd did not signal readiness within 30 s: " + read_file(log_path));
}

TestDaemon::TestDaemon(int devices, std::vector<std::string> extra_args) {
  char tmpl[] = "/tmp/kbus-test-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
  dir_ = tmpl;
  std::vector<std::string> args = {"--devices", std::to_string(devices), "--dir", dir_};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  try {
    pid_ = start_kbusd(args, dir_ + "/kbusd.log");
  } catch (...) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
    throw;
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

std::string TestDaemon::log() const { return read_file(dir_ + "/kbusd.log"); }

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
