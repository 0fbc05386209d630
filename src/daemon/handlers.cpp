// daemon/handlers.cpp - one handler per operation, and the blocked receives.
//
// What it owns: the translation of each operation between the wire and the
// core. A handler decodes its request with the operation's codec
// (protocol/ops.hpp; a payload of the wrong size is answered -EFAULT),
// calls the bus core, which decides every KBUS rule and limit, and appends
// the reply the codec encodes. It never writes to a socket and never closes
// a connection (HELLO's refusal aside): dispatch() then applies the core's
// effects (Daemon::apply_effects). Replies whose bytes come from the core
// (READ, NEXTREAD, READBATCH...) are encoded in place: the frame is begun,
// the core appends the bytes, the frame is finished.
//
// A blocked receive (WAITREAD, SENDWAIT, REQUEST, READBATCH with wait) is
// state on the Connection: complete_wait() answers it when the core says
// the Ksock's message is there; answer_wait_early() answers it with status 0
// when the next frame arrives (docs/protocol.md §4.4-§4.6).
//
// Adding an operation: its Op and Codec in protocol/ops.hpp, a handler here
// and its line in the table of handler_for(), a vector and a test.
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "daemon/connection.hpp"
#include "daemon/daemon.hpp"
#include "daemon/event_tags.hpp"

namespace kbus::daemon {

using protocol::Codec;
using protocol::Op;

namespace {

std::int32_t status_of(Errc e) { return -to_errno(e); }

// Decodes O's request; a payload of the wrong size is answered -EFAULT.
template <Op O>
bool decode_or_efault(std::string& out, std::string_view payload,
                      typename Codec<O>::Request& args) {
  if (protocol::decode_request<O>(payload, args)) return true;
  protocol::append_error(out, EFAULT);
  return false;
}

// Replies for a core call returning Result<u32>: status 0 and the value.
template <Op O>
void reply_result(std::string& out, const Result<std::uint32_t>& r) {
  if (r.ok())
    protocol::append_reply<O>(out, 0, {*r});
  else
    protocol::append_error(out, to_errno(r.error()));
}

// A reply whose payload the core appends: begin, let the core append, end.
// `fill` returns Result<u32>: the status, or the error (the bytes dropped).
template <typename Fill>
Result<std::uint32_t> reply_in_place(std::string& out, Fill&& fill) {
  const std::size_t at = protocol::begin_frame(out, 0);
  Result<std::uint32_t> r = fill();
  if (!r.ok()) {
    out.resize(at);
    protocol::append_error(out, to_errno(r.error()));
  } else {
    protocol::set_frame_word(out, at, *r);
    protocol::end_frame(out, at);
  }
  return r;
}

}  // namespace

const Daemon::Handler* Daemon::handler_for(std::uint32_t op) {
  static const auto table = [] {
    std::array<Handler, 81> t{};  // every Op below 81
    auto set = [&t](Op o, Handler h) { t[static_cast<std::uint32_t>(o)] = h; };
    set(Op::kReset, &Daemon::op_reset);
    set(Op::kBind, &Daemon::op_bind);
    set(Op::kUnbind, &Daemon::op_unbind);
    set(Op::kKsockId, &Daemon::op_ksock_id);
    set(Op::kReplier, &Daemon::op_replier);
    set(Op::kNextMsg, &Daemon::op_next_msg);
    set(Op::kLenLeft, &Daemon::op_len_left);
    set(Op::kSend, &Daemon::op_send);
    set(Op::kDiscard, &Daemon::op_discard);
    set(Op::kLastSent, &Daemon::op_last_sent);
    set(Op::kMaxMsgs, &Daemon::op_max_msgs);
    set(Op::kNumMsgs, &Daemon::op_num_msgs);
    set(Op::kUnrepliedTo, &Daemon::op_unreplied_to);
    set(Op::kMsgOnlyOnce, &Daemon::op_msg_only_once);
    set(Op::kVerbose, &Daemon::op_verbose);
    set(Op::kNewDevice, &Daemon::op_new_device);
    set(Op::kReportReplierBinds, &Daemon::op_report_replier_binds);
    set(Op::kMaxMsgSize, &Daemon::op_max_msg_size);
    set(Op::kHello, &Daemon::op_hello_again);
    set(Op::kWrite, &Daemon::op_write);
    set(Op::kRead, &Daemon::op_read);
    set(Op::kSendMsg, &Daemon::op_send_msg);
    set(Op::kNextRead, &Daemon::op_next_read);
    set(Op::kWaitRead, &Daemon::op_wait_read);
    set(Op::kBindings, &Daemon::op_bindings);
    set(Op::kStats, &Daemon::op_stats);
    set(Op::kRequest, &Daemon::op_request);
    set(Op::kSendWait, &Daemon::op_send_wait);
    set(Op::kSendBatch, &Daemon::op_send_batch);
    set(Op::kReadBatch, &Daemon::op_read_batch);
    set(Op::kPollFd, &Daemon::op_poll_fd);
    set(Op::kMonitor, &Daemon::op_monitor);
    set(Op::kBindingsPart, &Daemon::op_bindings_part);
    set(Op::kStatsPart, &Daemon::op_stats_part);
    set(Op::kShmRing, &Daemon::op_shm_ring);
    return t;
  }();
  if (op >= table.size() || table[op] == nullptr) return nullptr;
  return &table[op];
}

void Daemon::dispatch(Connection& c, std::uint32_t op, std::string_view payload) {
  if (c.ksock == 0) {
    if (op != static_cast<std::uint32_t>(Op::kHello)) {
      log_client(c, "first frame is not HELLO: disconnecting");
      close_connection(c, nullptr);
      return;
    }
    hello(c, payload);
    return;
  }
  BusEntry& be = buses_[c.bus];
  if (cfg_.log_ops || be.bus->verbose_on()) {
    log_client(c, std::string("op ") + protocol::op_name(op) + " (" + std::to_string(op) + ")");
  }
  shm_before_op(be, op);  // the clients' read positions, before the bus changes
  if (const Handler* h = handler_for(op))
    (this->**h)(c, be, payload);
  else
    protocol::append_error(c.out, ENOTTY);
  // A receive that blocked in this very operation may be answerable at once.
  if (c.waiting != Connection::Wait::kNone) complete_wait(c, *be.bus);
  apply_effects(be);
}

void Daemon::hello(Connection& c, std::string_view payload) {
  protocol::HelloArgs a;
  Errc err = Errc::ok;
  constexpr std::uint32_t kKnownModes =
      protocol::kModeRead | protocol::kModeWrite | protocol::kModeLazyPollFd;
  if (!protocol::decode_request<Op::kHello>(payload, a))
    err = Errc::efault;
  else if (a.version != protocol::kVersion)
    err = Errc::eproto;
  else if ((a.mode & (protocol::kModeRead | protocol::kModeWrite)) == 0 ||
           (a.mode & ~kKnownModes) != 0 ||
           (a.header_len != kHeaderLen64 && a.header_len != kHeaderLen32))
    err = Errc::einval;
  // docs/reliability.md §4: Ksocks per bus (the core refuses with ENFILE);
  // per user they are refused at accept (listener.cpp).
  BusEntry& be = buses_[c.bus];
  if (err == Errc::ok) {
    core::OpenOptions opts;
    opts.can_read = (a.mode & protocol::kModeRead) != 0;
    opts.can_write = (a.mode & protocol::kModeWrite) != 0;
    opts.header_len = a.header_len;
    opts.pid = c.pid;
    opts.uid = c.uid;
    // docs/reliability.md §4: --privileged-group members get the larger
    // budget (root always has it); looked up once per uid.
    if (cfg_.privileged_group && c.uid != 0 && !privileged_checked_.count(c.uid)) {
      const bool in = user_in_group(c.uid, *cfg_.privileged_group);
      privileged_checked_[c.uid] = in;
      ledger_.set_privileged(c.uid, in);
    }
    auto k = be.bus->try_open(opts);
    if (!k.ok()) {
      err = k.error();
      log_client(c, "bus already has " + std::to_string(cfg_.limits.max_ksocks) +
                        " Ksocks (--max-ksocks-per-bus): refused");
    } else {
      c.ksock = *k;
      be.by_ksock[c.ksock] = &c;
      // Without kModeLazyPollFd the reply carries the poll fd (protocol §3).
      if (!(a.mode & protocol::kModeLazyPollFd) && !make_poll_fd(c, *be.bus)) err = Errc::emfile;
    }
  }
  if (err != Errc::ok) {
    std::string out;
    protocol::append_error(out, to_errno(err));
    ::send(c.fd.get(), out.data(), out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    close_connection(c, nullptr);
    return;
  }
  if (c.poll.made()) c.fd_at.push_back(c.out.size());
  protocol::append_reply<Op::kHello>(c.out, 0, {c.ksock, c.bus});
  flush(c);
}

// Creates the Ksock's poll fd (docs/protocol.md §3.1); false (logged) if
// out of descriptors.
bool Daemon::make_poll_fd(Connection& c, core::Bus& bus) {
  if (c.poll.made()) return true;
  if (!c.poll.make()) {
    log_client(c, std::string("cannot make its poll fd: socketpair: ") + std::strerror(errno));
    return false;
  }
  c.poll.update(bus.readable(c.ksock), bus.writable(c.ksock));
  return true;
}

// Answers c's blocked receive if its message is there; true if answered.
bool Daemon::complete_wait(Connection& c, core::Bus& bus) {
  using Wait = Connection::Wait;
  if (c.waiting == Wait::kNone) return false;
  if (c.waiting != Wait::kAnswer && !bus.readable(c.ksock)) return false;
  const std::size_t at = protocol::begin_frame(c.out, 1);
  if (c.wait_has_id) protocol::put_id(c.out, c.wait_id);
  Result<std::uint32_t> r = 0u;
  switch (c.waiting) {
    case Wait::kNext:
      r = bus.next_read(c.ksock, c.out);
      break;
    case Wait::kAnswer: {
      auto got = bus.take_answer(c.ksock, c.wait_id, c.out);
      r = got.ok() ? Result<std::uint32_t>(*got ? 1u : 0u) : Result<std::uint32_t>(got.error());
      break;
    }
    case Wait::kBatch:
      r = bus.next_read_batch(c.ksock, c.wait_max_count, c.wait_max_bytes, c.out);
      break;
    case Wait::kNone:
      break;
  }
  if (!r.ok() || *r == 0) {
    c.out.resize(at);
    return false;
  }
  protocol::set_frame_word(c.out, at, *r);
  protocol::end_frame(c.out, at);
  c.waiting = Wait::kNone;
  return true;
}

// docs/protocol.md §4.4: a new frame answers the blocked receive: status 0
// and (SENDWAIT, REQUEST) the id sent.
void Daemon::answer_wait_early(Connection& c) {
  if (c.waiting == Connection::Wait::kNone) return;
  if (c.wait_has_id)
    protocol::append_reply<Op::kRequest>(c.out, 0, {c.wait_id, {}});
  else
    protocol::append_reply<Op::kWaitRead>(c.out, 0);
  c.waiting = Connection::Wait::kNone;
}

// --- the handlers, in op order ----------------------------------------------

void Daemon::op_reset(Connection& c, BusEntry&, std::string_view payload) {
  Codec<Op::kReset>::Request a;
  if (decode_or_efault<Op::kReset>(c.out, payload, a)) protocol::append_reply<Op::kReset>(c.out, 0);
}

void Daemon::op_bind(Connection& c, BusEntry& be, std::string_view payload) {
  protocol::BindArgs a;
  if (!decode_or_efault<Op::kBind>(c.out, payload, a)) return;
  const Result<void> r = be.bus->bind(c.ksock, a.is_replier, a.name);
  if (!r.ok() && r.error() == Errc::enomem) log_refused_bind(c, *be.bus);
  protocol::append_reply<Op::kBind>(c.out, r.ok() ? 0 : status_of(r.error()));
}

// docs/decisions.md D28: why the core refused a BIND with ENOMEM.
void Daemon::log_refused_bind(const Connection& c, core::Bus& bus) {
  const std::uint32_t max = bus.limits().max_bindings_per_ksock;
  if (max != 0 && bus.binding_count(c.ksock) >= max) {
    log_client(c, "BIND refused with ENOMEM: the Ksock already has " + std::to_string(max) +
                      " bindings (--max-bindings-per-ksock)");
    return;
  }
  log_client(c, "BIND refused with ENOMEM: " + budget_text(c.uid));
}

void Daemon::op_unbind(Connection& c, BusEntry& be, std::string_view payload) {
  protocol::BindArgs a;
  if (!decode_or_efault<Op::kUnbind>(c.out, payload, a)) return;
  const Result<void> r = be.bus->unbind(c.ksock, a.is_replier, a.name);
  protocol::append_reply<Op::kUnbind>(c.out, r.ok() ? 0 : status_of(r.error()));
}

void Daemon::op_ksock_id(Connection& c, BusEntry&, std::string_view payload) {
  protocol::NoArgs a;
  if (decode_or_efault<Op::kKsockId>(c.out, payload, a))
    protocol::append_reply<Op::kKsockId>(c.out, 0, {c.ksock});
}

void Daemon::op_replier(Connection& c, BusEntry& be, std::string_view payload) {
  protocol::NameArg a;
  if (!decode_or_efault<Op::kReplier>(c.out, payload, a)) return;
  auto r = be.bus->find_replier(a.name);
  if (r.ok())
    protocol::append_reply<Op::kReplier>(c.out, *r ? 1 : 0, {*r});
  else
    protocol::append_error(c.out, to_errno(r.error()));
}

void Daemon::op_next_msg(Connection& c, BusEntry& be, std::string_view payload) {
  protocol::NoArgs a;
  if (!decode_or_efault<Op::kNextMsg>(c.out, payload, a)) return;
  const std::uint32_t len = be.bus->next_msg(c.ksock);
  protocol::append_reply<Op::kNextMsg>(c.out, len ? 1 : 0, {len});
}

void Daemon::op_len_left(Connection& c, BusEntry& be, std::string_view payload) {
  protocol::NoArgs a;
  if (decode_or_efault<Op::kLenLeft>(c.out, payload, a))
    protocol::append_reply<Op::kLenLeft>(c.out, 0, {be.bus->len_left(c.ksock)});
}

// docs/protocol.md §4.1: an empty payload is the entire form (or a retry).
void Daemon::op_send(Connection& c, BusEntry& be, std::string_view payload) {
  protocol::RawBytes a;
  if (!decode_or_efault<Op::kSend>(c.out, payload, a)) return;
  const auto s = be.bus->send(
      c.ksock, a.bytes.empty() ? std::nullopt : std::optional<std::string_view>(a.bytes));
  protocol::append_reply<Op::kSend>(c.out, status_of(s.error), {s.id});
}

void Daemon::op_discard(Connection& c, BusEntry& be, std::string_view payload) {
  protocol::NoArgs a;
  if (!decode_or_efault<Op::kDiscard>(c.out, payload, a)) return;
  be.bus->discard(c.ksock);
  protocol::append_reply<Op::kDiscard>(c.out, 0);
}

void Daemon::op_last_sent(Connection& c, BusEntry& be, std::string_view payload) {
  protocol::NoArgs a;
  if (decode_or_efault<Op::kLastSent>(c.out, payload, a))
    protocol::append_reply<Op::kLastSent>(c.out, 0, {be.bus->last_sent(c.ksock)});
}

void Daemon::op_max_msgs(Connection& c, BusEntry& be, std::string_view payload) {
  protocol::U32Arg a;
  if (decode_or_efault<Op::kMaxMsgs>(c.out, payload, a))
    protocol::append_reply<Op::kMaxMsgs>(c.out, 0, {be.bus->max_msgs(c.ksock, a.value)});
}

void Daemon::op_num_msgs(Connection& c, BusEntry& be, std::string_view payload) {
  protocol::NoArgs a;
  if (decode_or_efault<Op::kNumMsgs>(c.out, payload, a))
    protocol::append_reply<Op::kNumMsgs>(c.out, 0, {be.bus->num_msgs(c.ksock)});
}

void Daemon::op_unreplied_to(Connection& c, BusEntry& be, std::string_view payload) {
  protocol::NoArgs a;
  if (decode_or_efault<Op::kUnrepliedTo>(c.out, payload, a))
    protocol::append_reply<Op::kUnrepliedTo>(c.out, 0, {be.bus->unreplied_to(c.ksock)});
}

// MONITOR (D25): the core decides; the copies reach the monitor's queue and
// its poll fd through apply_effects, as any delivery.
void Daemon::op_monitor(Connection& c, BusEntry& be, std::string_view payload) {
  protocol::U32Arg a;
  if (decode_or_efault<Op::kMonitor>(c.out, payload, a))
    reply_result<Op::kMonitor>(c.out, be.bus->monitor(c.ksock, a.value));
}

void Daemon::op_msg_only_once(Connection& c, BusEntry& be, std::string_view payload) {
  protocol::U32Arg a;
  if (decode_or_efault<Op::kMsgOnlyOnce>(c.out, payload, a))
    reply_result<Op::kMsgOnlyOnce>(c.out, be.bus->only_once(c.ksock, a.value));
}

void Daemon::op_verbose(Connection& c, BusEntry& be, std::string_view payload) {
  protocol::U32Arg a;
  if (decode_or_efault<Op::kVerbose>(c.out, payload, a))
    reply_result<Op::kVerbose>(c.out, be.bus->verbose(a.value));
}

// NEWDEVICE (§4.6): one more bus; at most kMaxBuses.
void Daemon::op_new_device(Connection& c, BusEntry&, std::string_view payload) {
  protocol::NoArgs a;
  if (!decode_or_efault<Op::kNewDevice>(c.out, payload, a)) return;
  if (buses_.size() >= kMaxBuses)
    protocol::append_error(c.out, EINVAL);
  else if (!add_bus())
    protocol::append_error(c.out, ENOMEM);
  else
    protocol::append_reply<Op::kNewDevice>(c.out, 0,
                                           {static_cast<std::uint32_t>(buses_.size() - 1)});
}

void Daemon::op_report_replier_binds(Connection& c, BusEntry& be, std::string_view payload) {
  protocol::U32Arg a;
  if (decode_or_efault<Op::kReportReplierBinds>(c.out, payload, a))
    reply_result<Op::kReportReplierBinds>(c.out, be.bus->report_replier_binds(c.ksock, a.value));
}

void Daemon::op_max_msg_size(Connection& c, BusEntry& be, std::string_view payload) {
  protocol::U32Arg a;
  if (decode_or_efault<Op::kMaxMsgSize>(c.out, payload, a))
    reply_result<Op::kMaxMsgSize>(c.out, be.bus->max_msg_size(a.value));
}

// HELLO is the first frame only (docs/protocol.md §3).
void Daemon::op_hello_again(Connection& c, BusEntry&, std::string_view) {
  protocol::append_error(c.out, EINVAL);
}

void Daemon::op_write(Connection& c, BusEntry& be, std::string_view payload) {
  protocol::RawBytes a;
  if (!decode_or_efault<Op::kWrite>(c.out, payload, a)) return;
  auto r = be.bus->write(c.ksock, a.bytes);
  protocol::append_reply<Op::kWrite>(c.out,
                                     r.ok() ? static_cast<std::int32_t>(*r) : status_of(r.error()));
}

void Daemon::op_read(Connection& c, BusEntry& be, std::string_view payload) {
  protocol::U32Arg a;
  if (!decode_or_efault<Op::kRead>(c.out, payload, a)) return;
  (void)reply_in_place(c.out, [&] { return be.bus->read(c.ksock, a.value, c.out); });
}

// docs/protocol.md §4.1: WRITE, then (if it succeeded) SEND.
void Daemon::op_send_msg(Connection& c, BusEntry& be, std::string_view payload) {
  protocol::RawBytes a;
  if (!decode_or_efault<Op::kSendMsg>(c.out, payload, a)) return;
  auto w = be.bus->write(c.ksock, a.bytes);
  if (!w.ok()) {
    protocol::append_reply<Op::kSendMsg>(c.out, status_of(w.error()), {MessageId{}});
    return;
  }
  const auto s = be.bus->send(c.ksock);
  protocol::append_reply<Op::kSendMsg>(c.out, status_of(s.error), {s.id});
}

void Daemon::op_next_read(Connection& c, BusEntry& be, std::string_view payload) {
  next_read(c, be, payload, false);
}

void Daemon::op_wait_read(Connection& c, BusEntry& be, std::string_view payload) {
  next_read(c, be, payload, true);
}

// NEXTREAD, and WAITREAD which holds the reply while the queue is empty
// (docs/protocol.md §4.2, §4.4).
void Daemon::next_read(Connection& c, BusEntry& be, std::string_view payload, bool wait) {
  protocol::NoArgs a;
  if (!decode_or_efault<Op::kNextRead>(c.out, payload, a)) return;
  const std::size_t at = protocol::begin_frame(c.out, 0);
  auto r = be.bus->next_read(c.ksock, c.out);
  if (!r.ok()) {
    c.out.resize(at);
    protocol::append_error(c.out, to_errno(r.error()));
  } else if (*r == 0 && wait) {
    c.out.resize(at);  // answered when a message arrives (apply_effects)
    c.waiting = Connection::Wait::kNext;
    c.wait_has_id = false;
  } else {
    protocol::set_frame_word(c.out, at, *r);
    protocol::end_frame(c.out, at);
  }
}

// BINDINGS and STATS in one reply, for clients older than BINDINGSPART:
// built straight into the reply, and only up to kWholeReportMax bytes
// (docs/protocol.md §4.8); a longer report is -EMSGSIZE, with a log line.
void Daemon::op_bindings(Connection& c, BusEntry&, std::string_view payload) {
  protocol::NoArgs a;
  if (!decode_or_efault<Op::kBindings>(c.out, payload, a)) return;
  (void)reply_in_place(c.out, [&] { return whole_report(c, false); });
}

void Daemon::op_stats(Connection& c, BusEntry&, std::string_view payload) {
  protocol::NoArgs a;
  if (!decode_or_efault<Op::kStats>(c.out, payload, a)) return;
  (void)reply_in_place(c.out, [&] { return whole_report(c, true); });
}

Result<std::uint32_t> Daemon::whole_report(Connection& c, bool stats) {
  const std::size_t start = c.out.size();
  for (const BusEntry& b : buses_) {
    std::uint64_t pos = core::Bus::kReportStart;
    for (;;) {
      const std::size_t room = kWholeReportMax - std::min(kWholeReportMax, c.out.size() - start);
      const bool done = stats ? b.bus->append_stats_part(pos, room, c.out)
                              : b.bus->append_bindings_part(pos, room, c.out);
      if (done) break;
      if (c.out.size() - start >= kWholeReportMax) {
        log_client(c, std::string(stats ? "STATS" : "BINDINGS") + " report longer than " +
                          std::to_string(kWholeReportMax) +
                          " bytes: refused with EMSGSIZE (a newer client reads it in parts)");
        return Errc::emsgsize;
      }
    }
  }
  return static_cast<std::uint32_t>(c.out.size() - start);
}

void Daemon::op_bindings_part(Connection& c, BusEntry&, std::string_view payload) {
  report_part<Op::kBindingsPart>(c, payload);
}

void Daemon::op_stats_part(Connection& c, BusEntry&, std::string_view payload) {
  report_part<Op::kStatsPart>(c, payload);
}

// docs/protocol.md §4.8: one part of the report, at most about
// kReportPartMax bytes, and where the next one starts.
template <Op O>
void Daemon::report_part(Connection& c, std::string_view payload) {
  protocol::ReportPartArgs a;
  if (!decode_or_efault<O>(c.out, payload, a)) return;
  if (a.bus >= buses_.size()) {
    protocol::append_error(c.out, EINVAL);
    return;
  }
  const std::size_t max = std::clamp<std::size_t>(a.max_bytes, 1, kReportPartMax);
  const std::size_t at = protocol::begin_frame(c.out, 0);
  const std::size_t head = c.out.size();
  protocol::put_u32(c.out, 0);  // next_bus and next_pos, set below
  protocol::put_u32(c.out, 0);
  protocol::put_u32(c.out, 0);
  const std::size_t text = c.out.size();
  std::uint32_t bus = a.bus;
  std::uint64_t pos = a.pos;
  while (bus != protocol::kReportDone && c.out.size() - text < max) {
    const core::Bus& b = *buses_[bus].bus;
    const std::size_t room = max - (c.out.size() - text);
    const bool done = O == Op::kStatsPart ? b.append_stats_part(pos, room, c.out)
                                          : b.append_bindings_part(pos, room, c.out);
    if (!done) break;
    pos = protocol::kReportFirst;
    bus = bus + 1 < buses_.size() ? bus + 1 : protocol::kReportDone;
  }
  util::put_u32_at(c.out.data() + head, bus);
  util::put_u32_at(c.out.data() + head + 4, static_cast<std::uint32_t>(pos));
  util::put_u32_at(c.out.data() + head + 8, static_cast<std::uint32_t>(pos >> 32));
  protocol::set_frame_word(c.out, at, static_cast<std::uint32_t>(c.out.size() - text));
  protocol::end_frame(c.out, at);
}

void Daemon::op_request(Connection& c, BusEntry& be, std::string_view payload) {
  send_and_wait(c, be, payload, true);
}

void Daemon::op_send_wait(Connection& c, BusEntry& be, std::string_view payload) {
  send_and_wait(c, be, payload, false);
}

// SENDMSG, then block: REQUEST for this Request's answer, SENDWAIT for the
// next message (docs/protocol.md §4.5). Whether the message sent was a
// Request is the core's answer (SendOutcome::is_request).
void Daemon::send_and_wait(Connection& c, BusEntry& be, std::string_view payload,
                           bool answer_only) {
  protocol::RawBytes a;
  if (!decode_or_efault<Op::kRequest>(c.out, payload, a)) return;
  core::Bus& bus = *be.bus;
  auto fail = [&](Errc e, MessageId id) {
    protocol::append_reply<Op::kRequest>(c.out, status_of(e), {id, {}});
  };
  if (!bus.can_read(c.ksock)) return fail(Errc::ebadf, {});  // it could never receive
  auto w = bus.write(c.ksock, a.bytes);
  if (!w.ok()) return fail(w.error(), {});
  const auto s = bus.send(c.ksock);
  if (s.error != Errc::ok) return fail(s.error, s.id);
  if (answer_only && !s.is_request) return fail(Errc::ok, s.id);  // nothing to wait for
  c.waiting = answer_only ? Connection::Wait::kAnswer : Connection::Wait::kNext;
  c.wait_has_id = true;
  c.wait_id = s.id;  // dispatch() answers it at once if it can
}

// docs/protocol.md §4.6: each item as SENDMSG, in order, stopping at the
// first failure; the framing of all of them is checked first. Once the
// items sent have made kBatchFanoutPerFrame queue insertions (a name bound
// thousands of times), the rest are left unsent with status 0: the client
// sends them again in a new frame, which waits its turn behind the others
// (docs/reliability.md §4).
void Daemon::op_send_batch(Connection& c, BusEntry& be, std::string_view payload) {
  protocol::BatchItems items;
  if (!decode_or_efault<Op::kSendBatch>(c.out, payload, items)) return;
  std::string& out = c.out;
  const std::size_t at = protocol::begin_frame(out, 0);
  protocol::put_u32(out, 0);  // the count, filled in below
  Errc err = Errc::ok;
  std::uint32_t attempted = 0;
  std::string_view m;
  const std::uint64_t work_before = be.bus->fanout();
  while (err == Errc::ok && (attempted == 0 || be.bus->fanout() - work_before < kBatchFanoutPerFrame) &&
         items.next(m)) {
    ++attempted;
    auto w = be.bus->write(c.ksock, m);
    MessageId id;
    if (!w.ok()) {
      err = w.error();
    } else {
      const auto s = be.bus->send(c.ksock);
      err = s.error;
      id = s.id;
    }
    protocol::put_id(out, id);
  }
  util::put_u32_at(out.data() + at + 8, attempted);
  protocol::set_frame_word(out, at, static_cast<std::uint32_t>(status_of(err)));
  protocol::end_frame(out, at);
}

void Daemon::op_read_batch(Connection& c, BusEntry& be, std::string_view payload) {
  protocol::ReadBatchArgs a;
  if (!decode_or_efault<Op::kReadBatch>(c.out, payload, a)) return;
  const std::size_t at = protocol::begin_frame(c.out, 0);
  auto r = be.bus->next_read_batch(c.ksock, a.max_count, a.max_bytes, c.out);
  if (!r.ok()) {
    c.out.resize(at);
    protocol::append_error(c.out, to_errno(r.error()));
  } else if (*r == 0 && a.wait) {
    c.out.resize(at);
    c.waiting = Connection::Wait::kBatch;
    c.wait_has_id = false;
    c.wait_max_count = a.max_count;
    c.wait_max_bytes = a.max_bytes;
  } else {
    protocol::set_frame_word(c.out, at, *r);
    protocol::end_frame(c.out, at);
  }
}

// docs/protocol.md §3.1: the poll fd, made on first request.
void Daemon::op_poll_fd(Connection& c, BusEntry& be, std::string_view payload) {
  protocol::NoArgs a;
  if (!decode_or_efault<Op::kPollFd>(c.out, payload, a)) return;
  if (!make_poll_fd(c, *be.bus)) {
    protocol::append_error(c.out, EMFILE);
  } else {
    c.fd_at.push_back(c.out.size());  // flush() attaches the fd here
    protocol::append_reply<Op::kPollFd>(c.out, 0);
  }
}

}  // namespace kbus::daemon
