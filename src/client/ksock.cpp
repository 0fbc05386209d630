// client/ksock.cpp - kbus::Ksock over the wire protocol (docs/protocol.md §4).
//
// Every operation is written once, as its try_ form: encode the request,
// one round trip through the Connection, decode the reply. The throwing
// forms are `try_x(...).get(what)`, so the two can never disagree. No
// operation prefetches or caches bus state: what a call returns is what the
// daemon said in reply to it.
#include "kbus/ksock.hpp"

#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

#include "client/bus_dir.hpp"
#include "client/connection.hpp"
#include "core/header_layout.hpp"
#include "protocol/ops.hpp"

namespace kbus {

using client::Connection;
using client::ReplyFrame;
using protocol::Op;

namespace {

// Turns any exception escaping an encoder (only std::bad_alloc can) into
// ENOMEM, so that try_ calls really never throw.
template <class F>
auto guarded(F&& f) noexcept -> decltype(f()) {
  try {
    return f();
  } catch (const std::bad_alloc&) {
    return Errc::enomem;
  } catch (...) {
    return Errc::efault;
  }
}

Errc status_errc(std::int32_t status) noexcept { return static_cast<Errc>(-status); }

template <Op O>
using Request = typename protocol::Codec<O>::Request;
template <Op O>
using Reply = typename protocol::Codec<O>::Reply;

// An operation's reply: its status (>= 0) and its value, decoded by the
// operation's codec (protocol/ops.hpp). Views in `value` are valid until
// this thread's next call.
template <Op O>
struct Answer {
  std::int32_t status = 0;
  Reply<O> value;
};

// The reply frame of O decoded: the error of a negative status, EPROTO for
// a payload the codec refuses.
template <Op O>
Result<Answer<O>> answer(Result<ReplyFrame> r) {
  if (!r) return r.error();
  if (r->status < 0) return status_errc(r->status);
  Answer<O> a;
  a.status = r->status;
  if (!protocol::decode_reply<O>(r->payload, a.value)) return Errc::eproto;
  return a;
}

// Sends O's request, encoded by its codec, and decodes the reply.
template <Op O>
Result<Answer<O>> op_call(Connection& c, const Request<O>& args = {}) {
  std::string payload;
  protocol::encode(payload, args);
  return answer<O>(c.call(O, payload));
}

template <Op O>
Result<std::uint32_t> u32_call(Connection& c, const Request<O>& args = {}) {
  auto a = op_call<O>(c, args);
  if (!a) return a.error();
  return a->value.value;
}

template <Op O>
Result<void> void_call(Connection& c, const Request<O>& args = {}) {
  auto a = op_call<O>(c, args);
  if (!a) return a.error();
  return {};
}

template <Op O>
Result<MessageId> id_call(Connection& c, const Request<O>& args = {}) {
  auto a = op_call<O>(c, args);
  if (!a) return a.error();
  return a->value.id;
}

// NEXTREAD / WAITREAD: status 1 + entire message, or 0 and nothing.
template <Op O>
Result<std::optional<Message>> message_reply(Result<ReplyFrame> r, std::uint32_t header_len) {
  auto a = answer<O>(std::move(r));
  if (!a) return a.error();
  if (a->status == 0) return std::optional<Message>{};
  auto m = decode_entire(a->value.bytes, header_len);
  if (!m) return Errc::eproto;
  return std::optional<Message>(std::move(m.value()));
}

// Where the pointer fields of the header lie (KBUS-SPEC.md §3.1).
struct PointerOffsets {
  std::size_t name;
  std::size_t data;
  std::size_t size;
};
PointerOffsets pointer_offsets(std::uint32_t header_len) {
  if (header_len == kHeaderLen64) return {64, 72, 8};
  return {60, 64, 4};
}

void put_pointer(std::string& hdr, std::size_t at, std::size_t size, const void* p) {
  auto v = reinterpret_cast<std::uintptr_t>(p);
  if (size == 8) {
    std::uint64_t v64 = v;
    std::memcpy(hdr.data() + at, &v64, 8);
  } else {
    auto v32 = static_cast<std::uint32_t>(v);
    std::memcpy(hdr.data() + at, &v32, 4);
  }
}

std::optional<client::Clock::time_point> deadline_of(std::optional<Ksock::Timeout> timeout) {
  if (!timeout) return std::nullopt;
  return client::Clock::now() + *timeout;
}

const char* mode_text(Mode m) {
  switch (m) {
    case Mode::read:
      return "read";
    case Mode::write:
      return "write";
    case Mode::read_write:
      return "read/write";
  }
  return "?";
}

}  // namespace


std::string default_bus_dir() { return client::bus_dir_for(-1, client::kSystemBusDir); }

std::string default_bus_dir(int bus) { return client::bus_dir_for(bus, client::kSystemBusDir); }

Ksock::Ksock() noexcept = default;
Ksock::Ksock(std::unique_ptr<Connection> conn) noexcept : conn_(std::move(conn)) {}
Ksock::Ksock(Ksock&&) noexcept = default;
Ksock& Ksock::operator=(Ksock&&) noexcept = default;
Ksock::~Ksock() = default;

namespace {
// Why this thread's last open was refused with EPERM, for Ksock::open.
thread_local std::string t_dir_problem;
}  // namespace

Result<Ksock> Ksock::try_open(int bus, Mode mode, const std::string& dir) noexcept {
  return guarded([&]() -> Result<Ksock> {
    if (bus < 0) return Errc::enoent;
    const std::string where = dir.empty() ? default_bus_dir(bus) : dir;
    // docs/reliability.md §9: never talk to a daemon in a directory that
    // someone else could have put it in (util/dirs.hpp has the rule).
    t_dir_problem = client::bus_dir_problem(where);
    if (!t_dir_problem.empty()) {
      std::fprintf(stderr, "kbus: %s\n", t_dir_problem.c_str());
      return Errc::eperm;
    }
    std::string path = where + "/kbus" + std::to_string(bus);
    auto c = Connection::open(path, static_cast<std::uint32_t>(mode), kNativeHeaderLen);
    if (!c) return c.error();
    return Ksock(std::move(c.value()));
  });
}

Ksock Ksock::open(int bus, Mode mode, const std::string& dir) {
  auto k = try_open(bus, mode, dir);
  if (!k.ok() && k.error() == Errc::eperm && !t_dir_problem.empty())
    throw Error(Errc::eperm, "kbus open: " + t_dir_problem);
  return std::move(k).get("kbus open");
}

// The Connection stays until the Ksock is destroyed or assigned to, so that
// another thread still inside a call finds it, closed (EBADF).
void Ksock::close() noexcept {
  if (conn_) conn_->close();
}
// A forked child's copy: let go of the connection without closing the
// parent's Ksock (src/preload, docs/decisions.md D19).
void Ksock::abandon() noexcept {
  if (conn_) conn_->abandon();
  conn_.reset();
}
bool Ksock::is_open() const noexcept { return conn_ && conn_->is_open(); }
std::uint32_t Ksock::id() const noexcept { return is_open() ? conn_->ksock_id() : 0; }
std::uint32_t Ksock::bus() const noexcept { return is_open() ? conn_->bus() : 0; }
Mode Ksock::mode() const noexcept {
  return is_open() ? static_cast<Mode>(conn_->mode()) : Mode::read_write;
}
const std::string& Ksock::path() const noexcept {
  static const std::string kNone;
  return is_open() ? conn_->path() : kNone;
}
int Ksock::fileno() const noexcept { return is_open() ? conn_->poll_fd() : -1; }

std::string Ksock::to_string() const {
  if (!is_open()) return "Ksock (closed)";
  return "Ksock device " + std::to_string(bus()) + ", id " + std::to_string(id()) + ", mode " +
         mode_text(mode());
}

namespace {
Result<unsigned> wait_on(Connection* conn, unsigned what, std::optional<Ksock::Timeout> timeout,
                         bool interruptible) noexcept {
  if (conn == nullptr) return Errc::ebadf;
  short events = 0;
  if (what & ready::kReadable) events |= POLLIN;
  if (what & ready::kWritable) events |= POLLOUT;
  if (events == 0) return Errc::einval;
  auto revents = conn->poll_ready(events, deadline_of(timeout), interruptible);
  if (!revents) return revents.error();
  unsigned got = 0;
  if (*revents & POLLIN) got |= ready::kReadable;
  if (*revents & POLLOUT) got |= ready::kWritable;
  return got & what;
}
}  // namespace

Result<unsigned> Ksock::try_wait(unsigned what, std::optional<Timeout> timeout) noexcept {
  return wait_on(conn_.get(), what, timeout, false);
}
Result<unsigned> Ksock::try_wait_interruptible(unsigned what,
                                               std::optional<Timeout> timeout) noexcept {
  return wait_on(conn_.get(), what, timeout, true);
}

unsigned Ksock::wait(unsigned what, std::optional<Timeout> timeout) {
  return try_wait(what, timeout).get("kbus wait");
}

// ---- simple operations ----

#define KBUS_CHECK_OPEN() \
  if (!conn_) return Errc::ebadf

Result<void> Ksock::try_reset() noexcept {
  KBUS_CHECK_OPEN();
  return guarded([&] { return void_call<Op::kReset>(*conn_); });
}
void Ksock::reset() { try_reset().get("kbus reset"); }

Result<void> Ksock::try_bind(std::string_view name, bool replier) noexcept {
  KBUS_CHECK_OPEN();
  return guarded([&] { return void_call<Op::kBind>(*conn_, {replier ? 1u : 0u, name}); });
}
void Ksock::bind(std::string_view name, bool replier) { try_bind(name, replier).get("kbus bind"); }

Result<void> Ksock::try_unbind(std::string_view name, bool replier) noexcept {
  KBUS_CHECK_OPEN();
  return guarded([&] { return void_call<Op::kUnbind>(*conn_, {replier ? 1u : 0u, name}); });
}
void Ksock::unbind(std::string_view name, bool replier) {
  try_unbind(name, replier).get("kbus unbind");
}

Result<std::uint32_t> Ksock::try_ksock_id() noexcept {
  KBUS_CHECK_OPEN();
  return guarded([&] { return u32_call<Op::kKsockId>(*conn_); });
}
std::uint32_t Ksock::ksock_id() { return try_ksock_id().get("kbus ksock_id"); }

Result<std::optional<std::uint32_t>> Ksock::try_find_replier(std::string_view name) noexcept {
  KBUS_CHECK_OPEN();
  return guarded([&]() -> Result<std::optional<std::uint32_t>> {
    auto r = op_call<Op::kReplier>(*conn_, {name});
    if (!r) return r.error();
    if (r->status == 0) return std::optional<std::uint32_t>{};
    return std::optional<std::uint32_t>(r->value.value);
  });
}
std::optional<std::uint32_t> Ksock::find_replier(std::string_view name) {
  return try_find_replier(name).get("kbus find_replier");
}

Result<std::uint32_t> Ksock::try_next_msg() noexcept {
  KBUS_CHECK_OPEN();
  return guarded([&] { return u32_call<Op::kNextMsg>(*conn_); });
}
std::uint32_t Ksock::next_msg() { return try_next_msg().get("kbus next_msg"); }

Result<std::uint32_t> Ksock::try_len_left() noexcept {
  KBUS_CHECK_OPEN();
  return guarded([&] { return u32_call<Op::kLenLeft>(*conn_); });
}
std::uint32_t Ksock::len_left() { return try_len_left().get("kbus len_left"); }

Result<MessageId> Ksock::try_send() noexcept {
  KBUS_CHECK_OPEN();
  return guarded([&] {
    // The payload of a pointy message goes with the first SEND only; the
    // daemon ignores it on a retry after EAGAIN.
    std::optional<std::string> payload = conn_->take_pointy();
    return id_call<Op::kSend>(*conn_, {payload ? std::string_view(*payload) : ""});
  });
}
MessageId Ksock::send() { return try_send().get("kbus send"); }

Result<MessageId> Ksock::try_send_pointy(std::string_view name, std::string_view data) noexcept {
  KBUS_CHECK_OPEN();
  conn_->set_pointy(std::nullopt);
  return guarded([&] {
    std::string payload;
    payload.reserve(name.size() + data.size());
    payload.append(name).append(data);
    return id_call<Op::kSend>(*conn_, {payload});
  });
}
MessageId Ksock::send_pointy(std::string_view name, std::string_view data) {
  return try_send_pointy(name, data).get("kbus send");
}

Result<void> Ksock::try_discard() noexcept {
  KBUS_CHECK_OPEN();
  conn_->set_pointy(std::nullopt);
  return guarded([&] { return void_call<Op::kDiscard>(*conn_); });
}
void Ksock::discard() { try_discard().get("kbus discard"); }

Result<MessageId> Ksock::try_last_sent() noexcept {
  KBUS_CHECK_OPEN();
  return guarded([&] { return id_call<Op::kLastSent>(*conn_); });
}
MessageId Ksock::last_sent() { return try_last_sent().get("kbus last_sent"); }

Result<std::uint32_t> Ksock::try_set_max_messages(std::uint32_t count) noexcept {
  KBUS_CHECK_OPEN();
  return guarded([&] { return u32_call<Op::kMaxMsgs>(*conn_, {count}); });
}
std::uint32_t Ksock::set_max_messages(std::uint32_t count) {
  return try_set_max_messages(count).get("kbus set_max_messages");
}
Result<std::uint32_t> Ksock::try_max_messages() noexcept { return try_set_max_messages(0); }
std::uint32_t Ksock::max_messages() { return try_max_messages().get("kbus max_messages"); }

Result<std::uint32_t> Ksock::try_num_messages() noexcept {
  KBUS_CHECK_OPEN();
  return guarded([&] { return u32_call<Op::kNumMsgs>(*conn_); });
}
std::uint32_t Ksock::num_messages() { return try_num_messages().get("kbus num_messages"); }

Result<std::uint32_t> Ksock::try_num_unreplied_to() noexcept {
  KBUS_CHECK_OPEN();
  return guarded([&] { return u32_call<Op::kUnrepliedTo>(*conn_); });
}
std::uint32_t Ksock::num_unreplied_to() {
  return try_num_unreplied_to().get("kbus num_unreplied_to");
}

template <Op O>
static Result<bool> toggle_op(Connection& c, Toggle t) {
  auto r = u32_call<O>(c, {static_cast<std::uint32_t>(t)});
  if (!r) return r.error();
  return *r != 0;
}

Result<bool> Ksock::try_only_once(Toggle t) noexcept {
  KBUS_CHECK_OPEN();
  return guarded([&] { return toggle_op<Op::kMsgOnlyOnce>(*conn_, t); });
}
bool Ksock::only_once(Toggle t) { return try_only_once(t).get("kbus only_once"); }

Result<bool> Ksock::try_verbose(Toggle t) noexcept {
  KBUS_CHECK_OPEN();
  return guarded([&] { return toggle_op<Op::kVerbose>(*conn_, t); });
}
bool Ksock::verbose(Toggle t) { return try_verbose(t).get("kbus verbose"); }

Result<bool> Ksock::try_report_replier_binds(Toggle t) noexcept {
  KBUS_CHECK_OPEN();
  return guarded([&] { return toggle_op<Op::kReportReplierBinds>(*conn_, t); });
}
bool Ksock::report_replier_binds(Toggle t) {
  return try_report_replier_binds(t).get("kbus report_replier_binds");
}

Result<std::uint32_t> Ksock::try_monitor(Toggle t) noexcept {
  KBUS_CHECK_OPEN();
  return guarded([&] { return u32_call<Op::kMonitor>(*conn_, {static_cast<std::uint32_t>(t)}); });
}
std::uint32_t Ksock::monitor(Toggle t) { return try_monitor(t).get("kbus monitor"); }

Result<std::uint32_t> Ksock::try_new_device() noexcept {
  KBUS_CHECK_OPEN();
  return guarded([&] { return u32_call<Op::kNewDevice>(*conn_); });
}
std::uint32_t Ksock::new_device() { return try_new_device().get("kbus new_device"); }

Result<std::uint32_t> Ksock::try_set_max_message_size(std::uint32_t size) noexcept {
  KBUS_CHECK_OPEN();
  return guarded([&] { return u32_call<Op::kMaxMsgSize>(*conn_, {size}); });
}
std::uint32_t Ksock::set_max_message_size(std::uint32_t size) {
  return try_set_max_message_size(size).get("kbus set_max_message_size");
}
Result<std::uint32_t> Ksock::try_max_message_size() noexcept { return try_set_max_message_size(0); }
std::uint32_t Ksock::max_message_size() {
  return try_max_message_size().get("kbus max_message_size");
}

// ---- bytes and messages ----

Result<std::uint32_t> Ksock::try_write_data(std::string_view bytes) noexcept {
  KBUS_CHECK_OPEN();
  conn_->set_pointy(std::nullopt);
  return guarded([&]() -> Result<std::uint32_t> {
    auto r = op_call<Op::kWrite>(*conn_, {bytes});
    if (!r) return r.error();
    return static_cast<std::uint32_t>(r->status);
  });
}
std::uint32_t Ksock::write_data(std::string_view bytes) {
  return try_write_data(bytes).get("kbus write_data");
}

Result<std::string> Ksock::try_read_data(std::uint32_t max_count) noexcept {
  KBUS_CHECK_OPEN();
  return guarded([&]() -> Result<std::string> {
    auto r = op_call<Op::kRead>(*conn_, {max_count});
    if (!r) return r.error();
    if (static_cast<std::size_t>(r->status) != r->value.bytes.size()) return Errc::eproto;
    return std::string(r->value.bytes);
  });
}
std::string Ksock::read_data(std::uint32_t max_count) {
  return try_read_data(max_count).get("kbus read_data");
}

Result<void> Ksock::try_write_msg(const Message& msg, Form form) noexcept {
  KBUS_CHECK_OPEN();
  conn_->set_pointy(std::nullopt);
  return guarded([&]() -> Result<void> {
    const std::uint32_t h = conn_->header_len();
    std::string frame;
    std::size_t at = protocol::begin_frame(frame, static_cast<std::uint32_t>(Op::kWrite));
    if (form == Form::entire) {
      encode_entire(frame, msg.hdr, msg.name, msg.data, h);
      protocol::end_frame(frame, at);
      auto r = answer<Op::kWrite>(conn_->call_frame(frame));
      if (!r) return r.error();
      return {};
    }
    // Pointy: the header alone, its pointer fields non-zero (the data
    // pointer only if there is data); name and data are kept for SEND.
    std::string payload = msg.name + msg.data;
    std::string entire;
    encode_entire(entire, msg.hdr, msg.name, msg.data, h);
    std::string hdr = entire.substr(0, h);
    auto off = pointer_offsets(h);
    put_pointer(hdr, off.name, off.size, payload.data());
    put_pointer(hdr, off.data, off.size,
                msg.data.empty() ? nullptr : payload.data() + msg.name.size());
    frame.append(hdr);
    protocol::end_frame(frame, at);
    auto r = answer<Op::kWrite>(conn_->call_frame(frame));
    if (!r) return r.error();
    conn_->set_pointy(std::move(payload));
    return {};
  });
}
void Ksock::write_msg(const Message& msg, Form form) { try_write_msg(msg, form).get("kbus write_msg"); }

Result<MessageId> Ksock::try_send_msg(const Message& msg) noexcept {
  KBUS_CHECK_OPEN();
  conn_->set_pointy(std::nullopt);
  return guarded([&]() -> Result<MessageId> {
    std::string frame;
    std::size_t at = protocol::begin_frame(frame, static_cast<std::uint32_t>(Op::kSendMsg));
    encode_entire(frame, msg.hdr, msg.name, msg.data, conn_->header_len());
    protocol::end_frame(frame, at);
    // Longer than any message kbusd takes: EMSGSIZE, as it would answer -
    // sent, it would be a frame too long, for which kbusd hangs up.
    auto budget = conn_->frame_budget(frame.size());
    if (!budget) return budget.error();
    if (frame.size() > *budget) return Errc::emsgsize;
    auto r = answer<Op::kSendMsg>(conn_->call_frame(frame));
    if (!r) return r.error();
    return r->value.id;
  });
}
MessageId Ksock::send_msg(const Message& msg) { return try_send_msg(msg).get("kbus send_msg"); }

namespace {
// NEXTREAD through the shared-memory receive queue (docs/protocol.md §7):
// no system call, unless this takes the last message (the poll fd's tokens
// are settled) or kbusd asked to be told (a sender waits for room, or the
// queue holds more than the ring shows: any operation tells it; NUMMSGS).
// nullopt: ask over the socket (no ring, kbusd busy, a message too long
// for a slot).
std::optional<Result<std::optional<Message>>> ring_read(Connection& c) {
  shm::RingReader* ring = c.ring();
  if (ring == nullptr) return std::nullopt;
  thread_local std::string bytes;
  std::uint32_t flags = 0;
  bool last = false;
  switch (ring->take(bytes, flags, last)) {
    case shm::Take::message:
      break;
    case shm::Take::empty: {
      // As NEXTREAD would: ECONNRESET if kbusd has gone (its end of the
      // poll fd closed), else nothing.
      if (c.daemon_gone()) return Result<std::optional<Message>>(Errc::econnreset);
      return Result<std::optional<Message>>(std::optional<Message>{});
    }
    case shm::Take::busy:
    case shm::Take::too_big:
      return std::nullopt;
  }
  if (last && ring->settle_tokens(c.poll_fd())) {
    // A message came while the tokens were taken back: kbusd sends one.
    std::string frame;
    protocol::append_request<Op::kShmRing>(frame, {3});
    auto told = c.call_frame(frame);
    if (!told) return Result<std::optional<Message>>(told.error());
  }
  if ((flags & shm::kNotifyEach) || ((flags & shm::kNotifyWhenEmpty) && last)) {
    auto told = c.call(Op::kNumMsgs);
    if (!told) return Result<std::optional<Message>>(told.error());
  }
  auto m = decode_entire(bytes, c.header_len());
  if (!m) return Result<std::optional<Message>>(Errc::eproto);
  return Result<std::optional<Message>>(std::optional<Message>(std::move(m.value())));
}
}  // namespace

Result<std::optional<Message>> Ksock::try_read_next_msg() noexcept {
  KBUS_CHECK_OPEN();
  return guarded([&]() -> Result<std::optional<Message>> {
    if (auto got = ring_read(*conn_)) return std::move(*got);
    return message_reply<Op::kNextRead>(conn_->call(Op::kNextRead), conn_->header_len());
  });
}
std::optional<Message> Ksock::read_next_msg() {
  return try_read_next_msg().get("kbus read_next_msg");
}

Result<std::optional<Message>> Ksock::try_wait_for_msg(std::optional<Timeout> timeout) noexcept {
  KBUS_CHECK_OPEN();
  return guarded([&]() -> Result<std::optional<Message>> {
    // WAITREAD; a timeout sends RESET (docs/protocol.md §4.4), so the
    // Ksock stays usable. The reply may still bring a message that arrived
    // meanwhile.
    // With the shared-memory queue: take, or wait for its tokens.
    const auto deadline = deadline_of(timeout);
    while (auto got = ring_read(*conn_)) {
      if (!*got || (*got)->has_value()) return std::move(*got);
      auto ready = conn_->poll_ready(POLLIN, deadline);
      if (!ready) return ready.error();
      if (*ready == 0) return std::optional<Message>{};  // timed out
    }
    std::string frame;
    protocol::append_request<Op::kWaitRead>(frame);
    return message_reply<Op::kWaitRead>(
        conn_->call_held(frame, client::Held::wait, deadline), conn_->header_len());
  });
}
std::optional<Message> Ksock::wait_for_msg(std::optional<Timeout> timeout) {
  return try_wait_for_msg(timeout).get("kbus wait_for_msg");
}

namespace {

// A frame whose reply may be held by the daemon until something arrives
// (REQUEST, SENDWAIT, READBATCH with wait): its final reply, a copy of the
// payload (Connection::call_held: a timeout sends RESET, which answers the
// blocked frame at once, docs/protocol.md §4.4).
struct HeldReply {
  std::int32_t status = 0;
  std::string payload;
};
Result<HeldReply> held_call(Connection& conn, std::string_view frame, client::Held kind,
                            std::optional<Ksock::Timeout> timeout) {
  auto budget = conn.frame_budget(frame.size());  // see try_send_msg
  if (!budget) return budget.error();
  if (frame.size() > *budget) return Errc::emsgsize;
  auto r = conn.call_held(frame, kind, deadline_of(timeout));
  if (!r) return r.error();
  return HeldReply{r->status, std::string(r->payload)};
}

// The frame of an operation whose request is one message (RawBytes),
// encoded in place.
template <Op O>
std::string message_frame(const Message& msg, std::uint32_t header_len) {
  static_assert(std::is_same_v<Request<O>, protocol::RawBytes>);
  std::string frame;
  const std::size_t at = protocol::begin_frame(frame, static_cast<std::uint32_t>(O));
  encode_entire(frame, msg.hdr, msg.name, msg.data, header_len);
  protocol::end_frame(frame, at);
  return frame;
}

// Splits concatenated entire messages.
Result<std::vector<Message>> split_messages(std::string_view bytes, std::uint32_t count,
                                            std::uint32_t header_len) {
  std::vector<Message> out;
  out.reserve(count);
  for (std::uint32_t i = 0; i < count; ++i) {
    if (bytes.size() < header_len) return Errc::eproto;
    const std::uint64_t len = core::entire_len_at(bytes.data(), header_len);
    if (len > bytes.size()) return Errc::eproto;
    auto m = decode_entire(bytes.substr(0, len), header_len);
    if (!m) return Errc::eproto;
    out.push_back(std::move(m.value()));
    bytes.remove_prefix(len);
  }
  if (!bytes.empty()) return Errc::eproto;
  return out;
}


}  // namespace

Result<Message> Ksock::try_request(const Message& req, std::optional<Timeout> timeout) noexcept {
  KBUS_CHECK_OPEN();
  if (!(req.hdr.flags & flag::kWantAReply)) return Errc::einval;  // not a Request
  conn_->set_pointy(std::nullopt);
  return guarded([&]() -> Result<Message> {
    auto r = held_call(*conn_, message_frame<Op::kRequest>(req, conn_->header_len()),
                       client::Held::request, timeout);
    if (!r) return r.error();
    protocol::IdBytesValue v;
    if (!protocol::decode_reply<Op::kRequest>(r->payload, v)) return Errc::eproto;
    if (r->status < 0) return status_errc(r->status);
    if (r->status == 0) return Errc::etimedout;  // the answer will stay queued
    auto m = decode_entire(v.bytes, conn_->header_len());
    if (!m) return Errc::eproto;
    return std::move(m.value());
  });
}
Message Ksock::request(const Message& req, std::optional<Timeout> timeout) {
  return try_request(req, timeout).get("kbus request");
}

Result<Ksock::SentAndReceived> Ksock::try_send_and_wait(const Message& msg,
                                                        std::optional<Timeout> timeout) noexcept {
  KBUS_CHECK_OPEN();
  conn_->set_pointy(std::nullopt);
  return guarded([&]() -> Result<SentAndReceived> {
    auto r = held_call(*conn_, message_frame<Op::kSendWait>(msg, conn_->header_len()),
                       client::Held::send_wait, timeout);
    if (!r) return r.error();
    protocol::IdBytesValue v;
    if (!protocol::decode_reply<Op::kSendWait>(r->payload, v)) return Errc::eproto;
    if (r->status < 0) return status_errc(r->status);
    SentAndReceived out;
    out.sent = v.id;
    if (r->status == 1) {
      auto m = decode_entire(v.bytes, conn_->header_len());
      if (!m) return Errc::eproto;
      out.received = std::move(m.value());
    }
    return out;
  });
}
Ksock::SentAndReceived Ksock::send_and_wait(const Message& msg, std::optional<Timeout> timeout) {
  return try_send_and_wait(msg, timeout).get("kbus send_and_wait");
}

Ksock::SendBatch Ksock::try_send_msgs(const std::vector<Message>& msgs) noexcept {
  SendBatch out;
  if (!conn_) {
    out.error = Errc::ebadf;
    return out;
  }
  conn_->set_pointy(std::nullopt);
  auto r = guarded([&]() -> Result<void> {
    // As many messages per SENDBATCH frame as fit in a frame kbusd accepts
    // (Connection::frame_budget); a message too long for any frame is
    // EMSGSIZE (with no id), as kbusd would answer it.
    std::string frame, item;
    std::size_t in_frame = 0;
    std::size_t at = protocol::begin_frame(frame, static_cast<std::uint32_t>(Op::kSendBatch));
    auto flush = [&]() -> Result<void> {
      for (;;) {
        protocol::end_frame(frame, at);
        auto rep = conn_->call_frame(frame);
        if (!rep) return rep.error();
        protocol::BatchIdsValue v;
        if (!protocol::decode_reply<Op::kSendBatch>(rep->payload, v)) {
          // EFAULT and friends come without ids.
          if (rep->status < 0 && rep->payload.empty()) return status_errc(rep->status);
          return Errc::eproto;
        }
        for (std::uint32_t i = 0; i < v.count; ++i) out.ids.push_back(v.id(i));
        if (rep->status < 0) return status_errc(rep->status);
        if (v.count > in_frame || (v.count == 0 && in_frame > 0)) return Errc::eproto;
        if (v.count == in_frame) break;
        // docs/protocol.md §4.6: kbusd bounds the work of one frame and
        // left the rest unsent: send them again, in order, in a new frame.
        protocol::BatchItems left{std::string_view(frame).substr(at + 8), 0};
        std::string_view skip;
        for (std::uint32_t i = 0; i < v.count; ++i) (void)left.next(skip);
        std::string again;
        const std::size_t again_at =
            protocol::begin_frame(again, static_cast<std::uint32_t>(Op::kSendBatch));
        again.append(left.items);
        frame.swap(again);
        at = again_at;
        in_frame -= v.count;
      }
      frame.clear();
      in_frame = 0;
      at = protocol::begin_frame(frame, static_cast<std::uint32_t>(Op::kSendBatch));
      return {};
    };
    for (const Message& m : msgs) {
      item.clear();
      util::put_u32(item, 0);  // the item's length (protocol::BatchItems), set below
      encode_entire(item, m.hdr, m.name, m.data, conn_->header_len());
      util::put_u32_at(item.data(), static_cast<std::uint32_t>(item.size() - 4));
      auto budget = conn_->frame_budget(frame.size() + item.size());
      if (!budget) return budget.error();
      if (in_frame > 0 && frame.size() + item.size() > *budget) {
        auto f = flush();
        if (!f) return f;
      }
      if (frame.size() + item.size() > *budget) {
        out.ids.push_back(MessageId{});
        return Errc::emsgsize;
      }
      frame += item;
      ++in_frame;
    }
    if (in_frame > 0 || msgs.empty()) return flush();
    return {};
  });
  if (!r) out.error = r.error();
  return out;
}
std::vector<MessageId> Ksock::send_msgs(const std::vector<Message>& msgs) {
  SendBatch b = try_send_msgs(msgs);
  if (b.error != Errc::ok)
    throw Error(b.error, "kbus send_msgs: message " + std::to_string(b.ids.size()) + " of " +
                             std::to_string(msgs.size()) + " failed");
  return std::move(b.ids);
}


Result<std::vector<Message>> Ksock::try_read_msgs(std::uint32_t max_count,
                                                  std::uint32_t max_bytes) noexcept {
  KBUS_CHECK_OPEN();
  if (max_count == 0) return std::vector<Message>{};
  return guarded([&]() -> Result<std::vector<Message>> {
    auto r = op_call<Op::kReadBatch>(*conn_, {max_count, max_bytes, 0});
    if (!r) return r.error();
    return split_messages(r->value.bytes, static_cast<std::uint32_t>(r->status),
                          conn_->header_len());
  });
}
std::vector<Message> Ksock::read_msgs(std::uint32_t max_count, std::uint32_t max_bytes) {
  return try_read_msgs(max_count, max_bytes).get("kbus read_msgs");
}

Result<std::vector<Message>> Ksock::try_wait_for_msgs(std::uint32_t max_count,
                                                      std::optional<Timeout> timeout,
                                                      std::uint32_t max_bytes) noexcept {
  KBUS_CHECK_OPEN();
  if (max_count == 0) return std::vector<Message>{};
  return guarded([&]() -> Result<std::vector<Message>> {
    std::string frame;
    protocol::append_request<Op::kReadBatch>(frame, {max_count, max_bytes, 1});
    auto r = held_call(*conn_, frame, client::Held::wait, timeout);
    if (!r) return r.error();
    if (r->status < 0) return status_errc(r->status);
    return split_messages(r->payload, static_cast<std::uint32_t>(r->status), conn_->header_len());
  });
}
std::vector<Message> Ksock::wait_for_msgs(std::uint32_t max_count, std::optional<Timeout> timeout,
                                          std::uint32_t max_bytes) {
  return try_wait_for_msgs(max_count, timeout, max_bytes).get("kbus wait_for_msgs");
}

// docs/protocol.md §4.8: the report in parts (PART, e.g. BINDINGSPART),
// each bounded by kbusd, until it says the report is complete; from a kbusd
// that does not know PART (ENOTTY), the whole report in one reply (WHOLE).
template <Op PART, Op WHOLE>
static Result<std::string> report_call(Connection& c) {
  std::string text;
  protocol::ReportPartArgs a{0, protocol::kReportFirst, 64 * 1024};
  for (;;) {
    auto r = op_call<PART>(c, a);
    if (!r) {
      if (r.error() != Errc::enotty || !text.empty()) return r.error();
      auto whole = op_call<WHOLE>(c);
      if (!whole) return whole.error();
      return std::string(whole->value.bytes);
    }
    text.append(r->value.bytes);
    if (r->value.next_bus == protocol::kReportDone) return text;
    if (r->value.bytes.empty() && r->value.next_bus == a.bus && r->value.next_pos == a.pos)
      return Errc::eproto;  // no progress: a broken daemon
    a.bus = r->value.next_bus;
    a.pos = r->value.next_pos;
  }
}

Result<std::string> Ksock::try_bindings_report() noexcept {
  KBUS_CHECK_OPEN();
  return guarded([&] { return report_call<Op::kBindingsPart, Op::kBindings>(*conn_); });
}
std::string Ksock::bindings_report() { return try_bindings_report().get("kbus bindings_report"); }

Result<std::string> Ksock::try_stats_report() noexcept {
  KBUS_CHECK_OPEN();
  return guarded([&] { return report_call<Op::kStatsPart, Op::kStats>(*conn_); });
}
std::string Ksock::stats_report() { return try_stats_report().get("kbus stats_report"); }

}  // namespace kbus
