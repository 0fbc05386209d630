// client/connection.cpp - socket I/O for one Ksock (docs/protocol.md §1-§4),
// shared by the threads that use the Ksock (see connection.hpp).
//
// Model: a blocking Unix stream socket carrying request frames out and reply
// frames in. Each request goes out in one send() call (looping only if the
// kernel accepts part of it) under send_mu_, after its reply slot joined the
// FIFO; replies are read into rbuf_ by whichever waiting thread is the
// reader, and copied to the slots in order. Reads always use recvmsg(), so
// the POLLFD reply's SCM_RIGHTS descriptor is received whichever thread
// reads it. EINTR is retried everywhere; the daemon hanging up is reported
// as ECONNRESET (EOF, or ECONNRESET or EPIPE from the socket), never as a
// signal and never as EPIPE, which is KBUS's own "not that replier".
#include "client/connection.hpp"
#include "protocol/ops.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstring>
#include <new>

namespace kbus::client {

using protocol::Op;

namespace {

// The reply payloads of this thread's calls (ReplyFrame::payload). Reused,
// so a call allocates nothing once it has grown; a huge one is let go.
thread_local std::string t_reply;

constexpr std::size_t kKeepReply = 1u << 20;

std::string& reply_buffer() {
  if (t_reply.capacity() > kKeepReply) std::string().swap(t_reply);
  return t_reply;
}

int ms_until(const std::optional<Clock::time_point>& deadline) {
  if (!deadline) return -1;
  auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline - Clock::now()).count();
  if (left <= 0) return 0;
  return left > 0x7FFFFFFF ? 0x7FFFFFFF : static_cast<int>(left);
}

bool passed(const std::optional<Clock::time_point>& deadline) {
  return deadline && Clock::now() >= *deadline;
}

}  // namespace

// A caller waiting for one reply frame.
struct Connection::Slot {
  explicit Slot(std::string* o) noexcept : out(o) {}
  std::string* out;  // where the payload goes
  std::int32_t status = 0;
  Errc error = Errc::ok;
  bool done = false;
  bool gate = false;  // a REQUEST: no other thread's frame while it is held
  Slot* next = nullptr;
};

// A thread inside the Connection: close() waits for it to leave before it
// closes the descriptors. False if the Connection is closed.
class Connection::Use {
 public:
  explicit Use(Connection& c) noexcept : c_(c) {
    c_.users_.fetch_add(1);
    ok_ = !c_.closed_.load();
  }
  ~Use() {
    if (c_.users_.fetch_sub(1) == 1 && c_.closed_.load()) {
      std::lock_guard<std::mutex> lk(c_.mu_);
      c_.cv_.notify_all();
    }
  }
  Use(const Use&) = delete;
  Use& operator=(const Use&) = delete;
  explicit operator bool() const noexcept { return ok_; }

 private:
  Connection& c_;
  bool ok_;
};

Errc errc_from_errno(int err) noexcept {
  switch (err) {
    case 0:
      return Errc::eproto;
    case ECONNREFUSED:  // a socket file with no daemon behind it
    case ENOENT:
      return Errc::enoent;
    case EPIPE:  // a send to a daemon that has gone: "kbusd went away", never
                 // KBUS's EPIPE (a Stateful Request's replier is not `to`)
      return Errc::econnreset;
    default:
      return static_cast<Errc>(err);
  }
}

namespace {

// kbusd refuses a connection over its per-user limit as soon as it accepts
// it: it writes the answer to our HELLO (an error status) and closes,
// perhaps before our HELLO went out, which then fails with EPIPE
// (docs/reliability.md §4). That answer, if it is waiting, is the reason.
std::optional<Errc> refusal_waiting(int sock) {
  char buf[8];
  if (::recv(sock, buf, sizeof buf, MSG_DONTWAIT | MSG_PEEK) != sizeof buf) return std::nullopt;
  const auto status = static_cast<std::int32_t>(protocol::get_u32(buf + 4));
  if (protocol::get_u32(buf) != 4 || status >= 0) return std::nullopt;
  return static_cast<Errc>(-status);
}

}  // namespace

void Connection::fail_locked(Errc e) noexcept {
  if (broken_ == Errc::ok) broken_ = e;
  for (Slot* s = head_; s != nullptr;) {
    Slot* next = s->next;
    s->error = broken_;
    s->done = true;
    s = next;
  }
  head_ = tail_ = nullptr;
  held_ = nullptr;
  cv_.notify_all();
}

Errc Connection::fail(Errc e) noexcept {
  std::lock_guard<std::mutex> lk(mu_);
  fail_locked(e);
  return broken_;
}

Connection::~Connection() {
  close();
  release_fds();
}

void Connection::release_fds() noexcept {
  const int pfd = poll_fd_.exchange(-1);
  if (pfd >= 0) ::close(pfd);
  if (sock_ >= 0) ::close(sock_);
  sock_ = -1;
}

// CLOSE is made synchronous, as the original's close() of /dev/kbusN was:
// half-close our side, then wait until the daemon, having carried out the
// release sequence (§7.2), closes its side. So when a Ksock is closed its
// statuses have been sent and its bindings are gone, for every other Ksock.
// Bounded: a daemon that does not answer within 5 s is left to it.
void Connection::close() noexcept {
  if (closed_.exchange(true) || sock_ < 0) return;
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  bool sane;
  {
    std::unique_lock<std::mutex> lk(mu_);
    sane = broken_ == Errc::ok;
    fail_locked(Errc::ebadf);  // every pending call fails with EBADF, now
  }
  if (sane && ::shutdown(sock_, SHUT_WR) == 0) {
    // The daemon answers what it has, then closes: a thread blocked reading
    // wakes up. Then read to end-of-file ourselves.
    std::unique_lock<std::mutex> lk(mu_);
    ++waiting_;
    bool mine = cv_.wait_until(lk, deadline, [&] { return !reading_; });
    --waiting_;
    if (mine) {
      reading_ = true;
      lk.unlock();
      char scratch[4096];
      for (;;) {
        const int left = ms_until(deadline);
        if (left <= 0) break;
        pollfd p{sock_, POLLIN, 0};
        int rc = ::poll(&p, 1, left);
        if (rc < 0 && errno == EINTR) continue;
        if (rc <= 0) break;
        ssize_t n = ::recv(sock_, scratch, sizeof scratch, MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n <= 0) break;  // EOF (or an error): the daemon has closed the Ksock
      }
      lk.lock();
      reading_ = false;
    }
  }
  // Wake whoever is still in recv(), send() or poll() on the socket, and
  // wait for every thread to leave before the descriptors go. Not for an
  // abandoned copy: the socket is shared with the process that keeps it.
  if (!abandoned_) ::shutdown(sock_, SHUT_RDWR);
  std::unique_lock<std::mutex> lk(mu_);
  cv_.notify_all();
  ++waiting_;
  cv_.wait(lk, [&] { return users_.load() == 0; });
  --waiting_;
  lk.unlock();
  release_fds();
  rbuf_.shrink_if_idle(0);
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
  protocol::append_request<Op::kHello>(
      hello, {protocol::kVersion, mode | protocol::kModeLazyPollFd, header_len});
  auto r = c->call_frame(hello);
  if (!r) {
    if (auto refused = refusal_waiting(c->sock_)) return *refused;
    return r.error() == Errc::econnreset ? Errc::enoent : r.error();
  }
  if (r->status < 0) return static_cast<Errc>(-r->status);
  protocol::HelloValue v;
  if (!protocol::decode_reply<Op::kHello>(r->payload, v)) return Errc::eproto;
  c->ksock_id_ = v.ksock_id;
  c->bus_ = v.bus;
  return c;
}

Result<int> Connection::try_poll_fd() noexcept {
  const int fd = poll_fd_.load(std::memory_order_acquire);
  if (fd >= 0) {
    if (ring_state_.load(std::memory_order_acquire) == 0) setup_ring();
    return fd;
  }
  Use use(*this);
  if (!use) return Errc::ebadf;
  // The reader keeps the descriptor that comes with the reply (fill_once).
  std::string frame;
  protocol::append_request<Op::kPollFd>(frame);
  auto r = call_frame(frame);
  if (!r) return r.error();
  if (r->status < 0) return static_cast<Errc>(-r->status);
  const int got = poll_fd_.load(std::memory_order_acquire);
  if (got < 0) return fail(Errc::eproto);  // a success reply must carry it
  if (ring_state_.load(std::memory_order_acquire) == 0) setup_ring();
  return got;
}

Result<short> Connection::poll_ready(short events, std::optional<Clock::time_point> deadline,
                                     bool interruptible) noexcept {
  Use use(*this);
  if (!use) return Errc::ebadf;
  auto fd = try_poll_fd();
  if (!fd) return fd.error();
  for (;;) {
    // The connection too, for its hang-up: the daemon went away, or close()
    // (from another thread) shut it down.
    pollfd p[2] = {{*fd, events, 0}, {sock_, 0, 0}};
    int rc = ::poll(p, 2, ms_until(deadline));
    if (closed_.load()) return Errc::ebadf;
    if (rc < 0) {
      if (errno == EINTR && !interruptible) continue;
      return static_cast<Errc>(errno);
    }
    if (rc == 0) return short{0};
    // The daemon closed its end of the poll fd or of the connection: it has
    // gone away (the poll fd then also looks readable, at EOF).
    if ((p[0].revents | p[1].revents) & (POLLHUP | POLLERR | POLLNVAL)) return Errc::econnreset;
    if (p[0].revents != 0) return p[0].revents;
  }
}

void Connection::set_pointy(std::optional<std::string> p) noexcept {
  std::lock_guard<std::mutex> lk(mu_);
  pointy_ = std::move(p);
}

std::optional<std::string> Connection::take_pointy() noexcept {
  std::lock_guard<std::mutex> lk(mu_);
  return std::exchange(pointy_, std::nullopt);
}

Result<void> Connection::send_all(std::string_view frame) {
  while (!frame.empty()) {
    ssize_t n = ::send(sock_, frame.data(), frame.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      const Errc e = errc_from_errno(errno);
      return fail(e == Errc::enoent ? Errc::econnreset : e);
    }
    frame.remove_prefix(static_cast<std::size_t>(n));
  }
  return {};
}

Result<bool> Connection::send_with(Slot& s, std::string_view frame, Kind kind, bool gate,
                                   std::optional<Clock::time_point> deadline) {
  std::unique_lock<std::mutex> sl(send_mu_);
  std::unique_lock<std::mutex> lk(mu_);
  for (;;) {
    if (broken_ != Errc::ok) return broken_;
    const bool gated = held_ != nullptr && held_->gate;    // another thread's REQUEST
    const bool busy = kind == Kind::wait && held_ != nullptr;  // another thread waits already
    if (!gated && !busy) break;
    // Wait for it to be answered, without the send lock (its owner may
    // need it to cancel it).
    sl.unlock();
    ++waiting_;
    if (deadline) {
      cv_.wait_until(lk, *deadline);
    } else {
      cv_.wait(lk);
    }
    --waiting_;
    if (passed(deadline)) return false;
    lk.unlock();
    sl.lock();
    lk.lock();
  }
  // Any frame answers a held one early (docs/protocol.md §4.4); a held one
  // is now the one the daemon may hold.
  s.gate = gate;
  if (head_ == nullptr) {
    head_ = tail_ = &s;
  } else {
    tail_->next = &s;
    tail_ = &s;
  }
  held_ = kind == Kind::plain ? nullptr : &s;
  if (kind == Kind::plain && waiting_ > 0) cv_.notify_all();  // waiters may send again
  lk.unlock();
  auto r = send_all(frame);
  if (!r) return r.error();
  return true;
}

Result<bool> Connection::fill_once(int timeout_ms) {
  constexpr std::size_t kChunk = 64 * 1024;
  if (timeout_ms > 0) {
    // One recv() bounded by SO_RCVTIMEO instead of poll() + recv(): a
    // system call less per timed wait. The option is set only when it
    // changes: rounded down to a grid of about 1/16 of its size, so that
    // the same timeout, give or take the time its call took to get here,
    // needs no new setsockopt(). Shorter than the time left, its expiry
    // just means another recv() for the rest (the caller loops until its
    // deadline); an untimed read takes it as a reason to block on.
    const int grid = timeout_ms < 32 ? 1 : 1 << (std::bit_width(static_cast<unsigned>(timeout_ms)) - 5);
    const int want = timeout_ms - timeout_ms % grid;
    if (want != rcvtimeo_ms_) {
      timeval tv{want / 1000, (want % 1000) * 1000};
      if (::setsockopt(sock_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0)
        return fail(errc_from_errno(errno));
      rcvtimeo_ms_ = want;
    }
  }
  const int flags = MSG_CMSG_CLOEXEC | (timeout_ms == 0 ? MSG_DONTWAIT : 0);
  char* const into = rbuf_.prepare(kChunk);
  iovec iov{into, kChunk};
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * 4)];
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = cbuf;
  mh.msg_controllen = sizeof(cbuf);
  ssize_t n;
  for (;;) {
    n = ::recvmsg(sock_, &mh, flags);
    if (n >= 0) break;
    if (errno == EINTR) {
      if (timeout_ms >= 0) return false;  // the caller recomputes its timeout
      continue;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (timeout_ms >= 0) return false;
      continue;  // the SO_RCVTIMEO of an earlier timed read ran out
    }
    break;
  }
  if (n > 0 && mh.msg_controllen > 0) {
    // The POLLFD reply brings the poll fd (SCM_RIGHTS).
    for (cmsghdr* cm = CMSG_FIRSTHDR(&mh); cm != nullptr; cm = CMSG_NXTHDR(&mh, cm)) {
      if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
      const std::size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
        int none = -1;
        if (!poll_fd_.compare_exchange_strong(none, fd)) ::close(fd);  // only one is kept
      }
    }
  }
  if (n <= 0) {
    if (n == 0) return fail(Errc::econnreset);
    const Errc e = errc_from_errno(errno);
    return fail(e == Errc::enoent ? Errc::econnreset : e);
  }
  rbuf_.commit(static_cast<std::size_t>(n));
  return true;
}

void Connection::deliver_locked() {
  for (;;) {
    if (broken_ != Errc::ok) {
      rbuf_.consume(rbuf_.size());  // nobody waits for these any more
      return;
    }
    protocol::Frame f;
    std::size_t consumed = 0;
    // Replies may be longer than requests: a READ of a maximal message, or
    // the reports of many buses. Accept anything a u32 can say.
    switch (protocol::parse_frame(rbuf_.data(), f, consumed, 0xFFFFFFFFu)) {
      case protocol::Parse::kOk:
        break;
      case protocol::Parse::kBadLength:
        fail_locked(Errc::eproto);
        continue;
      case protocol::Parse::kIncomplete:
        return;
    }
    Slot* s = head_;
    if (s == nullptr) {  // a reply nobody asked for
      fail_locked(Errc::eproto);
      continue;
    }
    try {
      s->out->assign(f.payload.data(), f.payload.size());
    } catch (const std::bad_alloc&) {
      fail_locked(Errc::enomem);  // the reply is lost: the stream is out of step
      continue;
    }
    s->status = static_cast<std::int32_t>(f.word);
    s->done = true;
    head_ = s->next;
    if (head_ == nullptr) tail_ = nullptr;
    if (held_ == s) held_ = nullptr;
    rbuf_.consume(consumed);
  }
}

bool Connection::await(Slot& s, std::optional<Clock::time_point> deadline) {
  std::unique_lock<std::mutex> lk(mu_);
  while (!s.done) {
    if (!reading_) {
      reading_ = true;
      lk.unlock();
      Result<bool> got = false;
      try {
        got = fill_once(ms_until(deadline));
      } catch (const std::bad_alloc&) {  // the buffer could not grow
        got = Errc::enomem;
      }
      lk.lock();
      reading_ = false;
      if (got.error() == Errc::enomem) fail_locked(Errc::enomem);
      deliver_locked();
      if (waiting_ > 0) cv_.notify_all();  // replies for them, or the reader's role
      if (!got) continue;                  // failed: every slot has its error
      if (!*got && !s.done && passed(deadline)) return false;
      continue;
    }
    ++waiting_;
    if (deadline) {
      cv_.wait_until(lk, *deadline);
    } else {
      cv_.wait(lk);
    }
    --waiting_;
    if (!s.done && passed(deadline)) return false;
  }
  return true;
}

void Connection::cancel(Slot& s) {
  std::string scratch;  // RESET's reply has no payload
  Slot reset(&scratch);
  std::string frame;  // made first: nothing may throw once `reset` is queued
  protocol::append_request<Op::kReset>(frame);
  {
    std::unique_lock<std::mutex> sl(send_mu_);
    std::unique_lock<std::mutex> lk(mu_);
    // Answered meanwhile, or answered early by a frame sent since (its
    // reply is on its way): nothing to cancel.
    if (s.done || held_ != &s) {
      lk.unlock();
      sl.unlock();
      await(s, std::nullopt);
      return;
    }
    if (head_ == nullptr) {
      head_ = tail_ = &reset;
    } else {
      tail_->next = &reset;
      tail_ = &reset;
    }
    held_ = nullptr;
    if (waiting_ > 0) cv_.notify_all();
    lk.unlock();
    (void)send_all(frame);  // a failure fails both slots
  }
  await(reset, std::nullopt);  // replies come in order: s's first
}

Result<ReplyFrame> Connection::held_wait(std::string_view frame,
                                         std::optional<Clock::time_point> deadline,
                                         std::string& out) {
  for (;;) {
    Slot s(&out);
    auto sent = send_with(s, frame, Kind::wait, false, deadline);
    if (!sent) return sent.error();
    if (!*sent) {
      out.clear();
      return ReplyFrame{0, {}};  // another thread's wait outlasted our deadline
    }
    if (!await(s, deadline)) cancel(s);
    if (s.error != Errc::ok) return s.error;
    if (s.status != 0) return ReplyFrame{s.status, out};
    if (!deadline || !passed(deadline)) continue;  // answered early by another thread's frame
    return ReplyFrame{0, {}};
  }
}

Result<ReplyFrame> Connection::call_held(std::string_view frame, Held kind,
                                         std::optional<Clock::time_point> deadline) {
  Use use(*this);
  if (!use) return Errc::ebadf;
  std::string& out = reply_buffer();
  if (kind == Held::wait) return held_wait(frame, deadline, out);
  Slot s(&out);
  auto sent = send_with(s, frame, Kind::held, kind == Held::request, std::nullopt);
  if (!sent) return sent.error();
  if (!await(s, deadline)) cancel(s);
  if (s.error != Errc::ok) return s.error;
  if (kind == Held::request || s.status != 0 || out.size() != 8 || passed(deadline))
    return ReplyFrame{s.status, out};
  // SENDWAIT answered early by another thread's frame: sent, and still to
  // wait for the next message.
  const std::string id = out;
  std::string wait_frame;
  protocol::append_request<Op::kWaitRead>(wait_frame);
  auto w = held_wait(wait_frame, deadline, out);
  if (!w) return w.error();
  if (w->status <= 0) {
    out = id;
    return ReplyFrame{0, out};
  }
  out.insert(0, id);
  return ReplyFrame{w->status, out};
}

Result<ReplyFrame> Connection::call_frame(std::string_view frame) {
  Use use(*this);
  if (!use) return Errc::ebadf;
  std::string& out = reply_buffer();
  Slot s(&out);
  auto sent = send_with(s, frame, Kind::plain, false, std::nullopt);
  if (!sent) return sent.error();
  await(s, std::nullopt);
  if (s.error != Errc::ok) return s.error;
  return ReplyFrame{s.status, out};
}

Result<ReplyFrame> Connection::call(Op op, std::string_view payload) {
  std::string frame;
  frame.reserve(8 + payload.size());
  protocol::append_request(frame, op, payload);
  return call_frame(frame);
}

Result<std::size_t> Connection::frame_budget(std::size_t frame_len) noexcept {
  // The rule is protocol::frame_budget (docs/protocol.md §2): every kbusd
  // accepts kMinFrameBudget; a longer frame asks for the absolute maximum.
  constexpr std::size_t kAlwaysAccepted = protocol::kMinFrameBudget;
  std::size_t budget = frame_budget_.load(std::memory_order_relaxed);
  if (budget == 0 && frame_len > kAlwaysAccepted) {
    std::string frame;
    protocol::append_request<Op::kMaxMsgSize>(frame, {1});  // 1: the absolute maximum
    auto r = call_frame(frame);
    if (!r) return r.error();
    protocol::U32Value abs_max;
    if (r->status < 0 || !protocol::decode_reply<Op::kMaxMsgSize>(r->payload, abs_max))
      return Errc::eproto;
    budget = protocol::frame_budget(abs_max.value);
    frame_budget_.store(budget, std::memory_order_relaxed);
  }
  return budget ? budget : kAlwaysAccepted;
}

}  // namespace kbus::client
