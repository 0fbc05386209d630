// cli/reports.cpp - see reports.hpp.
#include "cli/reports.hpp"

#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "cli/json_output.hpp"

namespace kbus::cli {
namespace {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

bool wanted(std::uint32_t b, std::optional<std::uint32_t> bus) { return !bus || *bus == b; }

std::string id_text(std::uint32_t net, std::uint32_t serial) {
  return "[" + std::to_string(net) + ":" + std::to_string(serial) + "]";
}

}  // namespace

std::vector<BindingLine> parse_bindings(const std::string& report) {
  std::vector<BindingLine> out;
  for (const auto& line : lines_of(report)) {
    if (line.empty() || line[0] == '#') continue;
    BindingLine b;
    unsigned bus = 0, ksock = 0;
    unsigned long pid = 0;
    char role = 0;
    int name_at = 0;
    if (std::sscanf(line.c_str(), "%u: %u %lu %c %n", &bus, &ksock, &pid, &role, &name_at) < 4 ||
        name_at <= 0) {
      continue;
    }
    b.bus = bus;
    b.ksock = ksock;
    b.pid = pid;
    b.replier = role == 'R';
    b.name = line.substr(static_cast<std::size_t>(name_at));
    out.push_back(std::move(b));
  }
  return out;
}

std::vector<BusStats> parse_stats(const std::string& report) {
  std::vector<BusStats> out;
  for (const auto& line : lines_of(report)) {
    unsigned a = 0, b = 0, c = 0, d = 0, e = 0, f = 0;
    char part[16] = {0}, notf[8] = {0};
    if (line.rfind("dev ", 0) == 0) {
      BusStats bs;
      if (std::sscanf(line.c_str(), "dev %u: next ksock %u next msg %u unsent unbindings %u", &a, &b,
                      &c, &d) == 4) {
        bs.bus = a;
        bs.next_ksock = b;
        bs.next_msg = c;
        bs.unsent_unbindings = d;
        bs.lost = line.find("(gone tragic)") != std::string::npos;
        out.push_back(std::move(bs));
      }
      continue;
    }
    if (out.empty()) continue;
    auto& ks = out.back().ksocks;
    if (std::sscanf(line.c_str(), " ksock %u last msg %u:%u queue %u of %u", &a, &b, &c, &d, &e) ==
        5) {
      KsockStats k;
      k.id = a;
      k.last_net = b;
      k.last_serial = c;
      k.queued = d;
      k.queue_max = e;
      ks.push_back(k);
    } else if (!ks.empty() && std::sscanf(line.c_str(), " read byte %u of %u, wrote byte %u of %15s",
                                          &a, &b, &c, part) == 4) {
      auto& k = ks.back();
      k.read_pos = a;
      k.read_len = b;
      k.write_pos = c;
      k.write_part = part;
      (void)notf;
      k.write_finished = line.find("(not finished)") == std::string::npos;
      k.sending = line.find("not sending") == std::string::npos;
    } else if (!ks.empty() &&
               std::sscanf(line.c_str(),
                           " outstanding requests %u (size %u, max %u), unsent replies %u (max %u)",
                           &a, &b, &c, &d, &e) == 5) {
      auto& k = ks.back();
      k.outstanding = a;
      k.outstanding_size = b;
      k.outstanding_max = c;
      k.owed = d;
      k.owed_max = e;
      (void)f;
    }
  }
  return out;
}

std::string process_name(std::uint64_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
  std::string name;
  if (!in || !std::getline(in, name) || name.empty()) return "?";
  return name;
}

std::string bindings_text(const std::vector<BindingLine>& lines, std::optional<std::uint32_t> bus) {
  std::string out = "# bus  ksock      pid process          role      name\n";
  char buf[160];
  for (const auto& b : lines) {
    if (!wanted(b.bus, bus)) continue;
    std::snprintf(buf, sizeof buf, "%5u %6u %8" PRIu64 " %-16s %-9s ", b.bus, b.ksock, b.pid,
                  process_name(b.pid).c_str(), b.replier ? "replier" : "listener");
    out += buf;
    out += b.name;
    out += '\n';
  }
  return out;
}

std::string bindings_json(const std::vector<BindingLine>& lines, std::optional<std::uint32_t> bus) {
  std::string out = "[";
  bool first = true;
  for (const auto& b : lines) {
    if (!wanted(b.bus, bus)) continue;
    if (!first) out += ",";
    first = false;
    out += "{\"bus\":" + std::to_string(b.bus) + ",\"ksock\":" + std::to_string(b.ksock) +
           ",\"pid\":" + std::to_string(b.pid) + ",\"process\":" + json_string(process_name(b.pid)) +
           ",\"role\":\"" + (b.replier ? "replier" : "listener") + "\",\"name\":" +
           json_string(b.name) + "}";
  }
  return out + "]\n";
}

std::string stats_text(const std::vector<BusStats>& buses, std::optional<std::uint32_t> bus) {
  std::string out;
  for (const auto& bs : buses) {
    if (!wanted(bs.bus, bus)) continue;
    out += "bus " + std::to_string(bs.bus) + ": " + std::to_string(bs.ksocks.size()) +
           " Ksock(s) open; the next Ksock gets id " + std::to_string(bs.next_ksock) +
           ", the next message serial " + std::to_string(bs.next_msg) + "; " +
           std::to_string(bs.unsent_unbindings) + " unbind event(s) waiting for room";
    if (bs.lost) out += "; unbind events were LOST (a listener's queue was full)";
    out += "\n";
    for (const auto& k : bs.ksocks) {
      out += "  Ksock " + std::to_string(k.id) + ": " + std::to_string(k.queued) + " of " +
             std::to_string(k.queue_max) + " messages queued";
      if (k.last_net || k.last_serial) out += ", last sent " + id_text(k.last_net, k.last_serial);
      if (k.read_len) {
        out += ", reading a message (" + std::to_string(k.read_pos) + " of " +
               std::to_string(k.read_len) + " bytes read)";
      }
      if (!k.write_finished && (k.write_pos || k.write_part != "HDR")) {
        out += ", writing a message (part " + k.write_part + ", byte " +
               std::to_string(k.write_pos) + ")";
      } else if (k.write_finished) {
        out += ", a written message ready to send";
      }
      if (k.sending) out += ", a send is pending (ALL_OR_WAIT)";
      out += "; awaiting " + std::to_string(k.outstanding) + " repl" +
             (k.outstanding == 1 ? "y" : "ies") + " (most " + std::to_string(k.outstanding_max) +
             "), owes " + std::to_string(k.owed) + " (most " + std::to_string(k.owed_max) + ")\n";
    }
  }
  return out;
}

std::string stats_json(const std::vector<BusStats>& buses, std::optional<std::uint32_t> bus) {
  std::string out = "[";
  bool first = true;
  for (const auto& bs : buses) {
    if (!wanted(bs.bus, bus)) continue;
    if (!first) out += ",";
    first = false;
    out += "{\"bus\":" + std::to_string(bs.bus) + ",\"next_ksock\":" +
           std::to_string(bs.next_ksock) + ",\"next_msg\":" + std::to_string(bs.next_msg) +
           ",\"unsent_unbindings\":" + std::to_string(bs.unsent_unbindings) +
           ",\"unbindings_lost\":" + (bs.lost ? "true" : "false") + ",\"ksocks\":[";
    for (std::size_t i = 0; i < bs.ksocks.size(); ++i) {
      const auto& k = bs.ksocks[i];
      if (i) out += ",";
      out += "{\"id\":" + std::to_string(k.id) + ",\"last_sent\":{\"network_id\":" +
             std::to_string(k.last_net) + ",\"serial_num\":" + std::to_string(k.last_serial) +
             "},\"queued\":" + std::to_string(k.queued) + ",\"max_messages\":" +
             std::to_string(k.queue_max) + ",\"read_pos\":" + std::to_string(k.read_pos) +
             ",\"read_len\":" + std::to_string(k.read_len) + ",\"write_part\":" +
             json_string(k.write_part) + ",\"write_pos\":" + std::to_string(k.write_pos) +
             ",\"write_finished\":" + (k.write_finished ? "true" : "false") +
             ",\"sending\":" + (k.sending ? "true" : "false") +
             ",\"outstanding_requests\":" + std::to_string(k.outstanding) +
             ",\"outstanding_max\":" + std::to_string(k.outstanding_max) +
             ",\"unsent_replies\":" + std::to_string(k.owed) +
             ",\"unsent_replies_max\":" + std::to_string(k.owed_max) + "}";
    }
    out += "]}";
  }
  return out + "]\n";
}

std::string raw_for_bus(const std::string& report, bool stats, std::optional<std::uint32_t> bus) {
  if (!bus) return report;
  std::string out;
  bool in_bus = false;
  for (const auto& line : lines_of(report)) {
    unsigned b = 0;
    if (stats) {
      if (std::sscanf(line.c_str(), "dev %u:", &b) == 1) in_bus = b == *bus;
      if (!in_bus) continue;
    } else if (!line.empty() && line[0] != '#') {
      if (std::sscanf(line.c_str(), "%u:", &b) != 1 || b != *bus) continue;
    } else if (!out.empty()) {
      continue;  // the header line once
    }
    out += line + "\n";
  }
  return out;
}

}  // namespace kbus::cli
