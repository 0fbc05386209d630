// limpet/tls.hpp - TLS 1.3 with mutual authentication for the link between
// two limpets (docs/limpets.md "Deploying a limpet safely"), with OpenSSL.
//
// Both ends present a certificate and verify the other's against a CA file
// (--tls-ca); either may further pin the peer by name (the certificate's
// DNS subjectAltName, or its CN if it has none) and/or by the SHA-256
// fingerprint of its certificate. Only TLS 1.3 is offered or accepted.
// Inside the TLS session the limpet protocol is byte for byte the plain one
// (HELO, then framed messages).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "kbus/errors.hpp"

using SSL_CTX = struct ssl_ctx_st;
using SSL = struct ssl_st;

namespace kbus::limpet {

struct TlsOptions {
  std::string cert;                 // --tls-cert: our certificate (PEM; may hold the chain)
  std::string key;                  // --tls-key: its private key (PEM)
  std::string ca;                   // --tls-ca: the CA certificates we trust (PEM file)
  std::string peer_name;            // --tls-peer-name: required DNS SAN / CN of the peer
  std::optional<std::array<unsigned char, 32>> peer_fingerprint;  // --tls-peer-fingerprint
  bool enabled() const noexcept { return !cert.empty() || !key.empty() || !ca.empty(); }
};

// "AB:CD:..." or "abcd..." (64 hex digits, colons optional) -> 32 bytes.
std::optional<std::array<unsigned char, 32>> parse_fingerprint(std::string_view text);
std::string format_fingerprint(const unsigned char* sha256);

// The SSL_CTX for one limpet: certificate, key, CA, TLS 1.3 only, peer
// verification required both ways.
class TlsContext {
 public:
  // Loads the files; on failure returns nullptr and sets `error` (which
  // file, what is wrong with it).
  static std::unique_ptr<TlsContext> create(const TlsOptions& options, bool server,
                                            std::string& error);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  // A new SSL object on `fd` (connect or accept state by role), carrying
  // the peer checks. nullptr on failure (`error`).
  SSL* new_session(int fd, std::string& error) const;
  // Our own certificate's SHA-256 fingerprint (for the banner and logs).
  const std::string& own_fingerprint() const noexcept { return own_fingerprint_; }
  const TlsOptions& options() const noexcept { return options_; }
  bool server() const noexcept { return server_; }

  // Why the handshake on `ssl` failed, for a person: the certificate check
  // that failed (expired, unknown CA, name or fingerprint mismatch, no
  // certificate) or the TLS error. Consumes the thread's OpenSSL errors.
  static std::string handshake_error(SSL* ssl, int ssl_error);
  // After a successful handshake: "CN=..., SHA-256 ..." of the peer.
  static std::string describe_peer(SSL* ssl);

 private:
  TlsContext() = default;
  SSL_CTX* ctx_ = nullptr;
  TlsOptions options_;
  bool server_ = false;
  std::string own_fingerprint_;
};

}  // namespace kbus::limpet
