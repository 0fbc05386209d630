// util/send_fds.cpp - see send_fds.hpp.
#include "util/send_fds.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace kbus::util {

ssize_t send_with_fds(int sock, const char* data, std::size_t len, const int* fds, int count) {
  constexpr int kMax = 4;
  if (count < 1 || count > kMax) {
    errno = EINVAL;
    return -1;
  }
  iovec iov{const_cast<char*>(data), len};
  alignas(cmsghdr) char control[CMSG_SPACE(kMax * sizeof(int))] = {};
  const std::size_t fd_bytes = static_cast<std::size_t>(count) * sizeof(int);
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = CMSG_SPACE(fd_bytes);
  cmsghdr* cm = CMSG_FIRSTHDR(&msg);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(fd_bytes);
  std::memcpy(CMSG_DATA(cm), fds, fd_bytes);
  return ::sendmsg(sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
}

}  // namespace kbus::util
