// support/child_process.hpp - other processes for tests, with pipes to
// coordinate them. Every wait is bounded by a timeout; nothing sleeps.
//
// * LineReader: reads lines from a pipe, each read bounded by a timeout.
// * Actor: a forked child running a function (another Ksock owner, as a
//   separate process would be), talking to the test over a line channel.
// * run_process / SpawnedProcess: run a program (the kbus CLI) with its own
//   environment and collect or stream its output.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace kbus::test {

using namespace std::chrono_literals;
constexpr std::chrono::milliseconds kDefaultTimeout = 10s;

// Lines from an fd. On timeout returns "<timeout>", at EOF "<eof>", so that a
// failed expectation prints something readable.
class LineReader {
 public:
  explicit LineReader(int fd = -1) : fd_(fd) {}
  std::string line(std::chrono::milliseconds timeout = kDefaultTimeout);
  // Everything up to EOF (bounded by timeout).
  std::string rest(std::chrono::milliseconds timeout = kDefaultTimeout);
  // True if a line (or EOF) is available within `timeout`.
  bool ready(std::chrono::milliseconds timeout);
  int fd() const noexcept { return fd_; }

 private:
  bool fill(std::chrono::milliseconds timeout);  // false on timeout
  int fd_;
  std::string buf_;
  bool eof_ = false;
};

// The child's side of an Actor's channel.
class Channel {
 public:
  Channel(int in_fd, int out_fd) : in_(in_fd), out_fd_(out_fd) {}
  void say(const std::string& line);  // one line to the test
  std::string hear(std::chrono::milliseconds timeout = kDefaultTimeout);  // one line from it
  // True if a whole line from the test is available within `timeout`.
  bool line_ready(std::chrono::milliseconds timeout) { return in_.ready(timeout); }
  int in_fd() const noexcept { return in_.fd(); }

 private:
  LineReader in_;
  int out_fd_;
};

// A forked child process running `body`. The child's exit status is the
// body's return value; an exception in the body is reported as a line
// "EXCEPTION: <what>" and exit status 100. The child never returns into the
// test framework (it ends with _exit).
class Actor {
 public:
  explicit Actor(std::function<int(Channel&)> body);
  ~Actor();  // SIGKILL if still running, then reap
  Actor(const Actor&) = delete;
  Actor& operator=(const Actor&) = delete;

  void tell(const std::string& line);  // to the child
  std::string hear(std::chrono::milliseconds timeout = kDefaultTimeout);  // from the child
  pid_t pid() const noexcept { return pid_; }
  void kill(int sig);
  // Waits for the child to exit; returns its exit code, 128+signal, or -1
  // on timeout.
  int wait(std::chrono::milliseconds timeout = kDefaultTimeout);

 private:
  pid_t pid_ = -1;
  int to_child_ = -1;
  LineReader from_child_;
  int from_child_fd_ = -1;
};

using Env = std::vector<std::pair<std::string, std::string>>;

struct ProcessResult {
  int exit_code = -1;  // exit code, 128+signal, or -1 if it timed out (then killed)
  std::string out;
  std::string err;
};

// Runs argv (argv[0] is a path) with the current environment plus `env`,
// feeding `input` to stdin. Bounded by `timeout` (then SIGKILL).
ProcessResult run_process(const std::vector<std::string>& argv, const Env& env = {},
                          const std::string& input = {},
                          std::chrono::milliseconds timeout = kDefaultTimeout);

// A program running alongside the test, its stdout readable line by line.
class SpawnedProcess {
 public:
  SpawnedProcess(const std::vector<std::string>& argv, const Env& env = {});
  ~SpawnedProcess();  // SIGKILL if still running
  SpawnedProcess(const SpawnedProcess&) = delete;
  SpawnedProcess& operator=(const SpawnedProcess&) = delete;

  std::string line(std::chrono::milliseconds timeout = kDefaultTimeout) { return out_.line(timeout); }
  LineReader& out() { return out_; }
  std::string err(std::chrono::milliseconds timeout = kDefaultTimeout) { return err_.rest(timeout); }
  pid_t pid() const noexcept { return pid_; }
  void kill(int sig);
  // Closes the child's stdin.
  void close_stdin();
  // Waits for exit: exit code, 128+signal, or -1 on timeout.
  int wait(std::chrono::milliseconds timeout = kDefaultTimeout);
  // True while it has not exited (checked without waiting).
  bool alive();

 private:
  pid_t pid_ = -1;
  int in_fd_ = -1;
  LineReader out_;
  LineReader err_;
  int status_ = -1;
};

// A pidfd for a child (readable once it has exited), or -1.
int open_pidfd(pid_t pid);

// waitpid bounded by a timeout: exit code, 128+signal, or -1 on timeout.
int wait_for_exit(pid_t pid, std::chrono::milliseconds timeout);

}  // namespace kbus::test
