// daemon/listener.cpp - listening, accepting, and the limits met there.
//
// What it owns: each bus's listening socket DIR/kbusN (made at start-up and
// by NEWDEVICE, with the access of docs/reliability.md §5), accepting
// connections on it, and the limits that apply before a connection says
// anything: the peer's credentials (SO_PEERCRED: pid for the reports, uid
// for the quota), the per-user quota (core::UserQuota decides; a refused
// connection is kept just long enough to answer its HELLO with EMFILE), and
// running out of descriptors (a spare one is given up to accept and drop a
// connection, so the listener does not wake the loop for ever).
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "daemon/connection.hpp"
#include "daemon/daemon.hpp"
#include "daemon/event_tags.hpp"

namespace kbus::daemon {

// Creates bus number buses_.size() and its socket DIR/kbusN (replacing a
// stale socket file: we hold the directory lock, so nobody else serves it).
bool Daemon::add_bus() {
  const auto number = static_cast<std::uint32_t>(buses_.size());
  BusEntry b;
  b.bus = std::make_unique<core::Bus>(number, cfg_.limits, &ledger_);
  b.path = cfg_.dir + "/kbus" + std::to_string(number);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (b.path.size() >= sizeof addr.sun_path) {
    log_line("socket path too long: %s", b.path.c_str());
    return false;
  }
  std::memcpy(addr.sun_path, b.path.c_str(), b.path.size() + 1);
  util::Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) {
    log_line("socket: %s", std::strerror(errno));
    return false;
  }
  ::unlink(b.path.c_str());
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      !apply_socket_access(b.path, cfg_.socket_access) || ::listen(fd.get(), 512) != 0) {
    log_line("cannot serve %s: %s", b.path.c_str(), std::strerror(errno));
    return false;
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kTagListener | number;
  ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, fd.get(), &ev);
  b.listen_fd = std::move(fd);
  buses_.push_back(std::move(b));
  return true;
}

void Daemon::accept_on(std::uint32_t bus) {
  const int listen_fd = buses_[bus].listen_fd.get();
  for (int i = 0; i < 64; ++i) {
    util::Fd fd(::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd && (errno == EMFILE || errno == ENFILE) && reserve_fd_) {
      // Out of descriptors: accept and drop one connection with the spare
      // descriptor, so that the listener does not wake us for ever.
      reserve_fd_.reset();
      util::Fd dropped(::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC));
      dropped.reset();
      reserve_fd_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
      log_line("bus %u: out of file descriptors: a connection was dropped", bus);
      return;
    }
    if (!fd) {
      if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
        log_line("bus %u: accept: %s", bus, std::strerror(errno));
      return;
    }
    auto c = std::make_unique<Connection>();
    c->id = next_conn_id_++;
    c->bus = bus;
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
      c->pid = cred.pid;
      c->uid = cred.uid;
    }
    // docs/reliability.md §4: Ksocks per user, counted from connect() so
    // that connections which never say HELLO count too.
    if (quota_.admit(c->uid))
      c->counted = true;
    else
      c->refuse = Errc::emfile;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.u64 = kTagConn | c->id;
    if (::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, fd.get(), &ev) != 0) {
      log_line("bus %u: epoll_ctl: %s", bus, std::strerror(errno));
      if (c->counted) quota_.release(c->uid);
      continue;
    }
    c->fd = std::move(fd);
    conns_.emplace(c->id, std::move(c));
  }
}

}  // namespace kbus::daemon
