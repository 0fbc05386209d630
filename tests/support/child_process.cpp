// support/child_process.cpp - see child_process.hpp.
#include "support/child_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <stdexcept>

extern char** environ;

namespace kbus::test {

namespace {
using Clock = std::chrono::steady_clock;

int ms_left(Clock::time_point deadline) {
  auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left < 0 ? 0 : static_cast<int>(left);
}

void write_all(int fd, std::string_view s) {
  while (!s.empty()) {
    ssize_t n = ::write(fd, s.data(), s.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    s.remove_prefix(static_cast<std::size_t>(n));
  }
}

int decode_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}
}  // namespace

int open_pidfd(pid_t pid) {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

int wait_for_exit(pid_t pid, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  int pfd = open_pidfd(pid);
  int result = -1;
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      result = decode_status(status);
      break;
    }
    if ((r < 0 && errno != EINTR) || Clock::now() >= deadline) break;
    if (pfd >= 0) {
      pollfd p{pfd, POLLIN, 0};
      ::poll(&p, 1, ms_left(deadline));
    } else {
      ::poll(nullptr, 0, 5);
    }
  }
  if (pfd >= 0) ::close(pfd);
  return result;
}

// ---- LineReader ----

bool LineReader::fill(std::chrono::milliseconds timeout) {
  if (eof_) return true;
  pollfd p{fd_, POLLIN, 0};
  for (;;) {
    int rc = ::poll(&p, 1, static_cast<int>(timeout.count()));
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) return false;
    break;
  }
  char buf[65536];
  ssize_t n;
  do {
    n = ::read(fd_, buf, sizeof buf);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) {
    eof_ = true;
  } else {
    buf_.append(buf, static_cast<std::size_t>(n));
  }
  return true;
}

std::string LineReader::line(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    auto nl = buf_.find('\n');
    if (nl != std::string::npos) {
      std::string l = buf_.substr(0, nl);
      buf_.erase(0, nl + 1);
      return l;
    }
    if (eof_) {
      if (!buf_.empty()) return std::exchange(buf_, {});
      return "<eof>";
    }
    if (!fill(std::chrono::milliseconds(ms_left(deadline)))) return "<timeout>";
  }
}

std::string LineReader::rest(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (!eof_) {
    if (!fill(std::chrono::milliseconds(ms_left(deadline)))) break;
  }
  return std::exchange(buf_, {});
}

bool LineReader::ready(std::chrono::milliseconds timeout) {
  if (buf_.find('\n') != std::string::npos || eof_) return true;
  auto deadline = Clock::now() + timeout;
  while (buf_.find('\n') == std::string::npos && !eof_) {
    if (!fill(std::chrono::milliseconds(ms_left(deadline)))) return false;
  }
  return true;
}

// ---- Channel and Actor ----

void Channel::say(const std::string& line) { write_all(out_fd_, line + "\n"); }
std::string Channel::hear(std::chrono::milliseconds timeout) { return in_.line(timeout); }

Actor::Actor(std::function<int(Channel&)> body) {
  int down[2];
  int up[2];
  if (::pipe2(down, O_CLOEXEC) < 0 || ::pipe2(up, O_CLOEXEC) < 0)
    throw std::runtime_error("pipe failed");
  std::fflush(nullptr);
  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    // Keep only stdio and the channel: the child must not hold copies of
    // the test's Ksock connections (the daemon would not see them close).
    int in = ::fcntl(down[0], F_DUPFD, 1000);
    int out = ::fcntl(up[1], F_DUPFD, 1000);
    ::close_range(3, 999, 0);
    ::close_range(static_cast<unsigned>(std::max(in, out)) + 1, ~0U, 0);
    int code = 100;
    Channel ch(in, out);
    try {
      code = body(ch);
    } catch (const std::exception& e) {
      ch.say(std::string("EXCEPTION: ") + e.what());
    } catch (...) {
      ch.say("EXCEPTION: unknown");
    }
    ::_exit(code);
  }
  ::close(down[0]);
  ::close(up[1]);
  to_child_ = down[1];
  from_child_fd_ = up[0];
  from_child_ = LineReader(up[0]);
}

Actor::~Actor() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  if (to_child_ >= 0) ::close(to_child_);
  if (from_child_fd_ >= 0) ::close(from_child_fd_);
}

void Actor::tell(const std::string& line) { write_all(to_child_, line + "\n"); }
std::string Actor::hear(std::chrono::milliseconds timeout) { return from_child_.line(timeout); }
void Actor::kill(int sig) {
  if (pid_ > 0) ::kill(pid_, sig);
}
int Actor::wait(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return -1;
  int r = wait_for_exit(pid_, timeout);
  if (r != -1) pid_ = -1;
  return r;
}

// ---- processes ----

namespace {
struct Pipes {
  int in[2] = {-1, -1};
  int out[2] = {-1, -1};
  int err[2] = {-1, -1};
};

pid_t spawn(const std::vector<std::string>& argv, const Env& env, Pipes& p) {
  if (::pipe2(p.in, O_CLOEXEC) < 0 || ::pipe2(p.out, O_CLOEXEC) < 0 ||
      ::pipe2(p.err, O_CLOEXEC) < 0)
    throw std::runtime_error("pipe failed");
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    ::dup2(p.in[0], 0);
    ::dup2(p.out[1], 1);
    ::dup2(p.err[1], 2);
    for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(p.in[0]);
  ::close(p.out[1]);
  ::close(p.err[1]);
  return pid;
}
}  // namespace

ProcessResult run_process(const std::vector<std::string>& argv, const Env& env,
                          const std::string& input, std::chrono::milliseconds timeout) {
  Pipes p;
  pid_t pid = spawn(argv, env, p);
  auto deadline = Clock::now() + timeout;
  int in = p.in[1];
  ::fcntl(in, F_SETFL, O_NONBLOCK);
  std::size_t written = 0;
  if (input.empty()) {
    ::close(in);
    in = -1;
  }
  ProcessResult r;
  int out = p.out[0];
  int err = p.err[0];
  bool timed_out = false;
  while (out >= 0 || err >= 0) {
    pollfd fds[3];
    int n = 0;
    int io = -1, oo = -1, eo = -1;
    if (in >= 0) io = n, fds[n++] = {in, POLLOUT, 0};
    if (out >= 0) oo = n, fds[n++] = {out, POLLIN, 0};
    if (err >= 0) eo = n, fds[n++] = {err, POLLIN, 0};
    int rc = ::poll(fds, n, ms_left(deadline));
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) {
      timed_out = true;
      break;
    }
    if (io >= 0 && fds[io].revents) {
      ssize_t w = ::write(in, input.data() + written, input.size() - written);
      if (w > 0) written += static_cast<std::size_t>(w);
      if ((w < 0 && errno != EAGAIN && errno != EINTR) || written == input.size()) {
        ::close(in);
        in = -1;
      }
    }
    for (auto [idx, fdp, dst] : {std::tuple{oo, &out, &r.out}, std::tuple{eo, &err, &r.err}}) {
      if (idx < 0 || !fds[idx].revents) continue;
      char buf[65536];
      ssize_t got = ::read(*fdp, buf, sizeof buf);
      if (got > 0) {
        dst->append(buf, static_cast<std::size_t>(got));
      } else if (got == 0 || errno != EINTR) {
        ::close(*fdp);
        *fdp = -1;
      }
    }
  }
  if (in >= 0) ::close(in);
  if (out >= 0) ::close(out);
  if (err >= 0) ::close(err);
  if (timed_out) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    r.exit_code = -1;
    return r;
  }
  r.exit_code = wait_for_exit(pid, std::chrono::milliseconds(ms_left(deadline) + 1000));
  if (r.exit_code == -1) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
  return r;
}

SpawnedProcess::SpawnedProcess(const std::vector<std::string>& argv, const Env& env) {
  Pipes p;
  pid_ = spawn(argv, env, p);
  in_fd_ = p.in[1];
  out_ = LineReader(p.out[0]);
  err_ = LineReader(p.err[0]);
}

SpawnedProcess::~SpawnedProcess() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  if (in_fd_ >= 0) ::close(in_fd_);
  if (out_.fd() >= 0) ::close(out_.fd());
  if (err_.fd() >= 0) ::close(err_.fd());
}

void SpawnedProcess::kill(int sig) {
  if (pid_ > 0) ::kill(pid_, sig);
}

void SpawnedProcess::close_stdin() {
  if (in_fd_ >= 0) ::close(in_fd_);
  in_fd_ = -1;
}

int SpawnedProcess::wait(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return status_;
  int r = wait_for_exit(pid_, timeout);
  if (r != -1) {
    status_ = r;
    pid_ = -1;
  }
  return r;
}

bool SpawnedProcess::alive() {
  if (pid_ <= 0) return false;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) == pid_) {
    status_ = decode_status(status);
    pid_ = -1;
    return false;
  }
  return true;
}

}  // namespace kbus::test
