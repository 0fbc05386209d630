// bridge/bridge.hpp - `kbus bridge`: one bus of the local kbusd joined to a
// NATS system, so that many buses form one fleet (docs/fleet.md).
//
//      bus  <-- one Ksock -->  [ bridge ]  <-- one NATS connection -->  NATS
//
// What crosses (docs/fleet.md has the reasoning and the guarantees):
//  * Announcements whose names a listener on another bus is bound to. The
//    bridge follows its bus's listener bindings (the bindings report,
//    KBUS-SPEC.md §9.1) and subscribes to exactly those names; it publishes
//    every local Announcement matching its -m names, and NATS carries it
//    only where there is interest. Each publication carries the origin
//    bridge and a sequence number in NATS headers: never echoed back, never
//    delivered twice to one bus.
//  * Requests, routed to the one replier of their name in the fleet. A
//    replier binding is claimed atomically in a JetStream key-value bucket
//    (with a lease refreshed by its bridge); every other bridge binds the
//    name as proxy replier on its bus (as a limpet does, §10.5-1), so a
//    Request with no replier anywhere fails at SEND with EADDRNOTAVAIL, as
//    on one bus. A proxied Request travels as a NATS request to the owning
//    bridge, which sends it on its bus and returns the Reply or Status; the
//    requesting bridge answers its requester exactly once, itself if the
//    answer cannot come (no responders, timeout, lost connection).
// The bridge is single-threaded: libnats' threads only queue what they
// receive, and one poll() loop does all the work.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kbus::bridge {

constexpr int kExitOk = 0;         // stopped by SIGINT/SIGTERM, or help shown
constexpr int kExitUsage = 1;      // bad command line
constexpr int kExitFailure = 2;    // the bus failed (kbusd gone) or NATS setup failed for good
constexpr int kExitMisconfig = 3;  // the --id is held by another bridge

struct Options {
  int bus = 0;
  std::string dir;                         // bus socket directory ("" = client default)
  std::string prefix = "kbus";
  std::vector<std::string> names;          // -m; empty means {"$.*"}
  std::vector<std::string> urls;           // nats://host:port ...
  std::uint32_t id = 0;                    // network id; 0 = allocate one in the bucket
  std::string creds, tls_ca, tls_cert, tls_key;
  int lease_ms = 10000;                    // claim lease (the bucket's TTL)
  int claims_poll_ms = 1000;               // how often the claims are re-read
  int bindings_poll_ms = 250;              // how often the bindings report is re-read
  int request_timeout_ms = 60000;          // a proxied Request's longest wait
  int probe_ms = 1000;                     // probe the owning bridge after this long
  int kv_timeout_ms = 3000;                // one JetStream call's longest wait
  int kv_replicas = 1;                     // replicas of the bucket when this bridge creates it
  int verbosity = 1;                       // 0 errors, 1 progress, 2 every message
};

struct ParsedArgs {
  enum class Outcome { kRun, kHelp, kError };
  Outcome outcome = Outcome::kRun;
  Options options;
  std::string error;
};

ParsedArgs parse_args(const std::vector<std::string>& args);
std::string usage(const std::string& program);

// Runs the bridge until SIGINT/SIGTERM (kExitOk) or a fatal error. Progress
// lines go to stdout, errors to stdout and stderr.
int run(const Options& options);

int main_with_args(const std::string& program, const std::vector<std::string>& args);

}  // namespace kbus::bridge
