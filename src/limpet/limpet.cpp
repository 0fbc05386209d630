// limpet/limpet.cpp - see limpet.hpp for the model and invariants.
//
// The numbered rules of KBUS-SPEC.md §10.4 (bus -> peer) and §10.5 (peer ->
// bus) are applied in the order the spec gives, with these additions, each
// resting on header fields (docs/limpets.md, "Choices"):
//   * own traffic (from == own Ksock) is never forwarded, except a Reply
//     addressed to this limpet (an answer to be carried back);
//   * listener copies of Requests and Replies are not forwarded: a Request
//     goes only to its one replier, an answer only to its requester (this
//     also removes the id collision of §14-21);
//   * a message carrying this limpet's own network id in `id` is a loop (or
//     a duplicate network id) and is refused, answering a held Request;
//   * a Reply that cannot be sent on (other than to a requester that has
//     gone) is replaced by $.KBUS.RemoteError.<errno>, so the requester is
//     answered all the same;
//   * request records are keyed by the id a Request crossed the link with,
//     which is what its answer carries back; a second Request with an id
//     already in use through this link is refused with
//     $.KBUS.RemoteError.<EADDRINUSE> (D18), so records never alias.
//
// LimpetRules holds these decisions and acts on the bus through BusOps;
// Limpet adds the limpet's life (marker, link up and down, back pressure)
// and talks to the peer. The C API (src/capi/limpet_api.cpp) is the other
// user of LimpetRules.
#include "limpet/limpet.hpp"

#include <cerrno>
#include <sstream>

namespace kbus::limpet {

namespace {

std::string errname(Errc e) { return errno_name(to_errno(e)); }

}  // namespace

std::string marker_name(std::uint32_t network_id) {
  return "$.KBUS.Limpet.NetworkId." + std::to_string(network_id);
}

std::string remote_error_name(int err) {
  return std::string(status_name::kRemoteErrorPrefix) + std::to_string(err);
}

std::optional<SetUpError> set_up_ksock(BusOps& bus, const std::string& message_name,
                                       std::optional<std::uint32_t> max_messages,
                                       const Logger& log) {
  if (max_messages) {
    if (auto r = bus.set_max_messages(*max_messages); !r) return SetUpError{"MAXMSGS", r.error()};
  }
  if (auto r = bus.only_once(true); !r) return SetUpError{"MSGONLYONCE", r.error()};
  if (auto r = bus.bind(message_name, false); !r) {
    return SetUpError{"BIND " + message_name, r.error()};
  }
  if (auto r = bus.bind(status_name::kReplierBindEvent, false); !r) {
    return SetUpError{"BIND $.KBUS.ReplierBindEvent", r.error()};
  }
  if (auto r = bus.report_replier_binds(); !r && log) {
    // EBUSY: our queue filled up with existing bindings; the rest are lost.
    log(LogLevel::kError, "REPORTREPLIERBINDS: " + errname(r.error()) +
                              " (more replier bindings than the queue holds; raise the queue "
                              "limit, --max-messages)");
  }
  return std::nullopt;
}

// ======================= LimpetRules =======================

LimpetRules::LimpetRules(std::uint32_t network_id, Logger log, bool trace)
    : network_id_(network_id), log_(std::move(log)), trace_(trace) {}

void LimpetRules::log(LogLevel level, const std::string& text) const {
  if (log_) log_(level, text);
}

void LimpetRules::link_up(std::uint32_t peer_id) {
  link_down();
  peer_id_ = peer_id;
}

void LimpetRules::link_down() {
  peer_id_ = 0;
  requests_.clear();
  proxies_.clear();
  retries_.clear();
}

// ---- bus -> peer (§10.4) ----

void LimpetRules::answer_on_bus(const Message& request, std::string_view name, BusOps& bus) {
  Message r;
  r.name = std::string(name);
  r.hdr.in_reply_to = request.hdr.id;
  r.hdr.to = request.hdr.from;
  auto sent = bus.send(r);
  if (!sent && sent.error() != Errc::eaddrnotavail) {
    log(LogLevel::kError, "cannot answer " + request.to_string() + " with " + r.name + ": " +
                              errname(sent.error()));
  }
}

void LimpetRules::loop_detected(const Message& m, const char* where) {
  ++counters_.loops;
  // Logged at the first one and then every 1000th: an error, not a storm.
  if (counters_.loops == 1 || counters_.loops % 1000 == 0) {
    log(LogLevel::kError,
        "loop: " + m.to_string() + " " + where + " carries this limpet's own network id " +
            std::to_string(network_id_) +
            "; dropped. The limpet network has a cycle, or another limpet uses network id " +
            std::to_string(network_id_) + " (" + std::to_string(counters_.loops) + " so far)");
  }
}

LimpetRules::FromBus LimpetRules::from_bus(Message& m, BusOps& bus) {
  const std::uint32_t self = bus.ksock_id();
  const bool owed = m.wants_us_to_reply();
  if (m.is_replier_bind_event()) {
    auto ev = decode_replier_bind_event(m.data);
    if (!ev) {
      log(LogLevel::kError, "malformed bind event " + m.to_string());
      return FromBus::kIgnore;
    }
    if (ev->binder == self) return FromBus::kIgnore;  // §10.4-2: our own proxy binding
  } else if (m.name == status_name::kUnbindEventsLost) {
    log(LogLevel::kError,
        "KBUS lost replier unbind events for this limpet; the other side may keep proxies "
        "of repliers that have gone (requests to them get $.KBUS.RemoteError replies)");
    return FromBus::kIgnore;
  } else {
    // Own traffic never goes back, except answers to Requests we injected.
    if (m.hdr.from == self && !(m.is_reply() && m.hdr.to == self)) {
      if (owed) {
        // We are the selected replier of a Request we injected ourselves.
        loop_detected(m, "from this limpet's own proxy binding");
        answer_on_bus(m, remote_error_name(ELOOP), bus);
      }
      return FromBus::kIgnore;
    }
    if (m.is_request() && !owed) return FromBus::kIgnore;  // a listener copy: not ours to route
    if (m.is_reply() && m.hdr.to != self) return FromBus::kIgnore;  // a listener copy
    if (m.hdr.id.network_id != 0 && m.hdr.id.network_id == peer_id_) {
      // §10.4-4: an echo of what the peer injected (by another Ksock?).
      if (owed) answer_on_bus(m, remote_error_name(ELOOP), bus);
      return FromBus::kIgnore;
    }
    if (m.hdr.id.network_id == network_id_) {
      loop_detected(m, "on the bus");
      if (owed) answer_on_bus(m, remote_error_name(ELOOP), bus);
      return FromBus::kIgnore;
    }
  }
  const MessageId as_read = m.hdr.id;
  if (m.hdr.id.network_id == 0) m.hdr.id.network_id = network_id_;  // §10.4-5
  if (m.hdr.orig_from.network_id == 0) {                            // §10.4-6
    m.hdr.orig_from = OrigFrom{network_id_, m.hdr.from};
  }
  if (owed) {  // §10.4-3, keyed by what the answer will carry back
    auto [it, fresh] = requests_.try_emplace(m.hdr.id, HeldRequest{as_read, m.hdr.from});
    if (!fresh) {
      // Another requester's Request with this id is still awaiting its
      // answer through this link (a client replaying an id it saw pass):
      // both answers would carry the same in_reply_to back. Refused, as the
      // bus refuses a sender's own duplicate (D13, D18).
      ++counters_.id_clashes;
      log(LogLevel::kError,
          "request " + as_read.to_string() + " from Ksock " + std::to_string(m.hdr.from) +
              " reuses the id of a request from Ksock " + std::to_string(it->second.requester) +
              " still awaiting its answer through this limpet; answered with " +
              remote_error_name(EADDRINUSE));
      Message request = m;
      request.hdr.id = as_read;
      answer_on_bus(request, remote_error_name(EADDRINUSE), bus);
      return FromBus::kIgnore;
    }
  }
  trace([&] { return "bus -> peer " + m.to_string(); });
  return FromBus::kForward;
}

// ---- peer -> bus (§10.5) ----

Message LimpetRules::error_for_peer(const Message& request, std::string_view name) {
  Message e;
  e.name = std::string(name);
  e.hdr.in_reply_to = request.hdr.id;
  e.hdr.to = request.hdr.from;
  trace([&] { return "answering the peer's " + request.to_string() + " with " + e.name; });
  ++counters_.errors_to_peer;
  return e;
}

LimpetRules::FromPeer LimpetRules::from_peer(Message& m, BusOps& bus, Message& error) {
  trace([&] { return "peer -> bus " + m.to_string(); });
  if (m.is_replier_bind_event()) {
    proxy_bind_event(m, bus);
    return FromPeer::kIgnore;
  }
  const bool owed_remote = m.wants_us_to_reply();  // a requester over there waits
  if (m.hdr.id.network_id == network_id_) {
    loop_detected(m, "from the peer");
    if (!owed_remote) return FromPeer::kIgnore;
    error = error_for_peer(m, remote_error_name(ELOOP));
    return FromPeer::kErrorToPeer;
  }
  if (m.is_reply()) return route_reply(m);
  if (m.is_request()) {
    // A Request the peer did not have to answer is a listener copy (an
    // original limpet forwards those); sending it here would give it a
    // second replier.
    if (!owed_remote) return FromPeer::kIgnore;
    if (m.is_stateful_request()) {  // §10.5-3
      // Local: this bus is the final destination (its network id is ours).
      const bool local = m.hdr.final_to.network_id == network_id_;
      auto r = bus.find_replier(m.name);
      if (!r) {
        error = error_for_peer(m, remote_error_name(to_errno(r.error())));
        return FromPeer::kErrorToPeer;
      }
      if (!*r) {
        error = error_for_peer(m, status_name::kReplierGoneAway);
        return FromPeer::kErrorToPeer;
      }
      if (local && **r != m.hdr.final_to.local_id) {
        error = error_for_peer(m, status_name::kReplierNotSameKsock);
        return FromPeer::kErrorToPeer;
      }
      if (local) m.hdr.final_to.network_id = 0;
      m.hdr.to = local ? m.hdr.final_to.local_id : **r;
    }
    return FromPeer::kSend;
  }
  return FromPeer::kSend;  // §10.5-4: an Announcement
}

LimpetRules::FromPeer LimpetRules::route_reply(Message& m) {
  // §10.5-2. The record is found by in_reply_to exactly as it crossed: the
  // Request crossed with its id stamped, so an answer carrying an id of the
  // peer's own bus ({0,n}) cannot match one of ours (§14-21).
  auto it = requests_.find(m.hdr.in_reply_to);
  if (it == requests_.end()) {
    trace([&] { return "no request awaits " + m.to_string() + "; dropped"; });
    return FromPeer::kIgnore;
  }
  m.hdr.to = it->second.requester;
  m.hdr.id = MessageId{};
  m.hdr.in_reply_to = it->second.id;
  requests_.erase(it);
  return FromPeer::kSend;
}

LimpetRules::FromPeer LimpetRules::send_failed(const Message& m, Errc e, BusOps& bus,
                                               Message& error) {
  if (e == Errc::ok || e == Errc::eagain) return FromPeer::kIgnore;  // sent, or pending
  if (m.is_reply()) {
    if (e == Errc::eaddrnotavail || e == Errc::econnrefused) {
      trace([&] { return "requester of " + m.hdr.in_reply_to.to_string() + " has gone"; });
      return FromPeer::kIgnore;
    }
    // EBUSY (ALL_OR_FAIL), EMSGSIZE...: the requester must still be answered.
    log(LogLevel::kInfo, "cannot send " + m.to_string() + ": " + errname(e) +
                             "; answering with a RemoteError instead");
    Message r;
    r.name = remote_error_name(to_errno(e));
    r.hdr.in_reply_to = m.hdr.in_reply_to;
    r.hdr.to = m.hdr.to;
    auto again = bus.send(r);
    if (!again) {
      log(LogLevel::kError,
          "cannot answer " + m.hdr.in_reply_to.to_string() + ": " + errname(again.error()));
    }
    return FromPeer::kIgnore;
  }
  if (m.is_request()) {
    error = error_for_peer(m, remote_error_name(to_errno(e)));  // §10.5-5
    return FromPeer::kErrorToPeer;
  }
  log(LogLevel::kInfo, "cannot send " + m.to_string() + ": " + errname(e));
  return FromPeer::kIgnore;
}

void LimpetRules::proxy_bind_event(const Message& m, BusOps& bus) {
  auto ev = decode_replier_bind_event(m.data);
  if (!ev) {
    log(LogLevel::kError, "malformed bind event from the peer " + m.to_string());
    return;
  }
  ProxyOp op{ev->is_bind, ev->name, ev->binder};
  if (!retries_.empty()) {  // keep the order of bind and unbind of one name
    retries_.push_back(std::move(op));
    return;
  }
  if (!apply_proxy_op(op, bus)) retries_.push_back(std::move(op));
}

// False if the operation should be retried (EAGAIN).
bool LimpetRules::apply_proxy_op(const ProxyOp& op, BusOps& bus) {
  if (op.is_bind) {
    auto it = proxies_.find(op.name);
    if (it != proxies_.end()) {  // reported again (e.g. after REPORTREPLIERBINDS)
      it->second = op.binder;
      return true;
    }
    auto r = bus.bind(op.name, true);
    if (r) {
      proxies_[op.name] = op.binder;
      log(LogLevel::kInfo, "proxy replier for " + op.name + " (Ksock " +
                               std::to_string(op.binder) + " over there)");
      return true;
    }
    if (r.error() == Errc::eagain) return false;
    // §14-20: log and continue.
    log(LogLevel::kError,
        "cannot bind " + op.name + " as proxy replier: " + errname(r.error()) +
            (r.error() == Errc::eaddrinuse ? " (this bus already has a replier for it)" : ""));
    return true;
  }
  auto it = proxies_.find(op.name);
  if (it == proxies_.end()) return true;
  auto r = bus.unbind(op.name, true);
  if (!r && r.error() == Errc::eagain) return false;
  if (!r) log(LogLevel::kError, "cannot unbind proxy replier " + op.name + ": " + errname(r.error()));
  proxies_.erase(it);
  log(LogLevel::kInfo, "proxy replier for " + op.name + " removed");
  return true;
}

void LimpetRules::retry(BusOps& bus) {
  while (!retries_.empty()) {
    if (!apply_proxy_op(retries_.front(), bus)) return;
    retries_.pop_front();
  }
}

// ======================= Limpet =======================

Limpet::Limpet(LimpetConfig cfg, BusPort& bus, PeerPort& peer, Logger log)
    : cfg_(std::move(cfg)), bus_(bus), peer_(peer), log_(std::move(log)),
      rules_(cfg_.network_id, log_, cfg_.trace) {}

void Limpet::log(LogLevel level, const std::string& text) const {
  if (log_) log_(level, text);
}

Result<std::uint32_t> Limpet::find_marker(std::uint32_t id) {
  auto report = bus_.bindings_report();
  if (!report) return report.error();
  const std::string marker = marker_name(id);
  const std::uint32_t self = bus_.ksock_id();
  std::istringstream in(*report);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::string bus_field, kind, name;
    std::uint64_t ksock = 0, pid = 0;
    if (!(fields >> bus_field >> ksock >> pid >> kind >> name)) continue;
    if (!bus_field.empty() && bus_field.back() == ':') bus_field.pop_back();
    if (bus_field != std::to_string(bus_.bus_number())) continue;
    if (kind == "L" && name == marker && ksock != self) return static_cast<std::uint32_t>(ksock);
  }
  return 0u;
}

std::optional<Fault> Limpet::attach_marker() {
  auto r = bus_.reopen();
  if (!r) return Fault{Fault::Kind::kBus, "cannot open bus " + std::to_string(bus_.bus_number()) +
                                              ": " + errname(r.error())};
  auto b = bus_.bind(marker_name(cfg_.network_id), false);
  if (!b) return Fault{Fault::Kind::kBus, "cannot bind " + marker_name(cfg_.network_id) + ": " +
                                              errname(b.error())};
  auto other = find_marker(cfg_.network_id);
  if (!other) return Fault{Fault::Kind::kBus, "cannot read the bindings report: " +
                                                  errname(other.error())};
  if (*other != 0) {
    return Fault{Fault::Kind::kMisconfig,
                 "another limpet with network id " + std::to_string(cfg_.network_id) +
                     " is already attached to bus " + std::to_string(bus_.bus_number()) +
                     " (Ksock " + std::to_string(*other) +
                     "); every limpet needs its own network id"};
  }
  return std::nullopt;
}

std::optional<Fault> Limpet::start() { return attach_marker(); }

std::optional<Fault> Limpet::link_up(std::uint32_t peer_id) {
  if (linked_) {
    if (auto f = link_down()) return f;
  }
  if (peer_id == cfg_.network_id) {
    return Fault{Fault::Kind::kMisconfig,
                 "the other limpet uses the same network id " + std::to_string(peer_id) +
                     "; the two ends of a pair need different network ids"};
  }
  auto other = find_marker(peer_id);
  if (!other) return Fault{Fault::Kind::kBus, "cannot read the bindings report: " +
                                                  errname(other.error())};
  if (*other != 0) {
    return Fault{Fault::Kind::kMisconfig,
                 "a limpet with the other end's network id " + std::to_string(peer_id) +
                     " is attached to this very bus " + std::to_string(bus_.bus_number()) +
                     " (Ksock " + std::to_string(*other) +
                     "): both ends of the pair are on the same bus, or two limpets share "
                     "network id " + std::to_string(peer_id)};
  }
  // §10.2-2, with a larger queue: the limpet carries a whole bus's traffic.
  // The rules know the peer before REPORTREPLIERBINDS queues its reports.
  rules_.link_up(peer_id);
  linked_ = true;
  if (auto e = set_up_ksock(bus_, cfg_.message_name, cfg_.max_messages, log_)) {
    linked_ = false;
    rules_.link_down();
    return Fault{Fault::Kind::kBus, e->operation + ": " + errname(e->error)};
  }
  return std::nullopt;
}

std::optional<Fault> Limpet::link_down() {
  const bool was = linked_;
  linked_ = false;
  if (was) {
    log(LogLevel::kInfo, "link down: " + std::to_string(rules_.requests_held()) +
                             " request(s) held, " + std::to_string(rules_.proxies().size()) +
                             " proxy replier binding(s); reopening the Ksock so that KBUS "
                             "answers them");
  }
  rules_.link_down();
  backlog_.clear();
  blocked_ = false;
  return attach_marker();
}

Limpet::Action Limpet::from_bus(const Message& m) {
  ++rules_.counters().from_bus;
  if (cfg_.termination && m.name == *cfg_.termination) {
    log(LogLevel::kInfo, "read the termination message " + m.name);
    return Action::kTerminate;
  }
  if (!linked_) {
    // No proxy bindings exist while unlinked; answer anything owed anyway.
    if (m.wants_us_to_reply()) rules_.answer_on_bus(m, status_name::kReplierGoneAway, bus_);
    return Action::kContinue;
  }
  Message out = m;
  if (rules_.from_bus(out, bus_) == LimpetRules::FromBus::kForward) {
    ++rules_.counters().to_peer;
    peer_.send_to_peer(out);
  }
  return Action::kContinue;
}

void Limpet::from_peer(const Message& m) {
  ++rules_.counters().from_peer;
  if (!linked_) return;
  if (blocked_ || !backlog_.empty()) {
    backlog_.push_back(m);
    return;
  }
  deliver_from_peer(m);
}

void Limpet::bus_writable() {
  blocked_ = false;
  while (!blocked_ && !backlog_.empty()) {
    Message m = std::move(backlog_.front());
    backlog_.pop_front();
    deliver_from_peer(m);
  }
}

void Limpet::deliver_from_peer(const Message& m) {
  Message out = m;
  Message error;
  switch (rules_.from_peer(out, bus_, error)) {
    case LimpetRules::FromPeer::kSend:
      send_to_bus(out);
      break;
    case LimpetRules::FromPeer::kErrorToPeer:
      peer_.send_to_peer(error);
      break;
    case LimpetRules::FromPeer::kIgnore:
      break;
  }
}

void Limpet::send_to_bus(const Message& m) {
  auto r = bus_.send(m);
  if (r) {
    ++rules_.counters().to_bus;
    return;
  }
  if (r.error() == Errc::eagain) {  // ALL_OR_WAIT: pending, completed by the bus
    ++rules_.counters().to_bus;
    blocked_ = true;
    return;
  }
  Message error;
  if (rules_.send_failed(m, r.error(), bus_, error) == LimpetRules::FromPeer::kErrorToPeer) {
    peer_.send_to_peer(error);
  }
}

}  // namespace kbus::limpet
