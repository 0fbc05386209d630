// client/connection.hpp - one client connection to kbusd (docs/protocol.md).
//
// A Connection owns the stream socket to DIR/kbusN and the Ksock's poll fd,
// which it asks the daemon for (POLLFD) the first time it is needed, so that
// a Ksock nobody polls costs the daemon one descriptor, not three. It sends whole request frames (one send() each, with
// MSG_NOSIGNAL so a vanished daemon is an error, not SIGPIPE) and reads reply
// frames through a buffer, one at a time, in order.
//
// Invariant: requests and replies are strictly paired. If the byte stream
// can no longer be trusted (the daemon hung up, a frame was malformed, a
// send or receive failed), the Connection becomes *broken* and every later
// call fails at once with the error that broke it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "kbus/errors.hpp"
#include "protocol/frames.hpp"

namespace kbus::client {

struct ReplyFrame {
  std::int32_t status = 0;
  std::string_view payload;  // valid until the next read from the Connection
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
  // The poll fd (docs/protocol.md §3.1), fetched on first use: the error if
  // the daemon could not make one (EMFILE) or the connection broke.
  Result<int> try_poll_fd() noexcept;
  int poll_fd() noexcept {
    auto r = try_poll_fd();
    return r ? *r : -1;
  }

  // Sends a request and reads its reply.
  Result<ReplyFrame> call(protocol::Op op, std::string_view payload = {});
  // The same, for a request frame the caller has encoded whole.
  Result<ReplyFrame> call_frame(std::string_view frame);

  // Lower level, for WAITREAD (docs/protocol.md §4.4).
  Result<void> send_frame(std::string_view frame);
  Result<ReplyFrame> read_reply();
  // Waits until a reply frame (or part of one) can be read: true if so,
  // false if `timeout_ms` (-1 = forever) expired first.
  Result<bool> wait_reply(int timeout_ms);

  // The longest request frame kbusd surely accepts: its --max-frame-size is
  // at least the absolute maximum message size + 1024 (kbusd refuses to
  // start otherwise). Frames up to 1124 bytes need no question; a longer
  // one asks the daemon (MAXMSGSIZE) once per connection.
  Result<std::size_t> frame_budget(std::size_t frame_len) noexcept;

  // Makes the destructor close the descriptors without shutting the socket
  // down (Ksock::abandon): another process sharing it keeps the connection.
  void abandon() noexcept { broken_ = Errc::ebadf; }

  // Pointy message support (KBUS-SPEC.md §3.4): name+data kept for SEND.
  std::optional<std::string>& pointy_payload() noexcept { return pointy_payload_; }

 private:
  Connection() = default;
  Result<void> fill();  // at least one byte into the buffer (blocking)
  // One recv into the buffer with `flags`: false if it would block, its
  // SO_RCVTIMEO ran out, or (if `timed`) a signal interrupted it.
  Result<bool> fill_once(int flags, bool timed);
  Errc fail(Errc e) noexcept;

  int sock_ = -1;
  int poll_fd_ = -1;
  bool expect_fd_ = false;  // a reply carrying the poll fd is on its way
  int rcvtimeo_ms_ = 0;     // the socket's SO_RCVTIMEO (0: none)
  std::size_t frame_budget_ = 0;  // 0 until asked
  std::uint32_t ksock_id_ = 0;
  std::uint32_t bus_ = 0;
  std::uint32_t mode_ = 0;
  std::uint32_t header_len_ = 0;
  std::string path_;
  protocol::InputBuffer rbuf_;
  Errc broken_ = Errc::ok;
  std::optional<std::string> pointy_payload_;
};

// Maps an errno from a socket call to the Errc the client reports.
Errc errc_from_errno(int err) noexcept;

}  // namespace kbus::client
