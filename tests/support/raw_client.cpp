// support/raw_client.cpp - see raw_client.hpp.
#include "support/raw_client.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace kbus::test {

namespace {
using Clock = std::chrono::steady_clock;
int ms_left(Clock::time_point deadline) {
  auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left < 0 ? 0 : static_cast<int>(left);
}
}  // namespace

std::string u32_bytes(std::uint32_t v) {
  std::string s(4, '\0');
  std::memcpy(s.data(), &v, 4);
  return s;
}

std::string frame_bytes(std::uint32_t op, std::string_view payload) {
  return u32_bytes(static_cast<std::uint32_t>(4 + payload.size())) + u32_bytes(op) +
         std::string(payload);
}

RawClient::RawClient(const std::string& path) {
  fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) throw std::runtime_error("socket failed");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd_);
    throw std::runtime_error("connect to " + path + " failed: " + std::strerror(errno));
  }
}

RawClient::~RawClient() {
  if (poll_fd_ >= 0) ::close(poll_fd_);
  if (fd_ >= 0) ::close(fd_);
}

void RawClient::set_nonblocking() { ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) | O_NONBLOCK); }

bool RawClient::send_bytes(std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

bool RawClient::send_frame(std::uint32_t op, std::string_view payload) {
  return send_bytes(frame_bytes(op, payload));
}

bool RawClient::fill(std::chrono::milliseconds timeout) {
  pollfd p{fd_, POLLIN, 0};
  int rc;
  do {
    rc = ::poll(&p, 1, static_cast<int>(timeout.count()));
  } while (rc < 0 && errno == EINTR);
  if (rc <= 0) return false;
  char data[65536];
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * 4)];
  iovec iov{data, sizeof data};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = cbuf;
  mh.msg_controllen = sizeof cbuf;
  ssize_t n;
  do {
    n = ::recvmsg(fd_, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && errno == EAGAIN) return true;
  if (n <= 0) {
    eof_ = true;
    return false;
  }
  for (cmsghdr* cm = CMSG_FIRSTHDR(&mh); cm != nullptr; cm = CMSG_NXTHDR(&mh, cm)) {
    if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
    std::size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
      if (poll_fd_ < 0) {
        poll_fd_ = fd;
      } else {
        ::close(fd);
      }
    }
  }
  buf_.append(data, static_cast<std::size_t>(n));
  return true;
}

std::optional<RawReply> RawClient::read_reply(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    if (buf_.size() >= 8) {
      std::uint32_t len;
      std::memcpy(&len, buf_.data(), 4);
      if (buf_.size() >= 4 + std::size_t{len}) {
        RawReply r;
        std::int32_t status;
        std::memcpy(&status, buf_.data() + 4, 4);
        r.status = status;
        r.payload = buf_.substr(8, len - 4);
        buf_.erase(0, 4 + std::size_t{len});
        return r;
      }
    }
    if (eof_) return std::nullopt;
    if (!fill(std::chrono::milliseconds(ms_left(deadline)))) return std::nullopt;
  }
}

std::optional<RawReply> RawClient::hello(std::uint32_t version, std::uint32_t mode,
                                         std::uint32_t header_len) {
  if (!send_frame(64, u32_bytes(version) + u32_bytes(mode) + u32_bytes(header_len)))
    return std::nullopt;
  return read_reply();
}

bool RawClient::wait_closed(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (!eof_) {
    buf_.clear();
    if (!fill(std::chrono::milliseconds(ms_left(deadline))) && !eof_) return false;
  }
  return true;
}

}  // namespace kbus::test
