// core/bus.hpp - one KBUS bus: its Ksocks, bindings, queues and the send
// algorithm (KBUS-SPEC.md §1-§9). Pure logic: no I/O, no clocks, no threads.
//
// Every operation of the original's ioctl/read/write interface is a method
// taking the calling Ksock's id. Results carry the spec's errno values.
// Effects that the daemon must carry out (a Ksock's queue became
// empty/non-empty, its pending-send state changed) are collected and handed
// over by take_touched(); everything else is visible through the queries.
//
// Ownership: Bus owns all Ksock state. Ksock ids passed in must come from
// open() and not yet be closed (the daemon guarantees it; a violation is a
// bug and asserts).
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/binding_table.hpp"
#include "core/counted_queue.hpp"
#include "core/ledger.hpp"
#include "core/message_body.hpp"
#include "core/node_pool.hpp"
#include "core/write_parser.hpp"
#include "kbus/errors.hpp"
#include "kbus/message.hpp"

namespace kbus::core {

using KsockId = std::uint32_t;

struct BusLimits {
  std::uint32_t max_msg_size = 1024;          // §4.7 current default
  std::uint32_t abs_max_msg_size = 409600;    // §4.7 absolute maximum
  std::uint32_t default_max_msgs = 100;       // per-Ksock queue length
  std::uint32_t set_aside_capacity = 1000;    // §8.4
  // Resource limits (docs/reliability.md §4), 0 = none. Off by default, so
  // that a program sees what it saw with the original (docs/decisions.md
  // D16); an admin may set them with kbusd's flags.
  std::uint32_t max_ksocks = 0;        // Ksocks open at once on the bus
  std::uint64_t max_queued_bytes = 0;  // a Ksock whose queue holds this many
                                       // bytes counts as full (§5.1)
  // Bindings one Ksock may hold; BIND beyond it fails with ENOMEM
  // (docs/reliability.md §4, docs/decisions.md D28). 0 = none.
  std::uint32_t max_bindings_per_ksock = 10000;
};

struct OpenOptions {
  bool can_read = true;
  bool can_write = true;
  std::uint32_t header_len = kHeaderLen64;  // 88 or 72: the client's ABI
  std::int64_t pid = 0;                     // for the bindings report
  std::uint32_t uid = 0;  // whose budget pays for what it holds (core/ledger.hpp)
};

struct SendOutcome {
  Errc error = Errc::ok;
  MessageId id;  // assigned id, or {0,0} if none was assigned
  // The message sent (or left pending) is a Request (§3.2 WANT_A_REPLY):
  // its requester waits for an answer (docs/protocol.md §4.5 REQUEST).
  bool is_request = false;
};

class Bus {
 public:
  // `ledger`, if given (it must outlive the bus), is charged for what each
  // Ksock holds, to its uid, and its budgets are rules of the bus
  // (docs/decisions.md D28): a Ksock whose user cannot pay for a message
  // counts as full for it (§5.1), a Request its user cannot pay for fails
  // ENOLCK (§5.2-5), a binding ENOMEM.
  explicit Bus(std::uint32_t number, BusLimits limits = {}, Ledger* ledger = nullptr);
  Bus(const Bus&) = delete;
  Bus& operator=(const Bus&) = delete;
  ~Bus();

  std::uint32_t number() const noexcept { return number_; }

  // §4.1 OPEN: a new Ksock with the next id (§1.2-2).
  KsockId open(const OpenOptions& opts);
  // The same, refused with ENFILE while the bus has BusLimits::max_ksocks
  // Ksocks open (open() asserts that it is not).
  Result<KsockId> try_open(const OpenOptions& opts);
  std::size_t ksock_count() const noexcept { return ksocks_.size(); }
  // §4.1 CLOSE: the release sequence of §7.2. Never fails.
  void close(KsockId k);
  bool is_open(KsockId k) const noexcept { return ksocks_.count(k) != 0; }

  // §4.6 operations.
  Result<void> bind(KsockId k, std::uint32_t is_replier, std::string_view name);
  Result<void> unbind(KsockId k, std::uint32_t is_replier, std::string_view name);
  // REPLIER: the id of the replier bound to exactly this name string, or 0.
  Result<std::uint32_t> find_replier(std::string_view name) const;
  // NEXTMSG: ENTIRE_LEN (in k's ABI) of the message made current, 0 if none.
  std::uint32_t next_msg(KsockId k);
  std::uint32_t len_left(KsockId k) const;
  SendOutcome send(KsockId k, std::optional<std::string_view> pointy_payload = std::nullopt);
  void discard(KsockId k);
  MessageId last_sent(KsockId k) const;
  std::uint32_t max_msgs(KsockId k, std::uint32_t n);
  std::uint32_t num_msgs(KsockId k) const;
  // Bytes held in k's queue (CountedQueue::size_of each message).
  std::uint64_t queued_bytes(KsockId k) const;
  std::uint32_t unreplied_to(KsockId k) const;
  std::uint32_t binding_count(KsockId k) const;
  const BusLimits& limits() const noexcept { return limits_; }
  Result<std::uint32_t> only_once(KsockId k, std::uint32_t v);
  Result<std::uint32_t> verbose(std::uint32_t v);
  Result<std::uint32_t> report_replier_binds(KsockId k, std::uint32_t v);
  Result<std::uint32_t> max_msg_size(std::uint32_t v);
  bool verbose_on() const noexcept { return verbose_; }
  // Recipients considered by sends so far (each Ksock a message may be
  // queued for, full or not, plus one per attempt): the work of a send,
  // which the daemon bounds per SENDBATCH frame (docs/reliability.md §4).
  std::uint64_t fanout() const noexcept { return fanout_; }

  // MONITOR (docs/decisions.md D25, docs/protocol.md): v = 1 makes k a
  // monitor, v = 0 an ordinary Ksock again, kQuery (0xFFFFFFFF) changes
  // nothing. A monitor gets a copy of every message the bus sends or makes
  // (monitor_copy), in bus order, and takes no part in KBUS itself: it may
  // not bind or write (EBUSY), and its copies are never deliveries (§5.2
  // never looks at it). Answers the number of copies a full monitor queue
  // dropped since the previous MONITOR call, and resets it. EBADF if k cannot
  // read; EBUSY to v = 1 if k has bindings, Requests outstanding or replies
  // owed, or a send pending; EINVAL for another v.
  Result<std::uint32_t> monitor(KsockId k, std::uint32_t v);
  bool is_monitor(KsockId k) const;

  // §4.2 write and §4.3 read.
  Result<std::uint32_t> write(KsockId k, std::string_view bytes);
  // Appends up to max_count bytes of the current message to out; returns the
  // number appended (0 = EOF).
  Result<std::uint32_t> read(KsockId k, std::uint32_t max_count, std::string& out);
  // NEXTMSG followed by a read of the whole message (appended to out).
  // Returns 1 if a message was read, 0 if the queue was empty.
  Result<std::uint32_t> next_read(KsockId k, std::string& out);

  // Batch read (docs/protocol.md READBATCH): pops up to max_count messages,
  // appending their entire forms to out, stopping before the total would
  // exceed max_bytes (but always taking one if there is one). Each pop is a
  // NEXTMSG + whole read; batching changes cost, never meaning.
  Result<std::uint32_t> next_read_batch(KsockId k, std::uint32_t max_count,
                                        std::uint32_t max_bytes, std::string& out);
  // REQUEST support: if k's own answer to `request` (the Reply or Status
  // pushed to k as requester, not a listener copy) is queued, removes it
  // from the queue wherever it is, appends its entire form to out and
  // returns true. Other queued messages keep their order.
  Result<bool> take_answer(KsockId k, MessageId request, std::string& out);

  // Mirroring support (src/shm, docs/architecture.md "Shared-memory
  // receive queue"): the i-th message of k's queue (0 = the head, which
  // NEXTMSG would pop next) without popping it: its id and flags (as k
  // would read them), and, if `entire` is given, its entire form in k's
  // ABI appended to it. False if k's queue holds i messages or fewer.
  bool peek_queued(KsockId k, std::size_t i, MessageId& id, std::uint32_t& flags,
                   std::string* entire) const;
  // Some Ksock waits to send (ALL_OR_WAIT, §5.2): a pop anywhere may let it on.
  bool has_pending_senders() const noexcept { return !pending_senders_.empty(); }

  // §4.4 readiness.
  bool readable(KsockId k) const;  // queue non-empty
  bool writable(KsockId k) const;  // open for writing and not sending
  bool sending(KsockId k) const;
  bool can_read(KsockId k) const;

  // Effects: the Ksocks whose queue or sending state may have changed since
  // the last call, in ascending id order. The daemon updates their poll fds
  // and serves their blocked receives. The first form replaces the contents
  // of `out`, reusing its storage: called with the same vector every time,
  // it allocates nothing once the vector has grown. The second allocates
  // the vector it returns.
  void take_touched(std::vector<KsockId>& out);
  std::vector<KsockId> take_touched();

  // §9 reports for this bus, appended to out.
  void append_bindings_report(std::string& out) const;
  void append_stats(std::string& out) const;
  // The same, in parts (docs/protocol.md §4.8): appends lines from `pos` on
  // until out has grown by max_bytes or more (at least one line), and sets
  // pos to where the next part starts; returns true when the bus's report
  // is complete. kReportStart starts a report (its first line). Bindings
  // and Ksocks made or gone between parts are listed at most once.
  static constexpr std::uint64_t kReportStart = ~std::uint64_t{0};
  bool append_bindings_part(std::uint64_t& pos, std::size_t max_bytes, std::string& out) const;
  bool append_stats_part(std::uint64_t& pos, std::size_t max_bytes, std::string& out) const;

  // Aborts with a message if an internal invariant is broken (tests, fuzzing).
  void check_invariants() const;

 private:
  struct QueueEntry {
    Header hdr;  // per-recipient copy (WANT_YOU_TO_REPLY differs)
    MessageBody body;
    std::uint64_t via = 0;  // binding that caused the push; 0 = none
    std::uint32_t bytes = 0;  // stamped by CountedQueue on insertion
  };
  struct Owed {
    MessageId request;
    KsockId requester = 0;
  };
  struct CurrentRead {
    std::string image;  // entire form in the reader's ABI
    std::uint32_t pos = 0;
  };
  // A message written and (being) sent: header + body captured at SEND.
  struct Outgoing {
    Header hdr;
    MessageBody body;
  };
  // A Ksock's outstanding requests (§4.7), and the bus's index of owed
  // replies: (request, requester) -> the Ksock that holds the request.
  using OutstandingSet = std::set<MessageId>;
  using OwedIndex = std::map<std::pair<MessageId, KsockId>, KsockId>;
  struct Ksock {
    KsockId id = 0;
    bool can_read = true;
    bool can_write = true;
    std::uint32_t header_len = kHeaderLen64;
    std::int64_t pid = 0;
    CountedQueue<QueueEntry> queue;
    std::uint32_t max_msgs = 100;
    std::optional<CurrentRead> current;
    WriteParser writer{kHeaderLen64};
    bool sending = false;
    Outgoing pending;        // valid while sending
    WriteParser::Part pending_part = WriteParser::Part::kHdr;  // where the
    std::uint32_t pending_pos = 0;  // pending message's writing ended (stats)
    bool completed_pending = false;  // a pending send ended by a retry
    MessageId completed_id;          // ... with this id
    MessageId last_sent;
    OutstandingSet outstanding;           // changed through outstanding_pool_ only
    std::uint32_t outstanding_size = 16;  // emulated table capacity (§4.7)
    std::uint32_t outstanding_max = 0;
    std::vector<Owed> owed;  // pop order
    std::uint32_t owed_max = 0;
    bool only_once = false;
    MessageId last_pushed;
    std::uint32_t bindings = 0;   // bindings in the table (BindingTable::seqs_of)
    std::uint32_t set_aside = 0;  // entries in the bus set-aside list
    bool monitor = false;                 // MONITOR (D25)
    std::uint32_t monitor_missed = 0;     // copies dropped since the last MONITOR
    // What this Ksock has charged to the ledger, for its uid, by kind.
    std::uint32_t uid = 0;
    std::uint64_t charged_queue = 0, charged_set_aside = 0, charged_requests = 0,
                  charged_bindings = 0, charged_writing = 0;
  };
  enum class PushKind { kListener, kReplier, kSender };
  struct SetAsideEntry {
    KsockId ksock = 0;
    std::uint64_t via = 0;
    bool lost_marker = false;  // an UnbindEventsLost entry
    Header hdr;
    MessageBody body;
  };

  Ksock& ks(KsockId k);
  const Ksock& ks(KsockId k) const;
  MessageId next_serial();
  bool bytes_full(const Ksock& k) const;
  bool full(const Ksock& k) const;
  bool full_for_reply(const Ksock& k) const;
  // The user of k cannot pay for `bytes` more (core/ledger.hpp).
  // The bytes a queued copy of `body` counts for (CountedQueue::size_of).
  static std::uint64_t entry_bytes(const MessageBody& body);
  bool over_budget(const Ksock& k, std::uint64_t bytes) const;
  // ALL_OR_*: every recipient's user can pay for its copies.
  bool budgets_fit(const Ksock* addressee, const Ksock* replier,
                   const std::vector<const Binding*>& listeners, std::uint64_t bytes);
  // Bring k's charges up to date with its queue and outstanding requests.
  void sync_queue(Ksock& k);
  void sync_requests(Ksock& k);
  // The message k is writing (its name and data, once the header says how
  // long) and the one it waits to send (§5.5).
  static std::uint64_t writing_bytes(const Ksock& k);
  void sync_writing(Ksock& k);
  void unhold_writing(Ksock& k);
  SendOutcome send_message(Ksock& k, std::optional<std::string_view> pointy_payload);
  void add_set_aside(Ksock& k, SetAsideEntry e);
  void release_all(Ksock& k);
  void touch(KsockId k);
  // §5.3: returns false only when only-once skipped the push.
  bool push(Ksock& k, const Header& hdr, const MessageBody& body, PushKind kind, std::uint64_t via);
  // §5.2 steps 8-14 for an outgoing message from `sender`.
  Errc deliver(Ksock& sender, const Outgoing& out);
  SendOutcome finish_send(Ksock& k, Errc e, MessageId id);
  void retry_pending_sends();
  void send_status(std::string_view name, KsockId from, KsockId requester, MessageId in_reply_to,
                   bool needs_outstanding);
  void forget_owed(MessageId request, KsockId requester);
  MessageBody bind_event_body(bool is_bind, KsockId binder, std::string_view name) const;
  // §8.2/8.3: deliver an event ALL_OR_FAIL; EAGAIN if a listener is full.
  // `hdr_out`, if given, receives the event's header (its id was consumed).
  Errc send_bind_event(bool is_bind, KsockId binder, std::string_view name,
                       Header* hdr_out = nullptr);
  // §8.4: deliver or set aside; never fails.
  void send_bind_event_safely(KsockId binder, std::string_view name);
  void move_one_set_aside(Ksock& k);
  void drop_set_aside(KsockId k, std::optional<std::uint64_t> via);
  void remove_binding_effects(Ksock& k, std::uint64_t seq, std::string_view name);
  Result<std::uint32_t> flag_op(bool& flag, std::uint32_t v);
  std::optional<QueueEntry> pop_head(Ksock& k);
  void after_op();
  // Every monitor gets a copy of a message sent or made (D25); one whose
  // queue is full misses it. No-op without monitors. `got_it`: a monitor
  // the message itself was pushed to (the REPORTREPLIERBINDS flood of a
  // monitor that asked for it), which sees it once, not twice.
  void monitor_copy(const Header& hdr, const MessageBody& body, KsockId got_it = 0);

  std::uint32_t number_;
  BusLimits limits_;
  Ledger* ledger_ = nullptr;
  // The original's counters: the next Ksock id and serial to assign (0 on a
  // bus never used; 0 is skipped when assigning). §1.2-2, §1.5-4, §9.2.
  std::uint32_t next_ksock_ = 0;
  std::uint32_t next_serial_ = 0;
  bool verbose_ = false;
  bool report_binds_ = false;
  std::uint32_t max_msg_size_;
  std::map<KsockId, std::unique_ptr<Ksock>> ksocks_;
  BindingTable bindings_;
  std::deque<SetAsideEntry> set_aside_;
  bool lost_mode_ = false;
  std::set<KsockId> pending_senders_;
  OwedIndex owed_index_;  // changed through owed_pool_ only
  // Spare nodes, so that steady request/reply traffic allocates none.
  static constexpr std::size_t kSpareNodes = 256;
  NodePool<OutstandingSet> outstanding_pool_{kSpareNodes};
  NodePool<OwedIndex> owed_pool_{kSpareNodes};
  std::uint64_t fanout_ = 0;
  std::vector<KsockId> touched_;  // may hold duplicates; see take_touched()
  bool closed_since_take_ = false;  // touched_ may hold Ksocks closed since
  // Scratch space kept for its storage (cleared, not freed, between uses).
  std::vector<const Binding*> listeners_;  // deliver()
  std::vector<KsockId> retry_senders_;     // retry_pending_sends()
  std::vector<KsockId> monitors_;          // MONITOR Ksocks, ascending ids
  std::vector<std::pair<std::uint32_t, std::uint64_t>> need_;  // budgets_fit()
};

}  // namespace kbus::core
