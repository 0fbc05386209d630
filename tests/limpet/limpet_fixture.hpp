// limpet/limpet_fixture.hpp - helpers for the multi-daemon limpet tests:
// kbus-limpet processes, a cuttable TCP relay, and bounded waits.
//
// Nothing sleeps to synchronise: a test waits for a condition (a line from
// a limpet, a replier binding appearing on a bus, a message arriving), each
// wait bounded by a timeout.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "kbus/ksock.hpp"
#include "kbus/message.hpp"
#include "support/child_process.hpp"
#include "support/test_daemon.hpp"

namespace kbus::test {

std::string limpet_path();

// Polls `cond` (every 2 ms) until it holds or `timeout` passes.
bool eventually(const std::function<bool()>& cond,
                std::chrono::milliseconds timeout = std::chrono::seconds(10));

// A kbus-limpet (or `kbus limpet`) process.
class LimpetProc {
 public:
  // `args` are the limpet's own arguments. With `via_cli` it runs as
  // `kbus limpet ...`.
  // `prefix`, if given, is the command to run instead (e.g. `ip netns exec
  // NS kbus-limpet`).
  // With `merge_stderr` its stderr (errors, refusals, warnings) comes on
  // the same stream, in order, so wait_for_line() sees those lines too.
  explicit LimpetProc(std::vector<std::string> args, bool via_cli = false,
                      std::vector<std::string> prefix = {}, bool merge_stderr = false);
  // The banner line (read at start); the TCP port it names (0 if none).
  const std::string& banner() const { return banner_; }
  std::uint16_t port() const { return port_; }
  // Reads stdout lines until one contains `text`; false on timeout/EOF.
  bool wait_for_line(const std::string& text,
                     std::chrono::milliseconds timeout = std::chrono::seconds(10));
  SpawnedProcess& proc() { return *proc_; }
  void kill(int sig) { proc_->kill(sig); }
  int wait(std::chrono::milliseconds timeout = std::chrono::seconds(10)) { return proc_->wait(timeout); }
  std::string err() { return proc_->err(std::chrono::seconds(5)); }
  // Everything read from stdout so far (for failure messages).
  const std::string& seen() const { return seen_; }

 private:
  std::unique_ptr<SpawnedProcess> proc_;
  std::string banner_;
  std::string seen_;
  std::uint16_t port_ = 0;
};

// Server + client limpets between bus 0 of two daemons. `address` is
// "127.0.0.1:0" (TCP, port chosen by the server) or a socket path.
struct LimpetPair {
  // `extra` goes to both; `server_only` / `client_only` to one (e.g. the
  // TLS options, TestCerts::args). With `merge_stderr` both merge stderr.
  LimpetPair(const TestDaemon& server_side, const TestDaemon& client_side, const std::string& address,
             std::uint32_t server_id = 2, std::uint32_t client_id = 1,
             std::vector<std::string> extra = {}, std::vector<std::string> server_only = {},
             std::vector<std::string> client_only = {}, bool merge_stderr = false);
  std::unique_ptr<LimpetProc> server;
  std::unique_ptr<LimpetProc> client;
  std::string client_address;
};

// Certificates for TLS tests, made with the openssl command in a temporary
// directory (removed at the end): a CA ("ca") and leaf certificates signed
// by it - "alpha", "beta", "gamma" (CN and DNS subjectAltName = the name,
// valid for two days), "expired" (CN beta, valid only in January 2020, made
// with `openssl ca -startdate/-enddate`) - and "rogue" (CN beta) signed by
// another CA ("other-ca"). All EC P-256, usable for client and server.
class TestCerts {
 public:
  TestCerts();
  ~TestCerts();
  TestCerts(const TestCerts&) = delete;
  TestCerts& operator=(const TestCerts&) = delete;
  std::string pem(const std::string& name) const { return dir_ + "/" + name + ".pem"; }
  std::string key(const std::string& name) const { return dir_ + "/" + name + ".key"; }
  // --tls-cert NAME.pem --tls-key NAME.key --tls-ca CA.pem
  std::vector<std::string> args(const std::string& name, const std::string& ca = "ca") const;
  // "AB:CD:..." as `openssl x509 -fingerprint -sha256` prints it.
  std::string fingerprint(const std::string& name) const;
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
};

// A TCP relay in a child process, between a limpet client and a server:
// "cut" resets every connection it carries (SO_LINGER 0), mid-stream, and
// refuses new ones until "heal". Its port is port().
class TcpRelay {
 public:
  explicit TcpRelay(std::uint16_t target_port);
  std::uint16_t port() const { return port_; }
  void cut();   // returns when the connections are gone
  // Like a peer host that restarted: resets the connections on the
  // client's side and forgets those on the server's side without a FIN or
  // RST (TCP_REPAIR, needs CAP_NET_ADMIN), so the server still believes in
  // its link until it sends something and gets a reset. New connections
  // are relayed. False if TCP_REPAIR is not allowed here.
  bool vanish();
  void heal();  // new connections are relayed again
  // Connections accepted so far.
  int accepted();

 private:
  std::unique_ptr<Actor> actor_;
  std::uint16_t port_ = 0;
};

// A replier in a child process on `dir` bus 0: binds `name`, says "ready",
// answers each Request with its own data (after `hold` requests it stops
// answering and keeps them, to be killed holding them).
std::unique_ptr<Actor> start_replier(const std::string& dir, const std::string& name,
                                     int answer_first = 1 << 30);

// Collects answers (Replies or Status messages) to `ids` on `k` until each
// has one or `timeout` passes. Returns answers by request id; every extra
// answer for an id is recorded too (so a test can check "exactly one").
std::map<MessageId, std::vector<Message>> collect_answers(
    Ksock& k, const std::set<MessageId>& ids,
    std::chrono::milliseconds timeout = std::chrono::seconds(15));

// A round trip through the link: a request to `name` (a remote replier that
// echoes) and its reply, so every earlier message on the same path has
// arrived. Returns the reply.
std::optional<Message> round_trip(Ksock& requester, const std::string& name,
                                  const std::string& data = "settle");

// Waits until `k`'s bus has a replier for exactly `name` (other than
// `not_this` if given).
bool wait_replier(Ksock& k, const std::string& name, std::optional<std::uint32_t> not_this = {},
                  std::chrono::milliseconds timeout = std::chrono::seconds(10));
bool wait_no_replier(Ksock& k, const std::string& name,
                     std::chrono::milliseconds timeout = std::chrono::seconds(10));

}  // namespace kbus::test
