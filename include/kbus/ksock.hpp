// kbus/ksock.hpp - the C++ client: one Ksock on one bus of kbusd.
//
// A kbus::Ksock is what an open /dev/kbusN file descriptor was in the
// original KBUS (KBUS-SPEC.md §1.2): a connection to the daemon's socket for
// bus N (docs/protocol.md §1). Every operation is one request frame and one
// reply frame, applied by the daemon in order, so when a call returns its
// effect is complete and visible to every other Ksock of the bus.
//
// Each operation comes in two forms (STYLE.md 5):
//   * `op(...)`     throws kbus::Error (a std::system_error whose code is the
//                   original KBUS errno) on failure;
//   * `try_op(...)` returns kbus::Result<T> and never throws.
// The errors each operation can report are those of KBUS-SPEC.md §4-§5 and
// §13.5. In addition, any call can fail with Errc::econnreset if the
// daemon went away (never Errc::epipe: that is KBUS's "not that replier"),
// Errc::eproto if it broke the protocol, and Errc::ebadf on a closed
// (default-constructed or moved-from) Ksock.
//
// A Ksock is a resource: move-only, closed by its destructor (which is the
// original CLOSE, §7.2).
//
// Threads: as an open /dev/kbusN could be, one Ksock may be used by several
// threads at once (docs/decisions.md D22). Each call gets its own reply: one
// thread may be blocked in wait_for_msg() (or wait_for_msgs(),
// send_and_wait(), wait()) while others send, bind, read or ask on the same
// Ksock; a waiter whose wait another thread's call answered early waits on
// until its own timeout. Every message is read by exactly one of the
// threads. While one thread's request() waits for its answer, the others'
// calls wait until it is answered (or its timeout passes): so its answer
// cannot come from another thread of the same Ksock. close() may be called
// from any thread: calls blocked meanwhile end with Errc::ebadf. Moving,
// assigning or destroying a Ksock while another thread uses it is not
// allowed. A message written in several calls (write_data, write_msg, then
// send) is one sequence of the Ksock, as with the original: threads that
// interleave such sequences mix their bytes.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kbus/errors.hpp"
#include "kbus/export.hpp"
#include "kbus/message.hpp"

namespace kbus {

namespace client {
class Connection;  // src/client/connection.hpp
}  // namespace client

// How a Ksock is opened (§1.2-3). The values are the HELLO mode bits.
enum class Mode : std::uint32_t {
  read = 1,        // 'r'  (O_RDONLY): may not write or send a written message
  write = 2,       // O_WRONLY: may not read
  read_write = 3,  // 'rw' (O_RDWR)
};

// The argument of the flag operations MSGONLYONCE, VERBOSE and
// REPORTREPLIERBINDS (§4.6). Other values are passed through unchanged (the
// daemon answers them with EINVAL).
enum class Toggle : std::uint32_t { off = 0, on = 1, query = 0xFFFFFFFF };

// Readiness bits for Ksock::wait (the original KBUS_KSOCK_READABLE/WRITABLE).
namespace ready {
constexpr unsigned kReadable = 1;
constexpr unsigned kWritable = 2;
}  // namespace ready

// How Ksock::write_msg writes a message (§3.4).
enum class Form {
  entire,  // header, name, data and final guard in one WRITE
  pointy,  // header only (pointer fields non-zero); name and data go with SEND
};

// The directory holding the bus sockets (docs/protocol.md §1): $KBUS_DIR,
// else /run/kbus for root, else $XDG_RUNTIME_DIR/kbus, else /tmp/kbus-<uid>.
KBUS_EXPORT std::string default_bus_dir();
// The directory in which Ksock::open looks for bus `bus`: default_bus_dir(),
// except that a user other than root whose directory has no socket for
// that bus falls back to the system bus directory /run/kbus if it has one
// (kbusd.service serves there).
KBUS_EXPORT std::string default_bus_dir(int bus);

class KBUS_EXPORT Ksock {
 public:
  using Timeout = std::chrono::milliseconds;

  // A closed Ksock; every operation on it fails with Errc::ebadf.
  Ksock() noexcept;
  Ksock(Ksock&&) noexcept;
  Ksock& operator=(Ksock&&) noexcept;
  Ksock(const Ksock&) = delete;
  Ksock& operator=(const Ksock&) = delete;
  ~Ksock();

  // OPEN (§4.1): connects to `dir`/kbus<bus> (default_bus_dir(bus) if `dir` is
  // empty) and says HELLO. ENOENT if the bus does not exist (including a
  // negative number, or a socket file with no daemon behind it). EPERM if
  // the directory is not safe to use (docs/reliability.md §9: another
  // user's, writable by others, a symbolic link): nothing is sent there;
  // the reason is written to stderr ("kbus: unsafe bus directory ...") and
  // is the what() of open's exception.
  static Ksock open(int bus, Mode mode = Mode::read_write, const std::string& dir = {});
  static Result<Ksock> try_open(int bus, Mode mode = Mode::read_write,
                                const std::string& dir = {}) noexcept;

  // CLOSE (§7.2). Never fails; closing a closed Ksock does nothing. Like the
  // original's close(), it returns once the daemon has carried out the
  // release sequence (statuses sent, bindings gone), so its effects are
  // visible to every other Ksock; it waits at most 5 s for that. Other
  // threads' calls on the Ksock, blocked or not, end with Errc::ebadf.
  void close() noexcept;
  // Lets go of the Ksock without CLOSE: closes this process's descriptors of
  // the connection but does not shut it down, so a process that shares them
  // (the parent, in the child of fork()) keeps the Ksock open and working.
  // The Ksock is closed (as far as this object goes) afterwards.
  void abandon() noexcept;
  bool is_open() const noexcept;

  // Facts learnt at open (no round trip).
  std::uint32_t id() const noexcept;      // Ksock id from HELLO (0 if closed)
  std::uint32_t bus() const noexcept;     // bus number (0 if closed)
  Mode mode() const noexcept;
  const std::string& path() const noexcept;  // the bus socket path
  // The poll fd (docs/protocol.md §3.1): readable iff the message queue is
  // non-empty; writable iff open for writing and no ALL_OR_WAIT send is
  // pending. Never read or write it. -1 if closed.
  int fileno() const noexcept;
  // "Ksock device 0, id 3, mode read/write" (the Python str() form, §11.2),
  // or "Ksock (closed)".
  std::string to_string() const;

  // Waits with poll() on the poll fd until one of `what` (ready::kReadable,
  // ready::kWritable) holds, or the timeout (none = forever) expires.
  // Returns the ready bits that hold (0 on timeout).
  unsigned wait(unsigned what, std::optional<Timeout> timeout = std::nullopt);
  Result<unsigned> try_wait(unsigned what, std::optional<Timeout> timeout = std::nullopt) noexcept;
  // As try_wait, but a signal caught meanwhile ends the wait with EINTR
  // (try_wait waits on). For the C API (src/capi), whose waits are
  // interrupted by signals as the original's poll() was.
  Result<unsigned> try_wait_interruptible(unsigned what,
                                          std::optional<Timeout> timeout = std::nullopt) noexcept;

  // ---- the original operations (§4.5, §4.6) ----

  // RESET: a no-op round trip. Returning proves every earlier operation of
  // this Ksock was applied ("settle").
  void reset();
  Result<void> try_reset() noexcept;

  // BIND / UNBIND. EBADMSG, ENAMETOOLONG, EADDRINUSE, EAGAIN; UNBIND: EINVAL.
  void bind(std::string_view name, bool replier = false);
  Result<void> try_bind(std::string_view name, bool replier = false) noexcept;
  void unbind(std::string_view name, bool replier = false);
  Result<void> try_unbind(std::string_view name, bool replier = false) noexcept;

  // KSOCKID: this Ksock's id, asked of the daemon.
  std::uint32_t ksock_id();
  Result<std::uint32_t> try_ksock_id() noexcept;

  // REPLIER: the id of the Ksock bound as replier to exactly this name
  // string (no wildcard resolution), or nullopt. ENAMETOOLONG.
  std::optional<std::uint32_t> find_replier(std::string_view name);
  Result<std::optional<std::uint32_t>> try_find_replier(std::string_view name) noexcept;

  // NEXTMSG: makes the head of the queue the current read message and
  // returns its entire length (0 if the queue was empty).
  std::uint32_t next_msg();
  Result<std::uint32_t> try_next_msg() noexcept;

  // LENLEFT: bytes of the current read message not yet read.
  std::uint32_t len_left();
  Result<std::uint32_t> try_len_left() noexcept;

  // SEND (§5): sends the message written so far. For a message written with
  // Form::pointy, the name and data kept by write_msg go with it. ENOMSG,
  // EINVAL, EBADMSG, ENOLCK, EADDRNOTAVAIL, ECONNREFUSED, EPIPE, EBUSY,
  // EADDRINUSE (a Request reusing the explicit id of one of this Ksock's
  // Requests still awaiting its answer, docs/decisions.md D13), EAGAIN
  // (then the message is pending; see last_sent() for its id).
  MessageId send();
  Result<MessageId> try_send() noexcept;
  // SEND of a pointy message whose header was written with write_data():
  // `name` and `data` are what its pointers point at now (the original
  // followed them at SEND, §3.4). For the C API (src/capi), which writes the
  // caller's own header; errors as send(). On a retry after EAGAIN use send().
  MessageId send_pointy(std::string_view name, std::string_view data);
  Result<MessageId> try_send_pointy(std::string_view name, std::string_view data) noexcept;

  // DISCARD: drops the message being written or pending. Never fails.
  void discard();
  Result<void> try_discard() noexcept;

  // LASTSENT: the id most recently assigned by SEND ({0,0} before any).
  MessageId last_sent();
  Result<MessageId> try_last_sent() noexcept;

  // MAXMSGS: the queue limit (query), or set it and return the limit now in
  // force (0 = query).
  std::uint32_t max_messages();
  Result<std::uint32_t> try_max_messages() noexcept;
  std::uint32_t set_max_messages(std::uint32_t count);
  Result<std::uint32_t> try_set_max_messages(std::uint32_t count) noexcept;

  // NUMMSGS and UNREPLIEDTO.
  std::uint32_t num_messages();
  Result<std::uint32_t> try_num_messages() noexcept;
  std::uint32_t num_unreplied_to();
  Result<std::uint32_t> try_num_unreplied_to() noexcept;

  // MSGONLYONCE, VERBOSE, REPORTREPLIERBINDS: set (on/off) or query; each
  // returns the value before the call. EINVAL for other values;
  // REPORTREPLIERBINDS also EBUSY.
  bool only_once(Toggle t = Toggle::query);
  Result<bool> try_only_once(Toggle t = Toggle::query) noexcept;
  bool verbose(Toggle t = Toggle::query);
  Result<bool> try_verbose(Toggle t = Toggle::query) noexcept;
  bool report_replier_binds(Toggle t = Toggle::query);
  Result<bool> try_report_replier_binds(Toggle t = Toggle::query) noexcept;

  // MONITOR (kbus extension, docs/decisions.md D25): on makes this Ksock a
  // monitor, which receives a copy of every message its bus sends or makes
  // (Status messages included), in bus order, and takes no part in KBUS
  // (BIND and WRITE answer EBUSY); off makes it ordinary again; query
  // changes nothing. Returns the number of copies a full queue made it miss
  // since the previous call (MAXMSGS sets its queue's length). EBADF if the
  // Ksock cannot read; EBUSY to on if it has bindings, Requests awaiting
  // replies, replies owed or a message being written or sent.
  std::uint32_t monitor(Toggle t = Toggle::query);
  Result<std::uint32_t> try_monitor(Toggle t = Toggle::query) noexcept;

  // NEWDEVICE: creates the next bus and returns its number. EINVAL if 256
  // buses exist.
  std::uint32_t new_device();
  Result<std::uint32_t> try_new_device() noexcept;

  // MAXMSGSIZE: the bus's current limit; set_max_message_size(0) also
  // queries, (1) returns the absolute maximum; else sets it (EINVAL if
  // < 100 or above the absolute maximum) and returns it.
  std::uint32_t max_message_size();
  Result<std::uint32_t> try_max_message_size() noexcept;
  std::uint32_t set_max_message_size(std::uint32_t size);
  Result<std::uint32_t> try_set_max_message_size(std::uint32_t size) noexcept;

  // ---- reading and writing bytes (§4.2, §4.3) ----

  // WRITE: feeds raw bytes to the daemon's message parser; returns the count
  // consumed (all of them). EBADF, EALREADY, EINVAL, ENAMETOOLONG, EBADMSG,
  // EMSGSIZE.
  std::uint32_t write_data(std::string_view bytes);
  Result<std::uint32_t> try_write_data(std::string_view bytes) noexcept;

  // READ: up to max_count further bytes of the current read message; empty
  // at EOF (no current message). EBADF.
  std::string read_data(std::uint32_t max_count);
  Result<std::string> try_read_data(std::uint32_t max_count) noexcept;

  // Writes a whole message without sending it (§3.4). Form::entire writes
  // the entire form; Form::pointy writes only the header (with non-zero
  // pointer fields, the data pointer zero iff there is no data) and keeps
  // name and data for send(), so that header errors appear now and name
  // errors (EBADMSG) at SEND, as with the original's pointy messages.
  void write_msg(const Message& msg, Form form = Form::entire);
  Result<void> try_write_msg(const Message& msg, Form form = Form::entire) noexcept;

  // SENDMSG: writes `msg` (entire form) and sends it, in one round trip.
  MessageId send_msg(const Message& msg);
  Result<MessageId> try_send_msg(const Message& msg) noexcept;

  // NEXTREAD: pops and returns the next message, or nullopt if the queue is
  // empty. EBADF if not open for reading.
  std::optional<Message> read_next_msg();
  Result<std::optional<Message>> try_read_next_msg() noexcept;

  // WAITREAD: waits for the next message, at most `timeout` (none =
  // forever); nullopt on timeout. A timeout is implemented as
  // docs/protocol.md §4.4 says (RESET), so the Ksock stays usable.
  std::optional<Message> wait_for_msg(std::optional<Timeout> timeout = std::nullopt);
  Result<std::optional<Message>> try_wait_for_msg(
      std::optional<Timeout> timeout = std::nullopt) noexcept;

  // REQUEST: sends `req` (a Request: WANT_A_REPLY set) and waits for its
  // answer - the Reply, or the Status that replaced it - in one round trip.
  // Only that answer is taken from the queue; other queued messages keep
  // their places and order. Errors of the send as send_msg; ETIMEDOUT if
  // `timeout` passed first (the answer, when it comes, stays queued).
  Message request(const Message& req, std::optional<Timeout> timeout = std::nullopt);
  Result<Message> try_request(const Message& req,
                              std::optional<Timeout> timeout = std::nullopt) noexcept;

  // SENDWAIT: send_msg(msg) then wait_for_msg(timeout), in one round trip
  // (a replier's loop: send this reply, get the next request).
  struct SentAndReceived {
    MessageId sent;
    std::optional<Message> received;  // nullopt on timeout
  };
  SentAndReceived send_and_wait(const Message& msg,
                                std::optional<Timeout> timeout = std::nullopt);
  Result<SentAndReceived> try_send_and_wait(const Message& msg,
                                            std::optional<Timeout> timeout = std::nullopt) noexcept;

  // Batch calls: the same operations as send_msg / read_next_msg applied in
  // order, in one round trip. They change the cost, never the meaning.
  struct SendBatch {
    std::vector<MessageId> ids;  // one per message attempted, in order
    Errc error = Errc::ok;       // the failure of the last one attempted, if any
  };
  // Sends msgs in order, stopping at the first failure.
  SendBatch try_send_msgs(const std::vector<Message>& msgs) noexcept;
  std::vector<MessageId> send_msgs(const std::vector<Message>& msgs);  // throws on failure
  // Pops up to max_count messages (their total at most max_bytes, but always
  // one if there is one); empty if the queue is empty.
  std::vector<Message> read_msgs(std::uint32_t max_count, std::uint32_t max_bytes = 1u << 20);
  Result<std::vector<Message>> try_read_msgs(std::uint32_t max_count,
                                             std::uint32_t max_bytes = 1u << 20) noexcept;
  // As read_msgs, but first waits (at most `timeout`) for at least one.
  std::vector<Message> wait_for_msgs(std::uint32_t max_count,
                                     std::optional<Timeout> timeout = std::nullopt,
                                     std::uint32_t max_bytes = 1u << 20);
  Result<std::vector<Message>> try_wait_for_msgs(std::uint32_t max_count,
                                                 std::optional<Timeout> timeout = std::nullopt,
                                                 std::uint32_t max_bytes = 1u << 20) noexcept;

  // The reports of KBUS-SPEC.md §9 for all buses of the daemon.
  std::string bindings_report();
  Result<std::string> try_bindings_report() noexcept;
  std::string stats_report();
  Result<std::string> try_stats_report() noexcept;

 private:
  explicit Ksock(std::unique_ptr<client::Connection> conn) noexcept;
  std::unique_ptr<client::Connection> conn_;
};

}  // namespace kbus
