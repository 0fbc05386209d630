// The bus core: KBUS-SPEC.md §1-§9 in one single-threaded state machine.
// Section numbers in comments refer to KBUS-SPEC.md.
//
// Cost: kbusd calls this for every frame, so steady traffic allocates only
// the one MessageBody of each message sent (WriteParser writes the name and
// data straight into it; every queue shares it). Queues are ring buffers,
// the outstanding-request sets and the owed index reuse their nodes
// (NodePool), and per-call scratch vectors are members. A request/reply
// round trip makes two allocations, an announcement one
// (bench/core_send.cpp counts them).
#include "core/bus.hpp"

#include <algorithm>
#include <iterator>
#include <cstdio>
#include <cstdlib>

#include "core/names.hpp"

namespace kbus::core {

namespace {

constexpr std::uint32_t kQuery = 0xFFFFFFFF;

[[noreturn]] void invariant_failed(const char* what) {
  std::fprintf(stderr, "kbus core invariant broken: %s\n", what);
  std::abort();
}
#define KBUS_CHECK(cond) \
  do {                   \
    if (!(cond)) invariant_failed(#cond); \
  } while (0)

}  // namespace

Bus::Bus(std::uint32_t number, BusLimits limits, Ledger* ledger)
    : number_(number), limits_(limits), ledger_(ledger), max_msg_size_(limits.max_msg_size) {}

Bus::~Bus() = default;

Bus::Ksock& Bus::ks(KsockId k) {
  auto it = ksocks_.find(k);
  KBUS_CHECK(it != ksocks_.end());
  return *it->second;
}

const Bus::Ksock& Bus::ks(KsockId k) const {
  auto it = ksocks_.find(k);
  KBUS_CHECK(it != ksocks_.end());
  return *it->second;
}

// §1.5-4, §9.2: the counter holds the next serial to assign (0 on a bus
// never used, and after a wrap); 0 itself is skipped.
MessageId Bus::next_serial() {
  if (next_serial_ == 0) next_serial_ = 1;
  return MessageId{0, next_serial_++};
}

// §5.1: a Ksock's own outstanding requests reserve room in its queue.
// A queue holding max_queued_bytes or more also counts as full, whatever
// MAXMSGS says (docs/reliability.md §4): one Ksock that never reads cannot
// make the daemon hold unbounded memory.
bool Bus::bytes_full(const Ksock& k) const {
  return limits_.max_queued_bytes != 0 && k.queue.bytes() >= limits_.max_queued_bytes;
}
bool Bus::full(const Ksock& k) const {
  return k.queue.size() + k.outstanding.size() >= k.max_msgs || bytes_full(k);
}
bool Bus::full_for_reply(const Ksock& k) const {
  return k.queue.size() + k.outstanding.size() > k.max_msgs || bytes_full(k);
}

// ---------------------------------------------------------------- the ledger
// docs/decisions.md D28: what a Ksock holds is charged to its uid; a user
// who cannot pay for a message makes its Ksocks full for it (§5.1).

// The bytes a queued copy of `body` counts for (CountedQueue::size_of).
std::uint64_t Bus::entry_bytes(const MessageBody& body) {
  return 88 + body.name().size() + body.data().size();
}

namespace {
// The name is kept twice: in the binding and as its index's key.
std::uint64_t binding_bytes(std::string_view name) { return kBindingCost + 2 * name.size(); }
}  // namespace

bool Bus::over_budget(const Ksock& k, std::uint64_t bytes) const {
  if (ledger_ == nullptr || ledger_->fits(k.uid, bytes)) return false;
  ledger_->note_refused(k.uid);
  return true;
}

bool Bus::budgets_fit(const Ksock* addressee, const Ksock* replier,
                      const std::vector<const Binding*>& listeners, std::uint64_t bytes) {
  if (ledger_ == nullptr) return true;
  auto& need = need_;
  need.clear();
  if (addressee) need.emplace_back(addressee->uid, bytes);
  if (replier) need.emplace_back(replier->uid, bytes);
  for (const Binding* b : listeners) need.emplace_back(ks(b->ksock).uid, bytes);
  std::sort(need.begin(), need.end());
  for (std::size_t i = 0; i < need.size();) {
    std::uint64_t sum = 0;
    std::size_t j = i;
    for (; j < need.size() && need[j].first == need[i].first; ++j) sum += need[j].second;
    if (!ledger_->fits(need[i].first, sum)) {
      ledger_->note_refused(need[i].first);
      return false;
    }
    i = j;
  }
  return true;
}

void Bus::sync_queue(Ksock& k) {
  if (ledger_) ledger_->adjust(k.uid, Charge::kQueued, k.charged_queue, k.queue.bytes());
}

std::uint64_t Bus::writing_bytes(const Ksock& k) {
  std::uint64_t n = 0;
  if (k.writer.started() && !k.writer.pointy())
    n += 88 + std::uint64_t{k.writer.name_len()} + k.writer.data_len();
  if (k.sending) n += entry_bytes(k.pending.body);
  return n;
}

void Bus::sync_writing(Ksock& k) {
  if (ledger_) ledger_->adjust(k.uid, Charge::kWriting, k.charged_writing, writing_bytes(k));
}

// While a message is delivered its writer pays nothing for it, so that a
// user sending to its own Ksocks is not charged twice for one message.
void Bus::unhold_writing(Ksock& k) {
  if (ledger_) ledger_->adjust(k.uid, Charge::kWriting, k.charged_writing, 0);
}

void Bus::sync_requests(Ksock& k) {
  if (ledger_)
    ledger_->adjust(k.uid, Charge::kRequests, k.charged_requests,
                    k.outstanding.size() * kRequestCost);
}

// §8.4: set-aside events can never be refused; their bytes are charged to
// the listener whatever its budget.
void Bus::add_set_aside(Ksock& k, SetAsideEntry e) {
  const std::uint64_t n = entry_bytes(e.body);
  set_aside_.push_back(std::move(e));
  ++k.set_aside;
  k.charged_set_aside += n;
  if (ledger_) ledger_->charge(k.uid, Charge::kSetAside, n);
}

void Bus::release_all(Ksock& k) {
  if (!ledger_) return;
  ledger_->release(k.uid, Charge::kQueued, k.charged_queue);
  ledger_->release(k.uid, Charge::kSetAside, k.charged_set_aside);
  ledger_->release(k.uid, Charge::kRequests, k.charged_requests);
  ledger_->release(k.uid, Charge::kBindings, k.charged_bindings);
  ledger_->release(k.uid, Charge::kWriting, k.charged_writing);
  k.charged_queue = k.charged_set_aside = k.charged_requests = k.charged_bindings = 0;
  k.charged_writing = 0;
}

void Bus::touch(KsockId k) {
  if (touched_.empty() || touched_.back() != k) touched_.push_back(k);
}

void Bus::take_touched(std::vector<KsockId>& out) {
  // A plain vector (no node allocation per touch); sorted, duplicates and
  // Ksocks closed since dropped here. The two vectors swap storage, so each
  // keeps the capacity it has grown to.
  out.clear();
  out.swap(touched_);
  if (out.size() > 1) {
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
  }
  if (closed_since_take_) {
    std::erase_if(out, [&](KsockId k) { return ksocks_.count(k) == 0; });
    closed_since_take_ = false;
  }
}

std::vector<KsockId> Bus::take_touched() {
  std::vector<KsockId> v;
  take_touched(v);
  return v;
}

void Bus::after_op() {
  if (!pending_senders_.empty()) retry_pending_sends();
}

// ---------------------------------------------------------------- open/close

KsockId Bus::open(const OpenOptions& opts) {
  auto r = try_open(opts);
  KBUS_CHECK(r.ok());
  return *r;
}

Result<KsockId> Bus::try_open(const OpenOptions& opts) {
  if (limits_.max_ksocks != 0 && ksocks_.size() >= limits_.max_ksocks) return Errc::enfile;
  if (next_ksock_ == 0) next_ksock_ = 1;  // §1.2-2: id 0 is never assigned
  auto k = std::make_unique<Ksock>();
  k->id = next_ksock_++;
  k->can_read = opts.can_read;
  k->can_write = opts.can_write;
  k->header_len = opts.header_len;
  k->pid = opts.pid;
  k->uid = opts.uid;
  k->max_msgs = limits_.default_max_msgs;
  k->writer = WriteParser(opts.header_len);
  const KsockId id = k->id;
  ksocks_.emplace(id, std::move(k));
  return id;
}

void Bus::close(KsockId id) {
  auto it = ksocks_.find(id);
  if (it == ksocks_.end()) return;
  Ksock& k = *it->second;
  if (k.monitor) std::erase(monitors_, id);  // D25: no copies from here on
  // §7.2-1: drop the current read message and anything being written or pending.
  k.current.reset();
  k.writer.reset();
  k.sending = false;
  k.pending = {};
  pending_senders_.erase(id);
  // §7.2-2: forget outstanding requests.
  outstanding_pool_.clear(k.outstanding);
  sync_requests(k);
  // §7.2-3: empty the queue; GoneAway for each Request it was to answer.
  while (!k.queue.empty()) {
    QueueEntry e = std::move(k.queue.front());
    k.queue.pop_front();
    if ((e.hdr.flags & flag::kWantYouToReply) && (e.hdr.flags & flag::kWantAReply) &&
        e.hdr.from != id)
      send_status(status_name::kReplierGoneAway, id, e.hdr.from, e.hdr.id, true);
  }
  sync_queue(k);
  // §7.2-4: remove all bindings (each O(log n)); replier unbind events can
  // never fail.
  std::vector<std::uint64_t> seqs;
  bindings_.seqs_of(id, seqs);  // newest first
  std::vector<std::string> replier_names;
  for (std::uint64_t s : seqs) {
    const Binding* b = bindings_.find(s);
    if (b->replier) replier_names.push_back(b->name);
    bindings_.remove(s);
  }
  k.bindings = 0;
  if (report_binds_)
    for (const auto& n : replier_names) send_bind_event_safely(id, n);
  // §7.2-5: discard this Ksock's own set-aside events.
  drop_set_aside(id, std::nullopt);
  // §7.2-6: Ignored for each owed reply, most recently popped first.
  std::vector<Owed> owed = std::move(k.owed);
  k.owed.clear();
  for (auto o = owed.rbegin(); o != owed.rend(); ++o) {
    owed_pool_.erase(owed_index_, {o->request, o->requester});
    if (o->requester != id)
      send_status(status_name::kReplierIgnored, id, o->requester, o->request, true);
  }
  // §7.2-7: the id ceases to exist; its user pays for nothing of it.
  release_all(k);
  ksocks_.erase(id);
  closed_since_take_ = true;
  after_op();
}

// ---------------------------------------------------------------- bindings

Result<void> Bus::bind(KsockId id, std::uint32_t is_replier, std::string_view name) {
  Ksock& k = ks(id);
  if (k.monitor) return Errc::ebusy;     // D25: a monitor never binds
  const bool replier = is_replier != 0;  // §14-27: normalise
  if (name.empty()) return Errc::ebadmsg;
  if (name.size() > kMaxNameLen) return Errc::enametoolong;
  if (!is_valid_name(name)) return Errc::ebadmsg;
  if (replier && name == status_name::kReplierBindEvent) return Errc::ebadmsg;
  if (replier && bindings_.replier_by_string(name)) return Errc::eaddrinuse;
  // docs/decisions.md D28: at most max_bindings_per_ksock bindings, and the
  // binder's user pays for each (§4.5: a resource failure is ENOMEM).
  if (limits_.max_bindings_per_ksock != 0 && k.bindings >= limits_.max_bindings_per_ksock)
    return Errc::enomem;
  const std::uint64_t cost = binding_bytes(name);
  if (over_budget(k, cost)) return Errc::enomem;
  if (replier && report_binds_) {
    // §8.2: the event goes out before the binding exists; EAGAIN if it cannot.
    if (send_bind_event(true, id, name) != Errc::ok) return Errc::eagain;
  }
  bindings_.add(id, replier, name);
  ++k.bindings;
  k.charged_bindings += cost;
  if (ledger_) ledger_->charge(k.uid, Charge::kBindings, cost);
  after_op();
  return {};
}

Result<void> Bus::unbind(KsockId id, std::uint32_t is_replier, std::string_view name) {
  Ksock& k = ks(id);
  const bool replier = is_replier != 0;
  if (name.empty()) return Errc::ebadmsg;
  if (name.size() > kMaxNameLen) return Errc::enametoolong;
  if (!is_valid_name(name)) return Errc::ebadmsg;
  // The most recent identical binding of this Ksock (O(log n)).
  const Binding* found = bindings_.latest_of(id, replier, name);
  if (found == nullptr) return Errc::einval;
  if (replier && report_binds_) {
    // §8.3: sent before anything is removed; on failure nothing changes.
    if (send_bind_event(false, id, name) != Errc::ok) return Errc::eagain;
  }
  const std::uint64_t seq = found->seq;
  bindings_.remove(seq);
  --k.bindings;
  const std::uint64_t cost = binding_bytes(name);
  k.charged_bindings -= cost;
  if (ledger_) ledger_->release(k.uid, Charge::kBindings, cost);
  remove_binding_effects(k, seq, name);
  after_op();
  return {};
}

// §7.1 steps 2-6.
void Bus::remove_binding_effects(Ksock& k, std::uint64_t seq, std::string_view name) {
  const std::size_t before = k.queue.size();
  std::vector<QueueEntry> removed;
  for (auto it = k.queue.begin(); it != k.queue.end();) {
    if (it->via == seq) {
      removed.push_back(std::move(*it));
      it = k.queue.erase(it);
    } else {
      ++it;
    }
  }
  if (!removed.empty()) {
    touch(k.id);
    sync_queue(k);
  }
  for (const QueueEntry& e : removed) {
    // §7.1-3 with §14-1: always tell the requester.
    if ((e.hdr.flags & flag::kWantYouToReply) && (e.hdr.flags & flag::kWantAReply))
      send_status(status_name::kReplierUnbound, k.id, e.hdr.from, e.hdr.id, true);
  }
  // §7.1-5 with §14-17.
  drop_set_aside(k.id, seq);
  if (name == status_name::kReplierBindEvent) drop_set_aside(k.id, std::nullopt);
  // §7.1-6.
  if (k.queue.size() < before && k.set_aside > 0) move_one_set_aside(k);
}

Result<std::uint32_t> Bus::find_replier(std::string_view name) const {
  if (name.empty() || name.size() > kMaxNameLen) return Errc::enametoolong;
  const Binding* b = bindings_.replier_by_string(name);  // §2.4-6: exact string
  return b ? b->ksock : 0u;
}

// ---------------------------------------------------------------- write/send

Result<std::uint32_t> Bus::write(KsockId id, std::string_view bytes) {
  Ksock& k = ks(id);
  if (!k.can_write) return Errc::ebadf;
  if (k.monitor) return Errc::ebusy;     // D25: a monitor never sends
  if (k.sending) return Errc::ealready;  // §4.2-1, §14-2: nothing changes
  k.completed_pending = false;
  if (auto r = k.writer.write(bytes, max_msg_size_); !r) {
    sync_writing(k);
    return r.error();
  }
  // docs/decisions.md D28: the writer's user pays for the message it
  // writes; one beyond kFreeWriting bytes it cannot pay for is dropped,
  // ENOMEM (§4.5). Smaller ones are always taken, so that SEND's own rules
  // (ENOLCK, a full recipient) decide about them.
  if (ledger_ && !ledger_->try_adjust(k.uid, Charge::kWriting, k.charged_writing,
                                      writing_bytes(k), kFreeWriting)) {
    k.writer.reset();
    sync_writing(k);
    return Errc::enomem;
  }
  return static_cast<std::uint32_t>(bytes.size());
}

void Bus::discard(KsockId id) {
  Ksock& k = ks(id);
  k.writer.reset();
  k.completed_pending = false;
  if (k.sending) {
    k.sending = false;
    k.pending = {};
    pending_senders_.erase(id);
    touch(id);
  }
  sync_writing(k);
  after_op();
}

SendOutcome Bus::send(KsockId id, std::optional<std::string_view> pointy_payload) {
  Ksock& k = ks(id);
  SendOutcome r = send_message(k, pointy_payload);
  sync_writing(k);
  return r;
}

SendOutcome Bus::send_message(Ksock& k, std::optional<std::string_view> pointy_payload) {
  const KsockId id = k.id;
  if (k.sending) {
    // §5.5-2: a retry re-runs §5.2 without a new id (ENOLCK check included).
    if ((k.pending.hdr.flags & flag::kWantAReply) && (full(k) || over_budget(k, kRequestCost)))
      return finish_send(k, Errc::enolck, k.pending.hdr.id);
    unhold_writing(k);  // its recipients pay for it now (send() charges it again if it waits)
    return finish_send(k, deliver(k, k.pending), k.pending.hdr.id);
  }
  if (!k.writer.started()) {  // §5.2-1
    if (k.completed_pending) {
      // The pending send was completed by a retry (docs/decisions.md).
      k.completed_pending = false;
      return {Errc::ok, k.completed_id};
    }
    return {Errc::enomsg, {}};
  }
  if (!k.writer.complete()) {  // §5.2-2
    k.writer.reset();
    return {Errc::einval, {}};
  }
  Outgoing out;
  out.hdr = k.writer.header();
  out.hdr.flags &= ~flag::kSynthetic;  // §5.2-3
  out.hdr.extra = 0;
  if (k.writer.pointy()) {  // §5.2-4: capture name and data now
    const std::size_t n = k.writer.name_len();
    const std::size_t d = k.writer.data_len();
    if (!pointy_payload || pointy_payload->size() != n + d) {
      k.writer.reset();
      return {Errc::efault, {}};
    }
    const std::string_view name = pointy_payload->substr(0, n);
    if (!is_valid_name(name) || is_wildcard(name)) {
      k.writer.reset();
      return {Errc::ebadmsg, {}};
    }
    out.body = MessageBody(name, pointy_payload->substr(n));
  } else {
    out.body = k.writer.take_body();  // the writer wrote name and data into it
  }
  k.pending_part = k.writer.part();
  k.pending_pos = k.writer.part_pos();
  k.writer.reset();
  unhold_writing(k);  // its recipients pay for it now
  // §5.2-5: a Request needs a reply slot in the sender's own queue, and
  // its user must pay for it (docs/decisions.md D28).
  if ((out.hdr.flags & flag::kWantAReply) && (full(k) || over_budget(k, kRequestCost)))
    return {Errc::enolck, {}};
  out.hdr.from = id;  // §5.2-6, §14-25: always overwritten
  if (out.hdr.id.network_id == 0) out.hdr.id = next_serial();  // §5.2-7
  k.last_sent = out.hdr.id;
  const Errc e = deliver(k, out);
  const bool is_request = (out.hdr.flags & flag::kWantAReply) != 0;
  if (e == Errc::eagain) k.pending = std::move(out);
  SendOutcome r = finish_send(k, e, k.last_sent);
  r.is_request = is_request;
  return r;
}

SendOutcome Bus::finish_send(Ksock& k, Errc e, MessageId id) {
  if (e == Errc::eagain) {  // §5.2-15: pending; the message is kept
    if (!k.sending) {
      k.sending = true;
      pending_senders_.insert(k.id);
      touch(k.id);
    }
  } else if (k.sending) {
    k.sending = false;
    k.pending = {};
    pending_senders_.erase(k.id);
    touch(k.id);
  }
  after_op();
  return {e, id};
}

// §5.2 steps 8-14. Nothing is delivered unless everything can be.
Errc Bus::deliver(Ksock& sender, const Outgoing& out) {
  const Header& h = out.hdr;
  const std::string_view name = out.body.name();
  const bool is_request = (h.flags & flag::kWantAReply) != 0;
  const bool is_reply = !h.in_reply_to.is_zero();
  const bool all_or_wait = (h.flags & flag::kAllOrWait) != 0;
  const bool all_or_fail = (h.flags & flag::kAllOrFail) != 0;
  const Errc when_full = all_or_wait ? Errc::eagain : Errc::ebusy;
  const std::uint64_t bytes = entry_bytes(out.body);  // one queued copy

  std::vector<const Binding*>& listeners = listeners_;  // step 8
  listeners.clear();
  bindings_.matching_listeners(name, listeners);
  fanout_ += 2 + listeners.size();
  const Binding* replier = is_request ? bindings_.select_replier(name) : nullptr;  // step 11
  if (is_request && !replier) return Errc::eaddrnotavail;  // step 9
  // docs/decisions.md D13: a Request may not reuse the id of one of the
  // sender's Requests still awaiting its answer (only an explicit id can).
  if (is_request && sender.outstanding.count(h.id)) return Errc::eaddrinuse;
  Ksock* addressee = nullptr;
  if (is_reply) {  // step 10
    auto it = ksocks_.find(h.to);
    if (it == ksocks_.end()) return Errc::eaddrnotavail;
    addressee = it->second.get();
    if (!addressee->outstanding.count(h.in_reply_to)) return Errc::econnrefused;
    // docs/decisions.md D10: only the Ksock that holds the Request (popped
    // it with WANT_YOU_TO_REPLY and still owes the answer) may reply.
    auto holder = owed_index_.find({h.in_reply_to, h.to});
    if (holder == owed_index_.end() || holder->second != sender.id) return Errc::econnrefused;
    // §5.1: the Reply uses the slot its Request reserved, and the room the
    // requester paid for it (docs/decisions.md D28).
    if (full_for_reply(*addressee) || over_budget(*addressee, bytes - std::min(bytes, kRequestCost)))
      return when_full;
  }
  Ksock* replier_ksock = nullptr;
  if (replier) {  // step 12
    replier_ksock = &ks(replier->ksock);
    if (h.to != 0 && h.to != replier_ksock->id) return Errc::epipe;
    if (full(*replier_ksock) || over_budget(*replier_ksock, bytes)) return when_full;
  }
  if (all_or_wait || all_or_fail) {  // step 13
    for (const Binding* b : listeners)
      if (full(ks(b->ksock))) return when_full;
    if (!budgets_fit(addressee, replier_ksock, listeners, bytes)) return when_full;
  }
  // Step 14: deliver.
  if (addressee) push(*addressee, h, out.body, PushKind::kSender, 0);
  if (replier_ksock) {
    push(*replier_ksock, h, out.body, PushKind::kReplier, replier->seq);
    if (sender.outstanding.size() == sender.outstanding_size) {  // §4.7 table growth
      sender.outstanding_size += sender.outstanding_size < 16 ? sender.outstanding_size
                                                              : sender.outstanding_size / 8;
    }
    outstanding_pool_.insert(sender.outstanding, h.id);
    sync_requests(sender);
    sender.outstanding_max =
        std::max(sender.outstanding_max, static_cast<std::uint32_t>(sender.outstanding.size()));
  }
  Ksock* l_at = nullptr;  // the Ksock of the previous binding: often the same
  for (const Binding* b : listeners) {
    if (l_at == nullptr || l_at->id != b->ksock) l_at = &ks(b->ksock);
    Ksock& l = *l_at;
    // Without ALL_OR_*, a full listener silently gets nothing (judged at each push).
    if (!all_or_wait && !all_or_fail && (full(l) || over_budget(l, bytes))) continue;
    push(l, h, out.body, PushKind::kListener, b->seq);
  }
  monitor_copy(h, out.body);
  return Errc::ok;
}

// §5.3.
bool Bus::push(Ksock& k, const Header& hdr, const MessageBody& body, PushKind kind,
               std::uint64_t via) {
  if (kind == PushKind::kListener && k.only_once && hdr.id == k.last_pushed) return false;
  QueueEntry e{hdr, body, via};
  if (kind == PushKind::kReplier && (hdr.flags & flag::kWantAReply))
    e.hdr.flags |= flag::kWantYouToReply;
  else
    e.hdr.flags &= ~flag::kWantYouToReply;
  if (hdr.flags & flag::kUrgent)
    k.queue.push_front(std::move(e));
  else
    k.queue.push_back(std::move(e));
  k.last_pushed = hdr.id;
  sync_queue(k);
  if (kind == PushKind::kSender && !hdr.in_reply_to.is_zero()) {
    outstanding_pool_.erase(k.outstanding, hdr.in_reply_to);  // §5.3-5
    sync_requests(k);
    forget_owed(hdr.in_reply_to, k.id);    // §14-10(a)
  }
  touch(k.id);
  return true;
}

void Bus::forget_owed(MessageId request, KsockId requester) {
  auto it = owed_index_.find({request, requester});
  if (it == owed_index_.end()) return;
  auto holder = ksocks_.find(it->second);
  owed_pool_.erase(owed_index_, it);
  if (holder == ksocks_.end()) return;
  auto& owed = holder->second->owed;
  auto o = std::find_if(owed.begin(), owed.end(), [&](const Owed& x) {
    return x.request == request && x.requester == requester;
  });
  if (o != owed.end()) owed.erase(o);
}

// §6.2: the five Status messages go only to the requester, kind SENDER,
// bypassing fullness. `needs_outstanding` applies §14-10(b).
void Bus::send_status(std::string_view name, KsockId from, KsockId requester,
                      MessageId in_reply_to, bool needs_outstanding) {
  // §6.2: a Status for a requester that has gone is not even built, so it
  // uses no serial (as in the original); one that is built uses its serial
  // (§1.5-4) even if §14-10(b) then drops it.
  auto it = ksocks_.find(requester);
  if (it == ksocks_.end()) return;
  Ksock& r = *it->second;
  const MessageId id = next_serial();
  if (needs_outstanding && !r.outstanding.count(in_reply_to)) return;
  Header h;
  h.id = id;
  h.in_reply_to = in_reply_to;
  h.to = requester;
  h.from = from;
  h.flags = flag::kSynthetic;
  const MessageBody body(name, {});
  push(r, h, body, PushKind::kSender, 0);
  monitor_copy(h, body);
}

void Bus::retry_pending_sends() {
  // §5.5-3 as the daemon's stand-in for the poll-time retry. A completed
  // retry only adds messages, so one pass in id order suffices.
  std::vector<KsockId>& senders = retry_senders_;  // a copy: the loop erases from the set
  senders.assign(pending_senders_.begin(), pending_senders_.end());
  for (KsockId id : senders) {
    auto it = ksocks_.find(id);
    if (it == ksocks_.end() || !it->second->sending) continue;
    Ksock& k = *it->second;
    unhold_writing(k);  // its recipients pay for it now
    const Errc e = deliver(k, k.pending);
    if (e == Errc::eagain) {
      sync_writing(k);  // still waiting: its writer pays again
      continue;
    }
    const Outgoing out = std::move(k.pending);
    k.pending = {};
    k.sending = false;
    sync_writing(k);
    pending_senders_.erase(id);
    touch(id);
    k.completed_pending = true;
    k.completed_id = out.hdr.id;
    if (e == Errc::eaddrnotavail)
      send_status(status_name::kReplierDisappeared, 0, id, out.hdr.id, false);
    else if (e != Errc::ok && (out.hdr.flags & flag::kWantAReply))
      send_status(status_name::kErrorSending, 0, id, out.hdr.id, false);
  }
}

// ---------------------------------------------------------------- reading

std::optional<Bus::QueueEntry> Bus::pop_head(Ksock& k) {
  k.current.reset();  // §4.6 NEXTMSG discards any current message
  if (k.queue.empty()) return std::nullopt;
  QueueEntry e = std::move(k.queue.front());
  k.queue.pop_front();
  sync_queue(k);
  touch(k.id);
  if ((e.hdr.flags & flag::kWantYouToReply) && (e.hdr.flags & flag::kWantAReply)) {
    k.owed.push_back({e.hdr.id, e.hdr.from});
    owed_pool_.assign(owed_index_, {e.hdr.id, e.hdr.from}, k.id);
    k.owed_max = std::max(k.owed_max, static_cast<std::uint32_t>(k.owed.size()));
  }
  if (k.set_aside > 0) move_one_set_aside(k);  // §8.4-5
  return e;
}

std::uint32_t Bus::next_msg(KsockId id) {
  Ksock& k = ks(id);
  auto e = pop_head(k);
  if (!e) return 0;
  CurrentRead cur;
  encode_entire(cur.image, e->hdr, e->body.name(), e->body.data(), k.header_len);
  const auto len = static_cast<std::uint32_t>(cur.image.size());
  k.current = std::move(cur);
  after_op();
  return len;
}

Result<std::uint32_t> Bus::next_read(KsockId id, std::string& out) {
  Ksock& k = ks(id);
  if (!k.can_read) return Errc::ebadf;
  auto e = pop_head(k);
  if (!e) return 0u;
  encode_entire(out, e->hdr, e->body.name(), e->body.data(), k.header_len);
  after_op();
  return 1u;
}

Result<std::uint32_t> Bus::next_read_batch(KsockId id, std::uint32_t max_count,
                                           std::uint32_t max_bytes, std::string& out) {
  Ksock& k = ks(id);
  if (!k.can_read) return Errc::ebadf;
  std::uint32_t n = 0;
  std::size_t bytes = 0;
  while (n < max_count && !k.queue.empty()) {
    const QueueEntry& head = k.queue.front();
    const std::uint64_t len =
        entire_len(k.header_len, static_cast<std::uint32_t>(head.body.name().size()),
                   static_cast<std::uint32_t>(head.body.data().size()));
    if (n > 0 && bytes + len > max_bytes) break;
    auto e = pop_head(k);
    encode_entire(out, e->hdr, e->body.name(), e->body.data(), k.header_len);
    bytes += len;
    ++n;
  }
  if (n) after_op();
  return n;
}

Result<bool> Bus::take_answer(KsockId id, MessageId request, std::string& out) {
  Ksock& k = ks(id);
  if (!k.can_read) return Errc::ebadf;
  // The requester's own copy was pushed with kind SENDER: no binding.
  auto it = std::find_if(k.queue.begin(), k.queue.end(), [&](const QueueEntry& e) {
    return e.via == 0 && e.hdr.in_reply_to == request && e.hdr.to == id;
  });
  if (it == k.queue.end()) return false;
  QueueEntry e = std::move(*it);
  k.queue.erase(it);
  sync_queue(k);
  touch(id);
  encode_entire(out, e.hdr, e.body.name(), e.body.data(), k.header_len);
  if (k.set_aside > 0) move_one_set_aside(k);
  after_op();
  return true;
}

bool Bus::peek_queued(KsockId id, std::size_t i, MessageId& msg_id, std::uint32_t& flags,
                      std::string* entire) const {
  const Ksock& k = ks(id);
  if (i >= k.queue.size()) return false;
  auto it = k.queue.begin();
  std::advance(it, static_cast<std::ptrdiff_t>(i));
  const QueueEntry& e = *it;
  msg_id = e.hdr.id;
  flags = e.hdr.flags;
  if (entire) encode_entire(*entire, e.hdr, e.body.name(), e.body.data(), k.header_len);
  return true;
}

Result<std::uint32_t> Bus::read(KsockId id, std::uint32_t max_count, std::string& out) {
  Ksock& k = ks(id);
  if (!k.can_read) return Errc::ebadf;
  if (!k.current) return 0u;
  CurrentRead& c = *k.current;
  const auto n = std::min<std::uint32_t>(max_count, static_cast<std::uint32_t>(c.image.size()) - c.pos);
  out.append(c.image, c.pos, n);
  c.pos += n;
  if (c.pos == c.image.size()) k.current.reset();  // §4.3-4
  return n;
}

std::uint32_t Bus::len_left(KsockId id) const {
  const Ksock& k = ks(id);
  if (!k.current) return 0;
  return static_cast<std::uint32_t>(k.current->image.size()) - k.current->pos;
}

// ---------------------------------------------------------------- small ops

MessageId Bus::last_sent(KsockId id) const { return ks(id).last_sent; }

std::uint32_t Bus::max_msgs(KsockId id, std::uint32_t n) {
  Ksock& k = ks(id);
  if (n != 0) {
    k.max_msgs = n;
    after_op();  // more room may complete a pending send
  }
  return k.max_msgs;
}

std::uint32_t Bus::num_msgs(KsockId id) const {
  const Ksock& k = ks(id);
  return static_cast<std::uint32_t>(k.queue.size()) + k.set_aside;
}

std::uint64_t Bus::queued_bytes(KsockId id) const { return ks(id).queue.bytes(); }

std::uint32_t Bus::unreplied_to(KsockId id) const {
  return static_cast<std::uint32_t>(ks(id).owed.size());
}

std::uint32_t Bus::binding_count(KsockId id) const { return ks(id).bindings; }

Result<std::uint32_t> Bus::flag_op(bool& f, std::uint32_t v) {
  const std::uint32_t prev = f ? 1 : 0;
  if (v == kQuery) return prev;
  if (v > 1) return Errc::einval;
  f = v == 1;
  return prev;
}

Result<std::uint32_t> Bus::only_once(KsockId id, std::uint32_t v) {
  return flag_op(ks(id).only_once, v);
}

Result<std::uint32_t> Bus::verbose(std::uint32_t v) { return flag_op(verbose_, v); }

Result<std::uint32_t> Bus::report_replier_binds(KsockId id, std::uint32_t v) {
  Ksock& k = ks(id);
  auto prev = flag_op(report_binds_, v);
  if (!prev || v != 1) return prev;
  // §4.6: flood the caller with one bind event per existing replier binding,
  // newest first; EBUSY if its queue fills (what was queued stays).
  for (auto it = bindings_.all().rbegin(); it != bindings_.all().rend(); ++it) {
    const Binding& b = it->second;
    if (!b.replier) continue;
    // The event is built (its serial used, §1.5-4) before the push that
    // may find the caller full, as in the original.
    Header h;
    h.id = next_serial();
    h.flags = flag::kSynthetic | flag::kAllOrFail;
    MessageBody body = bind_event_body(true, b.ksock, b.name);
    if (full(k) || over_budget(k, entry_bytes(body))) {
      after_op();
      return Errc::ebusy;
    }
    push(k, h, body, PushKind::kSender, 0);
    monitor_copy(h, body, id);
  }
  after_op();
  return prev;
}

Result<std::uint32_t> Bus::max_msg_size(std::uint32_t v) {
  if (v == 0) return max_msg_size_;
  if (v == 1) return limits_.abs_max_msg_size;
  if (v < 100 || v > limits_.abs_max_msg_size) return Errc::einval;
  max_msg_size_ = v;
  return v;
}

bool Bus::readable(KsockId id) const { return !ks(id).queue.empty(); }
bool Bus::writable(KsockId id) const {
  const Ksock& k = ks(id);
  return k.can_write && !k.sending;
}
bool Bus::sending(KsockId id) const { return ks(id).sending; }
bool Bus::can_read(KsockId id) const { return ks(id).can_read; }

// ---------------------------------------------------------------- bind events

MessageBody Bus::bind_event_body(bool is_bind, KsockId binder, std::string_view name) const {
  return MessageBody(status_name::kReplierBindEvent,
                     encode_replier_bind_event({is_bind, binder, std::string(name)}));
}

// §8.2/8.3: ALL_OR_FAIL delivery of a bind event, as in the original: if
// any matching listener's queue is full, nobody gets it and the caller
// gets EAGAIN (set-aside entries do not count, §8.4-5). With §14-17 a
// listener that holds set-aside events gets them before the new one
// (docs/decisions.md D4): they are moved into its queue while it has room,
// and if some are still left the new event waits behind them. Each such
// listener gives up at least one set-aside entry for the one it may gain,
// so a BIND or UNBIND never makes the set-aside list longer (for a Ksock
// bound several times it may; then the list's capacity is checked).
Errc Bus::send_bind_event(bool is_bind, KsockId binder, std::string_view name,
                          Header* hdr_out) {
  Header h;
  h.id = next_serial();  // built before the attempt: used even on EAGAIN
  h.flags = flag::kSynthetic | flag::kAllOrFail;
  if (hdr_out) *hdr_out = h;
  std::vector<const Binding*> listeners;
  bindings_.matching_listeners(status_name::kReplierBindEvent, listeners);
  auto body = bind_event_body(is_bind, binder, name);
  // docs/decisions.md D28: as for any ALL_OR_FAIL message, every listener's
  // user must be able to pay for its copy.
  if (!budgets_fit(nullptr, nullptr, listeners, entry_bytes(body))) return Errc::eagain;
  std::size_t may_add = 0;   // listener bindings whose Ksock holds set-aside events
  std::set<KsockId> giving;  // ... and those Ksocks, each of which gives up one or more
  for (const Binding* b : listeners) {
    const Ksock& l = ks(b->ksock);
    if (full(l)) return Errc::eagain;
    if (l.set_aside > 0) {
      ++may_add;
      giving.insert(l.id);
    }
  }
  if (may_add > giving.size() &&
      set_aside_.size() - giving.size() + may_add > limits_.set_aside_capacity)
    return Errc::eagain;
  for (const Binding* b : listeners) {
    Ksock& l = ks(b->ksock);
    if (l.set_aside > 0) {
      while (l.set_aside > 0 && !full(l)) move_one_set_aside(l);
      if (l.set_aside > 0 || full(l)) {
        add_set_aside(l, {l.id, b->seq, false, h, body});
        continue;
      }
    }
    push(l, h, body, PushKind::kListener, b->seq);
  }
  monitor_copy(h, body);
  return Errc::ok;
}

// §8.4: an unbind event from CLOSE can never fail.
void Bus::send_bind_event_safely(KsockId binder, std::string_view name) {
  Header h;  // one message: the set-aside copies keep the id of the attempt
  if (send_bind_event(false, binder, name, &h) == Errc::ok) return;
  std::vector<const Binding*> listeners;
  bindings_.matching_listeners(status_name::kReplierBindEvent, listeners);
  if (!lost_mode_ && listeners.size() + set_aside_.size() <= limits_.set_aside_capacity) {
    auto body = bind_event_body(false, binder, name);
    for (const Binding* b : listeners) add_set_aside(ks(b->ksock), {b->ksock, b->seq, false, h, body});
    monitor_copy(h, body);
    return;
  }
  // §8.4-3: lost mode. One UnbindEventsLost message (one id, its serial
  // used whether or not anybody still needs it), set aside for each
  // listener binding whose Ksock has no marker after its last event.
  lost_mode_ = true;
  Header lost;
  lost.id = next_serial();
  lost.flags = flag::kSynthetic;
  const MessageBody lost_body(status_name::kUnbindEventsLost, {});
  for (const Binding* b : listeners) {
    // Skip if this Ksock's newest set-aside entry is already a lost marker.
    bool has_marker = false;
    for (auto it = set_aside_.rbegin(); it != set_aside_.rend(); ++it) {
      if (it->ksock == b->ksock) {
        has_marker = it->lost_marker;
        break;
      }
    }
    if (has_marker) continue;
    add_set_aside(ks(b->ksock), {b->ksock, b->seq, true, lost, lost_body});
  }
  monitor_copy(lost, lost_body);
}

// §8.4-5: the oldest set-aside entry of k goes to the tail of its queue. It
// is a listener delivery (§5.3-1): with only-once on, an entry whose id was
// the last pushed to k is used up without being queued (§5.6).
void Bus::move_one_set_aside(Ksock& k) {
  auto it = std::find_if(set_aside_.begin(), set_aside_.end(),
                         [&](const SetAsideEntry& e) { return e.ksock == k.id; });
  if (it == set_aside_.end()) return;
  const std::uint64_t n = entry_bytes(it->body);
  if (!(k.only_once && it->hdr.id == k.last_pushed)) {
    QueueEntry e{it->hdr, it->body, it->via};
    k.queue.push_back(std::move(e));
    k.last_pushed = it->hdr.id;
    sync_queue(k);
    touch(k.id);
  }
  --k.set_aside;
  k.charged_set_aside -= n;
  if (ledger_) ledger_->release(k.uid, Charge::kSetAside, n);
  set_aside_.erase(it);
  if (set_aside_.empty()) lost_mode_ = false;  // §8.4-4
}

void Bus::drop_set_aside(KsockId id, std::optional<std::uint64_t> via) {
  auto kit = ksocks_.find(id);
  for (auto it = set_aside_.begin(); it != set_aside_.end();) {
    if (it->ksock == id && (!via || it->via == *via)) {
      const std::uint64_t n = entry_bytes(it->body);
      it = set_aside_.erase(it);
      if (kit != ksocks_.end()) {
        Ksock& k = *kit->second;
        --k.set_aside;
        k.charged_set_aside -= n;
        if (ledger_) ledger_->release(k.uid, Charge::kSetAside, n);
      }
    } else {
      ++it;
    }
  }
  if (set_aside_.empty()) lost_mode_ = false;
}

// ---------------------------------------------------------------- reports

void Bus::append_bindings_report(std::string& out) const {
  std::uint64_t pos = kReportStart;
  while (!append_bindings_part(pos, ~std::size_t{0}, out)) {
  }
}

void Bus::append_stats(std::string& out) const {
  std::uint64_t pos = kReportStart;
  while (!append_stats_part(pos, ~std::size_t{0}, out)) {
  }
}

// §9.1, newest binding first; pos: the lines still to come are those of
// bindings with a smaller sequence number.
bool Bus::append_bindings_part(std::uint64_t& pos, std::size_t max_bytes, std::string& out) const {
  const std::size_t start = out.size();
  if (pos == kReportStart)
    out += "# <device> is bound to <Ksock-ID> in <process-PID> as <Replier|Listener> for <message-name>\n";
  const auto& all = bindings_.all();
  auto it = pos == kReportStart ? all.rbegin() : std::make_reverse_iterator(all.lower_bound(pos));
  char line[64];
  for (; it != all.rend(); ++it) {
    if (out.size() > start && out.size() - start >= max_bytes) {
      pos = it->first + 1;  // this one comes first next time
      return false;
    }
    const Binding& b = it->second;
    const Ksock& k = ks(b.ksock);
    std::snprintf(line, sizeof line, "%3u: %8u %8lu  %c  ", number_, b.ksock,
                  static_cast<unsigned long>(k.pid), b.replier ? 'R' : 'L');
    out += line;
    out += b.name;
    out += '\n';
  }
  pos = 0;
  return true;
}

// §9.2, the bus line, then each Ksock, most recent first; pos: the Ksocks
// still to come are those with a smaller id.
bool Bus::append_stats_part(std::uint64_t& pos, std::size_t max_bytes, std::string& out) const {
  const std::size_t start = out.size();
  char buf[256];
  if (pos == kReportStart) {
    std::snprintf(buf, sizeof buf, "dev %2u: next ksock %u next msg %u unsent unbindings %u%s\n",
                  number_, next_ksock_, next_serial_, static_cast<unsigned>(set_aside_.size()),
                  lost_mode_ ? "(gone tragic)" : "");
    out += buf;
  }
  auto it = pos > 0xFFFFFFFFu
                ? ksocks_.rbegin()
                : std::make_reverse_iterator(ksocks_.lower_bound(static_cast<KsockId>(pos)));
  for (; it != ksocks_.rend(); ++it) {
    if (out.size() > start && out.size() - start >= max_bytes) {
      pos = std::uint64_t{it->first} + 1;
      return false;
    }
    const Ksock& k = *it->second;
    std::snprintf(buf, sizeof buf, "    ksock %u last msg %u:%u queue %u of %u\n", k.id,
                  k.last_sent.network_id, k.last_sent.serial_num,
                  static_cast<unsigned>(k.queue.size()), k.max_msgs);
    out += buf;
    const unsigned read_pos = k.current ? k.current->pos : 0;
    const unsigned read_len = k.current ? static_cast<unsigned>(k.current->image.size()) : 0;
    std::snprintf(buf, sizeof buf,
                  "      read byte %u of %u, wrote byte %u of %s (%sfinished), %ssending\n",
                  read_pos, read_len, k.sending ? k.pending_pos : k.writer.part_pos(),
                  WriteParser::part_name(k.sending ? k.pending_part : k.writer.part()),
                  (k.sending || k.writer.complete()) ? "" : "not ", k.sending ? "" : "not ");
    out += buf;
    std::snprintf(buf, sizeof buf,
                  "      outstanding requests %u (size %u, max %u), unsent replies %u (max %u)\n",
                  static_cast<unsigned>(k.outstanding.size()), k.outstanding_size,
                  k.outstanding_max, static_cast<unsigned>(k.owed.size()), k.owed_max);
    out += buf;
  }
  pos = 0;
  return true;
}

void Bus::check_invariants() const {
  std::size_t set_aside_total = 0;
  for (const auto& [id, kp] : ksocks_) {
    const Ksock& k = *kp;
    KBUS_CHECK(k.id == id);
    KBUS_CHECK(k.sending == (pending_senders_.count(id) != 0));
    KBUS_CHECK(!k.sending || k.pending.body);
    std::vector<std::uint64_t> mine;
    bindings_.seqs_of(id, mine);
    KBUS_CHECK(mine.size() == k.bindings);
    std::uint64_t binding_charge = 0;
    for (std::uint64_t s : mine) {
      const Binding* b = bindings_.find(s);
      KBUS_CHECK(b && b->ksock == id);
      KBUS_CHECK(bindings_.latest_of(id, b->replier, b->name)->seq >= s);
      binding_charge += binding_bytes(b->name);
    }
    std::uint64_t bytes = 0;
    for (const QueueEntry& e : k.queue) {
      bytes += e.bytes;
      KBUS_CHECK(e.bytes == decltype(k.queue)::size_of(e));
      KBUS_CHECK(e.body);
      KBUS_CHECK(e.via == 0 || std::find(mine.begin(), mine.end(), e.via) != mine.end());
    }
    KBUS_CHECK(bytes == k.queue.bytes());
    KBUS_CHECK(k.queue.consistent());
    for (const Owed& o : k.owed) {
      auto it = owed_index_.find({o.request, o.requester});
      KBUS_CHECK(it != owed_index_.end() && it->second == id);
    }
    std::size_t aside = 0;
    std::uint64_t aside_bytes = 0;
    for (const SetAsideEntry& e : set_aside_) {
      if (e.ksock != id) continue;
      ++aside;
      aside_bytes += entry_bytes(e.body);
    }
    KBUS_CHECK(aside == k.set_aside);
    set_aside_total += aside;
    // docs/decisions.md D28: what k has charged is what it holds.
    if (ledger_) {
      KBUS_CHECK(k.charged_queue == k.queue.bytes());
      KBUS_CHECK(k.charged_set_aside == aside_bytes);
      KBUS_CHECK(k.charged_requests == k.outstanding.size() * kRequestCost);
      KBUS_CHECK(k.charged_bindings == binding_charge);
      KBUS_CHECK(k.charged_writing == writing_bytes(k));
    }
    KBUS_CHECK(k.outstanding.size() <= k.outstanding_size);
    // D25: a monitor is listed, and takes no part in KBUS.
    KBUS_CHECK(k.monitor == std::binary_search(monitors_.begin(), monitors_.end(), id));
    KBUS_CHECK(!k.monitor || (k.bindings == 0 && k.outstanding.empty() && !k.sending));
  }
  KBUS_CHECK(std::is_sorted(monitors_.begin(), monitors_.end()));
  KBUS_CHECK(set_aside_total == set_aside_.size());
  KBUS_CHECK(!lost_mode_ || !set_aside_.empty());
  for (const auto& [seq, b] : bindings_.all()) {
    KBUS_CHECK(ksocks_.count(b.ksock));
    KBUS_CHECK(bindings_.latest_of(b.ksock, b.replier, b.name) != nullptr);
  }
  for (const auto& [key, holder] : owed_index_) KBUS_CHECK(ksocks_.count(holder));
}

}  // namespace kbus::core
