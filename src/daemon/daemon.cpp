// daemon/daemon.cpp - the turn: start-up, the event loop, the core's
// effects and the deferred closes.
//
// What it owns: the epoll set, the signal pipe, the start-up (the
// directory and its lock are runtime_dir.cpp's), the
// table of connections and the order of work in one turn of the loop:
//
//   1. epoll_wait; for each event: a signal (stop, or SIGUSR1 for a status
//      line), a listener (listener.cpp accepts), or a connection
//      (connection.cpp flushes, reads and cuts frames; handlers.cpp runs
//      each operation against the core and appends its reply).
//   2. After each operation, apply_effects() asks the core which Ksocks it
//      touched and carries that out: it answers their blocked receives,
//      flushes those replies and updates their poll fds. Carrying out an
//      effect may itself touch Ksocks (a receive makes room, a pending send
//      goes through), so it asks again until the core has nothing more.
//   3. settle(): connections closed during the turn - by a write error in
//      flush(), a hang-up, a protocol violation, a stall - are only marked
//      closed while it runs; here, with no operation under way, each one's
//      Ksock is CLOSEd in the core (§7.2), the effects of that are applied,
//      and only then is its socket closed, so a client that reads to EOF
//      knows its CLOSE is complete (docs/protocol.md §1).
//   4. The ready queue: connections with whole frames still buffered (or
//      unpaused) get their next service.
//
// Fairness (docs/reliability.md §4): a connection is served at most once
// per turn - an event for one already served queues it for the next turn,
// and one already on the ready queue is served there, after the
// connections that the events name - and each service is bounded
// (connection.cpp: kFramesPerTurn frames, kFrameBytesPerTurn bytes, input
// read only while no whole frame is buffered). The ready queue holds a
// connection at most once.
#include "daemon/daemon.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>

#include "daemon/connection.hpp"
#include "daemon/event_tags.hpp"
#include "daemon/process_info.hpp"
#include "util/dirs.hpp"

namespace kbus::daemon {

namespace {

// Raises the soft descriptor limit as far as allowed; returns it.
rlim_t raise_fd_limit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return 1024;
  rlimit want = rl;
  want.rlim_max = std::max<rlim_t>(rl.rlim_max, 1u << 20);
  want.rlim_cur = want.rlim_max;
  if (::setrlimit(RLIMIT_NOFILE, &want) != 0) {  // not root: as far as allowed
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return 1024;
  return rl.rlim_cur;
}

}  // namespace

void log_line(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::fputs("kbusd: ", stderr);
  std::vfprintf(stderr, fmt, ap);
  std::fputc('\n', stderr);
  va_end(ap);
}

std::string default_dir() { return util::default_bus_dir(); }

Daemon::Daemon(Config cfg)
    : cfg_(std::move(cfg)), readiness_(cfg_.ready_fd), quota_(cfg_.max_ksocks_per_user),
      ledger_(cfg_.ledger) {}

Daemon::~Daemon() {
  conns_.clear();  // their descriptors close with them
  for (std::size_t i = 0; i < buses_.size(); ++i)
    if (buses_[i].listen_fd) dir_.remove_socket("kbus" + std::to_string(i));
  dir_.unlock();  // a start that failed half-way leaves no lock file either
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
  // docs/reliability.md §9: a directory only we (or root) can write to,
  // held open; made with only the access the sockets' mode needs.
  if (!dir_.open(cfg_.dir, directory_mode_for(cfg_.socket_access, ::geteuid()),
                 cfg_.socket_access.group) ||
      !dir_.lock())
    return false;
  cfg_.dir = dir_.path();
  const rlim_t fds = raise_fd_limit();
  // docs/decisions.md D26: by default one uid may hold half of kbusd's
  // descriptors as Ksocks, so that another uid is always served.
  if (cfg_.max_ksocks_per_user == kPerUserAuto)
    cfg_.max_ksocks_per_user =
        static_cast<std::uint32_t>(std::clamp<rlim_t>(fds / 2, 16, UINT32_MAX - 1));
  quota_ = core::UserQuota(cfg_.max_ksocks_per_user);
  // SIGHUP: the terminal closed: stop as cleanly as on SIGTERM. SIGUSR1:
  // log_status().
  signals_.emplace(std::initializer_list<int>{SIGTERM, SIGINT, SIGHUP, SIGUSR1},
                   /*ignore_sigpipe=*/true);
  epoll_fd_.reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_fd_) {
    log_line("cannot create epoll: %s", std::strerror(errno));
    return false;
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kTagSignal;
  ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, signals_->fd(), &ev);
  // Never reallocated: operations hold references to their BusEntry while
  // NEWDEVICE adds one.
  buses_.reserve(kMaxBuses);
  for (std::uint32_t i = 0; i < cfg_.devices; ++i)
    if (!add_bus()) return false;
  reserve_fd_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  // docs/reliability.md §5: the sockets exist; root is no longer needed.
  if (cfg_.run_as && !drop_privileges(*cfg_.run_as, cfg_.socket_access.group, dir_.fd(), cfg_.dir))
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
  for (std::size_t i = 0; i < buses_.size(); ++i) {
    if (buses_[i].listen_fd) {
      buses_[i].listen_fd.reset();
      dir_.remove_socket("kbus" + std::to_string(i));
    }
  }
  // Still holding the lock: a kbusd starting now finds the file gone (or
  // replaced) and locks a new one (see RuntimeDir::lock()).
  dir_.unlock();
  std::string removed = cfg_.dir + "/kbus0";
  if (buses_.size() > 1) removed += " .. kbus" + std::to_string(buses_.size() - 1);
  log_line("%s: stopped; removed %s and the lock file", why, removed.c_str());
}

int Daemon::run() {
  std::vector<epoll_event> events(256);
  for (;;) {
    ++turn_;
    const int timer_ms = check_timers();
    settle();
    if (ledger_.has_refusals()) log_refusals();
    const int timeout = ready_.empty() ? timer_ms : 0;
    const int n =
        ::epoll_wait(epoll_fd_.get(), events.data(), static_cast<int>(events.size()), timeout);
    if (n < 0) {
      if (errno == EINTR) continue;
      log_line("epoll_wait: %s", std::strerror(errno));
      return 1;
    }
    for (int i = 0; i < n; ++i) {
      if (events[i].data.u64 == kTagSignal) {
        const int signo = signals_->take();
        if (signo == SIGUSR1) {
          log_status();
        } else if (signo != 0) {
          shutdown(signo == SIGHUP    ? "SIGHUP"
                   : signo == SIGINT  ? "SIGINT"
                   : signo == SIGTERM ? "SIGTERM"
                                      : "signal");
          return 0;
        }
        continue;
      }
      on_event(events[i].data.u64, events[i].events);
      settle();
    }
    // The ready queue, in order; those already served this turn (by an
    // event above) go back on it for the next one.
    ready_turn_.swap(ready_);  // both keep their capacity: no allocation per turn
    for (std::uint64_t id : ready_turn_) {
      auto it = conns_.find(id);
      if (it == conns_.end()) continue;
      it->second->queued = false;
      if (!it->second->closed) serve(*it->second);
      settle();
    }
    ready_turn_.clear();
  }
}

void Daemon::queue_ready(Connection& c) {
  if (c.queued || c.closed) return;
  c.queued = true;
  ready_.push_back(c.id);
}

int Daemon::check_timers() {
  const int a = check_stalled();
  const int b = check_hello();
  if (a < 0) return b;
  if (b < 0) return a;
  return std::min(a, b);
}

void Daemon::on_event(std::uint64_t tag, std::uint32_t events) {
  if ((tag & kTagMask) == kTagListener) {
    accept_on(static_cast<std::uint32_t>(tag & ~kTagMask));
    return;
  }
  auto it = conns_.find(tag & ~kTagMask);
  if (it == conns_.end() || it->second->closed) return;
  Connection& c = *it->second;
  if (events & EPOLLOUT) flush(c);
  // One already on the ready queue is served there, after those that the
  // events name: a client that was waiting goes before one that is busy.
  if (!c.closed && (events & (EPOLLIN | EPOLLRDHUP)) && !c.queued) serve(c);
  if (!c.closed && (events & (EPOLLHUP | EPOLLERR))) {
    // The peer is gone: apply all it sent, then CLOSE its Ksock.
    c.peer_gone = true;
    if (read_input(c)) {
      process_input(c);
      close_connection(c, nullptr);
    }
  }
}

// Carries out the core's effects on bus b: the blocked receives it can now
// answer and the poll fds of the Ksocks it touched.
void Daemon::apply_effects(BusEntry& b) {
  std::vector<core::KsockId>& touched = b.touched;
  for (;;) {
    b.bus->take_touched(touched);
    if (touched.empty()) break;
    for (core::KsockId k : touched) {
      auto it = b.by_ksock.find(k);
      if (it == b.by_ksock.end() || it->second->closed) continue;
      Connection& c = *it->second;
      if (c.ring && !c.ring->frozen() && !c.ring_corrupt) shm_freeze(c, b);
      if (c.waiting != Connection::Wait::kNone && complete_wait(c, *b.bus)) flush(c);
      // (With a shared-memory queue the ring's tokens show readability.)
      if (c.poll.made()) c.poll.update(!c.ring && b.bus->readable(k), b.bus->writable(k));
    }
  }
  shm_publish(b);  // the rings mirror the queues the work left
}

// The end of a piece of work: CLOSE the Ksocks of the connections closed
// meanwhile (apply_effects may close more: repeat), then free them.
void Daemon::settle() {
  while (!closing_.empty()) {
    std::vector<std::uint64_t> ids;
    ids.swap(closing_);
    for (std::uint64_t id : ids) {
      auto it = conns_.find(id);
      if (it == conns_.end()) continue;
      Connection& c = *it->second;
      if (c.ksock != 0) {
        BusEntry& be = buses_[c.bus];
        shm_before_close(c, be);  // what its client took counts as read
        be.by_ksock.erase(c.ksock);
        be.bus->close(c.ksock);  // §7.2
        c.ksock = 0;
        apply_effects(be);
      }
      conns_.erase(it);  // closes its socket and poll fd: the client sees EOF
    }
  }
}

void Daemon::log_refusals() {
  const auto now = std::chrono::steady_clock::now();
  for (const auto& [uid, n] : ledger_.take_refused()) {
    RefusalLog& r = refusal_log_[uid];
    r.since += n;
    if (r.last && now - *r.last < kRefusalLogEvery) continue;
    log_line("uid %u is over a memory budget: %llu messages or operations refused since %s (its "
             "Ksocks count as full: listeners miss messages, Requests to them get EBUSY or "
             "EAGAIN; its Requests ENOLCK, its BINDs ENOMEM). %s: its programs must read their "
             "messages, or raise the budget",
             uid, static_cast<unsigned long long>(r.since),
             r.last ? "the last such line" : "kbusd started",
             budget_text(uid).c_str());
    r.last = now;
    r.since = 0;
  }
}

std::string Daemon::budget_text(std::uint32_t uid) const {
  return "uid " + std::to_string(uid) + " holds " + std::to_string(ledger_.used(uid)) + " bytes (" +
         (ledger_.privileged(uid) ? "--max-bytes-privileged " : "--max-bytes-per-user ") +
         std::to_string(ledger_.budget(uid)) + ", --max-bytes-total " +
         std::to_string(ledger_.limits().total) + ", all users " + std::to_string(ledger_.total()) +
         ")";
}

void Daemon::log_client(const Connection& c, const std::string& what) const {
  log_line("bus %u ksock %u (pid %d): %s", c.bus, c.ksock, static_cast<int>(c.pid), what.c_str());
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

// SIGUSR1: one line saying what the daemon holds (docs/reliability.md §1).
void Daemon::log_status() const {
  std::size_t ksocks = 0, conns = 0;
  for (const BusEntry& b : buses_) ksocks += b.by_ksock.size();
  for (const auto& [id, c] : conns_) conns += c->closed ? 0 : 1;
  const ProcessInfo p = process_info();
  // The figures of docs/reliability.md §4 follow the first six, which
  // tools parse by position.
  using core::Charge;
  auto held = [&](Charge c) { return static_cast<unsigned long long>(ledger_.total(c)); };
  log_line(
      "status: %zu connections, %zu ksocks, %zu buses, %llu fds, rss %llu kB, heap %llu bytes; "
      "busiest turn of one connection %llu frames, %llu bytes read; refused over "
      "--max-ksocks-per-user %llu, no HELLO in time %llu, stalled %llu; "
      "held %llu bytes for %zu users (queued %llu, set aside %llu, requests %llu, bindings "
      "%llu, writing %llu, input %llu, output %llu, shared-memory queues %llu)",
      conns, ksocks, buses_.size(), static_cast<unsigned long long>(p.fds),
      static_cast<unsigned long long>(p.rss_kb), static_cast<unsigned long long>(p.heap_bytes),
      static_cast<unsigned long long>(busiest_frames_),
      static_cast<unsigned long long>(busiest_read_),
      static_cast<unsigned long long>(refused_per_user_),
      static_cast<unsigned long long>(hello_timeouts_), static_cast<unsigned long long>(stalls_),
      static_cast<unsigned long long>(ledger_.total()), ledger_.users(), held(Charge::kQueued),
      held(Charge::kSetAside), held(Charge::kRequests), held(Charge::kBindings),
      held(Charge::kWriting), held(Charge::kInput), held(Charge::kOutput), held(Charge::kRing));
}

}  // namespace kbus::daemon
