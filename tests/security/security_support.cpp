// security/security_support.cpp - see security_support.hpp.
#include "security/security_support.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "support/child_process.hpp"
#include "support/test_daemon.hpp"

namespace kbus::test {

namespace {

std::optional<TestUser> lookup(const std::string& name) {
  passwd* pw = ::getpwnam(name.c_str());
  if (!pw) return std::nullopt;
  return TestUser{name, pw->pw_uid, pw->pw_gid};
}

int log_counter = 0;

}  // namespace

std::optional<std::pair<TestUser, TestUser>> test_users(std::string& why) {
  auto a = lookup("kbus-test-a");
  auto b = lookup("kbus-test-b");
  if (a && b) return std::make_pair(*a, *b);
  if (::geteuid() != 0) {
    why = "needs root to create the Unix users kbus-test-a and kbus-test-b (CI runs as root)";
    return std::nullopt;
  }
  for (const char* name : {"kbus-test-a", "kbus-test-b"}) {
    if (lookup(name)) continue;
    auto r = run_process({"/usr/sbin/useradd", "--system", "--user-group", "--no-create-home",
                          "--shell", "/usr/sbin/nologin", name});
    if (r.exit_code != 0 && !lookup(name)) {
      why = std::string("useradd ") + name + " failed: " + r.err;
      return std::nullopt;
    }
  }
  a = lookup("kbus-test-a");
  b = lookup("kbus-test-b");
  if (!a || !b) {
    why = "the test users do not exist after useradd";
    return std::nullopt;
  }
  return std::make_pair(*a, *b);
}

void become(const TestUser& u) {
  if (::setgroups(1, &u.gid) != 0 || ::setgid(u.gid) != 0 || ::setuid(u.uid) != 0)
    throw std::runtime_error("cannot become " + u.name + ": " + std::strerror(errno));
}

std::string make_public_dir() {
  char tmpl[] = "/tmp/kbus-sec-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
  ::chmod(tmpl, 0755);
  return tmpl;
}

bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

KbusdProcess::KbusdProcess(const std::string& dir, int devices, std::vector<std::string> args) {
  log_ = dir + "/kbusd-" + std::to_string(++log_counter) + ".log";
  std::vector<std::string> argv = {"--devices", std::to_string(devices), "--dir", dir};
  argv.insert(argv.end(), args.begin(), args.end());
  // docs/reliability.md §7: ready means serving with root dropped.
  pid_ = start_kbusd(argv, log_);
}

KbusdProcess::~KbusdProcess() { kill_hard(); }

std::string KbusdProcess::log() const {
  std::ifstream in(log_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int KbusdProcess::stop() {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  const int code = wait_for_exit(pid_, std::chrono::seconds(10));
  if (code != -1) pid_ = -1;
  return code;
}

void KbusdProcess::kill_hard() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

std::vector<std::pair<std::string, long long>> KbusdProcess::status() {
  auto count_lines = [&] {
    std::string text = log();
    std::size_t n = 0;
    for (std::size_t at = 0; (at = text.find("kbusd: status:", at)) != std::string::npos; ++at) ++n;
    return n;
  };
  const std::size_t before = count_lines();
  ::kill(pid_, SIGUSR1);
  if (!eventually([&] { return count_lines() > before; })) return {};
  const std::string text = log();
  const std::string line = text.substr(text.rfind("kbusd: status:"));
  // "status: 3 connections, 3 ksocks, 2 buses, 14 fds, rss 3456 kB, heap 123 bytes"
  std::vector<std::pair<std::string, long long>> out;
  long long conns = 0, ksocks = 0, buses = 0, fds = 0, rss = 0, heap = 0;
  if (std::sscanf(line.c_str(),
                  "kbusd: status: %lld connections, %lld ksocks, %lld buses, %lld fds, rss %lld "
                  "kB, heap %lld bytes",
                  &conns, &ksocks, &buses, &fds, &rss, &heap) == 6) {
    out = {{"connections", conns}, {"ksocks", ksocks}, {"fds", fds}, {"rss", rss}, {"heap", heap}};
  }
  return out;
}

}  // namespace kbus::test
