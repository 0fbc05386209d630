// daemon/daemon.hpp - kbusd: one epoll loop serving buses 0..N-1.
//
// The daemon is thin: it accepts connections (one per Ksock), decodes frames
// (protocol/frames.hpp), calls the bus core, writes replies, and carries out
// the core's effects: it drives each Ksock's poll fd and answers blocked
// receives (WAITREAD). It never blocks on a client: every socket is
// non-blocking, output is buffered and flushed on EPOLLOUT, and a client
// whose unread replies pile up is not read from until it catches up.
#pragma once

#include <cstdint>
#include <map>
#include <unordered_map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/bus.hpp"
#include "daemon/access.hpp"
#include "daemon/readiness.hpp"
#include "protocol/frames.hpp"

namespace kbus::daemon {

struct Config {
  std::uint32_t devices = 1;
  std::string dir;
  core::BusLimits limits;
  std::uint32_t max_frame_len = protocol::kMaxFrameLen;
  std::size_t output_high_water = 1u << 20;  // stop reading a client above this
  bool log_ops = false;
  // docs/reliability.md §4 (0 = no limit): Ksocks (connections) per user
  // over all buses; how long a client over output_high_water may go without
  // reading any of its replies before it is cut off.
  std::uint32_t max_ksocks_per_user = 0;  // off by default: docs/decisions.md D16
  std::uint32_t stall_timeout_ms = 30000;
  // docs/reliability.md §5: the bus sockets' owner, group and mode, and the
  // user to become once they exist.
  SocketAccess socket_access;
  std::optional<UserIds> run_as;
  // docs/reliability.md §7: --ready-fd (-1: none); sd_notify is used when
  // $NOTIFY_SOCKET is set.
  int ready_fd = -1;
};

// The socket directory for a daemon or client: $KBUS_DIR, else /run/kbus for
// root, else $XDG_RUNTIME_DIR/kbus, else /tmp/kbus-$UID.
std::string default_dir();

class Daemon {
 public:
  explicit Daemon(Config cfg);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Creates the directory, takes its lock, creates the bus sockets, blocks
  // SIGTERM/SIGINT/SIGHUP into a signalfd, drops root (--user), then says
  // where it serves and signals readiness (docs/reliability.md §7). Returns
  // false (after printing the reason, and signalling nothing) if the daemon
  // cannot start.
  bool start();
  // Serves until SIGTERM, SIGINT or SIGHUP; then notifies STOPPING=1,
  // removes its sockets and lock file and says so. Returns the exit code.
  int run();

 private:
  struct Connection;
  struct BusEntry {
    std::unique_ptr<core::Bus> bus;
    int listen_fd = -1;
    std::string path;
    std::unordered_map<core::KsockId, Connection*> by_ksock;
    std::vector<core::KsockId> touched_spare;  // storage for apply_effects' list
  };

  bool add_bus();
  void accept_on(std::uint32_t bus);
  void on_readable(Connection& c);
  void process_input(Connection& c);
  void dispatch(Connection& c, std::uint32_t op, std::string_view payload);
  void hello(Connection& c, std::string_view payload);
  bool make_poll_fd(Connection& c, core::Bus& bus);
  void apply_effects(BusEntry& b);
  bool complete_wait(Connection& c, core::Bus& bus);
  void update_poll_fd(Connection& c, core::Bus& bus);
  void flush(Connection& c);
  void update_epoll(Connection& c);
  void close_connection(Connection& c, const char* why);
  void log_client(const Connection& c, const std::string& what) const;
  std::string report(bool stats) const;

  Config cfg_;
  int epoll_fd_ = -1;
  int signal_fd_ = -1;
  int lock_fd_ = -1;
  std::vector<BusEntry> buses_;
  std::uint64_t next_conn_id_ = 1;
  std::unordered_map<std::uint64_t, std::unique_ptr<Connection>> conns_;
  std::vector<std::uint64_t> backlog_;  // connections with unprocessed input
  std::vector<std::uint64_t> backlog_turn_;  // the backlog_ being worked through
  std::vector<std::uint64_t> closed_;   // connections to free at the end of the turn
  // docs/reliability.md §4: connections per peer uid, and the connections
  // whose reading is paused (checked against stall_timeout_ms).
  std::map<std::uint32_t, std::uint32_t> per_user_;
  std::map<std::uint64_t, std::int64_t> paused_since_;  // conn id -> ms
  int reserve_fd_ = -1;  // given up to accept (and drop) when out of fds
  int check_stalled();  // cuts off stalled clients; ms to the next check, -1: none
  void log_status() const;
  void shutdown(const char* why);  // removes the sockets and the lock file

  Readiness readiness_;
  std::string lock_path_;
};

}  // namespace kbus::daemon
