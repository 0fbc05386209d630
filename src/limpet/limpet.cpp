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
//     answered all the same.
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

Limpet::Limpet(LimpetConfig cfg, BusPort& bus, PeerPort& peer, Logger log)
    : cfg_(std::move(cfg)), bus_(bus), peer_(peer), log_(std::move(log)) {}

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
  auto fail = [&](const char* what, Errc e) {
    return Fault{Fault::Kind::kBus, std::string(what) + ": " + errname(e)};
  };
  if (auto r = bus_.set_max_messages(cfg_.max_messages); !r) return fail("MAXMSGS", r.error());
  if (auto r = bus_.only_once(true); !r) return fail("MSGONLYONCE", r.error());
  if (auto r = bus_.bind(cfg_.message_name, false); !r) {
    return fail(("BIND " + cfg_.message_name).c_str(), r.error());
  }
  if (auto r = bus_.bind(status_name::kReplierBindEvent, false); !r) {
    return fail("BIND $.KBUS.ReplierBindEvent", r.error());
  }
  linked_ = true;
  peer_id_ = peer_id;
  if (auto r = bus_.report_replier_binds(); !r) {
    // EBUSY: our queue filled up with existing bindings; the rest are lost.
    log(LogLevel::kError, "REPORTREPLIERBINDS: " + errname(r.error()) +
                              " (more replier bindings than the queue holds; raise --max-messages)");
  }
  return std::nullopt;
}

std::optional<Fault> Limpet::link_down() {
  const bool was = linked_;
  linked_ = false;
  peer_id_ = 0;
  if (was) {
    log(LogLevel::kInfo, "link down: " + std::to_string(requests_.size()) +
                             " request(s) held, " + std::to_string(proxies_.size()) +
                             " proxy replier binding(s); reopening the Ksock so that KBUS "
                             "answers them");
  }
  requests_.clear();
  proxies_.clear();
  backlog_.clear();
  retries_.clear();
  blocked_ = false;
  return attach_marker();
}

// ---- bus -> peer (§10.4) ----

void Limpet::answer_on_bus(const Message& request, std::string_view name) {
  Message r;
  r.name = std::string(name);
  r.hdr.in_reply_to = request.hdr.id;
  r.hdr.to = request.hdr.from;
  auto sent = bus_.send(r);
  if (!sent && sent.error() != Errc::eaddrnotavail) {
    log(LogLevel::kError, "cannot answer " + request.to_string() + " with " + r.name + ": " +
                              errname(sent.error()));
  }
}

void Limpet::loop_detected(const Message& m, const char* where) {
  ++counters_.loops;
  // Logged at the first one and then every 1000th: an error, not a storm.
  if (counters_.loops == 1 || counters_.loops % 1000 == 0) {
    log(LogLevel::kError,
        "loop: " + m.to_string() + " " + where + " carries this limpet's own network id " +
            std::to_string(cfg_.network_id) +
            "; dropped. The limpet network has a cycle, or another limpet uses network id " +
            std::to_string(cfg_.network_id) + " (" + std::to_string(counters_.loops) +
            " so far)");
  }
}

Limpet::Action Limpet::from_bus(const Message& m) {
  ++counters_.from_bus;
  if (cfg_.termination && m.name == *cfg_.termination) {
    log(LogLevel::kInfo, "read the termination message " + m.name);
    return Action::kTerminate;
  }
  const std::uint32_t self = bus_.ksock_id();
  const bool owed = m.wants_us_to_reply();
  if (!linked_) {
    // No proxy bindings exist while unlinked; answer anything owed anyway.
    if (owed) answer_on_bus(m, status_name::kReplierGoneAway);
    return Action::kContinue;
  }
  if (m.is_replier_bind_event()) {
    auto ev = decode_replier_bind_event(m.data);
    if (!ev) {
      log(LogLevel::kError, "malformed bind event " + m.to_string());
      return Action::kContinue;
    }
    if (ev->binder == self) return Action::kContinue;  // §10.4-2: our own proxy binding
    forward(m);
    return Action::kContinue;
  }
  if (m.name == status_name::kUnbindEventsLost) {
    log(LogLevel::kError,
        "KBUS lost replier unbind events for this limpet; the other side may keep proxies "
        "of repliers that have gone (requests to them get $.KBUS.RemoteError replies)");
    return Action::kContinue;
  }
  // Own traffic never goes back, except answers to Requests we injected.
  if (m.hdr.from == self && !(m.is_reply() && m.hdr.to == self)) {
    if (owed) {
      // We are the selected replier of a Request we injected ourselves.
      loop_detected(m, "from this limpet's own proxy binding");
      answer_on_bus(m, remote_error_name(ELOOP));
    }
    return Action::kContinue;
  }
  if (m.is_request() && !owed) return Action::kContinue;  // a listener copy: not ours to route
  if (m.is_reply() && m.hdr.to != self) return Action::kContinue;  // a listener copy
  if (m.hdr.id.network_id != 0 && m.hdr.id.network_id == peer_id_) {
    // §10.4-4: an echo of what the peer injected (by another Ksock?).
    if (owed) answer_on_bus(m, remote_error_name(ELOOP));
    return Action::kContinue;
  }
  if (m.hdr.id.network_id == cfg_.network_id) {
    loop_detected(m, "on the bus");
    if (owed) answer_on_bus(m, remote_error_name(ELOOP));
    return Action::kContinue;
  }
  if (owed) requests_[m.hdr.id] = m.hdr.from;  // §10.4-3, id as read
  forward(m);
  return Action::kContinue;
}

void Limpet::forward(const Message& m) {
  Message out = m;
  if (out.hdr.id.network_id == 0) out.hdr.id.network_id = cfg_.network_id;  // §10.4-5
  if (out.hdr.orig_from.network_id == 0) {                                    // §10.4-6
    out.hdr.orig_from = OrigFrom{cfg_.network_id, m.hdr.from};
  }
  log(LogLevel::kTrace, "bus -> peer " + out.to_string());
  ++counters_.to_peer;
  peer_.send_to_peer(out);
}

// ---- peer -> bus (§10.5) ----

void Limpet::from_peer(const Message& m) {
  ++counters_.from_peer;
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

void Limpet::error_to_peer(const Message& request, std::string_view name) {
  Message e;
  e.name = std::string(name);
  e.hdr.in_reply_to = request.hdr.id;
  e.hdr.to = request.hdr.from;
  log(LogLevel::kTrace, "answering the peer's " + request.to_string() + " with " + e.name);
  ++counters_.errors_to_peer;
  peer_.send_to_peer(e);
}

void Limpet::deliver_from_peer(const Message& m) {
  log(LogLevel::kTrace, "peer -> bus " + m.to_string());
  if (m.is_replier_bind_event()) {
    proxy_bind_event(m);
    return;
  }
  const bool owed_remote = m.wants_us_to_reply();  // a requester over there waits
  if (m.hdr.id.network_id == cfg_.network_id) {
    loop_detected(m, "from the peer");
    if (owed_remote) error_to_peer(m, remote_error_name(ELOOP));
    return;
  }
  if (m.is_reply()) {
    route_reply(m);
    return;
  }
  if (m.is_request()) {
    // A Request the peer did not have to answer is a listener copy (an
    // original limpet forwards those); sending it here would give it a
    // second replier.
    if (!owed_remote) return;
    Message out = m;
    if (out.is_stateful_request()) {  // §10.5-3
      bool local = false;
      if (out.hdr.final_to.network_id == cfg_.network_id) {
        out.hdr.final_to.network_id = 0;
        local = true;
      }
      auto r = bus_.find_replier(out.name);
      if (!r) {
        error_to_peer(m, remote_error_name(to_errno(r.error())));
        return;
      }
      if (!*r) {
        error_to_peer(m, status_name::kReplierGoneAway);
        return;
      }
      if (local && **r != out.hdr.final_to.local_id) {
        error_to_peer(m, status_name::kReplierNotSameKsock);
        return;
      }
      out.hdr.to = local ? out.hdr.final_to.local_id : **r;
    }
    send_to_bus(out, &m);
    return;
  }
  send_to_bus(m, nullptr);  // §10.5-4: an Announcement
}

void Limpet::send_to_bus(const Message& m, const Message* request) {
  auto r = bus_.send(m);
  if (r) {
    ++counters_.to_bus;
    return;
  }
  if (r.error() == Errc::eagain) {  // ALL_OR_WAIT: pending, completed by the bus
    ++counters_.to_bus;
    blocked_ = true;
    return;
  }
  if (request) {
    error_to_peer(*request, remote_error_name(to_errno(r.error())));  // §10.5-5
  } else {
    log(LogLevel::kInfo, "cannot send " + m.to_string() + ": " + errname(r.error()));
  }
}

void Limpet::route_reply(const Message& m) {
  MessageId key = m.hdr.in_reply_to;
  if (key.network_id == cfg_.network_id) key.network_id = 0;  // §10.5-2
  auto it = requests_.find(key);
  if (it == requests_.end()) {
    log(LogLevel::kTrace, "no request awaits " + m.to_string() + "; dropped");
    return;
  }
  Message out = m;
  out.hdr.to = it->second;
  out.hdr.id = MessageId{};
  out.hdr.in_reply_to = key;
  requests_.erase(it);
  auto r = bus_.send(out);
  if (r) {
    ++counters_.to_bus;
    return;
  }
  if (r.error() == Errc::eagain) {
    ++counters_.to_bus;
    blocked_ = true;
    return;
  }
  if (r.error() == Errc::eaddrnotavail || r.error() == Errc::econnrefused) {
    log(LogLevel::kTrace, "requester of " + key.to_string() + " has gone");
    return;
  }
  // EBUSY (ALL_OR_FAIL), EMSGSIZE...: the requester must still be answered.
  log(LogLevel::kInfo, "cannot send " + out.to_string() + ": " + errname(r.error()) +
                           "; answering with a RemoteError instead");
  Message e;
  e.name = remote_error_name(to_errno(r.error()));
  e.hdr.in_reply_to = key;
  e.hdr.to = out.hdr.to;
  auto again = bus_.send(e);
  if (!again) {
    log(LogLevel::kError, "cannot answer " + key.to_string() + ": " + errname(again.error()));
  }
}

void Limpet::proxy_bind_event(const Message& m) {
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
  if (!apply_proxy_op(op)) retries_.push_back(std::move(op));
}

// False if the operation should be retried (EAGAIN).
bool Limpet::apply_proxy_op(const ProxyOp& op) {
  if (op.is_bind) {
    auto it = proxies_.find(op.name);
    if (it != proxies_.end()) {  // reported again (e.g. after REPORTREPLIERBINDS)
      it->second = op.binder;
      return true;
    }
    auto r = bus_.bind(op.name, true);
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
  auto r = bus_.unbind(op.name, true);
  if (!r && r.error() == Errc::eagain) return false;
  if (!r) log(LogLevel::kError, "cannot unbind proxy replier " + op.name + ": " + errname(r.error()));
  proxies_.erase(it);
  log(LogLevel::kInfo, "proxy replier for " + op.name + " removed");
  return true;
}

void Limpet::retry() {
  while (!retries_.empty()) {
    if (!apply_proxy_op(retries_.front())) return;
    retries_.pop_front();
  }
}

}  // namespace kbus::limpet
