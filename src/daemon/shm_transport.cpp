// daemon/shm_transport.cpp - the shared-memory receive queues (SHMRING,
// docs/protocol.md §7; the ring itself: shm/ring_format.hpp).
//
// What it owns: keeping each ring an exact mirror of the head of its
// Ksock's queue in the core, and turning what a client took from its ring
// into ordinary pops in the core. The rules stay the core's: kbusd pops a
// message (NEXTMSG + whole read: a Request becomes owed, MAXMSGS room is
// freed, set-aside events move up) only when it has seen the client's read
// position pass it.
//
// The cycle, per piece of work on a bus:
//   1. shm_freeze_bus (before an operation's handler, and before a CLOSE in
//      settle): every ring holding messages the client may take is frozen
//      (busy: the client takes nothing more) and what its client took is
//      popped in the core. Rings that held nothing need no freeze: their
//      client can take nothing.
//   2. the operation runs; apply_effects freezes every other ring whose
//      Ksock the core touched.
//   3. shm_publish (end of apply_effects): each frozen ring is compared
//      with its queue; if the queue no longer begins with the messages the
//      ring holds (an URGENT message went to the front, UNBIND or a socket
//      read removed some), the ring is emptied (R := W) and refilled from
//      the head; then new messages are appended, flags set, the ring
//      published, and its client woken if it sleeps.
// So the client can take a message only while the ring and the queue
// agree, and every operation sees the counts of all takes before it.
// A state word that an honest client could not have written disconnects
// that client (it harmed only itself); nothing else is read back.
#include <cerrno>
#include <cstring>

#include "daemon/connection.hpp"
#include "daemon/daemon.hpp"

namespace kbus::daemon {

// Before an operation's handler. The reports (BINDINGS, STATS) show every
// bus: the other buses' takes are counted first, and published again.
void Daemon::shm_before_op(BusEntry& be, std::uint32_t op) {
  using protocol::Op;
  const auto is = [op](Op o) { return op == static_cast<std::uint32_t>(o); };
  if (is(Op::kStats) || is(Op::kBindings) || is(Op::kStatsPart) || is(Op::kBindingsPart)) {
    for (BusEntry& other : buses_) {
      if (&other == &be || other.shm_live.empty()) continue;
      shm_freeze_bus(other);
      apply_effects(other);
    }
  }
  shm_freeze_bus(be);
}

void Daemon::shm_freeze_bus(BusEntry& be) {
  if (be.shm_live.empty()) return;
  std::vector<Connection*> live;
  live.swap(be.shm_live);
  for (Connection* c : live) {
    if (!c->closed && c->ring && !c->ring->frozen() && !c->ring_corrupt) shm_freeze(*c, be);
  }
}

void Daemon::shm_freeze(Connection& c, BusEntry& be) {
  core::Bus& bus = *be.bus;
  const auto taken = c.ring->freeze();
  if (!taken) {
    c.ring_corrupt = true;
    log_client(c, "its shared-memory queue's read position was overwritten "
                  "(not a value kbusd published): disconnecting");
    close_connection(c, nullptr);
    return;
  }
  be.shm_frozen.push_back(&c);
  // What the client took is read: pop it with NEXTMSG's rules.
  std::string scratch;
  std::uint32_t popped = 0;
  const auto& mirrored = c.ring->mirrored();
  for (std::uint32_t i = 0; i < *taken; ++i) {
    MessageId id;
    std::uint32_t flags = 0;
    if (!bus.peek_queued(c.ksock, 0, id, flags, nullptr) || id != mirrored[i].id) break;
    scratch.clear();
    (void)bus.next_read(c.ksock, scratch);
    ++popped;
  }
  if (popped != *taken)  // cannot happen while the cycle above holds
    log_client(c, "shared-memory queue out of step with the bus: " + std::to_string(*taken) +
                      " taken, " + std::to_string(popped) + " popped");
  c.ring->drop_taken(*taken);
}

void Daemon::shm_mirror(Connection& c, core::Bus& bus) {
  shm::RingWriter& ring = *c.ring;
  const auto& mirrored = ring.mirrored();
  MessageId id;
  std::uint32_t flags = 0;
  for (std::size_t i = 0; i < mirrored.size(); ++i) {
    if (!bus.peek_queued(c.ksock, i, id, flags, nullptr) || id != mirrored[i].id ||
        flags != mirrored[i].flags) {
      ring.skip_all();
      break;
    }
  }
  std::string entire;
  while (!ring.full()) {
    entire.clear();
    if (!bus.peek_queued(c.ksock, mirrored.size(), id, flags, &entire)) break;
    ring.append(id, flags, entire);
  }
  std::uint32_t ring_flags = 0;
  // More queued than the ring shows, or set-aside events (§8.4) that a pop
  // moves into the queue: the client says when it has emptied the ring.
  if (bus.num_msgs(c.ksock) > mirrored.size()) ring_flags |= shm::kNotifyWhenEmpty;
  if (bus.has_pending_senders()) ring_flags |= shm::kNotifyEach;
  const int tokens = ring.publish(ring_flags);
  if (tokens > 0)
    c.poll.send_token();
  else if (tokens < 0)
    c.poll.drain_tokens();
}

void Daemon::shm_publish(BusEntry& be) {
  if (be.shm_frozen.empty()) return;
  std::vector<Connection*> frozen;
  frozen.swap(be.shm_frozen);
  for (Connection* c : frozen) {
    if (!c->ring || !c->ring->frozen()) continue;
    if (c->closed || c->ksock == 0) continue;  // left busy: its client is being cut off
    shm_mirror(*c, *be.bus);
    if (!c->ring->mirrored().empty()) be.shm_live.push_back(c);
  }
}

void Daemon::shm_before_close(Connection& c, BusEntry& be) {
  shm_freeze_bus(be);  // a CLOSE changes other queues too (statuses, pending sends)
  if (!c.ring) return;
  // What its client took before it went counts as read (a Request taken is
  // owed a reply; one still in the ring gets "Replier GoneAway", §7.2).
  if (!c.ring->frozen() && !c.ring_corrupt) shm_freeze(c, be);
  auto drop = [&c](std::vector<Connection*>& v) {
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (v[i] == &c) {
        v[i] = v.back();
        v.pop_back();
        --i;
      }
    }
  };
  drop(be.shm_live);
  drop(be.shm_frozen);
  c.ring.reset();
}

// SHMRING (docs/protocol.md §7): 1 makes the ring and hands its memfd to
// the client through the poll fd; 2 (once the client has it) starts
// mirroring; 3 asks for a token if the ring holds messages; 0 gives the
// ring up.
void Daemon::op_shm_ring(Connection& c, BusEntry& be, std::string_view payload) {
  using protocol::Op;
  protocol::U32Arg a;
  if (!protocol::decode_request<Op::kShmRing>(payload, a)) return protocol::append_error(c.out, EFAULT);
  core::Bus& bus = *be.bus;
  // A ring's pages stay charged while kbusd maps it (D28).
  const auto uncharge = [&] { ledger_.adjust(c.uid, core::Charge::kRing, c.charged_ring, 0); };
  switch (a.value) {
    case 0:
      c.ring_offered.reset();
      if (c.ring) {
        if (!c.ring->frozen() && !c.ring_corrupt) shm_freeze(c, be);  // its takes count
        shm_before_close(c, be);  // the client's copy stays busy: it takes nothing more
        c.poll.drain_tokens();
        c.poll.update(bus.readable(c.ksock), bus.writable(c.ksock));
      } else {
        uncharge();  // only an offered ring, now unmapped
      }
      return protocol::append_reply<Op::kShmRing>(c.out, 0, {shm::kVersion});
    case 1:
      break;
    case 2:
      if (c.ring) return protocol::append_reply<Op::kShmRing>(c.out, 0, {shm::kVersion});
      if (!c.ring_offered) return protocol::append_error(c.out, EINVAL);  // 1 first
      c.ring = std::move(c.ring_offered);
      c.poll.drain_tokens();  // readability is the ring's tokens from now on
      shm_freeze(c, be);      // published, with the queue's head, when this operation ends
      return protocol::append_reply<Op::kShmRing>(c.out, 0, {shm::kVersion});
    case 3:
      // The client took back a token that a publication racing with its
      // last take had sent (ring_reader.cpp settle_tokens).
      if (c.ring && !c.ring->mirrored().empty()) c.poll.send_token();
      return protocol::append_reply<Op::kShmRing>(c.out, 0, {shm::kVersion});
    default:
      return protocol::append_error(c.out, EINVAL);
  }
  if (c.ring || c.ring_offered) return protocol::append_error(c.out, EALREADY);
  if (!bus.can_read(c.ksock)) return protocol::append_error(c.out, EBADF);
  if (!make_poll_fd(c, bus)) return protocol::append_error(c.out, EMFILE);
  // Its pages are charged to its user (D28): over budget, the client reads
  // through the socket instead.
  if (!ledger_.try_charge(c.uid, core::Charge::kRing, shm::kRingBytes)) {
    log_client(c, "no shared-memory queue (" + std::to_string(shm::kRingBytes) +
                      " bytes would pass a budget): " + budget_text(c.uid) +
                      "; it reads through its socket");
    return protocol::append_error(c.out, ENOMEM);
  }
  c.charged_ring = shm::kRingBytes;
  auto ring = shm::RingWriter::create();
  if (!ring) {
    uncharge();
    const int err = errno;
    log_client(c, std::string("cannot make its shared-memory queue: ") + std::strerror(err));
    return protocol::append_error(c.out, err == EMFILE || err == ENFILE ? EMFILE : ENOMEM);
  }
  // The fds go ahead of any readiness byte (the client reads one byte).
  c.poll.update(false, bus.writable(c.ksock));
  const int fds[1] = {ring->memfd()};
  const bool sent = c.poll.send_fds(fds, 1);
  const int err = errno;
  c.poll.update(bus.readable(c.ksock), bus.writable(c.ksock));
  if (!sent) {
    uncharge();
    log_client(c, std::string("cannot hand over its shared-memory queue: ") + std::strerror(err));
    return protocol::append_error(c.out, ENOMEM);
  }
  ring->drop_memfd();  // the mapping stays
  c.ring_offered = std::move(ring);
  protocol::append_reply<Op::kShmRing>(c.out, 0, {shm::kVersion});
}

}  // namespace kbus::daemon
