// client/connection.cpp - socket I/O for one Ksock (docs/protocol.md §1-§3).
//
// Model: a blocking Unix stream socket carrying request frames out and reply
// frames in. Each request goes out in one send() call (looping only if the
// kernel accepts part of it); replies are read into rbuf_ and handed out one
// frame at a time. The POLLFD reply carries the poll fd as SCM_RIGHTS, so
// reads use recvmsg() while that descriptor is on its way. EINTR is retried
// everywhere; the daemon hanging up is reported as ECONNRESET (EOF or
// ECONNRESET from recv) or EPIPE (from send), never as a signal.
#include "client/connection.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <new>

namespace kbus::client {

using protocol::Op;

Errc errc_from_errno(int err) noexcept {
  switch (err) {
    case 0:
      return Errc::eproto;
    case ECONNREFUSED:  // a socket file with no daemon behind it
    case ENOENT:
      return Errc::enoent;
    default:
      return static_cast<Errc>(err);
  }
}

Errc Connection::fail(Errc e) noexcept {
  if (broken_ == Errc::ok) broken_ = e;
  return broken_;
}

// CLOSE is made synchronous, as the original's close() of /dev/kbusN was:
// half-close our side, then wait until the daemon, having carried out the
// release sequence (§7.2), closes its side. So when a Ksock is closed its
// statuses have been sent and its bindings are gone, for every other Ksock.
// Bounded: a daemon that does not answer within 5 s is left to it.
Connection::~Connection() {
  if (sock_ >= 0 && broken_ == Errc::ok && ::shutdown(sock_, SHUT_WR) == 0) {
    using Clock = std::chrono::steady_clock;
    const auto deadline = Clock::now() + std::chrono::seconds(5);
    char scratch[4096];
    for (;;) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) break;
      pollfd p{sock_, POLLIN, 0};
      int rc = ::poll(&p, 1, static_cast<int>(left));
      if (rc < 0 && errno == EINTR) continue;
      if (rc <= 0) break;
      ssize_t n = ::recv(sock_, scratch, sizeof scratch, MSG_DONTWAIT);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) break;  // EOF (or an error): the daemon has closed the Ksock
    }
  }
  if (poll_fd_ >= 0) ::close(poll_fd_);
  if (sock_ >= 0) ::close(sock_);
}

Result<std::unique_ptr<Connection>> Connection::open(const std::string& path, std::uint32_t mode,
                                                     std::uint32_t header_len) {
  std::unique_ptr<Connection> c(new Connection());
  c->path_ = path;
  c->mode_ = mode;
  c->header_len_ = header_len;

  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) return Errc::enametoolong;
  std::memcpy(addr.sun_path, path.data(), path.size());

  c->sock_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c->sock_ < 0) return errc_from_errno(errno);
  int rc;
  do {
    rc = ::connect(c->sock_, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    int err = errno;
    // A connect interrupted and restarted may report EISCONN: it worked.
    if (err != EISCONN) {
      // EACCES and the like pass through; ENOENT/ECONNREFUSED become ENOENT.
      return errc_from_errno(err);
    }
  }

  std::string hello;
  std::string payload;
  protocol::put_u32(payload, protocol::kVersion);
  protocol::put_u32(payload, mode | protocol::kModeLazyPollFd);
  protocol::put_u32(payload, header_len);
  protocol::append_request(hello, Op::kHello, payload);
  auto r = c->call_frame(hello);
  if (!r) return r.error() == Errc::econnreset ? Errc::enoent : r.error();
  if (r->status < 0) return static_cast<Errc>(-r->status);
  protocol::PayloadReader pr(r->payload);
  c->ksock_id_ = pr.u32();
  c->bus_ = pr.u32();
  if (!pr.done()) return Errc::eproto;
  return c;
}

Result<int> Connection::try_poll_fd() noexcept {
  if (poll_fd_ >= 0) return poll_fd_;
  expect_fd_ = true;
  auto r = call(Op::kPollFd);
  expect_fd_ = false;
  if (!r) return r.error();
  if (r->status < 0) return static_cast<Errc>(-r->status);
  if (poll_fd_ < 0) return fail(Errc::eproto);  // a success reply must carry it
  return poll_fd_;
}

Result<void> Connection::send_frame(std::string_view frame) {
  if (broken_ != Errc::ok) return broken_;
  while (!frame.empty()) {
    ssize_t n = ::send(sock_, frame.data(), frame.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(errc_from_errno(errno) == Errc::enoent ? Errc::econnreset
                                                         : errc_from_errno(errno));
    }
    frame.remove_prefix(static_cast<std::size_t>(n));
  }
  return {};
}

Result<void> Connection::fill() {
  for (;;) {
    auto r = fill_once(0, false);
    if (!r) return r.error();
    if (*r) return {};
    // EAGAIN: the SO_RCVTIMEO of an earlier wait_reply() ran out; block on.
  }
}

Result<bool> Connection::fill_once(int flags, bool timed) {
  constexpr std::size_t kChunk = 64 * 1024;
  char* const into = rbuf_.prepare(kChunk);
  ssize_t n;
  if (expect_fd_) {
    // The POLLFD reply brings the poll fd: look for SCM_RIGHTS.
    iovec iov{into, kChunk};
    alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * 4)];
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cbuf;
    mh.msg_controllen = sizeof(cbuf);
    do {
      n = ::recvmsg(sock_, &mh, MSG_CMSG_CLOEXEC | flags);
    } while (n < 0 && errno == EINTR);
    if (n > 0) {
      for (cmsghdr* cm = CMSG_FIRSTHDR(&mh); cm != nullptr; cm = CMSG_NXTHDR(&mh, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
        std::size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (std::size_t i = 0; i < count; ++i) {
          int fd;
          std::memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
          if (poll_fd_ < 0) {
            poll_fd_ = fd;
          } else {
            ::close(fd);  // only one is expected
          }
        }
      }
    }
  } else {
    do {
      n = ::recv(sock_, into, kChunk, flags);
    } while (n < 0 && errno == EINTR && !timed);
  }
  if (n < 0 && errno == EINTR) return false;  // timed: the caller recomputes its timeout
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return false;
  if (n <= 0) {
    if (n == 0) return fail(Errc::econnreset);
    return fail(errc_from_errno(errno) == Errc::enoent ? Errc::econnreset : errc_from_errno(errno));
  }
  rbuf_.commit(static_cast<std::size_t>(n));
  return true;
}

Result<ReplyFrame> Connection::read_reply() {
  if (broken_ != Errc::ok) return broken_;
  for (;;) {
    protocol::Frame f;
    std::size_t consumed = 0;
    std::string_view avail = rbuf_.data();
    // Replies may be longer than requests: a READ of a maximal message, or
    // the reports of many buses. Accept anything a u32 can say.
    switch (protocol::parse_frame(avail, f, consumed, 0xFFFFFFFFu)) {
      case protocol::Parse::kOk:
        rbuf_.consume(consumed);
        return ReplyFrame{static_cast<std::int32_t>(f.word), f.payload};
      case protocol::Parse::kBadLength:
        return fail(Errc::eproto);
      case protocol::Parse::kIncomplete:
        break;
    }
    auto r = fill();
    if (!r) return r.error();
  }
}

Result<bool> Connection::wait_reply(int timeout_ms) {
  if (broken_ != Errc::ok) return broken_;
  if (!rbuf_.empty()) return true;
  if (timeout_ms < 0) {
    auto r = fill();
    if (!r) return r.error();
    return true;
  }
  // One recv() bounded by SO_RCVTIMEO instead of poll() + recv(): a system
  // call less per timed wait. The option is set only when the timeout
  // changes; fill() treats its expiry as a reason to block on.
  int flags = 0;
  if (timeout_ms == 0) {
    flags = MSG_DONTWAIT;
  } else if (timeout_ms != rcvtimeo_ms_) {
    timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    if (::setsockopt(sock_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0)
      return fail(errc_from_errno(errno));
    rcvtimeo_ms_ = timeout_ms;
  }
  return fill_once(flags, true);
}

Result<std::size_t> Connection::frame_budget(std::size_t frame_len) noexcept {
  // kbusd's --max-frame-size >= its absolute maximum message size (>= 100)
  // + 1024, so every kbusd accepts this much.
  constexpr std::size_t kAlwaysAccepted = 1024 + 100;
  if (frame_budget_ == 0 && frame_len > kAlwaysAccepted) {
    std::string arg;
    protocol::put_u32(arg, 1);  // MAXMSGSIZE 1: the absolute maximum
    auto r = call(Op::kMaxMsgSize, arg);
    if (!r) return r.error();
    if (r->status < 0 || r->payload.size() != 4) return Errc::eproto;
    frame_budget_ = std::size_t{protocol::get_u32(r->payload.data())} + 1024;
  }
  return frame_budget_ ? frame_budget_ : kAlwaysAccepted;
}

Result<ReplyFrame> Connection::call_frame(std::string_view frame) {
  auto s = send_frame(frame);
  if (!s) return s.error();
  return read_reply();
}

Result<ReplyFrame> Connection::call(Op op, std::string_view payload) {
  std::string frame;
  frame.reserve(8 + payload.size());
  protocol::append_request(frame, op, payload);
  return call_frame(frame);
}

}  // namespace kbus::client
