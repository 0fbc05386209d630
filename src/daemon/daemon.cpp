#include "daemon/daemon.hpp"

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
  int poll_a = -1;  // the daemon's copy of the client's poll fd
  int poll_b = -1;  // its peer
  bool signalled_readable = false;
  bool blocked_writable = false;
  bool waiting = false;  // a WAITREAD is outstanding
  bool closed = false;
  bool in_epoll_out = false;
  bool reading_paused = false;
  bool peer_gone = false;  // EOF seen: apply the buffered frames, then close
  std::string in;
  std::size_t in_off = 0;
  std::string out;
  std::size_t out_off = 0;
};

Daemon::Daemon(Config cfg) : cfg_(std::move(cfg)) {}

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
}

bool Daemon::start() {
  if (cfg_.devices < 1 || cfg_.devices > kMaxBuses) {
    log_line("--devices must be between 1 and %u", kMaxBuses);
    return false;
  }
  if (cfg_.dir.empty()) cfg_.dir = default_dir();
  if (!mkdir_p(cfg_.dir)) {
    log_line("cannot create directory %s: %s", cfg_.dir.c_str(), std::strerror(errno));
    return false;
  }
  const std::string lock_path = cfg_.dir + "/.kbusd.lock";
  lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd_ < 0) {
    log_line("cannot open %s: %s", lock_path.c_str(), std::strerror(errno));
    return false;
  }
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    log_line("another kbusd already serves %s", cfg_.dir.c_str());
    return false;
  }
  raise_fd_limit();
  ::signal(SIGPIPE, SIG_IGN);
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
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
  return true;
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
      ::chmod(b.path.c_str(), 0666) != 0 || ::listen(b.listen_fd, 512) != 0) {
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
    const int timeout = backlog_.empty() ? -1 : 0;
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
          log_line("signal %u: exiting", si.ssi_signo);
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
    std::vector<std::uint64_t> backlog;
    backlog.swap(backlog_);
    for (std::uint64_t id : backlog) {
      auto it = conns_.find(id);
      if (it != conns_.end() && !it->second->closed) process_input(*it->second);
    }
    // Free closed connections at the end of the turn.
    for (auto it = conns_.begin(); it != conns_.end();) {
      if (it->second->closed)
        it = conns_.erase(it);
      else
        ++it;
    }
  }
}

void Daemon::accept_on(std::uint32_t bus) {
  for (int i = 0; i < 64; ++i) {
    const int fd = ::accept4(buses_[bus].listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
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
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) c->pid = cred.pid;
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
    if (c.in_off > 0 && c.in_off == c.in.size()) {
      c.in.clear();
      c.in_off = 0;
    }
    const std::size_t old = c.in.size();
    c.in.resize(old + kReadChunk);
    const ssize_t n = ::recv(c.fd, c.in.data() + old, kReadChunk, 0);
    if (n <= 0) {
      c.in.resize(old);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
      if (n < 0) {
        close_connection(c, "connection error");
        return;
      }
      // EOF: apply every complete frame, then close (= CLOSE of the Ksock).
      c.peer_gone = true;
      process_input(c);
      if (!c.closed) {
        if (c.in.size() > c.in_off) log_client(c, "hung up in the middle of a frame");
        close_connection(c, nullptr);
      }
      return;
    }
    c.in.resize(old + static_cast<std::size_t>(n));
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
    } else if (c.out.size() - c.out_off > cfg_.output_high_water) {
      // The client is not reading its replies: stop reading it until it does.
      c.reading_paused = true;
      flush(c);
      update_epoll(c);
      return;
    }
    protocol::Frame f;
    std::size_t used = 0;
    const std::string_view avail(c.in.data() + c.in_off, c.in.size() - c.in_off);
    const auto r = protocol::parse_frame(avail, f, used, cfg_.max_frame_len);
    if (r == protocol::Parse::kIncomplete) {
      flush(c);
      if (c.in_off > 0 && c.in_off == c.in.size()) {
        c.in.clear();
        c.in_off = 0;
      } else if (c.in_off > (1u << 16)) {
        c.in.erase(0, c.in_off);
        c.in_off = 0;
      }
      return;
    }
    if (r == protocol::Parse::kBadLength) {
      log_client(c, "frame length " + std::to_string(protocol::get_u32(avail.data())) +
                        " out of range: disconnecting");
      close_connection(c, nullptr);
      return;
    }
    // The payload stays valid during dispatch: nothing moves c.in until the
    // next read.
    c.in_off += used;
    if (c.waiting) {
      // docs/protocol.md §4.4: a new frame answers the blocked WAITREAD with 0.
      c.waiting = false;
      protocol::append_reply(c.out, 0);
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
        c.waiting = true;
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
    case Op::kHello:
      reply_err(Errc::einval);  // only once, first
      break;
    default:
      reply_err(Errc::enotty);
      break;
  }
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
  else if (mode == 0 || (mode & ~(protocol::kModeRead | protocol::kModeWrite)) != 0 ||
           (header_len != kHeaderLen64 && header_len != kHeaderLen32))
    err = Errc::einval;
  int pair[2] = {-1, -1};
  if (err == Errc::ok &&
      ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) != 0) {
    log_client(c, std::string("socketpair: ") + std::strerror(errno));
    err = Errc::enomem;
  }
  if (err != Errc::ok) {
    protocol::append_reply(out, -to_errno(err));
    ::send(c.fd, out.data(), out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    close_connection(c, nullptr);
    return;
  }
  const int one = 1;
  ::setsockopt(pair[0], SOL_SOCKET, SO_SNDBUF, &one, sizeof one);  // minimum: easy to fill
  BusEntry& be = buses_[c.bus];
  core::OpenOptions opts;
  opts.can_read = (mode & protocol::kModeRead) != 0;
  opts.can_write = (mode & protocol::kModeWrite) != 0;
  opts.header_len = header_len;
  opts.pid = c.pid;
  c.ksock = be.bus->open(opts);
  c.poll_a = pair[0];
  c.poll_b = pair[1];
  be.by_ksock[c.ksock] = &c;
  update_poll_fd(c, *be.bus);

  const std::size_t at = protocol::begin_frame(out, 0);
  protocol::put_u32(out, c.ksock);
  protocol::put_u32(out, c.bus);
  protocol::end_frame(out, at);
  // The reply carries the poll fd; it is the first thing ever written to
  // this connection, so it goes out at once, with the fd on its bytes.
  iovec iov{out.data(), out.size()};
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
  const ssize_t n = ::sendmsg(c.fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
  if (n != static_cast<ssize_t>(out.size())) {
    log_client(c, "cannot send HELLO reply: disconnecting");
    close_connection(c, nullptr);
  }
}

// Carries out the core's effects: poll fds and blocked receives.
void Daemon::apply_effects(BusEntry& b) {
  for (int guard = 0; guard < 1000000; ++guard) {
    const std::vector<core::KsockId> touched = b.bus->take_touched();
    if (touched.empty()) return;
    for (core::KsockId k : touched) {
      auto it = b.by_ksock.find(k);
      if (it == b.by_ksock.end()) continue;
      Connection& c = *it->second;
      if (c.waiting && b.bus->readable(k)) {
        const std::size_t at = protocol::begin_frame(c.out, 0);
        auto r = b.bus->next_read(k, c.out);
        protocol::set_frame_word(c.out, at, r.ok() ? *r : 0);
        protocol::end_frame(c.out, at);
        c.waiting = false;
        flush(c);
      }
      update_poll_fd(c, *b.bus);
    }
  }
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
    const ssize_t n = ::send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off,
                             MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      close_connection(c, "write error");
      return;
    }
    c.out_off += static_cast<std::size_t>(n);
  }
  if (c.out_off == c.out.size()) {
    c.out.clear();
    c.out_off = 0;
  } else if (c.out_off > (1u << 20)) {
    c.out.erase(0, c.out_off);
    c.out_off = 0;
  }
  const bool was_paused = c.reading_paused;
  if (c.reading_paused && c.out.size() - c.out_off <= cfg_.output_high_water / 2) {
    c.reading_paused = false;
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
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c.fd, nullptr);
  ::close(c.fd);
  c.fd = -1;
  if (c.poll_a >= 0) ::close(c.poll_a);
  if (c.poll_b >= 0) ::close(c.poll_b);
  c.poll_a = c.poll_b = -1;
  c.out.clear();
  c.out_off = 0;
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

}  // namespace kbus::daemon
