#include "daemon/poll_fd.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <cstring>

#include "util/send_fds.hpp"

namespace kbus::daemon {

bool PollFd::make() {
  if (made()) return true;
  int pair[2] = {-1, -1};
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) != 0) return false;
  const int one = 1;
  ::setsockopt(pair[0], SOL_SOCKET, SO_SNDBUF, &one, sizeof one);  // minimum: easy to fill
  a_.reset(pair[0]);
  b_.reset(pair[1]);
  signalled_readable_ = false;
  blocked_writable_ = false;
  return true;
}

void PollFd::reset() noexcept {
  a_.reset();
  b_.reset();
}

void PollFd::update(bool readable, bool writable) {
  if (!made()) return;
  if (readable && !signalled_readable_) {
    const char byte = 'r';
    if (::send(b_.get(), &byte, 1, MSG_NOSIGNAL | MSG_DONTWAIT) == 1) signalled_readable_ = true;
  } else if (!readable && signalled_readable_) {
    char byte;
    if (::recv(a_.get(), &byte, 1, MSG_DONTWAIT) == 1) signalled_readable_ = false;
  }
  if (!writable && !blocked_writable_) {
    char fill[256] = {};
    for (int i = 0; i < 64; ++i) {
      pollfd p{a_.get(), POLLOUT, 0};
      if (::poll(&p, 1, 0) != 1 || !(p.revents & POLLOUT)) break;
      if (::send(a_.get(), fill, sizeof fill, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) break;
    }
    blocked_writable_ = true;
  } else if (writable && blocked_writable_) {
    char buf[4096];
    while (::recv(b_.get(), buf, sizeof buf, MSG_DONTWAIT) > 0) {
    }
    blocked_writable_ = false;
  }
}

bool PollFd::send_fds(const int* fds, int count) {
  if (!made() || count <= 0 || count > 4) return false;
  const char byte = 'S';
  return util::send_with_fds(b_.get(), &byte, 1, fds, count) == 1;
}

void PollFd::send_token() noexcept {
  const char byte = 't';
  ssize_t n = ::send(b_.get(), &byte, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
  (void)n;  // EAGAIN: thousands of tokens wait already, it is readable
}

void PollFd::drain_tokens() noexcept {
  char buf[64];
  while (::recv(a_.get(), buf, sizeof buf, MSG_DONTWAIT) > 0) {
  }
  signalled_readable_ = false;
}

}  // namespace kbus::daemon
