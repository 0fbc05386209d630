// limpet/limpet.hpp - the forwarding and request/reply bookkeeping of a
// Limpet (KBUS-SPEC.md §10), written against a small two-sided interface:
//
//      bus  <-- BusPort -->  [ Limpet ]  <-- PeerPort -->  the other limpet
//
// BusPort is what a limpet needs of its Ksock (a subset of kbus::Ksock, the
// public client API; KsockBus in ksock_bus.hpp is the real one) and PeerPort
// is where messages for the other limpet go (the Link of link.hpp frames
// them onto a socket; the unit tests use an in-memory link and in-process
// buses). The Limpet does no I/O of its own and never blocks: the runner
// (runner.hpp) hands it each message read from the bus or from the peer.
//
// Model and invariants (docs/limpets.md has the reasoning):
//  * The decisions themselves - what crosses, how it is amended, the
//    request records, the proxy replier bindings - are LimpetRules, one
//    object per limpet that acts on the bus through a BusOps and returns
//    what must go to the peer. The Limpet (and so kbus-limpet) and the C
//    API of <libkbus/limpet.h> (src/capi/limpet_api.cpp) both run on it,
//    so there is one copy of the rules.
//  * Requests are routed, not broadcast. A Request crosses the link only
//    when this limpet was given it to answer (WANT_YOU_TO_REPLY, as the
//    proxy replier for a replier on the far side). Then a request record
//    holds {id as it crossed the link -> (id as read, requester)}; the
//    record leaves when the answer from the peer is sent on, and all of
//    them are answered by KBUS itself when the link goes down (the Ksock is
//    closed and reopened: §7.2 sends GoneAway / Ignored for every Request
//    it held). Hence every Request sent through a limpet gets exactly one
//    Reply or Status.
//  * Records never alias. They are keyed by what the answer carries back
//    (its in_reply_to is the id that crossed), so at most one Request per
//    such id may be outstanding through a link: a second one with the same
//    id from another requester (a client replaying an id it saw pass) is
//    answered on the bus with $.KBUS.RemoteError.<EADDRINUSE> and never
//    crosses, as the bus refuses a sender's own duplicate (docs/decisions.md
//    D13, D18). An answer whose in_reply_to matches no record is dropped.
//  * Only answers addressed to this limpet cross back (Replies whose `to` is
//    its Ksock); listener copies of Requests and Replies stay on their bus.
//  * A limpet never forwards its own traffic (from == its Ksock id), nor a
//    message that already carries its network id (a loop, or a duplicate
//    network id), nor one stamped by its peer (§10.4-4). Each of these rules
//    rests on header fields the original layout carries (from, id), so a
//    misconfigured network produces a logged error, never a message storm.
//  * Each limpet holds a listener binding on a marker name
//    "$.KBUS.Limpet.NetworkId.<id>". A second limpet with the same network
//    id on the bus, or the peer of a pair on this very bus, is found in the
//    bindings report (§9.1) and refused with a clear error. The marker is
//    invisible to the wire protocol, so an original limpet still pairs.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "kbus/errors.hpp"
#include "kbus/message.hpp"

namespace kbus::limpet {

// What the rules of a linked limpet need of its bus (LimpetRules and the
// set-up of §10.2-2). Every call is one operation of the original (§4.6) on
// the limpet's one Ksock.
class BusOps {
 public:
  virtual ~BusOps() = default;
  virtual std::uint32_t ksock_id() const = 0;
  virtual Result<void> bind(std::string_view name, bool replier) = 0;
  virtual Result<void> unbind(std::string_view name, bool replier) = 0;
  virtual Result<std::optional<std::uint32_t>> find_replier(std::string_view name) = 0;
  // Writes and sends a whole message. Errc::eagain: the (ALL_OR_WAIT) send
  // is pending; the bus completes it and the Ksock becomes writable again.
  virtual Result<MessageId> send(const Message& m) = 0;
  virtual Result<bool> only_once(bool on) = 0;
  virtual Result<bool> report_replier_binds() = 0;  // REPORTREPLIERBINDS(1)
  virtual Result<std::uint32_t> set_max_messages(std::uint32_t n) = 0;
};

// What a Limpet needs of its bus on top: its own Ksock's life, and the
// bindings report for the misconfiguration checks.
class BusPort : public BusOps {
 public:
  // Closes the Ksock if open (CLOSE, §7.2: KBUS answers every Request it
  // held) and opens a fresh one on the same bus.
  virtual Result<void> reopen() = 0;
  virtual std::uint32_t bus_number() const = 0;
  virtual Result<std::string> bindings_report() = 0;  // §9.1, all buses
};

// Where messages for the other limpet go. Never fails: a link that breaks is
// noticed by the runner, which then calls Limpet::link_down().
class PeerPort {
 public:
  virtual ~PeerPort() = default;
  virtual void send_to_peer(const Message& m) = 0;
};

struct LimpetConfig {
  std::uint32_t network_id = 1;        // > 0, unique in the limpet network
  std::string message_name = "$.*";    // what to listen for and forward
  std::optional<std::string> termination;  // stop on reading this name
  std::uint32_t max_messages = 1000;   // the Ksock's queue limit (MAXMSGS)
  // Every message logged as it passes (LogLevel::kTrace). Off, the text is
  // never built: describing each message cost the limpet ~2% of its CPU.
  bool trace = true;
};

enum class LogLevel { kError = 0, kInfo = 1, kTrace = 2 };
using Logger = std::function<void(LogLevel, const std::string&)>;

// Why a limpet cannot go on.
struct Fault {
  enum class Kind {
    kBus,        // the bus failed (kbusd gone, cannot open the bus ...)
    kMisconfig,  // duplicate network id, both ends on one bus
  };
  Kind kind = Kind::kBus;
  std::string what;
};

// The name a limpet with network id `id` holds a listener binding on.
std::string marker_name(std::uint32_t network_id);
// "$.KBUS.RemoteError.<errno>" (numeric, as the C limpet, §14-20).
std::string remote_error_name(int err);

struct LimpetCounters {
  std::uint64_t from_bus = 0, to_peer = 0, from_peer = 0, to_bus = 0;
  std::uint64_t errors_to_peer = 0;  // GoneAway/NotSameKsock/RemoteError sent back
  std::uint64_t loops = 0;           // messages refused by the loop rules
  std::uint64_t id_clashes = 0;      // Requests refused: their id was in use (D18)
};

// §10.2-2 on the Ksock of `bus`: MAXMSGS(max_messages) if given,
// MSGONLYONCE(1), listener on `message_name` and on
// $.KBUS.ReplierBindEvent, REPORTREPLIERBINDS(1). An EBUSY from the last
// (more existing replier bindings than the queue holds) is logged, not a
// failure. On failure, the operation's name (e.g. "BIND $.*") and error.
struct SetUpError {
  std::string operation;
  Errc error = Errc::ok;
};
std::optional<SetUpError> set_up_ksock(BusOps& bus, const std::string& message_name,
                                       std::optional<std::uint32_t> max_messages,
                                       const Logger& log);

// The request record of a Request a limpet forwarded (§10.4-3): the id it
// had on this bus and its requester there. Keyed by the id it crossed with.
struct HeldRequest {
  MessageId id;                // as read on this bus
  std::uint32_t requester = 0;  // its `from` on this bus
};

// The decisions of a linked limpet (KBUS-SPEC.md §10.4, §10.5, with the
// additions of docs/limpets.md): one object per limpet, whose state lives
// as long as the link. It acts on the bus only through the BusOps each call
// is given (BIND/UNBIND of proxy repliers, REPLIER queries, answers it
// makes on the bus) and returns what must go to the peer; sending to the
// peer, and sending to the bus what it says to send, is the caller's job.
// Messages given to and taken from it hold host-order bind event data.
class LimpetRules {
 public:
  LimpetRules(std::uint32_t network_id, Logger log = {}, bool trace = true);

  // A link to a peer of network id `peer_id` begins (the Ksock has been set
  // up): forgets whatever an earlier link left.
  void link_up(std::uint32_t peer_id);
  // The link has gone: forgets requests, proxies and pending retries (the
  // caller closes the Ksock, so KBUS answers what was held).
  void link_down();
  std::uint32_t network_id() const noexcept { return network_id_; }
  std::uint32_t peer_id() const noexcept { return peer_id_; }

  // A message read from the bus (§10.4). kForward: `m` has been amended
  // (id and orig_from stamped, §10.4-5/6) and goes to the peer. kIgnore:
  // nothing goes to the peer; a Request this limpet held and cannot forward
  // (a loop, an echo, an id in use) has been answered on `bus`.
  enum class FromBus { kForward, kIgnore };
  FromBus from_bus(Message& m, BusOps& bus);

  // A message from the peer (§10.5). kSend: `m` has been amended and the
  // caller sends it to the bus (then send_failed() if that fails). kIgnore:
  // nothing to do (a bind event already acted on, an answer nobody awaits,
  // a listener copy). kErrorToPeer: `error` is a Reply to go back to the
  // peer (GoneAway, NotSameKsock, RemoteError.N) instead.
  enum class FromPeer { kSend, kIgnore, kErrorToPeer };
  FromPeer from_peer(Message& m, BusOps& bus, Message& error);

  // Sending `m` (as amended by from_peer) to the bus failed with `e`
  // (§10.5-5). A Request: kErrorToPeer with $.KBUS.RemoteError.<e> in
  // `error`. An answer: its requester is answered on `bus` with
  // $.KBUS.RemoteError.<e> instead (unless it has gone) and kIgnore. An
  // Announcement, or eagain (the send is pending, not failed): kIgnore.
  FromPeer send_failed(const Message& m, Errc e, BusOps& bus, Message& error);

  // A Reply named `name` sent on `bus` to `request`, which this limpet's
  // Ksock holds (it read it with WANT_YOU_TO_REPLY).
  void answer_on_bus(const Message& request, std::string_view name, BusOps& bus);

  // Proxy BIND/UNBIND that met EAGAIN (a bind-event listener was full) wait
  // here, in order; retry() tries them again.
  bool has_retries() const noexcept { return !retries_.empty(); }
  void retry(BusOps& bus);

  std::size_t requests_held() const noexcept { return requests_.size(); }
  const std::map<std::string, std::uint32_t>& proxies() const noexcept { return proxies_; }
  LimpetCounters& counters() noexcept { return counters_; }
  const LimpetCounters& counters() const noexcept { return counters_; }

 private:
  struct ProxyOp {
    bool is_bind = false;
    std::string name;
    std::uint32_t binder = 0;
  };
  void log(LogLevel level, const std::string& text) const;
  // A kTrace line, built only when traced.
  template <class Text>
  void trace(Text&& text) const {
    if (trace_ && log_) log_(LogLevel::kTrace, text());
  }
  void proxy_bind_event(const Message& m, BusOps& bus);
  bool apply_proxy_op(const ProxyOp& op, BusOps& bus);
  FromPeer route_reply(Message& m);
  // A Reply named `name` to go back to the peer for a Request it sent.
  Message error_for_peer(const Message& request, std::string_view name);
  void loop_detected(const Message& m, const char* where);

  std::uint32_t network_id_;
  std::uint32_t peer_id_ = 0;
  Logger log_;
  bool trace_ = true;
  std::map<MessageId, HeldRequest> requests_;     // id as it crossed -> record
  std::map<std::string, std::uint32_t> proxies_;  // proxy replier name -> remote binder
  std::deque<ProxyOp> retries_;
  LimpetCounters counters_;
};

class Limpet {
 public:
  Limpet(LimpetConfig cfg, BusPort& bus, PeerPort& peer, Logger log = {});
  Limpet(const Limpet&) = delete;
  Limpet& operator=(const Limpet&) = delete;

  // Opens the Ksock and binds the marker; refuses (kMisconfig) if another
  // limpet with this network id is on the bus. Call once, before any link.
  std::optional<Fault> start();

  // The link has completed its HELO exchange (§10.2-1) with a peer of
  // network id `peer_id`. Refuses equal ids and a peer on this same bus
  // (kMisconfig); otherwise sets the Ksock up as §10.2-2 says, which makes
  // KBUS report every existing replier binding (forwarded to the peer).
  std::optional<Fault> link_up(std::uint32_t peer_id);
  // The link is gone (peer closed, cut, protocol error). Closes and reopens
  // the Ksock, so KBUS answers every Request this limpet held and every
  // proxy replier binding disappears; forgets all per-link state.
  std::optional<Fault> link_down();
  bool linked() const noexcept { return linked_; }
  std::uint32_t peer_id() const noexcept { return rules_.peer_id(); }

  enum class Action { kContinue, kTerminate };
  // A message read from the bus (§10.4).
  Action from_bus(const Message& m);
  // A message from the peer (§10.5). While bus_blocked() it is kept and
  // handled, in order, once the bus is writable again.
  void from_peer(const Message& m);

  // An ALL_OR_WAIT send to the bus is pending: the runner waits for the
  // Ksock to be writable, then calls bus_writable().
  bool bus_blocked() const noexcept { return blocked_; }
  void bus_writable();

  // Proxy BIND/UNBIND that failed with EAGAIN (a bind-event listener was
  // full) are retried here; the runner calls it while has_retries().
  bool has_retries() const noexcept { return rules_.has_retries(); }
  void retry() { rules_.retry(bus_); }

  // For tests and logs.
  std::size_t requests_held() const noexcept { return rules_.requests_held(); }
  const LimpetRules& rules() const noexcept { return rules_; }
  const std::map<std::string, std::uint32_t>& proxies() const noexcept { return rules_.proxies(); }
  const LimpetCounters& counters() const noexcept { return rules_.counters(); }
  const LimpetConfig& config() const noexcept { return cfg_; }

 private:
  void log(LogLevel level, const std::string& text) const;
  std::optional<Fault> attach_marker();
  // The Ksock id of a limpet with network id `id` on this bus, other than
  // this limpet's own Ksock, from the bindings report; 0 if none.
  Result<std::uint32_t> find_marker(std::uint32_t id);
  void deliver_from_peer(const Message& m);
  // Sends what the rules said to send; on failure asks them what now.
  void send_to_bus(const Message& m);

  LimpetConfig cfg_;
  BusPort& bus_;
  PeerPort& peer_;
  Logger log_;
  LimpetRules rules_;
  bool linked_ = false;
  std::deque<Message> backlog_;  // from the peer while blocked
  bool blocked_ = false;
};

}  // namespace kbus::limpet
