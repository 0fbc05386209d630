// daemon/readiness.cpp - see readiness.hpp.
#include "daemon/readiness.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#if KBUS_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

namespace kbus::daemon {

namespace {

// sd_notify; a failure (such as a NOTIFY_SOCKET nobody listens on) is
// logged: the service manager will then report the start as failed.
void notify(const char* state) {
  if (const char* sock = std::getenv("NOTIFY_SOCKET"); !sock || !*sock) return;
#if KBUS_HAVE_SYSTEMD
  const int r = sd_notify(0, state);
  if (r < 0)
    std::fprintf(stderr, "kbusd: cannot notify $NOTIFY_SOCKET (%s): %s\n",
                 std::getenv("NOTIFY_SOCKET"), std::strerror(-r));
#else
  (void)state;
  std::fprintf(stderr,
               "kbusd: $NOTIFY_SOCKET is set but this kbusd was built without libsystemd "
               "(KBUS_SYSTEMD=OFF): use --ready-fd, or Type=simple in the unit\n");
#endif
}

}  // namespace

Readiness::~Readiness() {
  if (ready_fd_ >= 0) ::close(ready_fd_);
}

bool Readiness::check(std::string& why) const {
  if (ready_fd_ < 0) return true;
  const int flags = ::fcntl(ready_fd_, F_GETFD);
  if (flags < 0) {
    why = "--ready-fd " + std::to_string(ready_fd_) +
          ": not an open file descriptor (open it for writing when starting kbusd, e.g. "
          "3>pipe)";
    return false;
  }
  const int fl = ::fcntl(ready_fd_, F_GETFL);
  if ((fl & O_ACCMODE) == O_RDONLY) {
    why = "--ready-fd " + std::to_string(ready_fd_) + ": not open for writing";
    return false;
  }
  ::fcntl(ready_fd_, F_SETFD, flags | FD_CLOEXEC);
  return true;
}

void Readiness::ready(const std::string& status) {
  if (notified_ready_) return;
  notified_ready_ = true;
  const std::string state = "READY=1\nSTATUS=" + status;
  notify(state.c_str());
  if (ready_fd_ >= 0) {
    const char byte = '\n';
    ssize_t n;
    do n = ::write(ready_fd_, &byte, 1);
    while (n < 0 && errno == EINTR);
    if (n != 1)
      std::fprintf(stderr, "kbusd: cannot write to --ready-fd %d: %s\n", ready_fd_,
                   std::strerror(errno));
    ::close(ready_fd_);
    ready_fd_ = -1;
  }
}

void Readiness::stopping() { notify("STOPPING=1"); }

}  // namespace kbus::daemon
