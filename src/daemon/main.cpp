// kbusd: the KBUS daemon. Serves buses 0..N-1 at DIR/kbus0 ... in the
// foreground until SIGTERM, SIGINT or SIGHUP.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>

#include "daemon/daemon.hpp"

namespace {

// What --mode, --owner, --group, --user and --privileged-group say,
// resolved after parsing.
struct AccessNames {
  std::string mode = "0666", owner, group, user, privileged_group;
};

void add_general_options(CLI::App& app, kbus::daemon::Config& cfg) {
  app.set_version_flag("--version", std::string("kbusd ") + KBUS_VERSION);
  app.add_option("-n,--devices", cfg.devices, "number of buses to create at start-up (1..256)")
      ->default_val(1)
      ->check(CLI::Range(1, 256));
  app.add_option("-d,--dir", cfg.dir,
                 "socket directory (default: $KBUS_DIR, else /run/kbus for root, else "
                 "$XDG_RUNTIME_DIR/kbus, else /tmp/kbus-$UID)");
  app.add_option("--max-msg-size", cfg.limits.max_msg_size,
                 "initial maximum message size of each bus, in bytes")
      ->default_val(cfg.limits.max_msg_size);
  app.add_option("--abs-max-msg-size", cfg.limits.abs_max_msg_size,
                 "absolute maximum message size (upper bound for MAXMSGSIZE)")
      ->default_val(cfg.limits.abs_max_msg_size);
  app.add_flag("-v,--verbose", cfg.log_ops, "log every operation to stderr");
  app.add_option("--ready-fd", cfg.ready_fd,
                 "once serving (sockets listening, root dropped), write one byte ('\\n') to this "
                 "open file descriptor and close it; a kbusd that fails to start closes it "
                 "unwritten")
      ->check(CLI::NonNegativeNumber);

}

void add_access_options(CLI::App& app, AccessNames& names) {
  // Access (docs/reliability.md §5).
  app.add_option("--mode", names.mode, "permission bits of the bus sockets (octal): who may open a bus")
      ->default_val(names.mode)
      ->group("Access");
  app.add_option("--owner", names.owner, "owner of the bus sockets (user name or uid)")->group("Access");
  app.add_option("--group", names.group, "group of the bus sockets (group name or gid)")->group("Access");
  app.add_option("--user", names.user,
                 "once the sockets exist, drop root and run as this user (it gets the socket "
                 "directory; sockets made later by NEWDEVICE are owned by it)")
      ->group("Access");
}

void add_limit_options(CLI::App& app, kbus::daemon::Config& cfg, AccessNames& names) {
  // Resource limits (docs/reliability.md §4); 0 means no limit.
  app.add_option("--max-ksocks-per-bus", cfg.limits.max_ksocks,
                 "Ksocks open at once on one bus; more are refused with ENFILE (0: no limit)")
      ->default_val(cfg.limits.max_ksocks)
      ->group("Limits");
  app.add_option("--max-ksocks-per-user", cfg.max_ksocks_per_user,
                 "Ksocks (connections) open at once by one uid, all buses together, counted "
                 "from connect; more are refused with EMFILE and closed at once (0: no limit)")
      ->default_str("half of kbusd's descriptor limit")
      ->group("Limits");
  app.add_option("--hello-timeout-ms", cfg.hello_timeout_ms,
                 "a connection that has not completed HELLO this long after connecting is "
                 "closed (with a log line; 0: never)")
      ->default_val(cfg.hello_timeout_ms)
      ->group("Limits");
  app.add_option("--max-queued-bytes", cfg.limits.max_queued_bytes,
                 "bytes of messages queued for one Ksock at which it counts as full, whatever "
                 "its MAXMSGS (0: no limit)")
      ->default_val(cfg.limits.max_queued_bytes)
      ->group("Limits");
  app.add_option("--max-output-buffer", cfg.output_high_water,
                 "bytes of replies a client has not read at which kbusd stops reading its "
                 "requests")
      ->default_val(cfg.output_high_water)
      ->check(CLI::Range(std::size_t{4096}, std::size_t{1} << 30))
      ->group("Limits");
  app.add_option("--stall-timeout-ms", cfg.stall_timeout_ms,
                 "a client over --max-output-buffer that has not read its unread replies back "
                 "below half of it this long after going over is disconnected, however much it "
                 "read meanwhile (with a log line; 0: never)")
      ->default_val(cfg.stall_timeout_ms)
      ->group("Limits");
  app.add_option("--max-frame-size", cfg.max_frame_len,
                 "longest request frame accepted; a longer one disconnects the client (with a "
                 "log line)")
      ->default_val(cfg.max_frame_len)
      ->check(CLI::Range(1024u, 64u << 20))
      ->group("Limits");
  // Budgets (docs/reliability.md §4, docs/decisions.md D28).
  app.add_option("--max-bytes-per-user", cfg.ledger.per_user,
                 "bytes kbusd may hold on behalf of one uid (queued messages, bindings, "
                 "outstanding requests, buffers); beyond it sends to its Ksocks find them full, "
                 "its Requests fail ENOLCK, its binds ENOMEM (0: no limit)")
      ->default_val(cfg.ledger.per_user)
      ->group("Limits");
  app.add_option("--max-bytes-total", cfg.ledger.total,
                 "bytes kbusd may hold for all users together; beyond it ordinary users are "
                 "refused as at --max-bytes-per-user (0: no limit)")
      ->default_val(cfg.ledger.total)
      ->group("Limits");
  app.add_option("--max-bytes-privileged", cfg.ledger.per_privileged,
                 "the budget of root and of --privileged-group members, who are never refused "
                 "for --max-bytes-total (0: no limit)")
      ->default_val(cfg.ledger.per_privileged)
      ->group("Limits");
  app.add_option("--privileged-group", names.privileged_group,
                 "members of this group (name or gid) get --max-bytes-privileged")
      ->group("Limits");
  app.add_option("--max-bindings-per-ksock", cfg.limits.max_bindings_per_ksock,
                 "bindings one Ksock may hold; BIND beyond it fails with ENOMEM (0: no limit)")
      ->default_val(cfg.limits.max_bindings_per_ksock)
      ->group("Limits");
}

// Resolves the access names and checks what CLI11 cannot; false (with a
// message on stderr) for a bad command line.
bool finish_config(kbus::daemon::Config& cfg, const AccessNames& names) {
  const auto bits = kbus::daemon::parse_mode(names.mode);
  if (!bits) {
    std::fprintf(stderr, "kbusd: --mode must be octal permission bits, such as 0660\n");
    return false;
  }
  cfg.socket_access.mode = *bits;
  if (!names.owner.empty()) {
    const auto u = kbus::daemon::lookup_user(names.owner);
    if (!u) {
      std::fprintf(stderr, "kbusd: --owner: no such user: %s\n", names.owner.c_str());
      return false;
    }
    cfg.socket_access.owner = u->uid;
  }
  if (!names.group.empty()) {
    const auto g = kbus::daemon::lookup_group(names.group);
    if (!g) {
      std::fprintf(stderr, "kbusd: --group: no such group: %s\n", names.group.c_str());
      return false;
    }
    cfg.socket_access.group = *g;
  }
  if (!names.user.empty()) {
    cfg.run_as = kbus::daemon::lookup_user(names.user);
    if (!cfg.run_as) {
      std::fprintf(stderr, "kbusd: --user: no such user: %s\n", names.user.c_str());
      return false;
    }
  }
  if (!names.privileged_group.empty()) {
    cfg.privileged_group = kbus::daemon::lookup_group(names.privileged_group);
    if (!cfg.privileged_group) {
      std::fprintf(stderr, "kbusd: --privileged-group: no such group: %s\n",
                   names.privileged_group.c_str());
      return false;
    }
  }
  if (cfg.limits.max_msg_size < 100 || cfg.limits.max_msg_size > cfg.limits.abs_max_msg_size) {
    std::fprintf(stderr, "kbusd: --max-msg-size must be between 100 and --abs-max-msg-size\n");
    return false;
  }
  // A SENDMSG frame carries a whole message: the biggest must fit a frame.
  // The frame-budget rule is protocol::frame_budget (docs/protocol.md §2).
  const std::uint32_t max_abs = std::min<std::uint32_t>(
      900 * 1024, kbus::protocol::max_abs_msg_size_for_frame(cfg.max_frame_len));
  if (cfg.limits.abs_max_msg_size > max_abs) {
    std::fprintf(stderr, "kbusd: --abs-max-msg-size must be at most %u (--max-frame-size - 1024)\n",
                 max_abs);
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  kbus::daemon::Config cfg;
  CLI::App app{
      "kbusd - the KBUS message bus daemon.\n"
      "Serves buses 0..N-1 as Unix sockets DIR/kbus0 ... DIR/kbus<N-1> in the foreground,\n"
      "until SIGTERM, SIGINT or SIGHUP, then removes its sockets. SIGUSR1 logs one status\n"
      "line (connections, Ksocks, file descriptors, memory). Once it serves it says so on\n"
      "stderr, to $NOTIFY_SOCKET (READY=1, systemd) and on --ready-fd.\n"
      "Limits, access and readiness: docs/reliability.md."};
  AccessNames names;
  add_general_options(app, cfg);
  add_access_options(app, names);
  add_limit_options(app, cfg, names);
  CLI11_PARSE(app, argc, argv);
  if (!finish_config(cfg, names)) return 2;
  kbus::daemon::Daemon d(cfg);
  if (!d.start()) return 1;
  return d.run();
}
