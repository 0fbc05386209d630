// daemon/connection.cpp - one connection: reading, framing, flushing,
// back-pressure and closing.
//
// What it owns: moving bytes between a client's socket and its Connection's
// buffers, and the rules about how much:
//   - reading is bounded per turn (kReadChunk * 4 bytes, kFramesPerTurn
//     frames); a connection with frames left over goes on the backlog;
//   - a frame longer than --max-frame-size (64 bytes before HELLO) is a
//     protocol violation: one log line and the connection is closed;
//   - a new frame answers a blocked receive early (docs/protocol.md §4.4);
//   - replies are flushed without blocking; what the socket does not take
//     waits for EPOLLOUT; a reply that carries the poll fd goes by sendmsg()
//     with SCM_RIGHTS on its first bytes;
//   - back-pressure (docs/reliability.md §4, D9): above output_high_water
//     unread bytes the client is not read from; below half of it, it is
//     again; paused and reading none of its replies for stall_timeout_ms,
//     it is cut off;
//   - closing only marks the connection (close_connection); Daemon::settle()
//     CLOSEs its Ksock and frees it at the end of the turn;
//   - its buffers are charged to its peer's uid (docs/decisions.md D25): a
//     partial frame growing past kFreeInput bytes that the user's budget
//     cannot pay for closes the connection, with a log line; unread
//     replies are charged whatever the budget (they are owed).
#include <sys/epoll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "daemon/connection.hpp"
#include "daemon/daemon.hpp"
#include "daemon/event_tags.hpp"
#include "util/deadline.hpp"

namespace kbus::daemon {

namespace {
// docs/decisions.md D25: partial input a user over its budget may still hold.
constexpr std::uint64_t kFreeInput = 64 * 1024;
}  // namespace

void Daemon::on_readable(Connection& c) {
  if (c.reading_paused) return;
  for (int round = 0; round < 4; ++round) {
    const ssize_t n = ::recv(c.fd.get(), c.in.prepare(kReadChunk), kReadChunk, 0);
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
  if (!charge_input(c)) {
    const std::uint64_t budget = ledger_.budget(c.uid);
    const bool user = budget != 0 && ledger_.used(c.uid) + c.in.size() - c.charged_in > budget;
    log_client(c, "uid " + std::to_string(c.uid) + " holds " + std::to_string(ledger_.used(c.uid)) +
                      " bytes and cannot pay for a partial frame of " +
                      std::to_string(c.in.size()) + " bytes (" +
                      (user ? "--max-bytes-per-user " + std::to_string(budget)
                            : "--max-bytes-total " + std::to_string(ledger_.limits().total)) +
                      ")");
    close_connection(c, "over its memory budget");
    return;
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
      paused_since_.emplace(c.id, util::now_ms());
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
    answer_wait_early(c);  // docs/protocol.md §4.4
    dispatch(c, f.word, f.payload);
  }
  if (!c.closed) {
    flush(c);
    charge_input(c);  // it only shrank
    backlog_.push_back(c.id);  // more frames may wait: continue next turn
  }
}

// docs/decisions.md D25. Partial frames up to kFreeInput bytes are always
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
}

namespace {

// Sends out[from, to) with the poll fd as SCM_RIGHTS on its first bytes.
ssize_t send_with_fd(int sock, const char* data, std::size_t len, int fd_to_pass) {
  iovec iov{const_cast<char*>(data), len};
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
  std::memcpy(CMSG_DATA(cm), &fd_to_pass, sizeof(int));
  return ::sendmsg(sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
}

}  // namespace

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
      n = send_with_fd(c.fd.get(), c.out.data() + c.out_off, end - c.out_off,
                       c.poll.client_end());
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
    if (c.reading_paused && n > 0) paused_since_[c.id] = util::now_ms();  // it reads: not stalled
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
// output_high_water is not read from (D9); if it then reads none of them
// for stall_timeout_ms it is cut off, so that it cannot hold its buffers
// (and its Ksock's place on the bus) for ever.
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
    close_connection(c, ("read none of its " + std::to_string(c.out.size() - c.out_off) +
                         " bytes of replies for " + std::to_string(cfg_.stall_timeout_ms) + " ms")
                            .c_str());
  }
  return static_cast<int>(next);
}

}  // namespace kbus::daemon
