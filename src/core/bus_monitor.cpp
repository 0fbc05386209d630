// core/bus_monitor.cpp - MONITOR (docs/decisions.md D25): a Ksock that sees
// every message of its bus, as dbus-monitor does, without taking part.
//
// A monitor gets, in bus order, one copy of every message the bus sends
// (each successful SEND, also one that reached nobody, and a pending send
// when it completes) and of every message KBUS makes (the Status messages
// of §6.2, Replier Bind Events, UnbindEventsLost), at the back of its queue
// whatever URGENT says, with WANT_YOU_TO_REPLY clear. It is never a
// recipient: §5.2 never looks at it, so it cannot make a send fail, wait or
// skip anyone, and its queue being full only makes it miss copies, which it
// is told through the count MONITOR answers.
#include <algorithm>

#include "core/bus.hpp"

namespace kbus::core {

namespace {
constexpr std::uint32_t kMonitorQuery = 0xFFFFFFFF;
}  // namespace

Result<std::uint32_t> Bus::monitor(KsockId id, std::uint32_t v) {
  Ksock& k = ks(id);
  if (v != 0 && v != 1 && v != kMonitorQuery) return Errc::einval;
  if (!k.can_read) return Errc::ebadf;
  if (v == 1 && !k.monitor) {
    // A monitor takes no part in KBUS: it starts as a Ksock that has none.
    if (k.bindings != 0 || !k.outstanding.empty() || !k.owed.empty() || k.sending ||
        k.writer.started())
      return Errc::ebusy;
    k.monitor = true;
    monitors_.insert(std::upper_bound(monitors_.begin(), monitors_.end(), id), id);
  } else if (v == 0 && k.monitor) {
    k.monitor = false;
    std::erase(monitors_, id);
  }
  const std::uint32_t missed = k.monitor_missed;
  k.monitor_missed = 0;
  return missed;
}

bool Bus::is_monitor(KsockId id) const { return ks(id).monitor; }

void Bus::monitor_copy(const Header& hdr, const MessageBody& body, KsockId got_it) {
  for (KsockId id : monitors_) {
    if (id == got_it) continue;
    Ksock& m = ks(id);
    // Its queue's limits (MAXMSGS, --max-queued-bytes) and its user's
    // budget (the receiver pays, D28) hold: a full monitor misses the copy,
    // and only it.
    if (full(m) || over_budget(m, entry_bytes(body))) {
      if (m.monitor_missed != 0xFFFFFFFFu) ++m.monitor_missed;
      continue;
    }
    QueueEntry e{hdr, body, 0};
    e.hdr.flags &= ~flag::kWantYouToReply;
    m.queue.push_back(std::move(e));
    sync_queue(m);
    touch(id);
  }
}

}  // namespace kbus::core
