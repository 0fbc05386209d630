// daemon/connection.cpp - one connection: reading, framing, flushing,
// back-pressure and closing.
//
// What it owns: moving bytes between a client's socket and its Connection's
// buffers, and the rules about how much (docs/reliability.md §4,
// scheduling):
//   - a connection is served at most once per turn of the loop (serve());
//     an event for one already served puts it on the ready queue instead;
//   - one service applies at most kFramesPerTurn frames and
//     kFrameBytesPerTurn bytes of frames (at least one frame); a
//     connection with whole frames left over goes on the ready queue;
//   - input is read only while the buffer holds no whole frame, in
//     kReadChunk pieces, at most kReadBytesPerTurn per turn: a client
//     cannot make kbusd buffer more than one frame and a chunk ahead;
//   - a frame longer than --max-frame-size (64 bytes before HELLO) is a
//     protocol violation: one log line and the connection is closed;
//   - a new frame answers a blocked receive early (docs/protocol.md §4.4);
//   - replies are flushed without blocking; what the socket does not take
//     waits for EPOLLOUT; a reply that carries the poll fd goes by sendmsg()
//     with SCM_RIGHTS on its first bytes;
//   - back-pressure (docs/reliability.md §4, D9): above output_high_water
//     unread bytes the client is not read from; below half of it, it is
//     again; a client that has not got back below half within
//     stall_timeout_ms of pausing is cut off, however much it read
//     meanwhile (a byte now and then does not keep it alive);
//   - a connection that has not completed HELLO within hello_timeout_ms of
//     its accept is closed (check_hello);
//   - closing only marks the connection (close_connection); Daemon::settle()
//     CLOSEs its Ksock and frees it at the end of the turn;
//   - its buffers are charged to its peer's uid (docs/decisions.md D28): a
//     partial frame growing past kFreeInput bytes that the user's budget
//     cannot pay for closes the connection, with a log line; unread
//     replies are charged whatever the budget (they are owed).
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "daemon/connection.hpp"
#include "daemon/daemon.hpp"
#include "daemon/event_tags.hpp"
#include "util/deadline.hpp"
#include "util/send_fds.hpp"

namespace kbus::daemon {

namespace {

// True if `c`'s input holds a whole frame (or a length that will close it):
// then it is not read from until that is applied.
bool whole_frame_buffered(const Connection& c, std::uint32_t max_len) {
  protocol::Frame f;
  std::size_t used = 0;
  return protocol::parse_frame(c.in.data(), f, used, max_len) != protocol::Parse::kIncomplete;
}

// docs/decisions.md D28: partial input a user over its budget may still hold.
constexpr std::uint64_t kFreeInput = 64 * 1024;

}  // namespace

// One connection's share of this turn.
void Daemon::serve(Connection& c) {
  if (c.served_turn == turn_) {  // served already: its next share is next turn
    queue_ready(c);
    return;
  }
  c.served_turn = turn_;
  c.frames_in_turn = 0;
  c.frame_bytes_in_turn = 0;
  c.read_in_turn = 0;
  if (!c.reading_paused && !read_input(c)) return;
  process_input(c);
}

// Reads within the turn's budget - or, once the peer is gone, everything
// to EOF. On EOF applies every whole frame and closes (returns false).
bool Daemon::read_input(Connection& c) {
  const std::uint32_t max_len = c.ksock == 0 ? kMaxHelloFrame : cfg_.max_frame_len;
  while (c.peer_gone ||
         (c.read_in_turn < kReadBytesPerTurn && !whole_frame_buffered(c, max_len))) {
    const ssize_t n = ::recv(c.fd.get(), c.in.prepare(kReadChunk), kReadChunk, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    if (n < 0) {
      close_connection(c, "connection error");
      return false;
    }
    if (n == 0) {
      // EOF: apply every complete frame, then close (= CLOSE of the Ksock).
      c.peer_gone = true;
      process_input(c);
      if (!c.closed) {
        if (!c.in.empty()) log_client(c, "hung up in the middle of a frame");
        close_connection(c, nullptr);
      }
      return false;
    }
    c.in.commit(static_cast<std::size_t>(n));
    c.read_in_turn += static_cast<std::size_t>(n);
    if (static_cast<std::size_t>(n) < kReadChunk && !c.peer_gone) break;  // drained
  }
  if (!charge_input(c)) {
    log_client(c, "cannot pay for a partial frame of " + std::to_string(c.in.size()) +
                      " bytes: " + budget_text(c.uid));
    close_connection(c, "over its memory budget");
    return false;
  }
  if (!c.peer_gone) busiest_read_ = std::max<std::uint64_t>(busiest_read_, c.read_in_turn);
  return true;
}

void Daemon::process_input(Connection& c) {
  for (;;) {
    if (c.closed) return;
    if (c.peer_gone) {
      c.out.clear();  // nobody will read the replies
      c.out_off = 0;
      c.fd_at.clear();
    } else if (c.out.size() - c.out_off > cfg_.output_high_water) {
      // The client is not reading its replies: stop reading it until it does.
      c.reading_paused = true;
      paused_since_.emplace(c.id, util::now_ms());
      flush(c);
      update_epoll(c);
      return;
    } else if (c.frames_in_turn >= kFramesPerTurn ||
               c.frame_bytes_in_turn >= kFrameBytesPerTurn) {
      // Its share of this turn is used: the rest waits for the next one.
      flush(c);
      charge_input(c);  // it only shrank
      const std::uint32_t max_len = c.ksock == 0 ? kMaxHelloFrame : cfg_.max_frame_len;
      if (!c.closed && whole_frame_buffered(c, max_len)) queue_ready(c);
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
      charge_input(c);  // it only shrank
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
    if (!c.peer_gone) {
      ++c.frames_in_turn;
      c.frame_bytes_in_turn += used;
      // Tallied apart from the budget, so that the status line shows what
      // one connection got in one turn however the budget is kept.
      if (c.tally_turn != turn_) {
        c.tally_turn = turn_;
        c.tally_frames = 0;
      }
      busiest_frames_ = std::max(busiest_frames_, ++c.tally_frames);
    }
    answer_wait_early(c);  // docs/protocol.md §4.4
    dispatch(c, f.word, f.payload);
  }
}

// docs/decisions.md D28. Partial frames up to kFreeInput bytes are always
// allowed: a user over its budget can still send the requests (NEXTREAD,
// UNBIND, CLOSE...) that bring it back under.
bool Daemon::charge_input(Connection& c) {
  if (c.closed) return true;
  return ledger_.try_adjust(c.uid, core::Charge::kInput, c.charged_in, c.in.size(), kFreeInput);
}

void Daemon::charge_output(Connection& c) {
  if (c.closed) return;
  ledger_.adjust(c.uid, core::Charge::kOutput, c.charged_out, c.out.size() - c.out_off);
}

void Daemon::release_buffers(Connection& c) {
  ledger_.adjust(c.uid, core::Charge::kInput, c.charged_in, 0);
  ledger_.adjust(c.uid, core::Charge::kOutput, c.charged_out, 0);
  ledger_.adjust(c.uid, core::Charge::kRing, c.charged_ring, 0);
}


// Writes what the socket takes. A write error only marks the connection
// closed: its CLOSE happens in settle(), never from in here.
void Daemon::flush(Connection& c) {
  if (c.peer_gone || c.closed) return;
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
      const int fd = c.poll.client_end();
      n = util::send_with_fds(c.fd.get(), c.out.data() + c.out_off, end - c.out_off, &fd, 1);
      if (n > 0) c.fd_at.erase(c.fd_at.begin());  // the fd went with these bytes
    } else {
      n = ::send(c.fd.get(), c.out.data() + c.out_off, end - c.out_off,
                 MSG_NOSIGNAL | MSG_DONTWAIT);
    }
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
    for (std::size_t& at : c.fd_at) at -= c.out_off;
    c.out_off = 0;
  }
  const bool was_paused = c.reading_paused;
  if (c.reading_paused && c.out.size() - c.out_off <= cfg_.output_high_water / 2) {
    c.reading_paused = false;
    paused_since_.erase(c.id);
    queue_ready(c);  // frames may already be buffered
  }
  charge_output(c);
  const bool want_out = c.out_off < c.out.size();
  if (want_out != c.in_epoll_out || was_paused != c.reading_paused) update_epoll(c);
}

void Daemon::update_epoll(Connection& c) {
  epoll_event ev{};
  c.in_epoll_out = c.out_off < c.out.size();
  ev.events = (c.reading_paused ? 0u : (EPOLLIN | EPOLLRDHUP)) | (c.in_epoll_out ? EPOLLOUT : 0u);
  ev.data.u64 = kTagConn | c.id;
  ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_MOD, c.fd.get(), &ev);
}

// Marks c closed: it is served no more and leaves the epoll set at once;
// settle() CLOSEs its Ksock (§7.2) and then closes its socket.
void Daemon::close_connection(Connection& c, const char* why) {
  if (c.closed) return;
  if (why) log_client(c, std::string(why) + ": disconnecting");
  c.closed = true;
  closing_.push_back(c.id);
  paused_since_.erase(c.id);
  if (c.counted) {
    quota_.release(c.uid);
    c.counted = false;
  }
  ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, c.fd.get(), nullptr);
  c.waiting = Connection::Wait::kNone;
  c.out.clear();
  c.out_off = 0;
  c.fd_at.clear();
  release_buffers(c);
}

// docs/reliability.md §4: a client whose replies have piled up past
// output_high_water is not read from (D9); if it has not drained them back
// below half of that within stall_timeout_ms it is cut off, so that it
// cannot hold its buffers (and its Ksock's place on the bus) for ever -
// nor by reading a byte now and then.
int Daemon::check_stalled() {
  if (paused_since_.empty() || cfg_.stall_timeout_ms == 0) return -1;
  const std::int64_t now = util::now_ms();
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
    Connection& c = *it->second;
    ++stalls_;
    close_connection(
        c, ("did not drain its replies within " + std::to_string(cfg_.stall_timeout_ms) +
            " ms (--stall-timeout-ms): " + std::to_string(c.out.size() - c.out_off) +
            " bytes still unread, over half of --max-output-buffer")
               .c_str());
  }
  return static_cast<int>(next);
}

// docs/reliability.md §4: a connection that has not completed HELLO within
// hello_timeout_ms of its accept is closed, so that silent connections do
// not hold descriptors. hello_due_ is in accept order, so due times ascend.
int Daemon::check_hello() {
  const std::int64_t now = util::now_ms();
  while (!hello_due_.empty() && hello_due_.front().first <= now) {
    const std::uint64_t id = hello_due_.front().second;
    hello_due_.pop_front();
    auto it = conns_.find(id);
    if (it == conns_.end() || it->second->closed || it->second->ksock != 0) continue;
    Connection& c = *it->second;
    serve(c);  // a HELLO that has arrived but is not yet applied counts
    if (c.closed || c.ksock != 0) continue;
    ++hello_timeouts_;
    close_connection(c, ("no HELLO within " + std::to_string(cfg_.hello_timeout_ms) +
                         " ms of connecting (--hello-timeout-ms)")
                            .c_str());
  }
  return hello_due_.empty() ? -1 : static_cast<int>(hello_due_.front().first - now);
}

}  // namespace kbus::daemon
