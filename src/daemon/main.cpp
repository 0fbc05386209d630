// kbusd: the KBUS daemon. Serves buses 0..N-1 at DIR/kbus0 ... in the
// foreground until SIGTERM or SIGINT.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "daemon/daemon.hpp"

int main(int argc, char** argv) {
  kbus::daemon::Config cfg;
  CLI::App app{
      "kbusd - the KBUS message bus daemon.\n"
      "Serves buses 0..N-1 as Unix sockets DIR/kbus0 ... DIR/kbus<N-1> in the foreground,\n"
      "until SIGTERM or SIGINT, then removes its sockets."};
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
  CLI11_PARSE(app, argc, argv);
  if (cfg.limits.max_msg_size < 100 || cfg.limits.max_msg_size > cfg.limits.abs_max_msg_size) {
    std::fprintf(stderr, "kbusd: --max-msg-size must be between 100 and --abs-max-msg-size\n");
    return 2;
  }
  if (cfg.limits.abs_max_msg_size > 900 * 1024) {
    std::fprintf(stderr, "kbusd: --abs-max-msg-size must be at most %u\n", 900 * 1024);
    return 2;
  }
  kbus::daemon::Daemon d(cfg);
  if (!d.start()) return 1;
  return d.run();
}
