// limpet/link.cpp - see link.hpp. Non-blocking sockets; EINTR retried.
#include "limpet/link.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

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
#include <algorithm>
#include <chrono>
#include <cstring>

#include "limpet/tls.hpp"
#include "util/fd.hpp"

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
    util::Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) {
      error = sys_error("socket", errno);
      return -1;
    }
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 ||
        ::listen(fd.get(), 8) != 0) {
      error = sys_error("cannot listen on '" + a.path + "'", errno);
      return -1;
    }
    return fd.release();
  }
  if (a.host.empty()) {
    error = "no host to listen on in '" + a.to_string() +
            "': give one, e.g. 127.0.0.1:" + std::to_string(a.port) + " (this machine only) or 0.0.0.0:" +
            std::to_string(a.port) + " (every interface)";
    return -1;
  }
  std::string rerr;
  addrinfo* res = resolve(a, true, rerr);
  if (!res) {
    error = "cannot listen on '" + a.to_string() + "': " + rerr;
    return -1;
  }
  util::Fd fd;
  int err = 0;
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    fd.reset(::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) {
      err = errno;
      continue;
    }
    int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd.get(), ai->ai_addr, ai->ai_addrlen) == 0 && ::listen(fd.get(), 8) == 0) break;
    err = errno;
    fd.reset();
  }
  ::freeaddrinfo(res);
  if (!fd) {
    error = sys_error("cannot listen on '" + a.to_string() + "'", err);
    if (err == EADDRNOTAVAIL) error += " (not an address of this machine)";
    return -1;
  }
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    if (ss.ss_family == AF_INET) {
      bound_port = ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    } else if (ss.ss_family == AF_INET6) {
      bound_port = ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
    }
  }
  return fd.release();
}

int connect_to(const Address& a, int timeout_ms, int stop_fd, std::string& error) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  auto attempt = [&](int family, const sockaddr* sa, socklen_t len) -> int {
    util::Fd fd(::socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) {
      error = sys_error("socket", errno);
      return -1;
    }
    int rc;
    do {
      rc = ::connect(fd.get(), sa, len);
    } while (rc < 0 && errno == EINTR);
    if (rc == 0) return fd.release();
    if (errno != EINPROGRESS && errno != EAGAIN) {
      error = sys_error("cannot connect to " + a.to_string(), errno);
      return -1;
    }
    for (;;) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) {
        error = "cannot connect to " + a.to_string() + ": timed out";
        return -1;
      }
      pollfd p[2] = {{fd.get(), POLLOUT, 0}, {stop_fd, POLLIN, 0}};
      rc = ::poll(p, stop_fd >= 0 ? 2 : 1, static_cast<int>(left));
      if (rc < 0 && errno == EINTR) continue;
      if (stop_fd >= 0 && (p[1].revents & POLLIN)) {
        error = "stopped";
        return -1;
      }
      if (rc > 0 && p[0].revents) break;
    }
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &soerr, &sl);
    if (soerr != 0) {
      error = sys_error("cannot connect to " + a.to_string(), soerr);
      return -1;
    }
    return fd.release();
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

void probe_liveness(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return;
  if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6) return;
  int idle = 1, intvl = 1, cnt = 3;
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
}

int accept_from(int listen_fd, std::string& peer) {
  for (;;) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    int fd = ::accept4(listen_fd, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd >= 0) {
      tune_socket(fd);
      char host[INET6_ADDRSTRLEN] = {};
      if (ss.ss_family == AF_INET) {
        auto* in = reinterpret_cast<sockaddr_in*>(&ss);
        ::inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        peer = std::string(host) + ":" + std::to_string(ntohs(in->sin_port));
      } else if (ss.ss_family == AF_INET6) {
        auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
        ::inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        peer = "[" + std::string(host) + "]:" + std::to_string(ntohs(in6->sin6_port));
      } else {
        peer = "a local process (Unix socket)";
      }
      return fd;
    }
    if (errno != EINTR) return -1;
  }
}

Link::Link(int fd, std::uint32_t own_network_id, bool helo_first, const TlsContext* tls)
    : fd_(fd), own_id_(own_network_id) {
  if (helo_first) send_helo();
  if (tls != nullptr) {
    ssl_ = tls->new_session(fd, error_);
    // No session: never a plain link instead - every call reports error_.
    if (ssl_ != nullptr) SSL_set_options(ssl_, SSL_OP_IGNORE_UNEXPECTED_EOF);
    else broken_ = true;
  }
}

Link::~Link() {
  if (ssl_ != nullptr) {
    if (tls_up_) (void)SSL_shutdown(ssl_);  // close_notify, best effort (non-blocking)
    SSL_free(ssl_);
  }
  if (fd_ >= 0) ::close(fd_);
}

void Link::send_helo() {
  if (helo_sent_) return;
  helo_sent_ = true;
  out_.insert(out_pos_, encode_helo(own_id_));
}

bool Link::wants_write() const noexcept {
  if (ssl_wants_write_) return true;
  if (ssl_ != nullptr && !tls_up_) return !tls_started_;
  return out_pos_ < out_.size();
}

long Link::recv_some(char* buf, std::size_t n) {
  if (ssl_ == nullptr) {
    for (;;) {
      ssize_t r = ::recv(fd_, buf, n, 0);
      if (r >= 0) return r;
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return -1;
      error_ = sys_error("link", errno);
      return -2;
    }
  }
  ERR_clear_error();
  errno = 0;
  const int r = SSL_read(ssl_, buf, static_cast<int>(std::min<std::size_t>(n, 1u << 30)));
  if (r > 0) return r;
  const int e = SSL_get_error(ssl_, r);
  if (e == SSL_ERROR_WANT_READ) return -1;
  if (e == SSL_ERROR_WANT_WRITE) {
    // (TLS 1.3: answering a KeyUpdate with the socket full.) The read is
    // retried when the socket takes more: see on_writable().
    ssl_wants_write_ = true;
    read_wants_write_ = true;
    return -1;
  }
  if (e == SSL_ERROR_ZERO_RETURN) return 0;
  if (e == SSL_ERROR_SYSCALL && errno != 0 && errno != EAGAIN) {
    error_ = sys_error("link", errno);
    return -2;
  }
  if (e == SSL_ERROR_SYSCALL) return 0;  // EOF without close_notify (SSL_OP_IGNORE_UNEXPECTED_EOF)
  error_ = "TLS: " + TlsContext::handshake_error(ssl_, e);
  return -2;
}

long Link::send_some(const char* p, std::size_t n) {
  if (ssl_ == nullptr) {
    for (;;) {
      ssize_t w = ::send(fd_, p, n, MSG_NOSIGNAL);
      if (w >= 0) return w;
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return -1;
      error_ = sys_error("link", errno);
      return -2;
    }
  }
  ERR_clear_error();
  errno = 0;
  const int w = SSL_write(ssl_, p, static_cast<int>(std::min<std::size_t>(n, 1u << 30)));
  if (w > 0) return w;
  const int e = SSL_get_error(ssl_, w);
  if (e == SSL_ERROR_WANT_WRITE) {
    ssl_wants_write_ = true;
    return -1;
  }
  if (e == SSL_ERROR_WANT_READ) return -1;  // the read side drives it on
  if (e == SSL_ERROR_SYSCALL && errno != 0) {
    error_ = sys_error("link", errno);
    return -2;
  }
  error_ = "TLS: " + TlsContext::handshake_error(ssl_, e);
  return -2;
}

Link::Io Link::drive_tls() {
  if (ssl_ == nullptr || tls_up_) return Io::kOk;
  if (!checked_plain_peer_) {
    // A plain limpet sends HELO at once: say so rather than "wrong version".
    char peek[4];
    ssize_t n = ::recv(fd_, peek, sizeof peek, MSG_PEEK);
    if (n == 4) {
      checked_plain_peer_ = true;
      if (std::memcmp(peek, "HELO", 4) == 0) {
        error_ = "the other end speaks the plain (unauthenticated) limpet protocol, but this end "
                 "requires TLS (start both ends with --tls-cert, --tls-key and --tls-ca)";
        return Io::kError;
      }
    } else if (n > 0 && std::memcmp(peek, "HELO", static_cast<std::size_t>(n)) != 0) {
      checked_plain_peer_ = true;
    }
  }
  tls_started_ = true;
  ssl_wants_write_ = false;
  ERR_clear_error();
  const int r = SSL_do_handshake(ssl_);
  if (r == 1) {
    tls_up_ = true;
    checked_plain_peer_ = true;
    peer_cert_ = TlsContext::describe_peer(ssl_);
    return Io::kOk;
  }
  const int e = SSL_get_error(ssl_, r);
  if (e == SSL_ERROR_WANT_READ) return Io::kOk;
  if (e == SSL_ERROR_WANT_WRITE) {
    ssl_wants_write_ = true;
    return Io::kOk;
  }
  error_ = TlsContext::handshake_error(ssl_, e);
  return Io::kError;
}

Link::Io Link::take_helo(std::string_view& got) {
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
  return Io::kOk;
}

Link::Io Link::on_readable() {
  read_more_ = false;
  if (broken_) return Io::kError;
  if (!transport_ready()) {
    if (drive_tls() == Io::kError) return Io::kError;
    if (!tls_up_) return Io::kOk;
    // Handshake done: our HELO goes out now, and whatever the peer sent
    // with its last handshake flight is read below, not at the next poll.
    if (on_writable() == Io::kError) return Io::kError;
  }
  char buf[65536];
  ssl_wants_write_ = false;
  // Bounded work per call (STYLE.md 8): at most 256 KiB.
  std::size_t budget = 4 * sizeof buf;
  while (budget > 0) {
    const long n = recv_some(buf, sizeof buf);
    if (n == -1) return Io::kOk;
    if (n == -2) return Io::kError;
    if (n == 0) {
      error_ = peer_id_ ? "the other limpet closed the connection"
                        : "the other end closed the connection before the HELO exchange";
      return Io::kClosed;
    }
    std::string_view got(buf, static_cast<std::size_t>(n));
    if (!peer_id_ && take_helo(got) == Io::kError) return Io::kError;
    if (!got.empty()) decoder_.feed(got);
    budget -= std::min(budget, static_cast<std::size_t>(n));
    // A plain short read means the kernel buffer is empty. A TLS read
    // returns one record at a time: go on while the session holds more
    // bytes (which poll() cannot see); once it holds none, what is left is
    // in the kernel, and poll() shows that.
    if (ssl_ == nullptr ? static_cast<std::size_t>(n) < sizeof buf : !SSL_has_pending(ssl_)) {
      return Io::kOk;
    }
  }
  read_more_ = true;
  return Io::kOk;
}

Link::Io Link::on_writable() {
  if (broken_) return Io::kError;
  if (!transport_ready()) {
    if (drive_tls() == Io::kError) return Io::kError;
    if (!tls_up_) return Io::kOk;
  }
  ssl_wants_write_ = false;
  if (read_wants_write_) {
    read_wants_write_ = false;
    const Io r = on_readable();
    if (r != Io::kOk) return r;
  }
  while (out_pos_ < out_.size()) {
    const long n = send_some(out_.data() + out_pos_, out_.size() - out_pos_);
    if (n == -1) break;
    if (n == -2) return Io::kError;
    out_pos_ += static_cast<std::size_t>(n);
  }
  if (out_pos_ == out_.size()) {
    out_.clear();
    out_pos_ = 0;
  } else if (out_pos_ > (1u << 20)) {
    // (TLS: the unsent bytes stay the same, only their address moves:
    // SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER.)
    out_.erase(0, out_pos_);
    out_pos_ = 0;
  }
  return Io::kOk;
}

void Link::shutdown_write() {
  if (ssl_ != nullptr && tls_up_) (void)SSL_shutdown(ssl_);
  ::shutdown(fd_, SHUT_WR);
}

Result<std::optional<Message>> Link::next_message() {
  if (!peer_id_) return std::optional<Message>{};
  return decoder_.next();
}

void Link::send_to_peer(const Message& m) {
  serialise(out_, m);
  // Written by on_writable() at the end of the runner's turn, just before
  // it sleeps in poll(): one write per turn, and the peer - woken by it, on
  // this CPU for a Unix socket - runs at once instead of waiting for the
  // rest of our turn (docs/limpets.md "Benchmark"). A large backlog goes
  // out now.
  if (out_pending() >= kFlushNow && transport_ready()) (void)on_writable();
}

}  // namespace kbus::limpet
