#include "cli/stop_signals.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>

namespace kbus::cli {

namespace {
int g_pipe[2] = {-1, -1};
volatile sig_atomic_t g_stopped = 0;

extern "C" void on_stop_signal(int) {
  int saved = errno;
  g_stopped = 1;
  if (g_pipe[1] >= 0) {
    char c = 1;
    [[maybe_unused]] auto n = ::write(g_pipe[1], &c, 1);
  }
  errno = saved;
}
}  // namespace

StopSignals::StopSignals() {
  if (g_pipe[0] < 0) ::pipe2(g_pipe, O_CLOEXEC | O_NONBLOCK);
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
}

StopSignals::~StopSignals() {
  ::signal(SIGINT, SIG_DFL);
  ::signal(SIGTERM, SIG_DFL);
}

int StopSignals::fd() const noexcept { return g_pipe[0]; }
bool StopSignals::stopped() const noexcept { return g_stopped != 0; }

}  // namespace kbus::cli
