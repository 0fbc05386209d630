// security/security_support.hpp - helpers for the access, limits and
// restart tests (docs/reliability.md §4-§6): two Unix users, a child that
// runs as one of them, and kbusd started by hand in a chosen directory (so
// that it can be killed and started again in the same place).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace kbus::test {

struct TestUser {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;  // its own group, named as the user
};

// kbus-test-a and kbus-test-b, created with useradd if missing (idempotent).
// nullopt, with the reason in `why`, if that is impossible (not root).
std::optional<std::pair<TestUser, TestUser>> test_users(std::string& why);

// In a forked child: become `u` for good (groups, gid, uid). Throws if it
// cannot.
void become(const TestUser& u);

// kbusd started as a child with `--dir dir` plus `args`, its output in
// dir/kbusd-<n>.log; waits (bounded) for its readiness (--ready-fd,
// docs/reliability.md §7): it serves, and has dropped root if told to.
class KbusdProcess {
 public:
  KbusdProcess(const std::string& dir, int devices, std::vector<std::string> args = {});
  ~KbusdProcess();  // SIGKILL if still running
  KbusdProcess(const KbusdProcess&) = delete;
  KbusdProcess& operator=(const KbusdProcess&) = delete;

  pid_t pid() const noexcept { return pid_; }
  const std::string& log_path() const noexcept { return log_; }
  std::string log() const;
  // SIGTERM and wait: the exit code (128+signal if killed), -1 on timeout.
  int stop();
  // SIGKILL and reap.
  void kill_hard();
  // SIGUSR1, then the numbers of the status line it logs (docs/
  // reliability.md §1): {"connections", "ksocks", "fds", "rss", "heap"}.
  std::vector<std::pair<std::string, long long>> status();

 private:
  pid_t pid_ = -1;
  std::string log_;
};

// A fresh directory under /tmp that every user may enter (0755).
std::string make_public_dir();

// Waits until `pred` holds, polling every few ms, at most `timeout`.
bool eventually(const std::function<bool()>& pred,
                std::chrono::milliseconds timeout = std::chrono::seconds(10));

}  // namespace kbus::test
