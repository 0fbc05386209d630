// daemon/listener.cpp - listening, accepting, and the limits met there.
//
// What it owns: each bus's listening socket DIR/kbusN (made at start-up and
// by NEWDEVICE, with the access of docs/reliability.md §5), accepting
// connections on it, and the limits that apply before a connection says
// anything: the peer's credentials (SO_PEERCRED: pid for the reports, uid
// for the quota), the per-user quota (core::UserQuota decides, counting
// from accept; a refused connection is answered EMFILE - the answer to the
// HELLO it is about to send - and closed at once, so it holds nothing), the
// HELLO deadline of each admitted connection (Daemon::check_hello), and
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
#include "util/deadline.hpp"

namespace kbus::daemon {

// Creates bus number buses_.size() and its socket DIR/kbusN, through the
// directory held open (runtime_dir.hpp, docs/reliability.md §9): a stale
// socket file is replaced (we hold the directory lock, so nobody else
// serves it); anything else named kbusN is left alone and is an error.
bool Daemon::add_bus() {
  const auto number = static_cast<std::uint32_t>(buses_.size());
  BusEntry b;
  b.bus = std::make_unique<core::Bus>(number, cfg_.limits, &ledger_);
  const std::string name = "kbus" + std::to_string(number);
  b.path = cfg_.dir + "/" + name;
  if (b.path.size() >= sizeof(sockaddr_un::sun_path)) {  // clients connect by this path
    log_line("socket path too long: %s (at most %zu bytes)", b.path.c_str(),
             sizeof(sockaddr_un::sun_path) - 1);
    return false;
  }
  util::Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) {
    log_line("socket: %s", std::strerror(errno));
    return false;
  }
  if (!dir_.bind_socket(fd.get(), name, cfg_.socket_access)) return false;
  if (::listen(fd.get(), 512) != 0) {
    log_line("cannot serve %s: %s", b.path.c_str(), std::strerror(errno));
    dir_.remove_socket(name);
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
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) cred = ucred{};
    // docs/reliability.md §4: Ksocks per user, counted from accept so that
    // connections which never say HELLO count too.
    if (!quota_.admit(cred.uid)) {
      refuse_over_quota(std::move(fd), bus, cred.pid, cred.uid);
      continue;
    }
    auto c = std::make_unique<Connection>();
    c->id = next_conn_id_++;
    c->bus = bus;
    c->pid = cred.pid;
    c->uid = cred.uid;
    c->counted = true;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.u64 = kTagConn | c->id;
    if (::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, fd.get(), &ev) != 0) {
      log_line("bus %u: epoll_ctl: %s", bus, std::strerror(errno));
      if (c->counted) quota_.release(c->uid);
      continue;
    }
    c->fd = std::move(fd);
    if (cfg_.hello_timeout_ms != 0)
      hello_due_.emplace_back(util::now_ms() + cfg_.hello_timeout_ms, c->id);
    conns_.emplace(c->id, std::move(c));
  }
}

// Answers the HELLO that a connection over the per-user limit is about to
// send (EMFILE: the client reports it from its open) and closes it at once.
// If its HELLO is already here, the close resets the connection, but the
// answer stays readable before that. Logged at most once a second, with the
// number refused meanwhile.
void Daemon::refuse_over_quota(util::Fd fd, std::uint32_t bus, pid_t pid, std::uint32_t uid) {
  std::string out;
  protocol::append_error(out, EMFILE);
  (void)::send(fd.get(), out.data(), out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  fd.reset();
  ++refused_per_user_;
  const std::int64_t now = util::now_ms();
  if (refusal_logged_ms_ >= 0 && now - refusal_logged_ms_ < 1000) {
    ++refusals_unlogged_;
    return;
  }
  const std::string more = refusals_unlogged_ == 0 ? std::string()
                                                   : " (and " + std::to_string(refusals_unlogged_) +
                                                         " more since the last such line)";
  log_line(
      "bus %u: connection of pid %d: uid %u already has %u Ksocks (--max-ksocks-per-user): "
      "refused and closed%s",
      bus, static_cast<int>(pid), uid, quota_.max_per_user(), more.c_str());
  refusal_logged_ms_ = now;
  refusals_unlogged_ = 0;
}

}  // namespace kbus::daemon
