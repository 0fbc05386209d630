// client/connection.hpp - one client connection to kbusd (docs/protocol.md).
//
// A Connection owns the stream socket to DIR/kbusN and the Ksock's poll fd,
// which it asks the daemon for (POLLFD) the first time it is needed, so that
// a Ksock nobody polls costs the daemon one descriptor, not three. It sends
// whole request frames (one send() each, with MSG_NOSIGNAL so a vanished
// daemon is an error, not SIGPIPE) and reads reply frames through a buffer.
//
// Threads (docs/protocol.md §2, §4.4; docs/decisions.md D22): a Connection
// may be used by several threads at once. It is a pipelined, multiplexed
// connection:
//   * a send lock makes each frame go out whole, and appends the caller's
//     reply slot to a FIFO in the same order as the frames on the wire;
//   * one thread at a time is the reader: it reads reply frames and hands
//     each to the oldest pending slot (a copy in the slot's buffer); the
//     other callers wait on a condition variable, and one of them takes
//     over reading when the reader has got its own reply;
//   * a frame whose reply kbusd may hold (WAITREAD, READBATCH with wait,
//     SENDWAIT, REQUEST) is answered early (status 0) by any further frame.
//     A waiter answered early because another thread's frame arrived, whose
//     deadline has not passed, waits again; waiters never answer each other
//     early (a wait is sent only while no held frame is outstanding), and a
//     held REQUEST is never answered early by another thread (other frames
//     wait until it is answered or its own timeout cancels it), since its
//     answer would then be left in the queue for anyone to read;
//   * a timed wait whose deadline passes sends RESET (docs/decisions.md D6).
// The fast path (one thread) costs a few uncontended mutex operations and a
// copy of the reply payload into a buffer reused by the calling thread: no
// system call and no allocation more than before.
//
// Invariant: requests and replies are strictly paired. If the byte stream
// can no longer be trusted (the daemon hung up, a frame was malformed, a
// send or receive failed), the Connection becomes *broken* and every pending
// and later call fails at once with the error that broke it. close() fails
// every pending call with EBADF and wakes every waiting thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "kbus/errors.hpp"
#include "protocol/frames.hpp"
#include "shm/ring_reader.hpp"
#include "util/fd.hpp"

namespace kbus::client {

using Clock = std::chrono::steady_clock;

struct ReplyFrame {
  std::int32_t status = 0;
  // In a buffer of the calling thread: valid until that thread's next call
  // on any Connection. Other threads never write it.
  std::string_view payload;
};

// A frame whose reply the daemon may hold (docs/protocol.md §4.4-§4.6).
enum class Held {
  wait,       // WAITREAD, READBATCH with wait: sent again after an early answer
  send_wait,  // SENDWAIT: after an early answer, waits on with WAITREAD
  request,    // REQUEST: other threads' frames wait until it is answered
};

class Connection {
 public:
  // connect() + HELLO. ENOENT if there is no such socket or nobody behind it.
  static Result<std::unique_ptr<Connection>> open(const std::string& path, std::uint32_t mode,
                                                  std::uint32_t header_len);
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection();

  std::uint32_t ksock_id() const noexcept { return ksock_id_; }
  std::uint32_t bus() const noexcept { return bus_; }
  std::uint32_t mode() const noexcept { return mode_; }
  std::uint32_t header_len() const noexcept { return header_len_; }
  const std::string& path() const noexcept { return path_; }
  bool is_open() const noexcept { return !closed_.load(std::memory_order_acquire); }

  // CLOSE (§7.2): fails every pending call with EBADF, half-closes the
  // socket and waits (at most 5 s) until the daemon has carried out the
  // release sequence and closed its side, wakes every thread still inside
  // the Connection, waits for them to leave, and closes the descriptors.
  // Later calls fail with EBADF. Closing twice does nothing.
  void close() noexcept;

  // The poll fd (docs/protocol.md §3.1), fetched on first use: the error if
  // the daemon could not make one (EMFILE) or the connection broke.
  Result<int> try_poll_fd() noexcept;
  int poll_fd() noexcept {
    auto r = try_poll_fd();
    return r ? *r : -1;
  }
  // poll() on the poll fd for `events`, at most until `deadline` (none:
  // forever); the revents (0 on timeout). EBADF if the Connection is closed
  // meanwhile, ECONNRESET if the daemon went away; EINTR if `interruptible`
  // and a signal came (else the wait goes on).
  Result<short> poll_ready(short events, std::optional<Clock::time_point> deadline,
                           bool interruptible = false) noexcept;

  // Sends a request and reads its reply.
  Result<ReplyFrame> call(protocol::Op op, std::string_view payload = {});
  // The same, for a request frame the caller has encoded whole.
  Result<ReplyFrame> call_frame(std::string_view frame);
  // A frame whose reply the daemon may hold, waiting at most until
  // `deadline` (none: forever). The reply is the final one:
  //   wait:      status > 0 and its payload, 0 (timeout), or < 0;
  //   send_wait: as SENDWAIT's reply: 1 with id + message, 0 with the id
  //              (timeout), or < 0 with the id;
  //   request:   as REQUEST's reply (0 with the id: timeout).
  Result<ReplyFrame> call_held(std::string_view frame, Held kind,
                               std::optional<Clock::time_point> deadline);

  // The longest request frame kbusd surely accepts: its --max-frame-size is
  // at least the absolute maximum message size + 1024 (kbusd refuses to
  // start otherwise). Frames up to 1124 bytes need no question; a longer
  // one asks the daemon (MAXMSGSIZE) once per connection.
  Result<std::size_t> frame_budget(std::size_t frame_len) noexcept;

  // Makes the destructor close the descriptors without shutting the socket
  // down (Ksock::abandon): another process sharing it keeps the connection.
  // (Only in a forked child, where no other thread runs: no lock.)
  void abandon() noexcept {
    abandoned_ = true;
    broken_ = Errc::ebadf;
  }

  // The shared-memory receive queue (docs/protocol.md §7), set up with the
  // poll fd (try_poll_fd) unless KBUS_TRANSPORT=socket, the Ksock cannot
  // read, or kbusd does not offer it: nullptr then (socket only).
  shm::RingReader* ring() noexcept {
    if (ring_state_.load(std::memory_order_acquire) == 0) (void)try_poll_fd();
    return ring_state_.load(std::memory_order_acquire) == 1 ? ring_.get() : nullptr;
  }
  // kbusd has hung up (the connection, polled without waiting).
  bool daemon_gone() const noexcept;

  // Pointy message support (KBUS-SPEC.md §3.4): name+data kept for SEND.
  // Per connection, as the daemon's write parser is.
  void set_pointy(std::optional<std::string> p) noexcept;
  std::optional<std::string> take_pointy() noexcept;

 private:
  struct Slot;
  enum class Kind { plain, wait, held };  // how a frame may be sent (see send_with)
  class Use;

  Connection() = default;
  // Appends `s` to the FIFO and sends `frame`. A `wait` frame is sent only
  // when no held frame is outstanding (else waits, at most to `deadline`:
  // false then, nothing sent); every frame waits while another thread's
  // REQUEST is held.
  Result<bool> send_with(Slot& s, std::string_view frame, Kind kind, bool gate,
                         std::optional<Clock::time_point> deadline);
  // Waits until `s` has its reply (reading replies if no one else is):
  // false if `deadline` passed first.
  bool await(Slot& s, std::optional<Clock::time_point> deadline);
  // `s` (a held frame) timed out: if kbusd may still hold it, send RESET,
  // which answers it (docs/protocol.md §4.4); then wait for its reply.
  void cancel(Slot& s);
  Result<ReplyFrame> held_wait(std::string_view frame, std::optional<Clock::time_point> deadline,
                               std::string& out);
  // One recvmsg into rbuf_ (reader only): false if `timeout_ms` (-1: none)
  // ran out or a signal interrupted a timed read.
  Result<bool> fill_once(int timeout_ms);
  // Hands the whole frames in rbuf_ to the FIFO (reader, mu_ held).
  void deliver_locked();
  void fail_locked(Errc e) noexcept;
  Errc fail(Errc e) noexcept;
  Result<void> send_all(std::string_view frame);
  void release_fds() noexcept;
  void setup_ring() noexcept;  // client/ring_client.cpp

  int sock_ = -1;
  std::uint32_t ksock_id_ = 0;
  std::uint32_t bus_ = 0;
  std::uint32_t mode_ = 0;
  std::uint32_t header_len_ = 0;
  std::string path_;

  std::mutex send_mu_;  // frames go out whole, in FIFO order
  std::mutex mu_;       // everything below, except as noted
  std::condition_variable cv_;
  Slot* head_ = nullptr;  // pending replies, oldest first
  Slot* tail_ = nullptr;
  Slot* held_ = nullptr;  // the last frame sent, if kbusd may hold it and has not answered
  bool reading_ = false;  // a thread is the reader
  int waiting_ = 0;       // threads waiting on cv_
  Errc broken_ = Errc::ok;
  bool abandoned_ = false;  // abandon(): never shut the shared socket down
  std::optional<std::string> pointy_;

  std::atomic<bool> closed_{false};
  std::atomic<int> users_{0};  // threads inside the Connection (Use)
  std::atomic<int> poll_fd_{-1};
  std::atomic<std::size_t> frame_budget_{0};  // 0 until asked
  std::mutex ring_mu_;                 // setup_ring
  std::atomic<int> ring_state_{0};     // 0 not yet tried, 1 on, 2 socket only
  std::unique_ptr<shm::RingReader> ring_;

  // The reader's own (reading_ set).
  protocol::InputBuffer rbuf_;
  int rcvtimeo_ms_ = 0;  // the socket's SO_RCVTIMEO (0: none)
};

// Maps an errno from a socket call to the Errc the client reports.
Errc errc_from_errno(int err) noexcept;

}  // namespace kbus::client
