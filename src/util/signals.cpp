#include "util/signals.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

namespace kbus::util {

namespace {
volatile sig_atomic_t g_write_fd = -1;
volatile sig_atomic_t g_arrived = 0;

extern "C" void kbus_on_signal(int signo) {
  const int saved = errno;
  g_arrived = 1;
  const int fd = g_write_fd;
  if (fd >= 0) {
    const char c = static_cast<char>(signo);
    [[maybe_unused]] auto n = ::write(fd, &c, 1);
  }
  errno = saved;
}
}  // namespace

SignalPipe::SignalPipe() : SignalPipe({SIGINT, SIGTERM}) {}

SignalPipe::SignalPipe(std::initializer_list<int> signals, bool ignore_sigpipe) {
  if (g_write_fd >= 0) {
    std::fputs("kbus: internal error: two SignalPipes at once\n", stderr);
    std::abort();
  }
  int p[2];
  if (::pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) {
    std::perror("kbus: pipe2 for the signal pipe");
    std::abort();
  }
  read_.reset(p[0]);
  write_.reset(p[1]);
  g_arrived = 0;
  g_write_fd = write_.get();
  struct sigaction sa {};
  sa.sa_handler = kbus_on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  for (int s : signals) {
    Saved sv{s, {}};
    ::sigaction(s, &sa, &sv.old);
    saved_.push_back(sv);
  }
  if (ignore_sigpipe) {
    struct sigaction ign {};
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    Saved pipe{SIGPIPE, {}};
    ::sigaction(SIGPIPE, &ign, &pipe.old);
    saved_.push_back(pipe);
  }
}

SignalPipe::~SignalPipe() {
  for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) ::sigaction(it->signo, &it->old, nullptr);
  g_write_fd = -1;
}

int SignalPipe::take() noexcept {
  unsigned char c = 0;
  for (;;) {
    const ssize_t n = ::read(read_.get(), &c, 1);
    if (n == 1) return c;
    if (n < 0 && errno == EINTR) continue;
    return 0;
  }
}

bool SignalPipe::stopped() const noexcept { return g_arrived != 0; }

}  // namespace kbus::util
