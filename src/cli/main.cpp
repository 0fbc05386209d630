// cli/main.cpp - the `kbus` command-line tool, over the public client API only
// (STYLE.md 12).
//
//   kbus send     [-b BUS] [--urgent] [--all-or-fail|--all-or-wait] NAME [DATA|-]
//   kbus listen   [-b BUS] [--count N] [--json] [-t] [--max-messages N] NAME...
//   kbus monitor  [-b BUS] [--count N] [--json] [-t] [--max-messages N]   (all traffic, D25)
//   kbus request  [-b BUS] [--timeout S] [--to ID] [--json] NAME [DATA|-]
//   kbus reply    [-b BUS] [--count N] [--json] NAME (DATA | --exec CMD)
//   kbus bindings | stats   [-b BUS] [--json | --raw]
//   kbus new-device [-b BUS]      kbus max-size [-b BUS] [SIZE]
//   kbus errno    N | NAME | --list
//   kbus limpet   (-s | -c) [-id N] [-k BUS] [-m NAME] [--tls-cert F --tls-key F --tls-ca F
//                 [--tls-peer-name N] [--tls-peer-fingerprint SHA256]] ... ADDRESS   (docs/limpets.md)
//   kbus bridge   [-b BUS] [--prefix P] [-m NAME]... URL[,URL...]     (docs/fleet.md)
//   kbus help     [COMMAND]
//   kbus run      [-d DIR] PROGRAM [ARGS...]   (/dev/kbusN programs; docs/device.md)
//
// Every command takes -b/--bus (default 0) and -d/--dir (default: $KBUS_DIR,
// then the protocol's default directory). Exit status: 0 success; 1 a KBUS
// operation failed (the errno name and what went wrong, naming the name,
// limit or socket path and how to fix it, go to stderr: cli/explain.hpp) or
// the reply timed out; 2 bad usage; 3 `request` got a Status message instead
// of a Reply (the Status is printed).
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <iostream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include "cli/explain.hpp"
#include "cli/json_output.hpp"
#include "cli/reports.hpp"
#include "cli/run_command.hpp"
#include "cli/shell_command.hpp"
#include "util/signals.hpp"
#include "kbus/errors.hpp"
#include "kbus/ksock.hpp"
#include "kbus/message.hpp"
#include "limpet/runner.hpp"
#ifdef KBUS_HAVE_BRIDGE
#include "bridge/bridge.hpp"
#endif

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
  bool bus_given = false;  // -b was on the command line
};

// The name of the Reply `kbus reply --exec` sends when its command fails
// (docs/decisions.md D15): a Status to `kbus request`.
constexpr const char* kCommandFailedName = "$.KBUS.Replier.CommandFailed";

// "kbus send: EADDRNOTAVAIL: nobody is bound as replier for '$.Fred' on bus 0 ..."
// (cli/explain.hpp: the errno's name, then what went wrong and how to fix it).
int report_failure(const std::string& what, int err, const Context& ctx = {}) {
  std::fprintf(stderr, "kbus %s: %s\n", what.c_str(), explain(err, ctx).c_str());
  return kExitFailure;
}

std::string bus_path(const Common& c) {
  return (c.dir.empty() ? default_bus_dir() : c.dir) + "/kbus" + std::to_string(c.bus);
}

Context context(const Common& c, Context::Step step, std::string name = {}) {
  Context ctx;
  ctx.step = step;
  ctx.bus = c.bus;
  ctx.path = bus_path(c);
  ctx.name = std::move(name);
  return ctx;
}

// Thrown when a command cannot go on; run() prints it and exits 1.
struct CommandFailed {
  int exit_code;
};

// Opens the Ksock, or says why not (no bus, no daemon, no permission) and
// names the socket path.
Ksock open_or_fail(const Common& c, Mode mode, const std::string& what) {
  auto k = Ksock::try_open(c.bus, mode, c.dir);
  if (!k) throw CommandFailed{report_failure(what, to_errno(k.error()), context(c, Context::Step::kOpen))};
  return std::move(*k);
}

// Binds, or says why not: the name's problem, who already replies ...
void bind_or_fail(Ksock& k, const Common& c, const std::string& name, bool replier,
                  const std::string& what) {
  auto r = k.try_bind(name, replier);
  if (r) return;
  Context ctx = context(c, Context::Step::kBind, name);
  ctx.replier = replier;
  if (r.error() == Errc::eaddrinuse) {
    auto holder = k.try_find_replier(name);
    if (holder && *holder) {
      ctx.holder = "Ksock " + std::to_string(**holder);
      if (auto report = k.try_bindings_report()) {
        for (const auto& b : parse_bindings(*report)) {
          if (b.bus == static_cast<std::uint32_t>(c.bus) && b.ksock == **holder) {
            ctx.holder += " of process " + std::to_string(b.pid) + " (" + process_name(b.pid) + ")";
            break;
          }
        }
      }
    }
  }
  throw CommandFailed{report_failure(what + ": bind " + name, to_errno(r.error()), ctx)};
}

// The context of a failed send of `m`: its size and the bus's limits for
// EMSGSIZE, whether it was a Request for EADDRNOTAVAIL.
Context send_context(Ksock& k, const Common& c, const Message& m, Errc err) {
  Context ctx = context(c, Context::Step::kSend, m.name);
  ctx.request = m.is_request();
  ctx.entire_len = static_cast<std::uint32_t>(std::min<std::uint64_t>(
      entire_len(kNativeHeaderLen, static_cast<std::uint32_t>(m.name.size()),
                 static_cast<std::uint32_t>(m.data.size())),
      0xFFFFFFFFu));
  if (err == Errc::emsgsize) {
    if (auto lim = k.try_max_message_size()) ctx.limit = *lim;
    if (auto abs = k.try_set_max_message_size(1)) ctx.abs_limit = *abs;
  }
  return ctx;
}

void print_line(const std::string& line) {
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

void print_message(const Message& m, bool json) {
  print_line(json ? message_to_json(m) : m.to_text());
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


// Waits until the Ksock is readable or a stop signal arrives; returns false
// on a stop signal or when `deadline` has passed.
bool wait_readable(const Ksock& k, const util::SignalPipe& stop,
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

// After kbusd went away (ECONNRESET): says so, then waits for a kbusd to
// serve the bus again, retrying to open it every 100 ms .. 2 s (backing
// off), and sets the new Ksock up as before with `setup` (binding again).
// False if a stop signal came first. Other failures end the command.
bool reconnect(Ksock& k, const Common& c, Mode mode, const util::SignalPipe& stop,
               const std::string& what, const std::function<void(Ksock&)>& setup) {
  const std::string path = bus_path(c);
  std::fprintf(stderr,
               "kbus %s: kbusd went away (%s); waiting for it to come back (--no-reconnect to "
               "exit instead)\n",
               what.c_str(), path.c_str());
  k.close();
  int backoff_ms = 100;
  for (;;) {
    pollfd p{stop.fd(), POLLIN, 0};
    int rc = ::poll(&p, 1, backoff_ms);
    if (rc < 0 && errno != EINTR) throw Error(errno, "poll");
    if (stop.stopped() || (rc > 0 && (p.revents & POLLIN))) return false;
    auto r = Ksock::try_open(c.bus, mode, c.dir);
    if (r) {
      k = std::move(*r);
      setup(k);
      std::fprintf(stderr, "kbus %s: kbusd is back (%s): Ksock %u, bound again\n", what.c_str(),
                   path.c_str(), k.id());
      return true;
    }
    if (r.error() != Errc::enoent && r.error() != Errc::econnreset) {
      throw CommandFailed{report_failure(what, to_errno(r.error()), context(c, Context::Step::kOpen))};
    }
    backoff_ms = std::min(2 * backoff_ms, 2000);
  }
}

// ---- commands ----

int cmd_send(const Common& c, const std::string& name, const std::optional<std::string>& data,
             bool urgent, bool all_or_fail, bool all_or_wait) {
  Ksock k = open_or_fail(c, Mode::read_write, "send");
  std::uint32_t flags = 0;
  if (urgent) flags |= flag::kUrgent;
  if (all_or_fail) flags |= flag::kAllOrFail;
  if (all_or_wait) flags |= flag::kAllOrWait;
  Message m = make_announcement(name, data_argument(data), flags);
  auto id = k.try_send_msg(m);
  if (!id && id.error() == Errc::eagain && all_or_wait) {
    // Pending: the daemon completes it when the recipients have room; the
    // Ksock is writable again once it has.
    util::SignalPipe stop;
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
  if (!id) return report_failure("send", to_errno(id.error()), send_context(k, c, m, id.error()));
  print_line(id->to_string());
  return kExitOk;
}

// "2026-12-03T13:05:01.123456Z", UTC.
std::string timestamp_now() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  std::tm t{};
  ::gmtime_r(&ts.tv_sec, &t);
  char buf[64];
  std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &t);
  std::snprintf(buf + n, sizeof buf - n, ".%06ldZ", ts.tv_nsec / 1000);
  return buf;
}

struct ListenOptions {
  long count = 0;
  bool json = false;
  bool timestamps = false;
  std::uint32_t max_messages = 1000;  // the Ksock's queue (MAXMSGS); 0: the bus default
  bool reconnect = true;              // wait for kbusd to come back if it goes
};

void print_received(const Message& m, const ListenOptions& o) {
  if (!o.timestamps) return print_message(m, o.json);
  const std::string t = timestamp_now();
  if (o.json) {
    std::string j = message_to_json(m);
    print_line("{\"time\":\"" + t + "\"," + j.substr(1));
  } else {
    print_line(t + " " + m.to_text());
  }
}

// Prints what arrives on k (set up by `setup`, again after a reconnect)
// until --count messages, a stop signal, or a failure. After each batch
// read, `check_missed(k, batch size, queue length)` tells on stderr whether
// messages were missed. The loop of `listen` and `monitor`.
int print_messages(Ksock& k, const Common& c, const ListenOptions& o, const std::string& what,
                   const std::function<void(Ksock&)>& setup,
                   const std::function<void(Ksock&, std::size_t, std::uint32_t)>& check_missed) {
  setup(k);
  const std::uint32_t limit = k.max_messages();
  util::SignalPipe stop;
  long got = 0;
  while (o.count <= 0 || got < o.count) {
    if (!wait_readable(k, stop, std::nullopt)) break;
    std::uint32_t want = limit ? limit : 1;
    if (o.count > 0) want = static_cast<std::uint32_t>(std::min<long>(want, o.count - got));
    auto batch = k.try_read_msgs(want);
    if (!batch && batch.error() == Errc::econnreset && o.reconnect) {
      if (!reconnect(k, c, Mode::read, stop, what, setup)) break;
      continue;
    }
    if (!batch) return report_failure(what, to_errno(batch.error()), context(c, Context::Step::kOther));
    check_missed(k, batch->size(), limit);
    for (const Message& m : *batch) {
      print_received(m, o);
      ++got;
    }
  }
  return kExitOk;
}

// Sets the Ksock's queue length, as --max-messages says.
void set_queue_length(Ksock& k, const Common& c, const ListenOptions& o, const std::string& what) {
  if (!o.max_messages) return;
  auto r = k.try_set_max_messages(o.max_messages);
  if (!r) {
    throw CommandFailed{report_failure(what + ": --max-messages", to_errno(r.error()),
                                       context(c, Context::Step::kOther))};
  }
}

int cmd_listen(const Common& c, const std::vector<std::string>& names, const ListenOptions& o) {
  Ksock k = open_or_fail(c, Mode::read, "listen");
  auto setup = [&](Ksock& ks) {
    set_queue_length(ks, c, o, "listen");
    for (const auto& n : names) bind_or_fail(ks, c, n, false, "listen");
  };
  auto check_missed = [](Ksock&, std::size_t n, std::uint32_t limit) {
    if (limit && n >= limit) {
      // The queue held all it may: KBUS drops what a full listener cannot
      // take (KBUS-SPEC.md §5.2), so messages may have been missed.
      std::fprintf(stderr,
                   "kbus listen: the queue was full (%u messages): messages sent meanwhile may "
                   "have been missed; raise --max-messages\n",
                   limit);
    }
  };
  return print_messages(k, c, o, "listen", setup, check_missed);
}

// `kbus monitor`: every message on the bus, Status messages included
// (docs/decisions.md D25). MONITOR counts the copies a full queue dropped.
int cmd_monitor(const Common& c, const ListenOptions& o) {
  Ksock k = open_or_fail(c, Mode::read, "monitor");
  auto setup = [&](Ksock& ks) {
    set_queue_length(ks, c, o, "monitor");
    auto r = ks.try_monitor(Toggle::on);
    if (!r) {
      throw CommandFailed{report_failure("monitor", to_errno(r.error()), context(c, Context::Step::kOther))};
    }
  };
  std::uint64_t total = 0;
  auto check_missed = [&](Ksock& ks, std::size_t, std::uint32_t limit) {
    auto n = ks.try_monitor(Toggle::query);
    if (!n || *n == 0) return;  // (kbusd gone: the next read says so)
    total += *n;
    std::fprintf(stderr,
                 "kbus monitor: missed %u message%s: the queue was full (%u messages); raise "
                 "--max-messages\n",
                 *n, *n == 1 ? "" : "s", limit);
  };
  const int rc = print_messages(k, c, o, "monitor", setup, check_missed);
  if (rc == kExitOk && k.is_open()) {
    if (auto n = k.try_monitor(Toggle::query)) total += *n;
  }
  if (total > 0) {
    std::fprintf(stderr, "kbus monitor: missed %llu message%s in all\n",
                 static_cast<unsigned long long>(total), total == 1 ? "" : "s");
  }
  return rc;
}

int cmd_request(const Common& c, const std::string& name, const std::optional<std::string>& data,
                double timeout_s, std::optional<std::uint32_t> to, bool json) {
  Ksock k = open_or_fail(c, Mode::read_write, "request");
  Message m = make_request(name, data_argument(data));
  if (to) m.hdr.to = *to;
  auto id = k.try_send_msg(m);
  if (!id) {
    return report_failure("request", to_errno(id.error()), send_context(k, c, m, id.error()));
  }
  util::SignalPipe stop;
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
    if (!r) return report_failure("request", to_errno(r.error()), context(c, Context::Step::kOther));
    if (!*r) continue;
    const Message& got = **r;
    if (got.hdr.in_reply_to != *id) continue;  // not the answer we wait for
    print_message(got, json);
    return got.is_status() ? kExitStatusMessage : kExitOk;
  }
}

int cmd_reply(const Common& c, const std::string& name, const std::optional<std::string>& data,
              const std::optional<std::string>& exec, long count, bool json, bool reconnects) {
  Ksock k = open_or_fail(c, Mode::read_write, "reply");
  auto setup = [&](Ksock& ks) { bind_or_fail(ks, c, name, true, "reply"); };
  setup(k);
  util::SignalPipe stop;
  long answered = 0;
  while (count <= 0 || answered < count) {
    if (!wait_readable(k, stop, std::nullopt)) break;
    auto r = k.try_read_next_msg();
    if (!r && r.error() == Errc::econnreset && reconnects) {
      if (!reconnect(k, c, Mode::read_write, stop, "reply", setup)) break;
      continue;
    }
    if (!r) return report_failure("reply", to_errno(r.error()), context(c, Context::Step::kOther));
    if (!*r) continue;
    const Message& req = **r;
    print_message(req, json);
    if (!req.wants_us_to_reply()) continue;
    std::string answer;
    std::optional<std::string> failed;  // why --exec gave no answer
    if (exec) {
      CommandResult out;
      std::vector<std::pair<std::string, std::string>> env = {
          {"KBUS_MSG_NAME", req.name},
          {"KBUS_MSG_ID", req.hdr.id.to_string()},
          {"KBUS_MSG_FROM", std::to_string(req.hdr.from)}};
      if (!run_shell_command(*exec, req.data, env, out)) {
        failed = std::string("could not run the command: ") + std::strerror(errno);
      } else if (out.exit_status != 0) {
        failed = "the command exited with status " + std::to_string(out.exit_status);
      }
      answer = std::move(out.out);
      // As the shell's $(...): the output without its trailing newlines.
      while (!answer.empty() && answer.back() == '\n') answer.pop_back();
    } else {
      answer = data.value_or("");
    }
    auto rep = make_reply(req, answer);
    if (!rep) {
      report_failure("reply", to_errno(rep.error()), context(c, Context::Step::kOther));
      continue;
    }
    if (failed) {
      // Not an empty "success": the requester gets a Reply it can tell
      // apart, named $.KBUS.Replier.CommandFailed (a Status to `kbus
      // request`, exit 3), whose data says what happened (docs/decisions.md).
      std::fprintf(stderr, "kbus reply: --exec for %s: %s\n", req.hdr.id.to_string().c_str(),
                   failed->c_str());
      rep->name = kCommandFailedName;
      rep->data = *failed;
    }
    auto sent = k.try_send_msg(*rep);
    if (!sent) {
      // The requester may have gone; keep serving the others.
      report_failure("reply: send", to_errno(sent.error()), send_context(k, c, *rep, sent.error()));
      continue;
    }
    ++answered;
  }
  return kExitOk;
}

enum class ReportForm { kText, kJson, kRaw };

int cmd_report(const Common& c, bool stats, ReportForm form) {
  Ksock k = open_or_fail(c, Mode::read, stats ? "stats" : "bindings");
  std::string text = stats ? k.stats_report() : k.bindings_report();
  std::optional<std::uint32_t> only;
  if (c.bus_given) only = static_cast<std::uint32_t>(c.bus);
  std::string out;
  switch (form) {
    case ReportForm::kRaw:
      out = raw_for_bus(text, stats, only);
      break;
    case ReportForm::kJson:
      out = stats ? stats_json(parse_stats(text), only) : bindings_json(parse_bindings(text), only);
      break;
    case ReportForm::kText:
      out = stats ? stats_text(parse_stats(text), only) : bindings_text(parse_bindings(text), only);
      break;
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fflush(stdout);
  return kExitOk;
}

// MAXMSGSIZE (KBUS-SPEC.md §4.6): print the bus's limit, or set it.
int cmd_max_size(const Common& c, std::optional<std::uint32_t> size) {
  Ksock k = open_or_fail(c, Mode::read, "max-size");
  if (!size) {
    print_line(std::to_string(k.max_message_size()));
    return kExitOk;
  }
  auto r = k.try_set_max_message_size(*size);
  if (!r) {
    auto abs = k.try_set_max_message_size(1);
    std::fprintf(stderr, "kbus max-size: EINVAL: %u is not a size bus %d can take: give 100 .. %s\n",
                 *size, c.bus, abs ? std::to_string(*abs).c_str() : "its absolute maximum");
    return kExitFailure;
  }
  print_line(std::to_string(*r));
  return kExitOk;
}

int cmd_new_device(const Common& c) {
  Ksock k = open_or_fail(c, Mode::read, "new-device");
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

// `kbus help [COMMAND]`.
int cmd_help(CLI::App& app, CLI::App* help, const std::optional<std::string>& help_topic) {
  if (!help_topic) {
    // (app.help() would show the help of the command parsed: `help`.)
    std::fputs(app.get_formatter()->make_help(&app, app.get_name(), CLI::AppFormatMode::Normal).c_str(), stdout);
    return kExitOk;
  }
  CLI::App* topic = nullptr;
  try {
    topic = app.get_subcommand(*help_topic);
  } catch (const CLI::OptionNotFound&) {
  }
  if (!topic || topic == help) {
    std::fprintf(stderr, "kbus help: no command '%s'; the commands are listed by `kbus help`\n",
                 help_topic->c_str());
    return kExitUsage;
  }
  if (topic->get_name() == "limpet") {
    return limpet::main_with_args("kbus limpet", {"--help"}, limpet::kCliStyle);
  }
#ifdef KBUS_HAVE_BRIDGE
  if (topic->get_name() == "bridge") return bridge::main_with_args("kbus bridge", {"--help"});
#endif
  std::fputs(topic->help(app.get_name()).c_str(), stdout);
  return kExitOk;
}

// The commands whose arguments go, unparsed, to someone else.
struct Passthrough {
  CLI::App* limpet;
  CLI::App* run;
  CLI::App* bridge;  // null when built without NATS
};
Passthrough add_passthrough(CLI::App& app, std::string& run_dir) {
  // The limpet takes the original runlimpet's arguments (-s/-c, -id N ...),
  // parsed by the limpet itself: everything after `limpet` goes to it.
  auto* limpet = app.add_subcommand(
      "limpet", "join this bus to another over a socket, optionally TLS 1.3 (as kbus-limpet)");
  limpet->prefix_command();
  limpet->set_help_flag();
  CLI::App* bridge_cmd = nullptr;
#ifdef KBUS_HAVE_BRIDGE
  // The NATS bridge (docs/fleet.md) parses its own arguments, as the limpet.
  bridge_cmd = app.add_subcommand("bridge", "join this bus to a NATS system (a fleet of buses)");
  bridge_cmd->prefix_command();
  bridge_cmd->set_help_flag();
#endif

  // `kbus run`: everything from PROGRAM on goes to the program.
  auto* run_cmd = app.add_subcommand(
      "run", "run a program that opens /dev/kbusN itself, against kbusd (docs/device.md)");
  run_cmd->add_option("-d,--dir", run_dir, "socket directory (sets KBUS_DIR for the program)");
  run_cmd->prefix_command();
  run_cmd->footer("Usage: kbus run [-d DIR] PROGRAM [ARGS...]  (PROGRAM is looked up in $PATH)");
  return {limpet, run_cmd, bridge_cmd};
}

struct SendOptions {
  bool urgent = false, all_or_fail = false, all_or_wait = false;
};
// `send NAME [DATA]`.
CLI::App* add_send_command(CLI::App& app, Common& common, std::string& name,
                           std::optional<std::string>& data, SendOptions& so) {
  auto* send = app.add_subcommand("send", "send an Announcement; prints its id, e.g. [0:5]");
  add_common(send, common);
  send->add_flag("--urgent", so.urgent, "put it at the front of each queue");
  auto* aof = send->add_flag("--all-or-fail", so.all_or_fail, "fail (EBUSY) unless all can get it");
  auto* aow = send->add_flag("--all-or-wait", so.all_or_wait, "wait until all can get it");
  aof->excludes(aow);
  send->add_option("NAME", name, "message name, e.g. $.Sensors.Kitchen")->required();
  send->add_option("DATA", data, "message data; '-' reads it from stdin");
  return send;
}

// `bindings` and `stats`: the daemon's reports.
struct ReportCommands {
  CLI::App* bindings;
  CLI::App* stats;
};
ReportCommands add_report_commands(CLI::App& app, Common& common, bool& json, bool& raw) {
  auto* bindings = app.add_subcommand(
      "bindings", "print who is bound to what (every bus, or the one -b names), with process names");
  add_common(bindings, common);
  bindings->add_flag("--json", json, "a JSON array of bindings");
  bindings->add_flag("--raw", raw, "the original /proc/kbus/bindings text, byte for byte");
  auto* stats = app.add_subcommand("stats", "print each bus's counters and Ksocks (or the one -b names)");
  add_common(stats, common);
  stats->add_flag("--json", json, "a JSON array, one object per bus");
  stats->add_flag("--raw", raw, "the original /proc/kbus/stats text, byte for byte");
  return {bindings, stats};
}

// `errno [ERRNO] [--list]`.
CLI::App* add_errno_command(CLI::App& app, Common& common, bool& list,
                            std::optional<std::string>& errno_arg) {
  auto* errno_cmd = app.add_subcommand("errno", "explain an errno as KBUS uses it");
  add_common(errno_cmd, common);  // accepted for uniformity; no bus is needed
  errno_cmd->add_flag("--list,-l", list, "list every errno");
  errno_cmd->add_option("ERRNO", errno_arg, "a number such as 32 or a name such as EPIPE");
  return errno_cmd;
}

// Everything the command line fills in.
struct Args {
  Common common;
  std::string name;
  std::optional<std::string> data;
  std::vector<std::string> names;
  bool json = false, list = false, raw = false, no_reconnect = false;
  long count = 0;
  double timeout = 0;
  std::optional<std::uint32_t> to, max_size;
  std::optional<std::string> exec, errno_arg, help_topic;
  std::string run_dir;
  SendOptions so;
  ListenOptions lo;
};

// The commands, to tell which one was given.
struct Commands {
  CLI::App *send, *listen, *monitor, *request, *reply, *bindings, *stats, *maxsize, *help, *newdev, *errno_cmd;
  Passthrough pass;
};

// `listen`, `request` and `reply`.
void add_message_commands(CLI::App& app, Args& a, Commands& cmds) {
  auto* listen = cmds.listen = app.add_subcommand("listen", "bind as listener and print each message");
  add_common(listen, a.common);
  listen->add_option("--count", a.count, "stop after N messages");
  listen->add_flag("--json", a.json, "one JSON object per line");
  listen->add_flag("-t,--timestamps", a.lo.timestamps, "prefix each message with the UTC time it was printed");
  listen->add_flag("--no-reconnect", a.no_reconnect,
                   "exit (status 1) if kbusd goes away, instead of waiting for it and binding again");
  listen->add_option("--max-messages", a.lo.max_messages,
                     "queue up to N messages for this listener (default 1000; 0: the bus default, 100); "
                     "KBUS drops what a full queue cannot take, and listen says so");
  listen->add_option("NAME", a.names, "message names (wildcards allowed)")->required();

  // `monitor`: as listen, for every message on the bus (docs/decisions.md D25).
  auto* monitor = cmds.monitor = app.add_subcommand(
      "monitor", "print every message on the bus, Status messages included (as dbus-monitor)");
  add_common(monitor, a.common);
  monitor->add_option("--count", a.count, "stop after N messages");
  monitor->add_flag("--json", a.json, "one JSON object per line");
  monitor->add_flag("-t,--timestamps", a.lo.timestamps, "prefix each message with the UTC time it was printed");
  monitor->add_flag("--no-reconnect", a.no_reconnect,
                    "exit (status 1) if kbusd goes away, instead of waiting for it and monitoring again");
  monitor->add_option("--max-messages", a.lo.max_messages,
                      "queue up to N messages for the monitor (default 1000; 0: the bus default, 100); "
                      "what a full queue cannot take is missed, and monitor says how many");

  auto* request = cmds.request = app.add_subcommand("request", "send a Request and print the Reply");
  add_common(request, a.common);
  request->add_option("--timeout", a.timeout, "give up after S seconds (default: wait forever)");
  request->add_option("--to", a.to, "Ksock id of the replier (a Stateful Request)");
  request->add_flag("--json", a.json, "print the reply as JSON");
  request->add_option("NAME", a.name, "message name")->required();
  request->add_option("DATA", a.data, "request data; '-' reads it from stdin");

  auto* reply = cmds.reply = app.add_subcommand("reply", "bind as replier and answer every Request");
  add_common(reply, a.common);
  reply->add_option("--count", a.count, "stop after answering N requests");
  reply->add_flag("--json", a.json, "print each request as JSON");
  reply->add_flag("--no-reconnect", a.no_reconnect,
                  "exit (status 1) if kbusd goes away, instead of waiting for it and binding again");
  auto* exec_opt =
      reply->add_option("--exec", a.exec, "answer with the stdout of /bin/sh -c CMD (request data on stdin)");
  reply->add_option("NAME", a.name, "message name to answer")->required();
  auto* data_opt = reply->add_option("DATA", a.data, "reply data");
  exec_opt->excludes(data_opt);
}

// Every command of the tool, in the order `kbus help` lists them.
Commands add_commands(CLI::App& app, Args& a) {
  Commands cmds{};
  cmds.send = add_send_command(app, a.common, a.name, a.data, a.so);
  add_message_commands(app, a, cmds);
  const ReportCommands reports = add_report_commands(app, a.common, a.json, a.raw);
  cmds.bindings = reports.bindings;
  cmds.stats = reports.stats;
  cmds.maxsize = app.add_subcommand("max-size", "print the bus's maximum message size, or set it (MAXMSGSIZE)");
  add_common(cmds.maxsize, a.common);
  cmds.maxsize->add_option("SIZE", a.max_size, "the new limit in bytes (100 .. the daemon's absolute maximum)");
  cmds.help = app.add_subcommand("help", "print the help of the whole tool, or of one command");
  cmds.help->add_option("COMMAND", a.help_topic, "a command, e.g. send");
  cmds.newdev = app.add_subcommand("new-device", "create the next bus and print its number");
  add_common(cmds.newdev, a.common);
  cmds.errno_cmd = add_errno_command(app, a.common, a.list, a.errno_arg);
  cmds.pass = add_passthrough(app, a.run_dir);
  return cmds;
}

// Runs the command given; KBUS failures come out as exceptions.
int dispatch(const Commands& cmds, Args& a) {
  const Common& common = a.common;
  if (cmds.send->parsed()) return cmd_send(common, a.name, a.data, a.so.urgent, a.so.all_or_fail, a.so.all_or_wait);
  if (cmds.listen->parsed() || cmds.monitor->parsed()) {
    a.lo.count = a.count;
    a.lo.json = a.json;
    a.lo.reconnect = !a.no_reconnect;
    return cmds.listen->parsed() ? cmd_listen(common, a.names, a.lo) : cmd_monitor(common, a.lo);
  }
  if (cmds.request->parsed()) return cmd_request(common, a.name, a.data, a.timeout, a.to, a.json);
  if (cmds.reply->parsed()) return cmd_reply(common, a.name, a.data, a.exec, a.count, a.json, !a.no_reconnect);
  const ReportForm form = a.raw ? ReportForm::kRaw : a.json ? ReportForm::kJson : ReportForm::kText;
  if (cmds.bindings->parsed()) return cmd_report(common, false, form);
  if (cmds.stats->parsed()) return cmd_report(common, true, form);
  if (cmds.maxsize->parsed()) return cmd_max_size(common, a.max_size);
  if (cmds.newdev->parsed()) return cmd_new_device(common);
  if (cmds.errno_cmd->parsed()) return cmd_errno(a.errno_arg, a.list);
  if (cmds.pass.limpet->parsed()) {
    return limpet::main_with_args("kbus limpet", cmds.pass.limpet->remaining(), limpet::kCliStyle);
  }
  if (cmds.pass.run->parsed()) return cmd_run(a.run_dir, cmds.pass.run->remaining());
#ifdef KBUS_HAVE_BRIDGE
  if (cmds.pass.bridge && cmds.pass.bridge->parsed()) {
    return bridge::main_with_args("kbus bridge", cmds.pass.bridge->remaining());
  }
#endif
  return kExitUsage;
}

int run(int argc, char** argv) {
  CLI::App app{"kbus: send, listen, request and reply on a KBUS bus served by kbusd", "kbus"};
  app.set_version_flag("--version", std::string("kbus ") + KBUS_VERSION);
  app.require_subcommand(1);
  app.footer(
      "Exit status: 0 success, 1 a KBUS operation failed (errno and what went wrong on stderr) or "
      "timed out, 2 usage, 3 'request' got a Status message instead of a Reply.");
  Args a;
  const Commands cmds = add_commands(app, a);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }
  for (auto* sub : app.get_subcommands()) {
    if (sub->get_option_no_throw("--bus") && sub->count("--bus") > 0) a.common.bus_given = true;
  }
  if (cmds.help->parsed()) return cmd_help(app, cmds.help, a.help_topic);
  if (cmds.reply->parsed() && !a.exec && !a.data) {
    std::fprintf(stderr, "kbus reply: give DATA or --exec CMD\n");
    return kExitUsage;
  }
  try {
    return dispatch(cmds, a);
  } catch (const CommandFailed& f) {
    return f.exit_code;
  } catch (const Error& e) {
    auto subs = app.get_subcommands();
    return report_failure(subs.empty() ? "error" : subs.front()->get_name(), e.error_number(),
                          context(a.common, Context::Step::kOther));
  }
}

}  // namespace
}  // namespace kbus::cli

int main(int argc, char** argv) {
  // Writing to a pipe whose reader has gone (a command run by --exec, or a
  // closed stdout) must be an error, not a silent death.
  ::signal(SIGPIPE, SIG_IGN);
  return kbus::cli::run(argc, argv);
}
