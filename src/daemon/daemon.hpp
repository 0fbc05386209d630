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
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <chrono>
#include <unordered_map>
#include <vector>

#include "core/bus.hpp"
#include "core/ledger.hpp"
#include "core/user_quota.hpp"
#include "daemon/access.hpp"
#include "daemon/readiness.hpp"
#include "daemon/runtime_dir.hpp"
#include "protocol/ops.hpp"
#include "util/fd.hpp"
#include "util/signals.hpp"

namespace kbus::daemon {

// --max-ksocks-per-user not given: 1/8 of kbusd's descriptor limit
// (docs/decisions.md D26).
constexpr std::uint32_t kPerUserAuto = UINT32_MAX;

struct Config {
  std::uint32_t devices = 1;
  std::string dir;
  core::BusLimits limits;
  std::uint32_t max_frame_len = protocol::kMaxFrameLen;
  std::size_t output_high_water = 1u << 20;  // stop reading a client above this
  bool log_ops = false;
  // docs/reliability.md §4 (0 = no limit): Ksocks (connections) per user
  // over all buses, counted from accept (kPerUserAuto: derived from the
  // descriptor limit, docs/decisions.md D26); how long a client over
  // output_high_water has to drain its replies back below half of it
  // before it is cut off; how long a new connection has to complete HELLO.
  std::uint32_t max_ksocks_per_user = kPerUserAuto;
  std::uint32_t stall_timeout_ms = 30000;
  std::uint32_t hello_timeout_ms = 5000;
  // docs/reliability.md §4, docs/decisions.md D28: bytes held per user and
  // in all (core/ledger.hpp); members of this group (and root) get
  // ledger.per_privileged and are never refused for the total.
  core::LedgerLimits ledger;
  std::optional<gid_t> privileged_group;
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

  // Creates (or opens) and checks the directory (docs/reliability.md §9),
  // takes its lock, creates the bus sockets, routes
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
  void shutdown(const char* why);  // removes the sockets and the lock file
  void on_event(std::uint64_t tag, std::uint32_t events);
  void apply_effects(BusEntry& b);
  void settle();
  std::string report(bool stats) const;
  void log_status() const;
  // What the budgets refused since the last turn, logged per uid: the
  // first refusal at once, then at most one line per uid every
  // kRefusalLogEvery with the count since its last line.
  void log_refusals();
  void log_client(const Connection& c, const std::string& what) const;
  // "uid U holds N bytes (--max-bytes-per-user B, --max-bytes-total T, all
  // users A)", naming --max-bytes-privileged for a privileged uid: what a
  // refusal over budget says, so the fix is in the message.
  std::string budget_text(std::uint32_t uid) const;
  // The scheduling of docs/reliability.md §4: each ready connection is
  // served at most once per turn, within its budget, from a de-duplicated
  // ready queue.
  void serve(Connection& c);  // connection.cpp
  void queue_ready(Connection& c);
  int check_timers();  // stalls and HELLO timeouts; ms to the next, -1: none

  // listener.cpp
  bool add_bus();
  void accept_on(std::uint32_t bus);
  void refuse_over_quota(util::Fd fd, std::uint32_t bus, pid_t pid, std::uint32_t uid);

  // connection.cpp
  bool read_input(Connection& c);  // false: closed (EOF or error)
  void process_input(Connection& c);
  void flush(Connection& c);
  void update_epoll(Connection& c);
  void close_connection(Connection& c, const char* why);
  int check_stalled();  // cuts off stalled clients; ms to the next check, -1: none
  int check_hello();    // closes connections silent past hello_timeout_ms; the same
  // docs/decisions.md D28: charges c's buffers to its user. Input beyond
  // kFreeInput that the user cannot pay for: false (the caller closes c).
  bool charge_input(Connection& c);
  void charge_output(Connection& c);
  void release_buffers(Connection& c);

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
  KBUS_HANDLER(op_monitor);
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
  KBUS_HANDLER(op_bindings_part);
  KBUS_HANDLER(op_stats_part);
  KBUS_HANDLER(op_shm_ring);
#undef KBUS_HANDLER
  void next_read(Connection& c, BusEntry& be, std::string_view payload, bool wait);
  void send_and_wait(Connection& c, BusEntry& be, std::string_view payload, bool answer_only);
  template <protocol::Op O>
  void report_part(Connection& c, std::string_view payload);
  Result<std::uint32_t> whole_report(Connection& c, bool stats);
  // docs/protocol.md §4.8: the longest BINDINGS/STATS reply, and part.
  static constexpr std::size_t kWholeReportMax = std::size_t{4} << 20;
  static constexpr std::size_t kReportPartMax = 64 * 1024;
  // docs/reliability.md §4: queue insertions one SENDBATCH frame may cause
  // before its remaining messages are left for the client to send again.
  static constexpr std::uint64_t kBatchFanoutPerFrame = 16 * 1024;
  void log_refused_bind(const Connection& c, core::Bus& bus);

  // shm_transport.cpp: the shared-memory receive queues of a bus.
  void shm_before_op(BusEntry& be, std::uint32_t op);
  void shm_freeze_bus(BusEntry& be);  // before anything changes the bus
  void shm_freeze(Connection& c, BusEntry& be);
  void shm_publish(BusEntry& be);  // end of apply_effects
  void shm_mirror(Connection& c, core::Bus& bus);
  void shm_before_close(Connection& c, BusEntry& be);

  Config cfg_;
  util::Fd epoll_fd_;
  RuntimeDir dir_;  // the socket directory, held open, and its lock
  Readiness readiness_;
  util::Fd reserve_fd_;  // given up to accept (and drop) when out of fds
  std::optional<util::SignalPipe> signals_;
  std::vector<BusEntry> buses_;
  std::uint64_t next_conn_id_ = 1;
  std::unordered_map<std::uint64_t, std::unique_ptr<Connection>> conns_;
  std::uint64_t turn_ = 0;                 // turns of the loop so far
  std::vector<std::uint64_t> ready_;       // connections to serve next turn (no repeats)
  std::vector<std::uint64_t> ready_turn_;  // the ready_ being worked through
  std::vector<std::uint64_t> closing_;     // closed: CLOSE and free them in settle()
  // docs/reliability.md §4: connections per peer uid (decided by the core),
  // the connections whose reading is paused (checked against
  // stall_timeout_ms) and those that have not said HELLO yet, in accept
  // order (checked against hello_timeout_ms).
  core::UserQuota quota_;
  std::map<std::uint64_t, std::int64_t> paused_since_;            // conn id -> ms
  std::deque<std::pair<std::int64_t, std::uint64_t>> hello_due_;  // ms, conn id
  // Refusals over the per-user limit: logged at most once a second, with
  // the number not logged since.
  std::int64_t refusal_logged_ms_ = -1;
  std::uint64_t refusals_unlogged_ = 0;
  // For the status line (SIGUSR1): the most frames and input bytes one
  // connection was served in one turn, since the start; connections
  // refused over the per-user limit, closed for want of HELLO, and cut off
  // as stalled.
  std::uint64_t busiest_frames_ = 0;
  std::uint64_t busiest_read_ = 0;
  std::uint64_t refused_per_user_ = 0;
  std::uint64_t hello_timeouts_ = 0;
  std::uint64_t stalls_ = 0;
  core::Ledger ledger_;
  std::map<std::uint32_t, bool> privileged_checked_;  // uid -> in --privileged-group
  struct RefusalLog {
    std::optional<std::chrono::steady_clock::time_point> last;  // none yet
    std::uint64_t since = 0;  // refusals not yet in a line
  };
  std::unordered_map<std::uint32_t, RefusalLog> refusal_log_;
  static constexpr std::chrono::seconds kRefusalLogEvery{10};
};

}  // namespace kbus::daemon
