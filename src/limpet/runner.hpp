// limpet/runner.hpp - a limpet process: the original runlimpet's command
// line (KBUS-SPEC.md §13.3) and the event loop that joins a Ksock, the
// link socket and a stop signal in one poll().
//
// Used by both `kbus-limpet` (src/limpet/main.cpp) and `kbus limpet`
// (src/cli/main.cpp), so the two are the same program.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "limpet/tls.hpp"

namespace kbus::limpet {

// Exit statuses of a limpet process.
constexpr int kExitOk = 0;         // stopped by SIGINT/SIGTERM or the -t message; or usage shown
constexpr int kExitUsage = 1;      // bad command line (as runlimpet)
constexpr int kExitFailure = 2;    // the bus or the socket failed
constexpr int kExitMisconfig = 3;  // duplicate network id, both ends on one bus

// How a program built on the limpet reports itself: kbus-limpet as the
// original runlimpet (1 bad usage, 2 failure; no arguments shows the
// usage), `kbus limpet` as every other kbus command (2 bad usage, 1
// failure; no arguments is bad usage; a usage error is one line and a hint,
// not the whole text).
struct Style {
  int usage = kExitUsage;
  int failure = kExitFailure;
  int misconfig = kExitMisconfig;
  bool no_arguments_is_help = true;
  bool full_usage_on_error = true;
};
constexpr Style kRunlimpetStyle{};
constexpr Style kCliStyle{2, 1, 3, false, false};

struct Options {
  enum class Role { kNone, kServer, kClient };
  Role role = Role::kNone;
  std::string address;            // host:port or a Unix socket path
  std::uint32_t network_id = 0;   // 0: the default for the role (client 1, server 2)
  int bus = 0;                    // -k: the KBUS device number
  std::string dir;                // bus socket directory (default: the client's)
  std::string message_name = "$.*";
  int verbosity = 1;
  std::optional<std::string> termination;
  std::uint32_t max_messages = 1000;
  int reconnect_max_ms = 5000;    // client: the longest wait between attempts
  TlsOptions tls;                 // --tls-*: TLS 1.3 with mutual authentication

  std::uint32_t effective_network_id() const {
    return network_id != 0 ? network_id : (role == Role::kServer ? 2u : 1u);
  }
};

struct ParsedArgs {
  enum class Outcome { kRun, kHelp, kError };
  Outcome outcome = Outcome::kRun;
  Options options;
  std::string error;  // for kError
};

// Parses runlimpet's arguments (any order, later ones winning): an address;
// -s|-server|--server, -c|-client|--client; -id|--id N; -k|-kbus|--kbus|
// -b|--bus N; -m|-message|--message NAME; -v|-verbose|--verbose LEVEL;
// -t|--terminate NAME; -h|-help|--help; and kbus' own -d|--dir DIR,
// --max-messages N, --reconnect-max-ms MS, --tls-cert FILE, --tls-key FILE,
// --tls-ca FILE, --tls-peer-name NAME, --tls-peer-fingerprint SHA256. No
// arguments at all is kHelp.
ParsedArgs parse_args(const std::vector<std::string>& args);
std::string usage(const std::string& program, const Style& style = kRunlimpetStyle);

// Runs a limpet until a stop signal (SIGINT, SIGTERM), the termination
// message, or a fatal error; returns the exit status. Messages go to
// stdout (banner, progress) and stderr (errors).
int run(const Options& options);

// parse_args + usage/errors + run: the whole program, its exit statuses
// and usage as `style` says.
int main_with_args(const std::string& program, const std::vector<std::string>& args,
                   const Style& style = kRunlimpetStyle);

}  // namespace kbus::limpet
