// support/test_daemon.hpp - a private kbusd for one test (STYLE.md 11).
//
// TestDaemon starts `kbusd --devices N --dir <fresh mkdtemp dir>` as a child
// process, waits (bounded) for its readiness byte on --ready-fd (never for
// socket files: docs/reliability.md §7), and stops it with SIGTERM +
// waitpid when destroyed, removing the directory. Tests never
// sleep to wait for bus state: they "settle" with a round trip (RESET),
// whose reply proves every earlier operation of that Ksock was applied.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "kbus/ksock.hpp"

namespace kbus::test {

class TestDaemon {
 public:
  explicit TestDaemon(int devices = 3, std::vector<std::string> extra_args = {});
  ~TestDaemon();
  TestDaemon(const TestDaemon&) = delete;
  TestDaemon& operator=(const TestDaemon&) = delete;

  const std::string& dir() const noexcept { return dir_; }
  pid_t pid() const noexcept { return pid_; }
  bool running() const noexcept { return pid_ > 0; }

  // Opens a Ksock on one of this daemon's buses.
  Ksock open(int bus = 0, Mode mode = Mode::read_write) const;
  Result<Ksock> try_open(int bus = 0, Mode mode = Mode::read_write) const;

  // SIGTERM, then waitpid (SIGKILL after 10 s). Returns the exit code
  // (128 + signal if killed), or -1 if already stopped. Idempotent.
  int stop();
  // What the daemon has written to stdout/stderr (kept in DIR/kbusd.log and
  // printed by the destructor if the test failed).
  std::string log() const;
  // SIGKILL and reap (a daemon that dies without cleaning up).
  void kill_hard();

 private:
  std::string dir_;
  pid_t pid_ = -1;
};

// A kbusd child process that has not yet been waited for: `ready_fd` is
// the read end of its --ready-fd pipe.
struct KbusdChild {
  pid_t pid = -1;
  int ready_fd = -1;
};
// Forks and execs `kbusd_path() args... --ready-fd N` with stdout and
// stderr going to `log_path` (appended), no other descriptors inherited,
// $NOTIFY_SOCKET unset, and then `env` set.
KbusdChild spawn_kbusd(const std::vector<std::string>& args, const std::string& log_path,
                       const std::vector<std::pair<std::string, std::string>>& env = {});
// What a kbusd's --ready-fd said (docs/reliability.md §7).
enum class Readiness {
  ready,    // the byte came: it serves
  failed,   // closed without the byte: it did not start
  timeout,  // neither within the time given
};
// Waits for the byte or EOF on `ready_fd`, bounded by `timeout`; closes
// the fd unless it timed out.
Readiness wait_ready(int ready_fd, std::chrono::milliseconds timeout);
// spawn_kbusd + wait_ready (30 s): the pid of a serving kbusd. Throws
// std::runtime_error with the log if it fails to start (the child reaped)
// or stays silent (the child killed).
pid_t start_kbusd(const std::vector<std::string>& args, const std::string& log_path);

// A round trip that proves every earlier operation on `k` was applied.
void settle(Ksock& k);

// poll(fd, 0 timeout): the readiness the daemon shows right now.
bool poll_readable(int fd);
bool poll_writable(int fd);

// Path of the kbus binaries under test.
std::string kbusd_path();
std::string kbus_cli_path();

}  // namespace kbus::test
