// cli/reports.hpp - the bindings and stats reports (KBUS-SPEC.md §9) as a
// person or a program wants them from `kbus bindings` / `kbus stats`.
//
// The daemon gives the original's /proc/kbus text byte for byte (and
// `--raw` prints exactly that). By default the tool shows it readably: only
// the bus asked for (when -b is given), the process name beside each pid,
// and the stats in words; `--json` gives the same facts as JSON.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace kbus::cli {

struct BindingLine {
  std::uint32_t bus = 0, ksock = 0;
  std::uint64_t pid = 0;
  bool replier = false;
  std::string name;
};
// The binding lines of a §9.1 report (header lines skipped).
std::vector<BindingLine> parse_bindings(const std::string& report);

struct KsockStats {
  std::uint32_t id = 0, last_net = 0, last_serial = 0, queued = 0, queue_max = 0;
  std::uint32_t read_pos = 0, read_len = 0, write_pos = 0;
  std::string write_part;  // HDR, NAME, NPAD, DATA, DPAD, FINAL
  bool write_finished = false, sending = false;
  std::uint32_t outstanding = 0, outstanding_size = 0, outstanding_max = 0;
  std::uint32_t owed = 0, owed_max = 0;
};
struct BusStats {
  std::uint32_t bus = 0, next_ksock = 0, next_msg = 0, unsent_unbindings = 0;
  bool lost = false;  // "(gone tragic)": unbind events were lost
  std::vector<KsockStats> ksocks;
};
// A §9.2 report; lines it does not recognise are skipped.
std::vector<BusStats> parse_stats(const std::string& report);

// The command name of a process ("kbus", from /proc/PID/comm), or "?".
std::string process_name(std::uint64_t pid);

// The readable and JSON forms. `bus`: only that bus (nullopt: all).
std::string bindings_text(const std::vector<BindingLine>& lines, std::optional<std::uint32_t> bus);
std::string bindings_json(const std::vector<BindingLine>& lines, std::optional<std::uint32_t> bus);
std::string stats_text(const std::vector<BusStats>& buses, std::optional<std::uint32_t> bus);
std::string stats_json(const std::vector<BusStats>& buses, std::optional<std::uint32_t> bus);
// The original text, only the lines of `bus` (nullopt: unchanged).
std::string raw_for_bus(const std::string& report, bool stats, std::optional<std::uint32_t> bus);

}  // namespace kbus::cli
