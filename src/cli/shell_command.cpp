// cli/shell_command.cpp - a child process with both ends piped. The parent
// writes stdin and reads stdout in one poll() loop, so a command that writes
// before it has read all its input cannot deadlock us.
#include "cli/shell_command.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

namespace kbus::cli {

bool run_shell_command(const std::string& command, const std::string& input,
                       const std::vector<std::pair<std::string, std::string>>& env,
                       CommandResult& result) {
  int in[2];
  int out[2];
  if (::pipe2(in, O_CLOEXEC) < 0) return false;
  if (::pipe2(out, O_CLOEXEC) < 0) {
    ::close(in[0]);
    ::close(in[1]);
    return false;
  }
  pid_t pid = ::fork();
  if (pid < 0) {
    int err = errno;
    ::close(in[0]);
    ::close(in[1]);
    ::close(out[0]);
    ::close(out[1]);
    errno = err;
    return false;
  }
  if (pid == 0) {
    ::dup2(in[0], 0);
    ::dup2(out[1], 1);
    ::signal(SIGPIPE, SIG_DFL);
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGTERM, SIG_DFL);
    for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
    ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(in[0]);
  ::close(out[1]);
  int wfd = in[1];
  int rfd = out[0];
  ::fcntl(wfd, F_SETFL, O_NONBLOCK);
  std::size_t written = 0;
  if (input.empty()) {
    ::close(wfd);
    wfd = -1;
  }
  result.out.clear();
  while (rfd >= 0) {
    pollfd p[2];
    int n = 0;
    p[n++] = {rfd, POLLIN, 0};
    if (wfd >= 0) p[n++] = {wfd, POLLOUT, 0};
    if (::poll(p, n, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (wfd >= 0 && (p[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
      ssize_t w = ::write(wfd, input.data() + written, input.size() - written);
      if (w > 0) written += static_cast<std::size_t>(w);
      if ((w < 0 && errno != EAGAIN && errno != EINTR) || written == input.size()) {
        ::close(wfd);  // EPIPE: the command does not want (the rest of) it
        wfd = -1;
      }
    }
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      char buf[65536];
      ssize_t r = ::read(rfd, buf, sizeof buf);
      if (r > 0) {
        result.out.append(buf, static_cast<std::size_t>(r));
      } else if (r == 0 || errno != EINTR) {
        ::close(rfd);
        rfd = -1;
      }
    }
  }
  if (wfd >= 0) ::close(wfd);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return true;
}

}  // namespace kbus::cli
