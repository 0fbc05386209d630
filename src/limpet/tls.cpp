// limpet/tls.cpp - see tls.hpp.
#include "limpet/tls.hpp"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace kbus::limpet {

namespace {

// Index of the TlsContext* in each SSL_CTX's ex_data (for the verify callback).
int ctx_index() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// What the verify callback saw when the pinned fingerprint did not match
// (a limpet is one thread; the next handshake overwrites it).
std::string& fingerprint_mismatch() {
  static std::string text;
  return text;
}
// The CN of the last peer certificate the verify callback saw (for errors
// after a failed handshake, when the certificate is no longer at hand).
std::string& last_peer_cn() {
  static std::string text;
  return text;
}

std::string openssl_errors() {
  std::string out;
  unsigned long e;
  while ((e = ERR_get_error()) != 0) {
    const char* reason = ERR_reason_error_string(e);
    char buf[256];
    if (reason == nullptr) {
      ERR_error_string_n(e, buf, sizeof buf);
      reason = buf;
    }
    if (!out.empty()) out += "; ";
    out += reason;
  }
  return out;
}

bool cert_fingerprint(X509* cert, unsigned char (&md)[EVP_MAX_MD_SIZE]) {
  unsigned int len = 0;
  return X509_digest(cert, EVP_sha256(), md, &len) == 1 && len == 32;
}

std::string subject_cn(X509* cert) {
  X509_NAME* name = X509_get_subject_name(cert);
  char buf[256] = {};
  if (name == nullptr || X509_NAME_get_text_by_NID(name, NID_commonName, buf, sizeof buf) < 0) {
    return "(no CN)";
  }
  return buf;
}

// Runs after OpenSSL's own check of each certificate of the chain: pins
// the leaf's fingerprint if asked.
int verify_callback(int preverify_ok, X509_STORE_CTX* store) {
  if (X509_STORE_CTX_get_error_depth(store) == 0) {
    X509* leaf = X509_STORE_CTX_get_current_cert(store);
    last_peer_cn() = leaf != nullptr ? subject_cn(leaf) : std::string("(none)");
  }
  if (!preverify_ok) return 0;
  if (X509_STORE_CTX_get_error_depth(store) != 0) return 1;
  auto* ssl = static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  if (ssl == nullptr) return 0;
  auto* self = static_cast<const TlsContext*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_index()));
  if (self == nullptr || !self->options().peer_fingerprint) return 1;
  unsigned char md[EVP_MAX_MD_SIZE];
  X509* cert = X509_STORE_CTX_get_current_cert(store);
  if (cert == nullptr || !cert_fingerprint(cert, md)) {
    fingerprint_mismatch() = "cannot compute the SHA-256 fingerprint of the peer's certificate";
    X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
    return 0;
  }
  const auto& want = *self->options().peer_fingerprint;
  if (!std::equal(want.begin(), want.end(), md)) {
    fingerprint_mismatch() = "the peer's certificate (CN " + subject_cn(cert) + ") has SHA-256 fingerprint " +
                             format_fingerprint(md) + ", not the pinned " +
                             format_fingerprint(want.data()) + " (--tls-peer-fingerprint)";
    X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
    return 0;
  }
  return 1;
}

bool readable_file(const std::string& path, const char* flag, std::string& error) {
  std::FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) {
    error = std::string(flag) + " '" + path + "': cannot read it: " + std::strerror(errno);
    return false;
  }
  std::fclose(f);
  return true;
}

}  // namespace

std::optional<std::array<unsigned char, 32>> parse_fingerprint(std::string_view text) {
  // Accept "sha256 Fingerprint=AB:CD..." as openssl x509 -fingerprint prints it.
  if (auto eq = text.find('='); eq != std::string_view::npos) text.remove_prefix(eq + 1);
  std::array<unsigned char, 32> out{};
  std::size_t n = 0;
  int half = -1;
  for (char c : text) {
    if (c == ':' || c == ' ') continue;
    int v;
    if (c >= '0' && c <= '9') v = c - '0';
    else if (c >= 'a' && c <= 'f') v = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') v = c - 'A' + 10;
    else return std::nullopt;
    if (half < 0) {
      half = v;
    } else {
      if (n == out.size()) return std::nullopt;
      out[n++] = static_cast<unsigned char>(half * 16 + v);
      half = -1;
    }
  }
  if (n != out.size() || half >= 0) return std::nullopt;
  return out;
}

std::string format_fingerprint(const unsigned char* sha256) {
  static const char* hex = "0123456789ABCDEF";
  std::string s;
  for (int i = 0; i < 32; ++i) {
    if (i) s += ':';
    s += hex[sha256[i] >> 4];
    s += hex[sha256[i] & 15];
  }
  return s;
}

std::unique_ptr<TlsContext> TlsContext::create(const TlsOptions& o, bool server, std::string& error) {
  if (o.cert.empty() || o.key.empty() || o.ca.empty()) {
    error = "TLS needs all three of --tls-cert, --tls-key and --tls-ca (missing:";
    if (o.cert.empty()) error += " --tls-cert";
    if (o.key.empty()) error += " --tls-key";
    if (o.ca.empty()) error += " --tls-ca";
    error += ")";
    return nullptr;
  }
  if (!readable_file(o.cert, "--tls-cert", error) || !readable_file(o.key, "--tls-key", error) ||
      !readable_file(o.ca, "--tls-ca", error)) {
    return nullptr;
  }
  std::unique_ptr<TlsContext> self(new TlsContext());
  self->options_ = o;
  self->server_ = server;
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (ctx == nullptr) {
    error = "cannot create a TLS context: " + openssl_errors();
    return nullptr;
  }
  self->ctx_ = ctx;
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  // Read whole socket buffers, not a record header then its body: half the
  // recv() calls. (Link::on_readable reads until the session would block,
  // so nothing stays buffered unseen by poll().)
  SSL_CTX_set_read_ahead(ctx, 1);
  // A link is one long session: no resumption tickets to hand out.
  SSL_CTX_set_num_tickets(ctx, 0);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  if (SSL_CTX_use_certificate_chain_file(ctx, o.cert.c_str()) != 1) {
    error = "--tls-cert '" + o.cert + "': not a usable PEM certificate: " + openssl_errors();
    return nullptr;
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, o.key.c_str(), SSL_FILETYPE_PEM) != 1) {
    const std::string why = openssl_errors();
    if (why.find("key values mismatch") != std::string::npos) {
      error = "--tls-key '" + o.key + "' is not the key of the certificate in --tls-cert '" + o.cert + "'";
    } else {
      error = "--tls-key '" + o.key + "': not a usable PEM private key: " + why;
    }
    return nullptr;
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    error = "--tls-key '" + o.key + "' is not the key of the certificate in --tls-cert '" + o.cert +
            "': " + openssl_errors();
    return nullptr;
  }
  if (SSL_CTX_load_verify_locations(ctx, o.ca.c_str(), nullptr) != 1) {
    error = "--tls-ca '" + o.ca + "': no usable PEM CA certificate in it: " + openssl_errors();
    return nullptr;
  }
  if (server) {
    // Tell clients which CAs we accept (so a client with several picks right).
    if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(o.ca.c_str())) {
      SSL_CTX_set_client_CA_list(ctx, names);
    }
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, verify_callback);
  SSL_CTX_set_ex_data(ctx, ctx_index(), self.get());
  // Our own certificate's fingerprint, for the banner (and to pin us).
  if (X509* own = SSL_CTX_get0_certificate(ctx)) {
    unsigned char md[EVP_MAX_MD_SIZE];
    if (cert_fingerprint(own, md)) self->own_fingerprint_ = format_fingerprint(md);
  }
  // Our certificate itself must be valid now, or every peer will refuse it.
  if (X509* own = SSL_CTX_get0_certificate(ctx)) {
    if (X509_cmp_current_time(X509_get0_notAfter(own)) < 0) {
      error = "--tls-cert '" + o.cert + "' has expired: make a new one (docs/limpets.md)";
      return nullptr;
    }
  }
  return self;
}

TlsContext::~TlsContext() {
  if (ctx_ != nullptr) SSL_CTX_free(ctx_);
}

SSL* TlsContext::new_session(int fd, std::string& error) const {
  ERR_clear_error();
  SSL* ssl = SSL_new(ctx_);
  if (ssl == nullptr || SSL_set_fd(ssl, fd) != 1) {
    error = "cannot start a TLS session: " + openssl_errors();
    if (ssl != nullptr) SSL_free(ssl);
    return nullptr;
  }
  if (!options_.peer_name.empty()) {
    // Checked against the peer's DNS subjectAltNames (its CN if it has none),
    // by the client and the server alike.
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (X509_VERIFY_PARAM_set1_host(param, options_.peer_name.c_str(), 0) != 1) {
      error = "--tls-peer-name '" + options_.peer_name + "': " + openssl_errors();
      SSL_free(ssl);
      return nullptr;
    }
  }
  if (server_) {
    SSL_set_accept_state(ssl);
  } else {
    SSL_set_connect_state(ssl);
    // SNI: the name we expect, if any (a limpet server has one certificate).
    if (!options_.peer_name.empty()) SSL_set_tlsext_host_name(ssl, options_.peer_name.c_str());
  }
  return ssl;
}

std::string TlsContext::handshake_error(SSL* ssl, int ssl_error) {
  const long verify = ssl != nullptr ? SSL_get_verify_result(ssl) : X509_V_OK;
  // (For a failed handshake the verify result tells which check failed.)
  std::string errors = openssl_errors();
  if (verify == X509_V_ERR_APPLICATION_VERIFICATION && !fingerprint_mismatch().empty()) {
    return "certificate check failed: " + fingerprint_mismatch();
  }
  if (verify == X509_V_ERR_HOSTNAME_MISMATCH) {
    const std::string peer = last_peer_cn().empty() ? std::string() : " (its CN is " + last_peer_cn() + ")";
    return "certificate check failed: the peer's certificate is not for the name given with "
           "--tls-peer-name" + peer;
  }
  if (verify != X509_V_OK) {
    std::string what = X509_verify_cert_error_string(verify);
    std::string hint;
    if (verify == X509_V_ERR_CERT_HAS_EXPIRED) hint = " (renew the peer's certificate)";
    else if (verify == X509_V_ERR_CERT_NOT_YET_VALID) hint = " (check the clocks, or the certificate's start date)";
    else if (verify == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
             verify == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT ||
             verify == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN ||
             verify == X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE)
      hint = " (the peer's certificate is not signed by a CA in --tls-ca)";
    return "certificate check failed: " + what + hint;
  }
  if (ssl_error == SSL_ERROR_SYSCALL && errors.empty()) {
    return "the connection closed during the TLS handshake (the other end refused us, or is not a "
           "TLS limpet)";
  }
  if (errors.find("peer did not return a certificate") != std::string::npos) {
    return "the peer sent no certificate (it must be started with --tls-cert and --tls-key)";
  }
  if (errors.find("alert") != std::string::npos) {
    return "the other limpet refused the TLS session: " + errors;
  }
  if (errors.find("wrong version number") != std::string::npos ||
      errors.find("unsupported protocol") != std::string::npos) {
    return "TLS handshake failed: " + errors + " (the other end speaks TLS older than 1.3, or no TLS)";
  }
  return "TLS handshake failed: " + (errors.empty() ? std::string("unknown error") : errors);
}

std::string TlsContext::describe_peer(SSL* ssl) {
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (cert == nullptr) return "no certificate";
  unsigned char md[EVP_MAX_MD_SIZE];
  std::string s = "CN " + subject_cn(cert);
  if (cert_fingerprint(cert, md)) s += ", SHA-256 " + format_fingerprint(md);
  return s;
}

}  // namespace kbus::limpet
