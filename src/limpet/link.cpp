// limpet/link.cpp - see link.hpp. Non-blocking sockets; EINTR retried.
#include "limpet/link.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

namespace kbus::limpet {

namespace {

std::string sys_error(const std::string& what, int err) {
  return what + ": " + std::strerror(err);
}

bool fill_unix(const std::string& path, sockaddr_un& sa, std::string& error) {
  sa = {};
  sa.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(sa.sun_path)) {
    error = "Unix socket path '" + path + "' is empty or too long";
    return false;
  }
  std::memcpy(sa.sun_path, path.data(), path.size());
  return true;
}

// Resolves host:port; `passive` for a server (empty host = any address).
addrinfo* resolve(const Address& a, bool passive, std::string& error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  if (passive) hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(a.port);
  int rc = ::getaddrinfo(a.host.empty() ? nullptr : a.host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0) {
    error = "cannot resolve '" + a.host + "': " + ::gai_strerror(rc);
    return nullptr;
  }
  return res;
}

}  // namespace

std::string Address::to_string() const {
  if (!tcp) return path;
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

Result<Address> parse_address(std::string_view text) {
  Address a;
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos || text.find('/') != std::string_view::npos) {
    a.tcp = false;
    a.path = std::string(text);
    return a;
  }
  std::string_view host = text.substr(0, colon);
  std::string_view port = text.substr(colon + 1);
  if (port.empty() || port.size() > 5) return Errc::einval;
  unsigned long p = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return Errc::einval;
    p = p * 10 + static_cast<unsigned long>(c - '0');
  }
  if (p > 65535) return Errc::einval;
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  a.tcp = true;
  a.host = std::string(host);
  a.port = static_cast<std::uint16_t>(p);
  return a;
}

void tune_socket(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return;
  if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6) return;
  int one = 1, idle = 5, intvl = 2, cnt = 3;
  unsigned int user_timeout_ms = 15000;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
  ::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms, sizeof user_timeout_ms);
}

int listen_on(const Address& a, std::uint16_t& bound_port, std::string& error) {
  bound_port = 0;
  if (!a.tcp) {
    sockaddr_un sa;
    if (!fill_unix(a.path, sa, error)) return -1;
    struct stat st {};
    if (::lstat(a.path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(a.path.c_str());
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
      error = sys_error("socket", errno);
      return -1;
    }
    if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || ::listen(fd, 8) != 0) {
      error = sys_error("cannot listen on '" + a.path + "'", errno);
      ::close(fd);
      return -1;
    }
    return fd;
  }
  auto try_host = [&](const Address& addr, int& err) -> int {
    std::string rerr;
    addrinfo* res = resolve(addr, true, rerr);
    if (!res) {
      error = rerr;
      err = EADDRNOTAVAIL;
      return -1;
    }
    int fd = -1;
    for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
      fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
      if (fd < 0) {
        err = errno;
        continue;
      }
      int one = 1;
      ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      if (::bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && ::listen(fd, 8) == 0) break;
      err = errno;
      ::close(fd);
      fd = -1;
    }
    ::freeaddrinfo(res);
    return fd;
  };
  int err = 0;
  int fd = try_host(a, err);
  if (fd < 0 && !a.host.empty() && err == EADDRNOTAVAIL) {
    // Not an address of this machine: as the original server, use them all.
    Address any = a;
    any.host.clear();
    fd = try_host(any, err);
  }
  if (fd < 0) {
    if (error.empty() || err != EADDRNOTAVAIL) error = sys_error("cannot listen on " + a.to_string(), err);
    return -1;
  }
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    if (ss.ss_family == AF_INET) {
      bound_port = ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    } else if (ss.ss_family == AF_INET6) {
      bound_port = ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
    }
  }
  return fd;
}

int connect_to(const Address& a, int timeout_ms, int stop_fd, std::string& error) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  auto attempt = [&](int family, const sockaddr* sa, socklen_t len) -> int {
    int fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
      error = sys_error("socket", errno);
      return -1;
    }
    int rc;
    do {
      rc = ::connect(fd, sa, len);
    } while (rc < 0 && errno == EINTR);
    if (rc == 0) return fd;
    if (errno != EINPROGRESS && errno != EAGAIN) {
      error = sys_error("cannot connect to " + a.to_string(), errno);
      ::close(fd);
      return -1;
    }
    for (;;) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) {
        error = "cannot connect to " + a.to_string() + ": timed out";
        ::close(fd);
        return -1;
      }
      pollfd p[2] = {{fd, POLLOUT, 0}, {stop_fd, POLLIN, 0}};
      rc = ::poll(p, stop_fd >= 0 ? 2 : 1, static_cast<int>(left));
      if (rc < 0 && errno == EINTR) continue;
      if (stop_fd >= 0 && (p[1].revents & POLLIN)) {
        error = "stopped";
        ::close(fd);
        return -1;
      }
      if (rc > 0 && p[0].revents) break;
    }
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
    if (soerr != 0) {
      error = sys_error("cannot connect to " + a.to_string(), soerr);
      ::close(fd);
      return -1;
    }
    return fd;
  };
  if (!a.tcp) {
    sockaddr_un sa;
    if (!fill_unix(a.path, sa, error)) return -1;
    return attempt(AF_UNIX, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  }
  addrinfo* res = resolve(a, false, error);
  if (!res) return -1;
  int fd = -1;
  for (addrinfo* ai = res; ai != nullptr && fd < 0; ai = ai->ai_next) {
    fd = attempt(ai->ai_family, ai->ai_addr, ai->ai_addrlen);
  }
  ::freeaddrinfo(res);
  if (fd >= 0) tune_socket(fd);
  return fd;
}

int accept_from(int listen_fd) {
  for (;;) {
    int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd >= 0) {
      tune_socket(fd);
      return fd;
    }
    if (errno != EINTR) return -1;
  }
}

Link::Link(int fd, std::uint32_t own_network_id) : fd_(fd) { out_ = encode_helo(own_network_id); }

Link::~Link() {
  if (fd_ >= 0) ::close(fd_);
}

Link::Io Link::on_readable() {
  char buf[65536];
  // Bounded work per call (STYLE.md 8): at most 4 reads.
  for (int i = 0; i < 4; ++i) {
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return Io::kOk;
      error_ = sys_error("link", errno);
      return Io::kError;
    }
    if (n == 0) {
      error_ = "the other limpet closed the connection";
      return Io::kClosed;
    }
    std::string_view got(buf, static_cast<std::size_t>(n));
    if (!peer_id_) {
      const std::size_t take = std::min(got.size(), kHeloLen - helo_in_.size());
      helo_in_.append(got.substr(0, take));
      got.remove_prefix(take);
      if (helo_in_.size() == kHeloLen) {
        auto id = decode_helo(helo_in_);
        if (!id) {
          error_ = "the other end did not start with HELO: not a limpet";
          return Io::kError;
        }
        if (*id == 0) {
          error_ = "the other limpet sent network id 0 (must be > 0)";
          return Io::kError;
        }
        peer_id_ = *id;
      }
    }
    if (!got.empty()) decoder_.feed(got);
    if (static_cast<std::size_t>(n) < sizeof buf) return Io::kOk;
  }
  return Io::kOk;
}

Link::Io Link::on_writable() {
  while (out_pos_ < out_.size()) {
    ssize_t n = ::send(fd_, out_.data() + out_pos_, out_.size() - out_pos_, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      error_ = sys_error("link", errno);
      return Io::kError;
    }
    out_pos_ += static_cast<std::size_t>(n);
  }
  if (out_pos_ == out_.size()) {
    out_.clear();
    out_pos_ = 0;
  } else if (out_pos_ > (1u << 20)) {
    out_.erase(0, out_pos_);
    out_pos_ = 0;
  }
  return Io::kOk;
}

void Link::shutdown_write() { ::shutdown(fd_, SHUT_WR); }

Result<std::optional<Message>> Link::next_message() {
  if (!peer_id_) return std::optional<Message>{};
  return decoder_.next();
}

void Link::send_to_peer(const Message& m) {
  serialise(out_, m);
  // Try at once: a request's latency should not wait for the next poll.
  if (on_writable() == Io::kError) {
    // The runner sees the failure at its next read or write.
  }
}

}  // namespace kbus::limpet
