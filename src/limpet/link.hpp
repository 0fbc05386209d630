// limpet/link.hpp - the stream socket between two limpets: addresses, the
// TCP / Unix-domain transport, and the Link that frames messages on it.
//
// The Link is the thin adapter between a connected socket and the Limpet's
// PeerPort: it sends our HELO at once, reads the peer's HELO, then decodes
// messages (wire.hpp) as bytes arrive and buffers what it cannot write yet.
// It never blocks: the runner polls its fd and calls on_readable() /
// on_writable(). With a TlsContext the same bytes travel inside TLS 1.3
// (tls.hpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "kbus/errors.hpp"
#include "kbus/message.hpp"
#include "limpet/limpet.hpp"
#include "limpet/wire.hpp"

using SSL = struct ssl_st;

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

// A listening socket (SOCK_CLOEXEC | SOCK_NONBLOCK) on exactly the address
// given. TCP: SO_REUSEADDR; every interface only for an explicit 0.0.0.0 or
// ::; an empty host, a name that does not resolve or an address that is not
// this machine's is an error naming it (kbus deliberately differs from the
// original here: docs/decisions.md D20). Unix: a stale socket file is
// removed first. `bound_port` gets the TCP port actually bound (useful with
// port 0). On failure returns -1 and sets `error`.
int listen_on(const Address& a, std::uint16_t& bound_port, std::string& error);
// Connects, waiting at most `timeout_ms` and giving up early if `stop_fd`
// becomes readable. Returns a connected non-blocking socket or -1 (`error`).
int connect_to(const Address& a, int timeout_ms, int stop_fd, std::string& error);
// Accepts one connection (non-blocking, close-on-exec), or -1. `peer` gets
// its address ("127.0.0.1:40312", or "local" for a Unix socket).
int accept_from(int listen_fd, std::string& peer);
// TCP_NODELAY and keepalive (idle 5 s, 2 s interval, 3 probes) with a 15 s
// TCP_USER_TIMEOUT, so that a cut that sends no RST is noticed. No-op for
// Unix sockets.
void tune_socket(int fd);
// Asks the kernel to probe a TCP link's peer now (keepalive idle 1 s,
// 1 s interval, 3 probes): a link whose peer is gone is then known dead
// within about 4 s, a live one answers the probes and is untouched. Used
// when another connection claims the network id of the current peer.
// No-op for Unix sockets (a Unix peer's death is always seen at once).
void probe_liveness(int fd);

class TlsContext;

class Link final : public PeerPort {
 public:
  // Takes ownership of the connected socket `fd`. With `helo_first` our
  // HELO is queued at once (the client, as the original); else it waits for
  // send_helo() (the server answers only a peer it accepts, so a refused
  // one never believes it is linked - the bytes are the same). With `tls`,
  // a TLS 1.3 session is set up first (mutual authentication) and the HELO
  // and messages travel inside it. Call on_writable() once to start.
  Link(int fd, std::uint32_t own_network_id, bool helo_first, const TlsContext* tls = nullptr);
  // Queues our HELO (once).
  void send_helo();
  ~Link() override;
  Link(const Link&) = delete;
  Link& operator=(const Link&) = delete;

  int fd() const noexcept { return fd_; }
  bool secure() const noexcept { return ssl_ != nullptr; }
  // The TLS handshake is done (always true for a plain link).
  bool transport_ready() const noexcept { return !broken_ && (ssl_ == nullptr || tls_up_); }
  bool handshake_done() const noexcept { return peer_id_.has_value(); }
  std::uint32_t peer_id() const noexcept { return peer_id_.value_or(0); }
  // TLS: "CN ..., SHA-256 ..." of the peer's certificate once verified.
  const std::string& peer_certificate() const noexcept { return peer_cert_; }

  enum class Io { kOk, kClosed, kError };
  // Reads what the socket has (bounded per call). kClosed at EOF; kError for
  // a socket error, a failed TLS handshake or a bad HELO (error() says which).
  Io on_readable();
  // Writes as much of the output buffer as the socket takes (and drives a
  // TLS handshake).
  Io on_writable();
  // The socket must be polled for POLLOUT.
  bool wants_write() const noexcept;
  // on_readable() stopped at its budget: more may be buffered (in the
  // kernel or, with TLS, in the session) - call it again without waiting.
  bool read_more() const noexcept { return read_more_; }
  std::size_t out_pending() const noexcept { return out_.size() - out_pos_; }
  std::size_t in_pending() const noexcept { return decoder_.buffered(); }
  const std::string& error() const noexcept { return error_; }
  // Sends FIN (shutdown(SHUT_WR)); reading goes on.
  void shutdown_write();

  // The next decoded message (only after the handshake). Errc::eproto if
  // the stream is corrupt (then the link must be dropped).
  Result<std::optional<Message>> next_message();

  // Queues `m`; written at once only past kFlushNow bytes, else by the
  // runner's flush at the end of its turn (on_writable()).
  void send_to_peer(const Message& m) override;
  static constexpr std::size_t kFlushNow = 64u << 10;

 private:
  // >0 bytes, 0 EOF, -1 would block, -2 error (error_ set).
  long recv_some(char* buf, std::size_t n);
  long send_some(const char* p, std::size_t n);
  Io drive_tls();  // continues the TLS handshake
  Io take_helo(std::string_view& got);

  int fd_;
  std::uint32_t own_id_;
  bool helo_sent_ = false;
  SSL* ssl_ = nullptr;
  bool tls_up_ = false;
  bool broken_ = false;  // TLS was asked for but no session could be made
  bool tls_started_ = false;
  bool checked_plain_peer_ = false;
  bool ssl_wants_write_ = false;
  bool read_wants_write_ = false;  // SSL_read must be retried once writable
  bool read_more_ = false;
  std::string peer_cert_;
  std::string helo_in_;
  std::optional<std::uint32_t> peer_id_;
  WireDecoder decoder_;
  std::string out_;
  std::size_t out_pos_ = 0;
  std::string error_;
};

}  // namespace kbus::limpet
