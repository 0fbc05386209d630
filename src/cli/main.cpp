// cli/main.cpp - the `kbus` command-line tool, over the public client API only
// (STYLE.md 12).
//
//   kbus send     [-b BUS] [--urgent] [--all-or-fail|--all-or-wait] NAME [DATA|-]
//   kbus listen   [-b BUS] [--count N] [--json] NAME...
//   kbus request  [-b BUS] [--timeout S] [--to ID] [--json] NAME [DATA|-]
//   kbus reply    [-b BUS] [--count N] [--json] NAME (DATA | --exec CMD)
//   kbus bindings | stats | new-device   [-b BUS]
//   kbus errno    N | NAME | --list
//   kbus limpet   (-s | -c) [-id N] [-k BUS] [-m NAME] [--tls-cert F --tls-key F --tls-ca F
//                 [--tls-peer-name N] [--tls-peer-fingerprint SHA256]] ... ADDRESS   (docs/limpets.md)
//
// Every command takes -b/--bus (default 0) and -d/--dir (default: $KBUS_DIR,
// then the protocol's default directory). Exit status: 0 success; 1 a KBUS
// operation failed (the errno name and its KBUS meaning go to stderr) or the
// reply timed out; 2 bad usage; 3 `request` got a Status message instead of
// a Reply (the Status is printed).
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include "cli/json_output.hpp"
#include "cli/shell_command.hpp"
#include "cli/stop_signals.hpp"
#include "kbus/errors.hpp"
#include "kbus/ksock.hpp"
#include "kbus/message.hpp"
#include "limpet/runner.hpp"

#ifndef KBUS_VERSION
#define KBUS_VERSION "unknown"
#endif

namespace kbus::cli {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;
constexpr int kExitStatusMessage = 3;

struct Common {
  int bus = 0;
  std::string dir;
};

// "kbus send: EADDRNOTAVAIL: <KBUS meaning, or the system's text>"
int report_failure(const std::string& what, int err) {
  std::string meaning = kbus_meaning(err);
  if (meaning.empty()) meaning = std::strerror(err);
  std::fprintf(stderr, "kbus %s: %s: %s\n", what.c_str(), errno_name(err).c_str(),
               meaning.c_str());
  return kExitFailure;
}

void print_line(const std::string& line) {
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

void print_message(const Message& m, bool json) {
  print_line(json ? message_to_json(m) : m.to_string());
}

std::string read_all_stdin() {
  std::string s;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(0, buf, sizeof buf);
    if (n > 0) {
      s.append(buf, static_cast<std::size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  return s;
}

std::string data_argument(const std::optional<std::string>& data) {
  if (!data) return {};
  if (*data == "-") return read_all_stdin();
  return *data;
}

Ksock open_or_throw(const Common& c, Mode mode) { return Ksock::open(c.bus, mode, c.dir); }

// Waits until the Ksock is readable or a stop signal arrives; returns false
// on a stop signal or when `deadline` has passed.
bool wait_readable(const Ksock& k, const StopSignals& stop,
                   std::optional<std::chrono::steady_clock::time_point> deadline) {
  for (;;) {
    if (stop.stopped()) return false;
    int ms = -1;
    if (deadline) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(
          *deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      ms = static_cast<int>(std::min<long long>(left.count(), 1 << 30));
    }
    pollfd p[2] = {{k.fileno(), POLLIN, 0}, {stop.fd(), POLLIN, 0}};
    int rc = ::poll(p, 2, ms);
    if (rc < 0) {
      if (errno == EINTR) continue;
      throw Error(errno, "poll");
    }
    if (p[1].revents & POLLIN) return false;
    // POLLHUP without POLLIN: the daemon is gone; the next read reports it.
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) return true;
  }
}

// ---- commands ----

int cmd_send(const Common& c, const std::string& name, const std::optional<std::string>& data,
             bool urgent, bool all_or_fail, bool all_or_wait) {
  Ksock k = open_or_throw(c, Mode::read_write);
  std::uint32_t flags = 0;
  if (urgent) flags |= flag::kUrgent;
  if (all_or_fail) flags |= flag::kAllOrFail;
  if (all_or_wait) flags |= flag::kAllOrWait;
  Message m = make_announcement(name, data_argument(data), flags);
  auto id = k.try_send_msg(m);
  if (!id && id.error() == Errc::eagain && all_or_wait) {
    // Pending: the daemon completes it when the recipients have room; the
    // Ksock is writable again once it has.
    StopSignals stop;
    for (;;) {
      pollfd p[2] = {{k.fileno(), POLLOUT, 0}, {stop.fd(), POLLIN, 0}};
      int rc = ::poll(p, 2, -1);
      if (rc < 0 && errno == EINTR) continue;
      if (rc < 0) throw Error(errno, "poll");
      if (p[1].revents & POLLIN) return report_failure("send", EAGAIN);
      if (p[0].revents & (POLLHUP | POLLERR)) return report_failure("send", ECONNRESET);
      if (p[0].revents & POLLOUT) break;
    }
    print_line(k.last_sent().to_string());
    return kExitOk;
  }
  if (!id) return report_failure("send", to_errno(id.error()));
  print_line(id->to_string());
  return kExitOk;
}

int cmd_listen(const Common& c, const std::vector<std::string>& names, long count, bool json) {
  Ksock k = open_or_throw(c, Mode::read);
  for (const auto& n : names) {
    auto r = k.try_bind(n);
    if (!r) return report_failure("listen: bind " + n, to_errno(r.error()));
  }
  StopSignals stop;
  long got = 0;
  while (count <= 0 || got < count) {
    if (!wait_readable(k, stop, std::nullopt)) break;
    auto m = k.try_read_next_msg();
    if (!m) return report_failure("listen", to_errno(m.error()));
    if (!*m) continue;
    print_message(**m, json);
    ++got;
  }
  return kExitOk;
}

int cmd_request(const Common& c, const std::string& name, const std::optional<std::string>& data,
                double timeout_s, std::optional<std::uint32_t> to, bool json) {
  Ksock k = open_or_throw(c, Mode::read_write);
  Message m = make_request(name, data_argument(data));
  if (to) m.hdr.to = *to;
  auto id = k.try_send_msg(m);
  if (!id) return report_failure("request", to_errno(id.error()));
  StopSignals stop;
  std::optional<std::chrono::steady_clock::time_point> deadline;
  if (timeout_s > 0) {
    deadline = std::chrono::steady_clock::now() +
               std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                   std::chrono::duration<double>(timeout_s));
  }
  for (;;) {
    if (!wait_readable(k, stop, deadline)) {
      if (stop.stopped()) return report_failure("request", EINTR);
      std::fprintf(stderr, "kbus request: no reply to %s within %g s\n",
                   id->to_string().c_str(), timeout_s);
      return report_failure("request", ETIMEDOUT);
    }
    auto r = k.try_read_next_msg();
    if (!r) return report_failure("request", to_errno(r.error()));
    if (!*r) continue;
    const Message& got = **r;
    if (got.hdr.in_reply_to != *id) continue;  // not the answer we wait for
    print_message(got, json);
    return got.is_status() ? kExitStatusMessage : kExitOk;
  }
}

int cmd_reply(const Common& c, const std::string& name, const std::optional<std::string>& data,
              const std::optional<std::string>& exec, long count, bool json) {
  Ksock k = open_or_throw(c, Mode::read_write);
  auto b = k.try_bind(name, true);
  if (!b) return report_failure("reply: bind " + name, to_errno(b.error()));
  StopSignals stop;
  long answered = 0;
  while (count <= 0 || answered < count) {
    if (!wait_readable(k, stop, std::nullopt)) break;
    auto r = k.try_read_next_msg();
    if (!r) return report_failure("reply", to_errno(r.error()));
    if (!*r) continue;
    const Message& req = **r;
    print_message(req, json);
    if (!req.wants_us_to_reply()) continue;
    std::string answer;
    if (exec) {
      CommandResult out;
      std::vector<std::pair<std::string, std::string>> env = {
          {"KBUS_MSG_NAME", req.name},
          {"KBUS_MSG_ID", req.hdr.id.to_string()},
          {"KBUS_MSG_FROM", std::to_string(req.hdr.from)}};
      if (!run_shell_command(*exec, req.data, env, out)) {
        report_failure("reply: --exec", errno);
      } else if (out.exit_status != 0) {
        std::fprintf(stderr, "kbus reply: command exited with status %d\n", out.exit_status);
      }
      answer = std::move(out.out);
    } else {
      answer = data.value_or("");
    }
    auto rep = make_reply(req, answer);
    if (!rep) {
      report_failure("reply", to_errno(rep.error()));
      continue;
    }
    auto sent = k.try_send_msg(*rep);
    if (!sent) {
      // The requester may have gone; keep serving the others.
      report_failure("reply: send", to_errno(sent.error()));
      continue;
    }
    ++answered;
  }
  return kExitOk;
}

int cmd_report(const Common& c, bool stats) {
  Ksock k = open_or_throw(c, Mode::read);
  std::string text = stats ? k.stats_report() : k.bindings_report();
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
  return kExitOk;
}

int cmd_new_device(const Common& c) {
  Ksock k = open_or_throw(c, Mode::read);
  print_line(std::to_string(k.new_device()));
  return kExitOk;
}

std::string hex(int n) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%x", n);
  return buf;
}

// As the original errno.py (KBUS-SPEC.md §13.4).
int cmd_errno(const std::optional<std::string>& what, bool list) {
  if (list) {
    for (int n : known_errnos()) {
      char buf[256];
      std::snprintf(buf, sizeof buf, "%3d: %-20s %s", n, errno_name(n).c_str(), std::strerror(n));
      print_line(buf);
    }
    return kExitOk;
  }
  if (!what) {
    std::fprintf(stderr, "Usage: kbus errno <number> | <mnemonic> | --list\n");
    return kExitUsage;
  }
  const std::string& arg = *what;
  int n = 0;
  std::string first;
  bool numeric = !arg.empty() && std::all_of(arg.begin(), arg.end(), ::isdigit);
  if (numeric) {
    try {
      n = std::stoi(arg);
    } catch (...) {
      n = -1;
    }
    auto known = known_errnos();
    if (n <= 0 || std::find(known.begin(), known.end(), n) == known.end()) {
      print_line("Unrecognised error code number " + arg);
      return kExitFailure;
    }
    first = "Error " + std::to_string(n) + " (" + hex(n) + ") is " + errno_name(n) + ": " +
            std::strerror(n);
  } else {
    n = errno_from_name(arg);
    if (n == 0) {
      print_line("Unrecognised error code mnemonic " + arg);
      return kExitFailure;
    }
    first = arg + " is error " + std::to_string(n) + " (" + hex(n) + "): " + std::strerror(n);
  }
  print_line(first);
  std::string meaning = kbus_meaning(n);
  if (!meaning.empty()) {
    print_line("");
    print_line("KBUS:");
    print_line(meaning);
  }
  return kExitOk;
}

void add_common(CLI::App* sub, Common& c) {
  sub->add_option("-b,--bus", c.bus, "bus number (default 0)");
  sub->add_option("-d,--dir", c.dir, "socket directory (default $KBUS_DIR, then the standard one)");
}

int run(int argc, char** argv) {
  CLI::App app{"kbus: send, listen, request and reply on a KBUS bus served by kbusd"};
  app.set_version_flag("--version", std::string("kbus ") + KBUS_VERSION);
  app.require_subcommand(1);
  app.footer(
      "Exit status: 0 success, 1 a KBUS operation failed (errno and KBUS meaning on stderr) or "
      "timed out, 2 usage, 3 'request' got a Status message instead of a Reply.");

  Common common;
  std::string name;
  std::optional<std::string> data;
  std::vector<std::string> names;
  bool urgent = false, all_or_fail = false, all_or_wait = false, json = false, list = false;
  long count = 0;
  double timeout = 0;
  std::optional<std::uint32_t> to;
  std::optional<std::string> exec;
  std::optional<std::string> errno_arg;

  auto* send = app.add_subcommand("send", "send an Announcement; prints its id, e.g. [0:5]");
  add_common(send, common);
  send->add_flag("--urgent", urgent, "put it at the front of each queue");
  auto* aof = send->add_flag("--all-or-fail", all_or_fail, "fail (EBUSY) unless all can get it");
  auto* aow = send->add_flag("--all-or-wait", all_or_wait, "wait until all can get it");
  aof->excludes(aow);
  send->add_option("NAME", name, "message name, e.g. $.Sensors.Kitchen")->required();
  send->add_option("DATA", data, "message data; '-' reads it from stdin");

  auto* listen = app.add_subcommand("listen", "bind as listener and print each message");
  add_common(listen, common);
  listen->add_option("--count", count, "stop after N messages");
  listen->add_flag("--json", json, "one JSON object per line");
  listen->add_option("NAME", names, "message names (wildcards allowed)")->required();

  auto* request = app.add_subcommand("request", "send a Request and print the Reply");
  add_common(request, common);
  request->add_option("--timeout", timeout, "give up after S seconds (default: wait forever)");
  request->add_option("--to", to, "Ksock id of the replier (a Stateful Request)");
  request->add_flag("--json", json, "print the reply as JSON");
  request->add_option("NAME", name, "message name")->required();
  request->add_option("DATA", data, "request data; '-' reads it from stdin");

  auto* reply = app.add_subcommand("reply", "bind as replier and answer every Request");
  add_common(reply, common);
  reply->add_option("--count", count, "stop after answering N requests");
  reply->add_flag("--json", json, "print each request as JSON");
  auto* exec_opt =
      reply->add_option("--exec", exec, "answer with the stdout of /bin/sh -c CMD (request data on stdin)");
  reply->add_option("NAME", name, "message name to answer")->required();
  auto* data_opt = reply->add_option("DATA", data, "reply data");
  exec_opt->excludes(data_opt);

  auto* bindings = app.add_subcommand("bindings", "print the bindings report of every bus");
  add_common(bindings, common);
  auto* stats = app.add_subcommand("stats", "print the stats report of every bus");
  add_common(stats, common);
  auto* newdev = app.add_subcommand("new-device", "create the next bus and print its number");
  add_common(newdev, common);

  auto* errno_cmd = app.add_subcommand("errno", "explain an errno as KBUS uses it");
  add_common(errno_cmd, common);  // accepted for uniformity; no bus is needed
  errno_cmd->add_flag("--list,-l", list, "list every errno");
  errno_cmd->add_option("ERRNO", errno_arg, "a number such as 32 or a name such as EPIPE");

  // The limpet takes the original runlimpet's arguments (-s/-c, -id N ...),
  // parsed by the limpet itself: everything after `limpet` goes to it.
  auto* limpet = app.add_subcommand(
      "limpet", "join this bus to another over a socket, optionally TLS 1.3 (as kbus-limpet)");
  limpet->prefix_command();
  limpet->set_help_flag();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }
  if (reply->parsed() && !exec && !data) {
    std::fprintf(stderr, "kbus reply: give DATA or --exec CMD\n");
    return kExitUsage;
  }

  try {
    if (send->parsed()) return cmd_send(common, name, data, urgent, all_or_fail, all_or_wait);
    if (listen->parsed()) return cmd_listen(common, names, count, json);
    if (request->parsed()) return cmd_request(common, name, data, timeout, to, json);
    if (reply->parsed()) return cmd_reply(common, name, data, exec, count, json);
    if (bindings->parsed()) return cmd_report(common, false);
    if (stats->parsed()) return cmd_report(common, true);
    if (newdev->parsed()) return cmd_new_device(common);
    if (errno_cmd->parsed()) return cmd_errno(errno_arg, list);
    if (limpet->parsed()) return limpet::main_with_args("kbus limpet", limpet->remaining());
  } catch (const Error& e) {
    auto subs = app.get_subcommands();
    return report_failure(subs.empty() ? "error" : subs.front()->get_name(), e.error_number());
  }
  return kExitUsage;
}

}  // namespace
}  // namespace kbus::cli

int main(int argc, char** argv) {
  // Writing to a pipe whose reader has gone (a command run by --exec, or a
  // closed stdout) must be an error, not a silent death.
  ::signal(SIGPIPE, SIG_IGN);
  return kbus::cli::run(argc, argv);
}
