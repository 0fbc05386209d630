// daemon/daemon.hpp - kbusd: one epoll loop serving buses 0..N-1.
//
// The daemon is thin: it accepts connections (one per Ksock), decodes frames
// with the per-operation codecs (protocol/ops.hpp), hands each operation to
// its handler, which calls the bus core, and carries out what the core says
// must happen: replies, poll-fd updates and the answers of blocked receives
// (WAITREAD). It never blocks on a client: every socket is non-blocking,
// output is buffered and flushed on EPOLLOUT, and a client whose unread
// replies pile up is not read from until it catches up.
//
// The class is split by job over several files, each opening with what it
// owns (docs/architecture.md has the map):
//   daemon.cpp       the turn: start-up, the event loop, effects, deferred closes
//   listener.cpp     listening sockets, accepting, per-user and fd limits
//   connection.cpp   one connection: buffers, framing, flushing, back-pressure
//   poll_fd.cpp      the Ksock's poll fd (a socket pair the daemon drives)
//   handlers.cpp     one handler per operation, and the blocked receives
//   shm_transport.cpp the shared-memory receive queues (SHMRING; src/shm)
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/bus.hpp"
#include "core/user_quota.hpp"
#include "daemon/access.hpp"
#include "daemon/readiness.hpp"
#include "protocol/ops.hpp"
#include "util/fd.hpp"
#include "util/signals.hpp"

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

// The socket directory for a daemon or client (util/dirs.hpp: one rule for
// both): $KBUS_DIR, else /run/kbus for root, else $XDG_RUNTIME_DIR/kbus,
// else /tmp/kbus-$UID.
std::string default_dir();

// One line on stderr, prefixed "kbusd: ".
void log_line(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

struct Connection;

class Daemon {
 public:
  explicit Daemon(Config cfg);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Creates the directory, takes its lock, creates the bus sockets, routes
  // SIGTERM/SIGINT/SIGHUP/SIGUSR1 into a signal pipe, drops root (--user),
  // then says where it serves and signals readiness (docs/reliability.md
  // §7). Returns false (after printing the reason, and signalling nothing)
  // if the daemon cannot start.
  bool start();
  // Serves until SIGTERM, SIGINT or SIGHUP; then notifies STOPPING=1,
  // removes its sockets and lock file and says so. Returns the exit code.
  int run();

 private:
  struct BusEntry {
    std::unique_ptr<core::Bus> bus;
    util::Fd listen_fd;
    std::string path;
    std::unordered_map<core::KsockId, Connection*> by_ksock;
    std::vector<core::KsockId> touched;  // storage for apply_effects' list
    // daemon/shm_transport.cpp: rings with messages the client may take, and
    // rings frozen during the current piece of work.
    std::vector<Connection*> shm_live;
    std::vector<Connection*> shm_frozen;
  };
  using Handler = void (Daemon::*)(Connection&, BusEntry&, std::string_view);

  // daemon.cpp: start-up and shut-down, the turn.
  bool lock_dir();
  void shutdown(const char* why);  // removes the sockets and the lock file
  void on_event(std::uint64_t tag, std::uint32_t events);
  void apply_effects(BusEntry& b);
  void settle();
  std::string report(bool stats) const;
  void log_status() const;
  void log_client(const Connection& c, const std::string& what) const;

  // listener.cpp
  bool add_bus();
  void accept_on(std::uint32_t bus);

  // connection.cpp
  void on_readable(Connection& c);
  void process_input(Connection& c);
  void flush(Connection& c);
  void update_epoll(Connection& c);
  void close_connection(Connection& c, const char* why);
  int check_stalled();  // cuts off stalled clients; ms to the next check, -1: none

  // handlers.cpp
  void dispatch(Connection& c, std::uint32_t op, std::string_view payload);
  void hello(Connection& c, std::string_view payload);
  bool complete_wait(Connection& c, core::Bus& bus);
  void answer_wait_early(Connection& c);
  bool make_poll_fd(Connection& c, core::Bus& bus);
  static const Handler* handler_for(std::uint32_t op);
#define KBUS_HANDLER(name) void name(Connection& c, BusEntry& be, std::string_view payload)
  KBUS_HANDLER(op_reset);
  KBUS_HANDLER(op_bind);
  KBUS_HANDLER(op_unbind);
  KBUS_HANDLER(op_ksock_id);
  KBUS_HANDLER(op_replier);
  KBUS_HANDLER(op_next_msg);
  KBUS_HANDLER(op_len_left);
  KBUS_HANDLER(op_send);
  KBUS_HANDLER(op_discard);
  KBUS_HANDLER(op_last_sent);
  KBUS_HANDLER(op_max_msgs);
  KBUS_HANDLER(op_num_msgs);
  KBUS_HANDLER(op_unreplied_to);
  KBUS_HANDLER(op_msg_only_once);
  KBUS_HANDLER(op_verbose);
  KBUS_HANDLER(op_new_device);
  KBUS_HANDLER(op_report_replier_binds);
  KBUS_HANDLER(op_max_msg_size);
  KBUS_HANDLER(op_hello_again);
  KBUS_HANDLER(op_write);
  KBUS_HANDLER(op_read);
  KBUS_HANDLER(op_send_msg);
  KBUS_HANDLER(op_next_read);
  KBUS_HANDLER(op_wait_read);
  KBUS_HANDLER(op_bindings);
  KBUS_HANDLER(op_stats);
  KBUS_HANDLER(op_request);
  KBUS_HANDLER(op_send_wait);
  KBUS_HANDLER(op_send_batch);
  KBUS_HANDLER(op_read_batch);
  KBUS_HANDLER(op_poll_fd);
  KBUS_HANDLER(op_shm_ring);
#undef KBUS_HANDLER
  void next_read(Connection& c, BusEntry& be, std::string_view payload, bool wait);
  void send_and_wait(Connection& c, BusEntry& be, std::string_view payload, bool answer_only);

  // shm_transport.cpp: the shared-memory receive queues of a bus.
  void shm_before_op(BusEntry& be, std::uint32_t op);
  void shm_freeze_bus(BusEntry& be);  // before anything changes the bus
  void shm_freeze(Connection& c, BusEntry& be);
  void shm_publish(BusEntry& be);  // end of apply_effects
  void shm_mirror(Connection& c, core::Bus& bus);
  void shm_before_close(Connection& c, BusEntry& be);

  Config cfg_;
  util::Fd epoll_fd_;
  util::Fd lock_fd_;
  std::string lock_path_;
  Readiness readiness_;
  util::Fd reserve_fd_;  // given up to accept (and drop) when out of fds
  std::optional<util::SignalPipe> signals_;
  std::vector<BusEntry> buses_;
  std::uint64_t next_conn_id_ = 1;
  std::unordered_map<std::uint64_t, std::unique_ptr<Connection>> conns_;
  std::vector<std::uint64_t> backlog_;       // connections with unprocessed input
  std::vector<std::uint64_t> backlog_turn_;  // the backlog_ being worked through
  std::vector<std::uint64_t> closing_;       // closed: CLOSE and free them in settle()
  // docs/reliability.md §4: connections per peer uid (decided by the core),
  // and the connections whose reading is paused (checked against
  // stall_timeout_ms).
  core::UserQuota quota_;
  std::map<std::uint64_t, std::int64_t> paused_since_;  // conn id -> ms
};

}  // namespace kbus::daemon
