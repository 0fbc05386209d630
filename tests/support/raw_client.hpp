// support/raw_client.hpp - a connection to kbusd that speaks the frames of
// docs/protocol.md by hand, for feeding the daemon bad input.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kbus::test {

struct RawReply {
  std::int32_t status = 0;
  std::string payload;
};

class RawClient {
 public:
  // Connects to `path` (no HELLO). Throws on failure.
  explicit RawClient(const std::string& path);
  ~RawClient();
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  // Sends bytes as they are; false if the send failed (EPIPE etc.).
  bool send_bytes(std::string_view bytes);
  // Sends a well-formed request frame.
  bool send_frame(std::uint32_t op, std::string_view payload = {});
  // Reads one reply frame; nullopt on EOF, error or timeout (see eof()).
  std::optional<RawReply> read_reply(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // HELLO with the given fields; returns the reply (the poll fd, if any, is
  // received and kept).
  std::optional<RawReply> hello(std::uint32_t version = 1, std::uint32_t mode = 3,
                                std::uint32_t header_len = 88);
  // Waits until the daemon closes the connection: true if it did within
  // `timeout` (any unread replies are skipped).
  bool wait_closed(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  bool eof() const noexcept { return eof_; }
  int fd() const noexcept { return fd_; }
  int poll_fd() const noexcept { return poll_fd_; }
  void set_nonblocking();

 private:
  bool fill(std::chrono::milliseconds timeout);
  int fd_ = -1;
  int poll_fd_ = -1;
  std::string buf_;
  bool eof_ = false;
};

std::string u32_bytes(std::uint32_t v);
std::string frame_bytes(std::uint32_t op, std::string_view payload);

}  // namespace kbus::test
