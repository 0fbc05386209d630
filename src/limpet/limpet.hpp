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
//  * Requests are routed, not broadcast. A Request crosses the link only
//    when this limpet was given it to answer (WANT_YOU_TO_REPLY, as the
//    proxy replier for a replier on the far side). Then requests_ holds
//    {request id as read -> requester}; the entry leaves when the answer
//    from the peer is sent on, and the whole map is answered by KBUS itself
//    when the link goes down (the Ksock is closed and reopened: §7.2 sends
//    GoneAway / Ignored for every Request it held). Hence every Request
//    sent through a limpet gets exactly one Reply or Status.
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

// What a limpet needs of its bus. Every call is one operation of the
// original (§4.6) on the limpet's one Ksock.
class BusPort {
 public:
  virtual ~BusPort() = default;
  // Closes the Ksock if open (CLOSE, §7.2: KBUS answers every Request it
  // held) and opens a fresh one on the same bus.
  virtual Result<void> reopen() = 0;
  virtual std::uint32_t ksock_id() const = 0;
  virtual std::uint32_t bus_number() const = 0;
  virtual Result<void> bind(std::string_view name, bool replier) = 0;
  virtual Result<void> unbind(std::string_view name, bool replier) = 0;
  virtual Result<std::optional<std::uint32_t>> find_replier(std::string_view name) = 0;
  // Writes and sends a whole message. Errc::eagain: the (ALL_OR_WAIT) send
  // is pending; the bus completes it and the Ksock becomes writable again.
  virtual Result<MessageId> send(const Message& m) = 0;
  virtual Result<bool> only_once(bool on) = 0;
  virtual Result<bool> report_replier_binds() = 0;  // REPORTREPLIERBINDS(1)
  virtual Result<std::uint32_t> set_max_messages(std::uint32_t n) = 0;
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
  std::uint32_t peer_id() const noexcept { return peer_id_; }

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
  bool has_retries() const noexcept { return !retries_.empty(); }
  void retry();

  // For tests and logs.
  std::size_t requests_held() const noexcept { return requests_.size(); }
  const std::map<std::string, std::uint32_t>& proxies() const noexcept { return proxies_; }
  const LimpetCounters& counters() const noexcept { return counters_; }
  const LimpetConfig& config() const noexcept { return cfg_; }

 private:
  struct ProxyOp {
    bool is_bind = false;
    std::string name;
    std::uint32_t binder = 0;
  };
  void log(LogLevel level, const std::string& text) const;
  std::optional<Fault> attach_marker();
  // The Ksock id of a limpet with network id `id` on this bus, other than
  // this limpet's own Ksock, from the bindings report; 0 if none.
  Result<std::uint32_t> find_marker(std::uint32_t id);
  void forward(const Message& m);
  void deliver_from_peer(const Message& m);
  void route_reply(const Message& m);
  void proxy_bind_event(const Message& m);
  bool apply_proxy_op(const ProxyOp& op);
  // Sends to the bus; on failure answers `request` (if given) to the peer.
  void send_to_bus(const Message& m, const Message* request);
  // A Reply named `name` to a Request this limpet holds on its bus.
  void answer_on_bus(const Message& request, std::string_view name);
  // A Reply named `name` sent back to the peer for a Request it sent.
  void error_to_peer(const Message& request, std::string_view name);
  void loop_detected(const Message& m, const char* where);

  LimpetConfig cfg_;
  BusPort& bus_;
  PeerPort& peer_;
  Logger log_;
  bool linked_ = false;
  std::uint32_t peer_id_ = 0;
  std::map<MessageId, std::uint32_t> requests_;       // request id as read -> requester
  std::map<std::string, std::uint32_t> proxies_;      // proxy replier name -> remote binder
  std::deque<Message> backlog_;                       // from the peer while blocked
  std::deque<ProxyOp> retries_;
  bool blocked_ = false;
  LimpetCounters counters_;
};

}  // namespace kbus::limpet
