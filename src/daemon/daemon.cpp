#include "daemon/daemon.hpp"
#include "daemon/process_info.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace kbus::daemon {

using protocol::Op;

namespace {

constexpr std::uint64_t kTagSignal = 0;
constexpr std::uint64_t kTagListener = 1ull << 62;
constexpr std::uint64_t kTagConn = 2ull << 62;
constexpr std::uint64_t kTagMask = 3ull << 62;
constexpr std::uint32_t kMaxBuses = 256;
constexpr std::size_t kReadChunk = 64 * 1024;
constexpr int kFramesPerTurn = 64;
// HELLO's frame is 16 bytes: a longer one before HELLO is garbage, cut off
// before the daemon buffers it (docs/reliability.md §4).
constexpr std::uint32_t kMaxHelloFrame = 64;

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void log_line(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void log_line(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::fputs("kbusd: ", stderr);
  std::vfprintf(stderr, fmt, ap);
  std::fputc('\n', stderr);
  va_end(ap);
}

bool mkdir_p(const std::string& dir) {
  std::string cur;
  for (std::size_t i = 0; i <= dir.size(); ++i) {
    if (i == dir.size() || (dir[i] == '/' && i > 0)) {
      cur = dir.substr(0, i);
      if (::mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST) return false;
    }
  }
  return true;
}

void raise_fd_limit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  rlimit want = rl;
  want.rlim_max = std::max<rlim_t>(rl.rlim_max, 1u << 20);
  want.rlim_cur = want.rlim_max;
  if (::setrlimit(RLIMIT_NOFILE, &want) != 0) {  // not root: as far as allowed
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
}

}  // namespace

std::string default_dir() {
  if (const char* d = std::getenv("KBUS_DIR"); d && *d) return d;
  if (::geteuid() == 0) return "/run/kbus";
  if (const char* x = std::getenv("XDG_RUNTIME_DIR"); x && *x) return std::string(x) + "/kbus";
  return "/tmp/kbus-" + std::to_string(::geteuid());
}

struct Daemon::Connection {
  std::uint64_t id = 0;
  int fd = -1;
  std::uint32_t bus = 0;
  core::KsockId ksock = 0;  // 0 until HELLO succeeded
  pid_t pid = 0;
  std::uint32_t uid = 0;    // the peer's, from SO_PEERCRED
  bool counted = false;     // counts in per_user_
  Errc refuse = Errc::ok;   // a limit was reached: HELLO is answered with this
  int poll_a = -1;  // the daemon's copy of the client's poll fd
  int poll_b = -1;  // its peer
  bool signalled_readable = false;
  bool blocked_writable = false;
  // A blocked receive (WAITREAD, SENDWAIT, REQUEST, READBATCH with wait):
  // answered when its message is queued, or early by the next frame.
  enum class Wait { kNone, kNext, kAnswer, kBatch };
  Wait waiting = Wait::kNone;
  bool wait_has_id = false;  // the reply starts with wait_id (SENDWAIT, REQUEST)
  MessageId wait_id;
  std::uint32_t wait_max_count = 0;
  std::uint32_t wait_max_bytes = 0;
  bool closed = false;
  bool in_epoll_out = false;
  bool reading_paused = false;
  bool peer_gone = false;  // EOF seen: apply the buffered frames, then close
  protocol::InputBuffer in;
  std::string out;
  std::size_t out_off = 0;
  // Offsets in `out` of replies that carry the poll fd (POLLFD, HELLO):
  // flush() sends each such reply with SCM_RIGHTS on its first bytes.
  std::vector<std::size_t> fd_at;
};

Daemon::Daemon(Config cfg) : cfg_(std::move(cfg)), readiness_(cfg_.ready_fd) {}

Daemon::~Daemon() {
  for (auto& [id, c] : conns_) {
    if (c->fd >= 0) ::close(c->fd);
    if (c->poll_a >= 0) ::close(c->poll_a);
    if (c->poll_b >= 0) ::close(c->poll_b);
  }
  for (auto& b : buses_) {
    if (b.listen_fd >= 0) {
      ::close(b.listen_fd);
      ::unlink(b.path.c_str());
    }
  }
  if (signal_fd_ >= 0) ::close(signal_fd_);
  if (epoll_fd_ >= 0) ::close(epoll_fd_);
  if (lock_fd_ >= 0) ::close(lock_fd_);
  if (reserve_fd_ >= 0) ::close(reserve_fd_);
}

bool Daemon::start() {
  if (cfg_.devices < 1 || cfg_.devices > kMaxBuses) {
    log_line("--devices must be between 1 and %u", kMaxBuses);
    return false;
  }
  if (std::string why; !readiness_.check(why)) {
    log_line("%s", why.c_str());
    return false;
  }
  if (cfg_.dir.empty()) cfg_.dir = default_dir();
  if (!mkdir_p(cfg_.dir)) {
    log_line("cannot create directory %s: %s", cfg_.dir.c_str(), std::strerror(errno));
    return false;
  }
  // The lock file is removed at a clean stop, so the file locked may have
  // been unlinked (by the kbusd that just stopped) between our open and our
  // flock: then lock the new one. Bounded: each retry needs another kbusd
  // to have stopped in that moment.
  lock_path_ = cfg_.dir + "/.kbusd.lock";
  for (int attempt = 0;; ++attempt) {
    lock_fd_ = ::open(lock_path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock_fd_ < 0) {
      log_line("cannot open %s: %s", lock_path_.c_str(), std::strerror(errno));
      return false;
    }
    if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
      log_line(
          "another kbusd already serves %s (it holds %s): stop it first, or give this one "
          "another --dir",
          cfg_.dir.c_str(), lock_path_.c_str());
      return false;
    }
    struct stat held {};
    struct stat now {};
    if (::fstat(lock_fd_, &held) == 0 && ::stat(lock_path_.c_str(), &now) == 0 &&
        held.st_dev == now.st_dev && held.st_ino == now.st_ino)
      break;
    ::close(lock_fd_);
    lock_fd_ = -1;
    if (attempt == 100) {
      log_line("cannot lock %s: it keeps being replaced", lock_path_.c_str());
      return false;
    }
  }
  raise_fd_limit();
  ::signal(SIGPIPE, SIG_IGN);
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGHUP);   // the terminal closed: stop as cleanly as on SIGTERM
  sigaddset(&mask, SIGUSR1);  // log_status()
  ::sigprocmask(SIG_BLOCK, &mask, nullptr);
  signal_fd_ = ::signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (signal_fd_ < 0 || epoll_fd_ < 0) {
    log_line("cannot create signalfd/epoll: %s", std::strerror(errno));
    return false;
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kTagSignal;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, signal_fd_, &ev);
  // Never reallocated: operations hold references to their BusEntry while
  // NEWDEVICE adds one.
  buses_.reserve(kMaxBuses);
  for (std::uint32_t i = 0; i < cfg_.devices; ++i)
    if (!add_bus()) return false;
  reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  // docs/reliability.md §5: the sockets exist; root is no longer needed.
  if (cfg_.run_as && !drop_privileges(*cfg_.run_as, cfg_.socket_access.group, cfg_.dir))
    return false;
  // docs/reliability.md §7: it serves from here on (connections already
  // queue on the listening sockets; run() takes them).
  const std::string buses =
      cfg_.devices == 1 ? "bus 0" : "buses 0.." + std::to_string(cfg_.devices - 1);
  std::string where = cfg_.dir + "/kbus0";
  if (cfg_.devices > 1) where += " .. kbus" + std::to_string(cfg_.devices - 1);
  log_line("serving %s at %s (pid %d)", buses.c_str(), where.c_str(), static_cast<int>(::getpid()));
  std::fflush(stderr);
  readiness_.ready("serving " + buses + " in " + cfg_.dir);
  return true;
}

void Daemon::shutdown(const char* why) {
  readiness_.stopping();
  for (auto& b : buses_) {
    if (b.listen_fd >= 0) {
      ::close(b.listen_fd);
      b.listen_fd = -1;
      ::unlink(b.path.c_str());
    }
  }
  // Still holding the lock: a kbusd starting now finds the file gone (or
  // replaced) and locks a new one (see start()).
  if (lock_fd_ >= 0) {
    ::unlink(lock_path_.c_str());
    ::close(lock_fd_);
    lock_fd_ = -1;
  }
  std::string removed = cfg_.dir + "/kbus0";
  if (buses_.size() > 1) removed += " .. kbus" + std::to_string(buses_.size() - 1);
  log_line("%s: stopped; removed %s and the lock file", why, removed.c_str());
}

// Creates bus number buses_.size() and its socket DIR/kbusN (replacing a
// stale socket file: we hold the directory lock, so nobody else serves it).
bool Daemon::add_bus() {
  const auto number = static_cast<std::uint32_t>(buses_.size());
  BusEntry b;
  b.bus = std::make_unique<core::Bus>(number, cfg_.limits);
  b.path = cfg_.dir + "/kbus" + std::to_string(number);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (b.path.size() >= sizeof addr.sun_path) {
    log_line("socket path too long: %s", b.path.c_str());
    return false;
  }
  std::memcpy(addr.sun_path, b.path.c_str(), b.path.size() + 1);
  b.listen_fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (b.listen_fd < 0) {
    log_line("socket: %s", std::strerror(errno));
    return false;
  }
  ::unlink(b.path.c_str());
  if (::bind(b.listen_fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      !apply_socket_access(b.path, cfg_.socket_access) || ::listen(b.listen_fd, 512) != 0) {
    log_line("cannot serve %s: %s", b.path.c_str(), std::strerror(errno));
    ::close(b.listen_fd);
    return false;
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kTagListener | number;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, b.listen_fd, &ev);
  buses_.push_back(std::move(b));
  return true;
}

int Daemon::run() {
  std::vector<epoll_event> events(256);
  for (;;) {
    const int stall_ms = check_stalled();
    const int timeout = backlog_.empty() ? stall_ms : 0;
    const int n = ::epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), timeout);
    if (n < 0) {
      if (errno == EINTR) continue;
      log_line("epoll_wait: %s", std::strerror(errno));
      return 1;
    }
    for (int i = 0; i < n; ++i) {
      const std::uint64_t tag = events[i].data.u64;
      if (tag == kTagSignal) {
        signalfd_siginfo si{};
        if (::read(signal_fd_, &si, sizeof si) > 0) {
          if (si.ssi_signo == SIGUSR1) {
            log_status();
            continue;
          }
          const char* name = si.ssi_signo == SIGHUP    ? "SIGHUP"
                             : si.ssi_signo == SIGINT  ? "SIGINT"
                             : si.ssi_signo == SIGTERM ? "SIGTERM"
                                                       : "signal";
          shutdown(name);
          return 0;
        }
        continue;
      }
      if ((tag & kTagMask) == kTagListener) {
        accept_on(static_cast<std::uint32_t>(tag & ~kTagMask));
        continue;
      }
      auto it = conns_.find(tag & ~kTagMask);
      if (it == conns_.end() || it->second->closed) continue;
      Connection& c = *it->second;
      if (events[i].events & EPOLLOUT) flush(c);
      if (!c.closed && (events[i].events & (EPOLLIN | EPOLLRDHUP))) on_readable(c);
      if (!c.closed && (events[i].events & (EPOLLHUP | EPOLLERR))) {
        // The peer is gone: apply what it sent, then CLOSE its Ksock.
        if (!c.reading_paused) on_readable(c);
        if (!c.closed) {
          c.peer_gone = true;
          process_input(c);
          close_connection(c, nullptr);
        }
      }
    }
    // Connections with whole frames still buffered get their next turn.
    backlog_turn_.swap(backlog_);  // both keep their capacity: no allocation per turn
    for (std::uint64_t id : backlog_turn_) {
      auto it = conns_.find(id);
      if (it != conns_.end() && !it->second->closed) process_input(*it->second);
    }
    backlog_turn_.clear();
    // Free closed connections at the end of the turn.
    for (std::uint64_t id : closed_) conns_.erase(id);
    closed_.clear();
  }
}

void Daemon::accept_on(std::uint32_t bus) {
  for (int i = 0; i < 64; ++i) {
    const int fd = ::accept4(buses_[bus].listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0 && (errno == EMFILE || errno == ENFILE) && reserve_fd_ >= 0) {
      // Out of descriptors: accept and drop one connection with the spare
      // descriptor, so that the listener does not wake us for ever.
      ::close(reserve_fd_);
      const int dropped = ::accept4(buses_[bus].listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (dropped >= 0) ::close(dropped);
      reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      log_line("bus %u: out of file descriptors: a connection was dropped", bus);
      return;
    }
    if (fd < 0) {
      if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
        log_line("bus %u: accept: %s", bus, std::strerror(errno));
      return;
    }
    auto c = std::make_unique<Connection>();
    c->id = next_conn_id_++;
    c->fd = fd;
    c->bus = bus;
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
      c->pid = cred.pid;
      c->uid = cred.uid;
    }
    // docs/reliability.md §4: Ksocks per user, counted from connect() so
    // that connections which never say HELLO count too.
    std::uint32_t& mine = per_user_[c->uid];
    if (cfg_.max_ksocks_per_user != 0 && mine >= cfg_.max_ksocks_per_user) {
      c->refuse = Errc::emfile;
    } else {
      ++mine;
      c->counted = true;
    }
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.u64 = kTagConn | c->id;
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
      log_line("bus %u: epoll_ctl: %s", bus, std::strerror(errno));
      ::close(fd);
      continue;
    }
    conns_.emplace(c->id, std::move(c));
  }
}

void Daemon::log_client(const Connection& c, const std::string& what) const {
  log_line("bus %u ksock %u (pid %d): %s", c.bus, c.ksock, static_cast<int>(c.pid), what.c_str());
}

void Daemon::on_readable(Connection& c) {
  if (c.reading_paused) return;
  // Bounded work per turn: at most kReadChunk * 4 bytes.
  for (int round = 0; round < 4; ++round) {
    const ssize_t n = ::recv(c.fd, c.in.prepare(kReadChunk), kReadChunk, 0);
    if (n <= 0) {
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
      if (n < 0) {
        close_connection(c, "connection error");
        return;
      }
      // EOF: apply every complete frame, then close (= CLOSE of the Ksock).
      c.peer_gone = true;
      process_input(c);
      if (!c.closed) {
        if (!c.in.empty()) log_client(c, "hung up in the middle of a frame");
        close_connection(c, nullptr);
      }
      return;
    }
    c.in.commit(static_cast<std::size_t>(n));
    if (static_cast<std::size_t>(n) < kReadChunk) break;
  }
  process_input(c);
}

void Daemon::process_input(Connection& c) {
  for (int frames = 0; c.peer_gone || frames < kFramesPerTurn; ++frames) {
    if (c.closed) return;
    if (c.peer_gone) {
      c.out.clear();  // nobody will read the replies
      c.out_off = 0;
      c.fd_at.clear();
    } else if (c.out.size() - c.out_off > cfg_.output_high_water) {
      // The client is not reading its replies: stop reading it until it does.
      c.reading_paused = true;
      paused_since_.emplace(c.id, now_ms());
      flush(c);
      update_epoll(c);
      return;
    }
    protocol::Frame f;
    std::size_t used = 0;
    const std::string_view avail = c.in.data();
    const auto r = protocol::parse_frame(avail, f, used,
                                         c.ksock == 0 ? kMaxHelloFrame : cfg_.max_frame_len);
    if (r == protocol::Parse::kIncomplete) {
      flush(c);
      c.in.shrink_if_idle(1u << 20);
      return;
    }
    if (r == protocol::Parse::kBadLength) {
      log_client(c, "frame length " + std::to_string(protocol::get_u32(avail.data())) +
                        " out of range: disconnecting");
      close_connection(c, nullptr);
      return;
    }
    // The payload stays valid during dispatch: consume() moves no bytes;
    // only the next read (prepare) may.
    c.in.consume(used);
    if (c.waiting != Connection::Wait::kNone) {
      // docs/protocol.md §4.4: a new frame answers the blocked receive with 0.
      const std::size_t at = protocol::begin_frame(c.out, 0);
      if (c.wait_has_id) {
        protocol::put_u32(c.out, c.wait_id.network_id);
        protocol::put_u32(c.out, c.wait_id.serial_num);
      }
      protocol::end_frame(c.out, at);
      c.waiting = Connection::Wait::kNone;
    }
    dispatch(c, f.word, f.payload);
  }
  if (!c.closed) {
    flush(c);
    backlog_.push_back(c.id);  // more frames may wait: continue next turn
  }
}

void Daemon::dispatch(Connection& c, std::uint32_t op_word, std::string_view payload) {
  if (c.ksock == 0) {
    if (op_word != static_cast<std::uint32_t>(Op::kHello)) {
      log_client(c, "first frame is not HELLO: disconnecting");
      close_connection(c, nullptr);
      return;
    }
    hello(c, payload);
    return;
  }
  BusEntry& be = buses_[c.bus];
  core::Bus& bus = *be.bus;
  const core::KsockId k = c.ksock;
  protocol::PayloadReader in(payload);
  std::string& out = c.out;
  auto reply = [&](std::int32_t status) { protocol::append_reply(out, status); };
  auto reply_u32 = [&](std::int32_t status, std::uint32_t v) {
    const std::size_t at = protocol::begin_frame(out, static_cast<std::uint32_t>(status));
    protocol::put_u32(out, v);
    protocol::end_frame(out, at);
  };
  auto reply_err = [&](Errc e) { reply(-to_errno(e)); };
  auto reply_id = [&](Errc e, MessageId id) {
    const std::size_t at = protocol::begin_frame(out, static_cast<std::uint32_t>(-to_errno(e)));
    protocol::put_u32(out, id.network_id);
    protocol::put_u32(out, id.serial_num);
    protocol::end_frame(out, at);
  };
  auto reply_result = [&](const Result<std::uint32_t>& r) {
    if (r.ok())
      reply_u32(0, *r);
    else
      reply_err(r.error());
  };
  auto u32_arg = [&](std::uint32_t& v) {
    v = in.u32();
    if (!in.done()) {
      reply_err(Errc::efault);
      return false;
    }
    return true;
  };
  auto no_args = [&]() {
    if (!in.done()) {
      reply_err(Errc::efault);
      return false;
    }
    return true;
  };

  const auto op = static_cast<Op>(op_word);
  if (cfg_.log_ops || bus.verbose_on()) log_client(c, "op " + std::to_string(op_word));
  switch (op) {
    case Op::kReset:
      if (no_args()) reply(0);
      break;
    case Op::kBind:
    case Op::kUnbind: {
      const std::uint32_t is_replier = in.u32();
      const std::string_view name = in.name();
      if (!in.done()) {
        reply_err(Errc::efault);
        break;
      }
      const Result<void> r = op == Op::kBind ? bus.bind(k, is_replier, name)
                                             : bus.unbind(k, is_replier, name);
      reply(r.ok() ? 0 : -to_errno(r.error()));
      break;
    }
    case Op::kKsockId:
      if (no_args()) reply_u32(0, k);
      break;
    case Op::kReplier: {
      const std::string_view name = in.name();
      if (!in.done()) {
        reply_err(Errc::efault);
        break;
      }
      auto r = bus.find_replier(name);
      if (r.ok())
        reply_u32(*r ? 1 : 0, *r);
      else
        reply_err(r.error());
      break;
    }
    case Op::kNextMsg:
      if (no_args()) {
        const std::uint32_t len = bus.next_msg(k);
        reply_u32(len ? 1 : 0, len);
      }
      break;
    case Op::kLenLeft:
      if (no_args()) reply_u32(0, bus.len_left(k));
      break;
    case Op::kSend: {
      const auto s = bus.send(k, payload.empty() ? std::nullopt
                                                 : std::optional<std::string_view>(payload));
      reply_id(s.error, s.id);
      break;
    }
    case Op::kDiscard:
      if (no_args()) {
        bus.discard(k);
        reply(0);
      }
      break;
    case Op::kLastSent:
      if (no_args()) reply_id(Errc::ok, bus.last_sent(k));
      break;
    case Op::kMaxMsgs: {
      std::uint32_t v;
      if (u32_arg(v)) reply_u32(0, bus.max_msgs(k, v));
      break;
    }
    case Op::kNumMsgs:
      if (no_args()) reply_u32(0, bus.num_msgs(k));
      break;
    case Op::kUnrepliedTo:
      if (no_args()) reply_u32(0, bus.unreplied_to(k));
      break;
    case Op::kMsgOnlyOnce: {
      std::uint32_t v;
      if (u32_arg(v)) reply_result(bus.only_once(k, v));
      break;
    }
    case Op::kVerbose: {
      std::uint32_t v;
      if (u32_arg(v)) reply_result(bus.verbose(v));
      break;
    }
    case Op::kNewDevice:
      if (no_args()) {
        if (buses_.size() >= kMaxBuses) {
          reply_err(Errc::einval);
        } else if (!add_bus()) {
          reply_err(Errc::enomem);
        } else {
          reply_u32(0, static_cast<std::uint32_t>(buses_.size() - 1));
        }
      }
      break;
    case Op::kReportReplierBinds: {
      std::uint32_t v;
      if (u32_arg(v)) reply_result(bus.report_replier_binds(k, v));
      break;
    }
    case Op::kMaxMsgSize: {
      std::uint32_t v;
      if (u32_arg(v)) reply_result(bus.max_msg_size(v));
      break;
    }
    case Op::kWrite: {
      auto r = bus.write(k, payload);
      reply(r.ok() ? static_cast<std::int32_t>(*r) : -to_errno(r.error()));
      break;
    }
    case Op::kRead: {
      std::uint32_t max;
      if (!u32_arg(max)) break;
      const std::size_t at = protocol::begin_frame(out, 0);
      auto r = bus.read(k, max, out);
      if (!r.ok()) {
        out.resize(at);
        reply_err(r.error());
      } else {
        protocol::set_frame_word(out, at, *r);
        protocol::end_frame(out, at);
      }
      break;
    }
    case Op::kSendMsg: {
      auto w = bus.write(k, payload);
      if (!w.ok()) {
        reply_id(w.error(), MessageId{});
        break;
      }
      const auto s = bus.send(k);
      reply_id(s.error, s.id);
      break;
    }
    case Op::kNextRead:
    case Op::kWaitRead: {
      if (!no_args()) break;
      const std::size_t at = protocol::begin_frame(out, 0);
      auto r = bus.next_read(k, out);
      if (!r.ok()) {
        out.resize(at);
        reply_err(r.error());
      } else if (*r == 0 && op == Op::kWaitRead) {
        out.resize(at);  // answered when a message arrives (apply_effects)
        c.waiting = Connection::Wait::kNext;
        c.wait_has_id = false;
      } else {
        protocol::set_frame_word(out, at, *r);
        protocol::end_frame(out, at);
      }
      break;
    }
    case Op::kRequest:
    case Op::kSendWait: {
      // SENDMSG, then block: REQUEST for this request's answer, SENDWAIT for
      // the next message (docs/protocol.md §4.5).
      if (!bus.can_read(k)) {  // it could never receive: send nothing
        reply_id(Errc::ebadf, MessageId{});
        break;
      }
      auto w = bus.write(k, payload);
      if (!w.ok()) {
        reply_id(w.error(), MessageId{});
        break;
      }
      const auto s = bus.send(k);
      if (s.error != Errc::ok) {
        reply_id(s.error, s.id);
        break;
      }
      const bool is_request = payload.size() >= 52 &&
                              (protocol::get_u32(payload.data() + 48) & flag::kWantAReply);
      if (op == Op::kRequest && !is_request) {
        reply_id(Errc::ok, s.id);  // nothing to wait for
        break;
      }
      c.waiting = op == Op::kRequest ? Connection::Wait::kAnswer : Connection::Wait::kNext;
      c.wait_has_id = true;
      c.wait_id = s.id;
      break;  // apply_effects below answers it at once if it can
    }
    case Op::kSendBatch: {
      // A sequence of (u32 length, entire message); stops at the first
      // failure. Validate the framing before sending anything.
      protocol::PayloadReader scan(payload);
      std::uint32_t count = 0;
      while (!scan.done()) {
        scan.name();
        if (!scan.ok()) break;
        ++count;
      }
      if (!scan.ok()) {
        reply_err(Errc::efault);
        break;
      }
      const std::size_t at = protocol::begin_frame(out, 0);
      protocol::put_u32(out, 0);
      Errc err = Errc::ok;
      std::uint32_t attempted = 0;
      protocol::PayloadReader items(payload);
      for (std::uint32_t i = 0; i < count && err == Errc::ok; ++i) {
        const std::string_view m = items.name();
        ++attempted;
        auto w = bus.write(k, m);
        MessageId id;
        if (!w.ok()) {
          err = w.error();
        } else {
          const auto s = bus.send(k);
          err = s.error;
          id = s.id;
        }
        protocol::put_u32(out, id.network_id);
        protocol::put_u32(out, id.serial_num);
      }
      std::memcpy(out.data() + at + 8, &attempted, 4);
      protocol::set_frame_word(out, at, static_cast<std::uint32_t>(-to_errno(err)));
      protocol::end_frame(out, at);
      break;
    }
    case Op::kReadBatch: {
      const std::uint32_t max_count = in.u32();
      const std::uint32_t max_bytes = in.u32();
      const std::uint32_t wait = in.u32();
      if (!in.done() || max_count == 0) {
        reply_err(Errc::efault);
        break;
      }
      const std::size_t at = protocol::begin_frame(out, 0);
      auto r = bus.next_read_batch(k, max_count, max_bytes, out);
      if (!r.ok()) {
        out.resize(at);
        reply_err(r.error());
      } else if (*r == 0 && wait) {
        out.resize(at);
        c.waiting = Connection::Wait::kBatch;
        c.wait_has_id = false;
        c.wait_max_count = max_count;
        c.wait_max_bytes = max_bytes;
      } else {
        protocol::set_frame_word(out, at, *r);
        protocol::end_frame(out, at);
      }
      break;
    }
    case Op::kBindings:
    case Op::kStats:
      if (no_args()) {
        const std::string text = report(op == Op::kStats);
        const std::size_t at = protocol::begin_frame(out, static_cast<std::uint32_t>(text.size()));
        out += text;
        protocol::end_frame(out, at);
      }
      break;
    case Op::kPollFd:
      if (no_args()) {
        if (!make_poll_fd(c, bus)) {
          reply_err(Errc::emfile);
        } else {
          c.fd_at.push_back(out.size());  // flush() attaches the fd here
          reply(0);
        }
      }
      break;
    case Op::kHello:
      reply_err(Errc::einval);  // only once, first
      break;
    default:
      reply_err(Errc::enotty);
      break;
  }
  // A receive that blocked in this very operation may be answerable at once.
  if (c.waiting != Connection::Wait::kNone) complete_wait(c, bus);
  apply_effects(be);
}

void Daemon::hello(Connection& c, std::string_view payload) {
  protocol::PayloadReader in(payload);
  const std::uint32_t version = in.u32();
  const std::uint32_t mode = in.u32();
  const std::uint32_t header_len = in.u32();
  std::string out;
  Errc err = Errc::ok;
  if (!in.done())
    err = Errc::efault;
  else if (version != protocol::kVersion)
    err = Errc::eproto;
  else if ((mode & (protocol::kModeRead | protocol::kModeWrite)) == 0 ||
           (mode & ~(protocol::kModeRead | protocol::kModeWrite | protocol::kModeLazyPollFd)) !=
               0 ||
           (header_len != kHeaderLen64 && header_len != kHeaderLen32))
    err = Errc::einval;
  // docs/reliability.md §4: Ksocks per user (counted at connect) and per bus.
  if (err == Errc::ok && c.refuse != Errc::ok) {
    err = c.refuse;
    log_client(c, "uid " + std::to_string(c.uid) + " already has " +
                      std::to_string(cfg_.max_ksocks_per_user) +
                      " Ksocks (--max-ksocks-per-user): refused");
  } else if (err == Errc::ok && cfg_.limits.max_ksocks != 0 &&
             buses_[c.bus].bus->ksock_count() >= cfg_.limits.max_ksocks) {
    err = Errc::enfile;
    log_client(c, "bus already has " + std::to_string(cfg_.limits.max_ksocks) +
                      " Ksocks (--max-ksocks-per-bus): refused");
  }
  BusEntry& be = buses_[c.bus];
  if (err == Errc::ok) {
    core::OpenOptions opts;
    opts.can_read = (mode & protocol::kModeRead) != 0;
    opts.can_write = (mode & protocol::kModeWrite) != 0;
    opts.header_len = header_len;
    opts.pid = c.pid;
    c.ksock = be.bus->open(opts);
    be.by_ksock[c.ksock] = &c;
    // Without kModeLazyPollFd the reply carries the poll fd (protocol §3).
    if (!(mode & protocol::kModeLazyPollFd) && !make_poll_fd(c, *be.bus)) err = Errc::emfile;
  }
  if (err != Errc::ok) {
    protocol::append_reply(out, -to_errno(err));
    ::send(c.fd, out.data(), out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    close_connection(c, nullptr);
    return;
  }
  if (c.poll_a >= 0) c.fd_at.push_back(c.out.size());
  const std::size_t at = protocol::begin_frame(c.out, 0);
  protocol::put_u32(c.out, c.ksock);
  protocol::put_u32(c.out, c.bus);
  protocol::end_frame(c.out, at);
  flush(c);
}

// Creates the Ksock's poll fd (docs/protocol.md §3.1): a socket pair whose
// end poll_a the client gets; false (logged) if out of descriptors.
bool Daemon::make_poll_fd(Connection& c, core::Bus& bus) {
  if (c.poll_a >= 0) return true;
  int pair[2] = {-1, -1};
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) != 0) {
    log_client(c, std::string("cannot make its poll fd: socketpair: ") + std::strerror(errno));
    return false;
  }
  const int one = 1;
  ::setsockopt(pair[0], SOL_SOCKET, SO_SNDBUF, &one, sizeof one);  // minimum: easy to fill
  c.poll_a = pair[0];
  c.poll_b = pair[1];
  c.signalled_readable = false;
  c.blocked_writable = false;
  update_poll_fd(c, bus);
  return true;
}

// Answers c's blocked receive if its message is there; true if answered.
bool Daemon::complete_wait(Connection& c, core::Bus& bus) {
  using Wait = Connection::Wait;
  if (c.waiting == Wait::kNone) return false;
  if (c.waiting != Wait::kAnswer && !bus.readable(c.ksock)) return false;
  const std::size_t at = protocol::begin_frame(c.out, 1);
  if (c.wait_has_id) {
    protocol::put_u32(c.out, c.wait_id.network_id);
    protocol::put_u32(c.out, c.wait_id.serial_num);
  }
  Result<std::uint32_t> r = 0u;
  switch (c.waiting) {
    case Wait::kNext:
      r = bus.next_read(c.ksock, c.out);
      break;
    case Wait::kAnswer: {
      auto got = bus.take_answer(c.ksock, c.wait_id, c.out);
      r = got.ok() ? Result<std::uint32_t>(*got ? 1u : 0u) : Result<std::uint32_t>(got.error());
      break;
    }
    case Wait::kBatch:
      r = bus.next_read_batch(c.ksock, c.wait_max_count, c.wait_max_bytes, c.out);
      break;
    case Wait::kNone:
      break;
  }
  if (!r.ok() || *r == 0) {
    c.out.resize(at);
    return false;
  }
  protocol::set_frame_word(c.out, at, *r);
  protocol::end_frame(c.out, at);
  c.waiting = Wait::kNone;
  return true;
}

// Carries out the core's effects: poll fds and blocked receives.
void Daemon::apply_effects(BusEntry& b) {
  // The list is local (flush() may close a connection, which re-enters
  // here); it borrows the storage of the previous call's list.
  std::vector<core::KsockId> touched = std::move(b.touched_spare);
  for (int guard = 0; guard < 1000000; ++guard) {
    b.bus->take_touched(touched);
    if (touched.empty()) break;
    for (core::KsockId k : touched) {
      auto it = b.by_ksock.find(k);
      if (it == b.by_ksock.end()) continue;
      Connection& c = *it->second;
      if (c.waiting != Connection::Wait::kNone && complete_wait(c, *b.bus)) flush(c);
      update_poll_fd(c, *b.bus);
    }
  }
  b.touched_spare = std::move(touched);
}

// docs/protocol.md §3.1: readable iff the queue is non-empty (a byte waits
// in the poll fd); writable iff not blocked (the poll fd's send buffer is
// filled by the daemon while the Ksock may not write).
void Daemon::update_poll_fd(Connection& c, core::Bus& bus) {
  if (c.poll_a < 0) return;
  const bool readable = bus.readable(c.ksock);
  if (readable && !c.signalled_readable) {
    const char byte = 'r';
    if (::send(c.poll_b, &byte, 1, MSG_NOSIGNAL | MSG_DONTWAIT) == 1) c.signalled_readable = true;
  } else if (!readable && c.signalled_readable) {
    char byte;
    if (::recv(c.poll_a, &byte, 1, MSG_DONTWAIT) == 1) c.signalled_readable = false;
  }
  const bool writable = bus.writable(c.ksock);
  if (!writable && !c.blocked_writable) {
    char fill[256] = {};
    for (int i = 0; i < 64; ++i) {
      pollfd p{c.poll_a, POLLOUT, 0};
      if (::poll(&p, 1, 0) != 1 || !(p.revents & POLLOUT)) break;
      if (::send(c.poll_a, fill, sizeof fill, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) break;
    }
    c.blocked_writable = true;
  } else if (writable && c.blocked_writable) {
    char buf[4096];
    while (::recv(c.poll_b, buf, sizeof buf, MSG_DONTWAIT) > 0) {
    }
    c.blocked_writable = false;
  }
}

void Daemon::flush(Connection& c) {
  if (c.peer_gone) return;
  while (c.out_off < c.out.size()) {
    // Bytes up to the next reply that carries the poll fd go by send(); that
    // reply goes by sendmsg() with the fd on its first bytes.
    std::size_t end = c.out.size();
    bool with_fd = false;
    if (!c.fd_at.empty()) {
      if (c.fd_at.front() == c.out_off) {
        with_fd = true;
        if (c.fd_at.size() > 1) end = c.fd_at[1];
      } else {
        end = c.fd_at.front();
      }
    }
    ssize_t n;
    if (with_fd) {
      iovec iov{c.out.data() + c.out_off, end - c.out_off};
      alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
      cmsghdr* cm = CMSG_FIRSTHDR(&msg);
      cm->cmsg_level = SOL_SOCKET;
      cm->cmsg_type = SCM_RIGHTS;
      cm->cmsg_len = CMSG_LEN(sizeof(int));
      std::memcpy(CMSG_DATA(cm), &c.poll_a, sizeof(int));
      n = ::sendmsg(c.fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) c.fd_at.erase(c.fd_at.begin());  // the fd went with these bytes
    } else {
      n = ::send(c.fd, c.out.data() + c.out_off, end - c.out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      close_connection(c, "write error");
      return;
    }
    c.out_off += static_cast<std::size_t>(n);
    if (c.reading_paused && n > 0) paused_since_[c.id] = now_ms();  // it reads: not stalled
  }
  if (c.out_off == c.out.size()) {
    c.out.clear();
    c.out_off = 0;
  } else if (c.out_off > (1u << 20)) {
    c.out.erase(0, c.out_off);
    for (std::size_t& at : c.fd_at) at -= c.out_off;
    c.out_off = 0;
  }
  const bool was_paused = c.reading_paused;
  if (c.reading_paused && c.out.size() - c.out_off <= cfg_.output_high_water / 2) {
    c.reading_paused = false;
    paused_since_.erase(c.id);
    backlog_.push_back(c.id);  // frames may already be buffered
  }
  const bool want_out = c.out_off < c.out.size();
  if (want_out != c.in_epoll_out || was_paused != c.reading_paused) update_epoll(c);
}

void Daemon::update_epoll(Connection& c) {
  epoll_event ev{};
  c.in_epoll_out = c.out_off < c.out.size();
  ev.events = (c.reading_paused ? 0u : (EPOLLIN | EPOLLRDHUP)) | (c.in_epoll_out ? EPOLLOUT : 0u);
  ev.data.u64 = kTagConn | c.id;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.fd, &ev);
}

void Daemon::close_connection(Connection& c, const char* why) {
  if (c.closed) return;
  if (why) log_client(c, std::string(why) + ": disconnecting");
  c.closed = true;
  closed_.push_back(c.id);
  paused_since_.erase(c.id);
  if (c.counted) {
    auto it = per_user_.find(c.uid);
    if (it != per_user_.end() && --it->second == 0) per_user_.erase(it);
    c.counted = false;
  }
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c.fd, nullptr);
  ::close(c.fd);
  c.fd = -1;
  if (c.poll_a >= 0) ::close(c.poll_a);
  if (c.poll_b >= 0) ::close(c.poll_b);
  c.poll_a = c.poll_b = -1;
  c.out.clear();
  c.out_off = 0;
  c.fd_at.clear();
  if (c.ksock != 0) {
    BusEntry& be = buses_[c.bus];
    be.by_ksock.erase(c.ksock);
    be.bus->close(c.ksock);  // §7.2
    apply_effects(be);
  }
}

std::string Daemon::report(bool stats) const {
  std::string text;
  for (const BusEntry& b : buses_) {
    if (stats)
      b.bus->append_stats(text);
    else
      b.bus->append_bindings_report(text);
  }
  return text;
}

// docs/reliability.md §4: a client whose replies have piled up past
// output_high_water is not read from (D9); if it then reads none of them
// for stall_timeout_ms it is cut off, so that it cannot hold its buffers
// (and its Ksock's place on the bus) for ever.
int Daemon::check_stalled() {
  if (paused_since_.empty() || cfg_.stall_timeout_ms == 0) return -1;
  const std::int64_t now = now_ms();
  std::int64_t next = -1;
  std::vector<std::uint64_t> stalled;
  for (const auto& [id, since] : paused_since_) {
    const std::int64_t due = since + cfg_.stall_timeout_ms;
    if (due <= now)
      stalled.push_back(id);
    else if (next < 0 || due - now < next)
      next = due - now;
  }
  for (std::uint64_t id : stalled) {
    auto it = conns_.find(id);
    if (it == conns_.end() || it->second->closed) {
      paused_since_.erase(id);
      continue;
    }
    close_connection(*it->second, ("read none of its " +
                                   std::to_string(it->second->out.size() - it->second->out_off) +
                                   " bytes of replies for " +
                                   std::to_string(cfg_.stall_timeout_ms) + " ms")
                                      .c_str());
  }
  return static_cast<int>(next);
}

// SIGUSR1: one line saying what the daemon holds (docs/reliability.md §1).
void Daemon::log_status() const {
  std::size_t ksocks = 0, conns = 0;
  for (const BusEntry& b : buses_) ksocks += b.by_ksock.size();
  for (const auto& [id, c] : conns_) conns += c->closed ? 0 : 1;
  const ProcessInfo p = process_info();
  log_line("status: %zu connections, %zu ksocks, %zu buses, %llu fds, rss %llu kB, heap %llu bytes",
           conns, ksocks, buses_.size(), static_cast<unsigned long long>(p.fds),
           static_cast<unsigned long long>(p.rss_kb), static_cast<unsigned long long>(p.heap_bytes));
}

}  // namespace kbus::daemon
