// limpet/link.hpp - the stream socket between two limpets: addresses, the
// TCP / Unix-domain transport, and the Link that frames messages on it.
//
// The Link is the thin adapter between a connected socket and the Limpet's
// PeerPort: it sends our HELO at once, reads the peer's HELO, then decodes
// messages (wire.hpp) as bytes arrive and buffers what it cannot write yet.
// It never blocks: the runner polls its fd and calls on_readable() /
// on_writable().
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "kbus/errors.hpp"
#include "kbus/message.hpp"
#include "limpet/limpet.hpp"
#include "limpet/wire.hpp"

namespace kbus::limpet {

// "<host>:<port>" (TCP; "[v6addr]:port" too) or a path (Unix-domain socket).
struct Address {
  bool tcp = false;
  std::string host;  // TCP
  std::uint16_t port = 0;
  std::string path;  // Unix
  std::string to_string() const;
};
// Errc::einval if a TCP port is not a number in 0..65535.
Result<Address> parse_address(std::string_view text);

// A listening socket (SOCK_CLOEXEC | SOCK_NONBLOCK). TCP: SO_REUSEADDR; if
// `host` is not an address of this machine, every address is used (the
// original server ignored the host). Unix: a stale socket file is removed
// first. `bound_port` gets the TCP port actually bound (useful with port 0).
// On failure returns -1 and sets `error`.
int listen_on(const Address& a, std::uint16_t& bound_port, std::string& error);
// Connects, waiting at most `timeout_ms` and giving up early if `stop_fd`
// becomes readable. Returns a connected non-blocking socket or -1 (`error`).
int connect_to(const Address& a, int timeout_ms, int stop_fd, std::string& error);
// Accepts one connection (non-blocking, close-on-exec), or -1.
int accept_from(int listen_fd);
// TCP_NODELAY and keepalive (idle 5 s, 2 s interval, 3 probes) with a 15 s
// TCP_USER_TIMEOUT, so that a cut that sends no RST is noticed. No-op for
// Unix sockets.
void tune_socket(int fd);

class Link final : public PeerPort {
 public:
  // Takes ownership of the connected socket `fd` and queues our HELO.
  Link(int fd, std::uint32_t own_network_id);
  ~Link() override;
  Link(const Link&) = delete;
  Link& operator=(const Link&) = delete;

  int fd() const noexcept { return fd_; }
  bool handshake_done() const noexcept { return peer_id_.has_value(); }
  std::uint32_t peer_id() const noexcept { return peer_id_.value_or(0); }

  enum class Io { kOk, kClosed, kError };
  // Reads what the socket has (bounded per call). kClosed at EOF; kError for
  // a socket error or a bad HELO (error() says which).
  Io on_readable();
  // Writes as much of the output buffer as the socket takes.
  Io on_writable();
  bool wants_write() const noexcept { return out_pos_ < out_.size(); }
  std::size_t out_pending() const noexcept { return out_.size() - out_pos_; }
  std::size_t in_pending() const noexcept { return decoder_.buffered(); }
  const std::string& error() const noexcept { return error_; }
  // Sends FIN (shutdown(SHUT_WR)); reading goes on.
  void shutdown_write();

  // The next decoded message (only after the handshake). Errc::eproto if
  // the stream is corrupt (then the link must be dropped).
  Result<std::optional<Message>> next_message();

  void send_to_peer(const Message& m) override;

 private:
  int fd_;
  std::string helo_in_;
  std::optional<std::uint32_t> peer_id_;
  WireDecoder decoder_;
  std::string out_;
  std::size_t out_pos_ = 0;
  std::string error_;
};

}  // namespace kbus::limpet
