// fuzz/fuzz_bus.cpp - the whole bus core (core/bus.hpp) driven by an
// operation sequence read from the input, with Bus::check_invariants()
// after every step and, at the end, the guarantee of KBUS-SPEC.md §6.1:
// every Request that SEND accepted has exactly one answer (Reply or Status)
// at its requester, and none has two.
//
// As in core/bus_random_test.cpp, requesters never bind and are never
// closed (a listener copy of a Reply looks exactly like the requester's
// own copy); every other Ksock binds, unbinds, reads, replies (from the
// right or the wrong Ksock), writes raw bytes from the input, and closes
// at random. The first input byte picks the bus limits, so the
// Ksocks-per-bus and queued-bytes limits (docs/reliability.md §4) are
// fuzzed too.
#include <algorithm>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "core/bus.hpp"
#include "fuzz/fuzz_check.hpp"
#include "kbus/message.hpp"

using namespace kbus;
using namespace kbus::core;

namespace {

const char* const kNames[] = {"$.A", "$.A.B", "$.A.C", "$.B.C.D"};
const char* const kBindNames[] = {"$.A",   "$.A.B", "$.A.C", "$.B.C.D", "$.A.*",
                                  "$.A.%", "$.*",   "$.B.%", "$.KBUS.ReplierBindEvent"};

class Input {
 public:
  Input(const std::uint8_t* d, std::size_t n) : d_(d), n_(n) {}
  bool more() const { return i_ < n_; }
  std::uint8_t byte() { return i_ < n_ ? d_[i_++] : 0; }
  unsigned pick(unsigned n) { return byte() % n; }
  std::string_view bytes(std::size_t n) {
    n = std::min(n, n_ - i_);
    std::string_view v(reinterpret_cast<const char*>(d_ + i_), n);
    i_ += n;
    return v;
  }

 private:
  const std::uint8_t* d_;
  std::size_t n_;
  std::size_t i_ = 0;
};

// Ksocks belong to three users (docs/decisions.md D28), so that the
// ledger's charges (checked by check_invariants) and, with small budgets,
// its refusals are exercised.
OpenOptions as_user(unsigned n) {
  OpenOptions o;
  o.uid = 1000 + n % 3;
  return o;
}

struct Run {
  Run(BusLimits l, LedgerLimits b) : ledger(b), bus(0, l, &ledger) {}
  Ledger ledger;
  Bus bus;
  unsigned opened = 0;
  std::vector<KsockId> requesters, others;
  std::map<KsockId, std::vector<Message>> to_answer;
  std::map<MessageId, KsockId> accepted;  // request id -> requester
  std::set<MessageId> maybe;              // went pending: 0 or 1 answer
  std::map<MessageId, int> answers;

  bool is_requester(KsockId k) const {
    return std::find(requesters.begin(), requesters.end(), k) != requesters.end();
  }

  void drain(KsockId k) {
    std::string buf;
    for (int i = 0; i < 1000; ++i) {
      buf.clear();
      auto r = bus.next_read(k, buf);
      FUZZ_CHECK(r.ok());
      if (*r == 0) return;
      auto m = decode_entire(buf, kHeaderLen64);
      FUZZ_CHECK(m.ok());
      const MessageId q = m->hdr.in_reply_to;
      if (is_requester(k) && m->is_reply() && m->hdr.to == k && !m->is_replier_bind_event()) {
        if ((accepted.count(q) && accepted[q] == k) || maybe.count(q)) ++answers[q];
      }
      if (m->wants_us_to_reply()) to_answer[k].push_back(*m);
    }
  }

  void send(KsockId k, const Message& m) {
    if (!bus.write(k, encode_entire(m, kHeaderLen64)).ok()) {
      bus.discard(k);
      return;
    }
    const SendOutcome s = bus.send(k);
    if (s.error == Errc::ok && m.is_request()) accepted[s.id] = k;
    if (s.error == Errc::eagain && m.is_request()) maybe.insert(s.id);
  }

  void step(Input& in) {
    std::vector<KsockId> all = requesters;
    all.insert(all.end(), others.begin(), others.end());
    const KsockId any = all[in.pick(static_cast<unsigned>(all.size()))];
    const KsockId other =
        others.empty() ? 0 : others[in.pick(static_cast<unsigned>(others.size()))];
    switch (in.pick(16)) {
      case 0: {
        auto k = bus.try_open(as_user(opened++));
        if (k.ok() && others.size() < 8) others.push_back(*k);
        else if (k.ok()) bus.close(*k);
        break;
      }
      case 1:
        if (other) {
          bus.close(other);
          to_answer.erase(other);
          others.erase(std::find(others.begin(), others.end(), other));
        }
        break;
      case 2:
        if (other) (void)bus.bind(other, in.pick(2), kBindNames[in.pick(9)]);
        break;
      case 3:
        if (other) (void)bus.unbind(other, in.pick(2), kBindNames[in.pick(9)]);
        break;
      case 4:
      case 5: {  // Requests from requesters, Announcements from anyone
        const bool req = in.pick(2) == 0;
        const KsockId k = req ? requesters[in.pick(static_cast<unsigned>(requesters.size()))] : any;
        std::uint32_t flags = in.byte() & (flag::kUrgent | 0x10);
        const unsigned all_or = in.pick(4);
        if (all_or == 0) flags |= flag::kAllOrWait;
        if (all_or == 1) flags |= flag::kAllOrFail;
        std::string data(in.pick(4) == 0 ? 300 * in.pick(8) : in.pick(8), 'd');
        Message m = req ? make_request(kNames[in.pick(4)], data, flags)
                        : make_announcement(kNames[in.pick(4)], data, flags);
        if (req && in.pick(4) == 0) m.hdr.to = in.pick(8);  // a Stateful Request
        send(k, m);
        if (bus.sending(k) && in.pick(2)) bus.discard(k);
        break;
      }
      case 6:
      case 7:
        drain(any);
        break;
      case 8: {  // answer, sometimes from the wrong Ksock
        if (to_answer.empty()) break;
        auto it = to_answer.begin();
        std::advance(it, in.pick(static_cast<unsigned>(to_answer.size())));
        if (it->second.empty() || !bus.is_open(it->first)) break;
        const Message req = it->second.back();
        it->second.pop_back();
        auto rep = make_reply(req, "r", in.pick(3) == 0 ? flag::kAllOrWait : 0);
        FUZZ_CHECK(rep.ok());
        const KsockId from = in.pick(4) == 0 ? any : it->first;
        send(from, *rep);
        if (from != it->first || bus.sending(from)) it->second.push_back(req);
        if (bus.sending(from) && in.pick(2)) bus.discard(from);
        break;
      }
      case 9:
        bus.max_msgs(any, 1 + in.pick(in.pick(2) ? 4 : 40));
        break;
      case 10:
        (void)bus.report_replier_binds(any, in.pick(3) == 2 ? 0xFFFFFFFF : in.pick(2));
        break;
      case 11:
        (void)bus.only_once(any, in.pick(2));
        break;
      case 12: {  // raw bytes from the input, written in pieces, then maybe sent
        if (!other) break;
        const std::size_t n = in.byte();
        const std::string_view raw = in.bytes(n);
        for (std::size_t off = 0; off < raw.size();) {
          const std::size_t piece = 1 + in.pick(64);
          if (!bus.write(other, raw.substr(off, piece)).ok()) break;
          off += piece;
        }
        if (in.pick(2)) (void)bus.send(other, in.pick(2) ? std::optional<std::string_view>("$.A")
                                                        : std::nullopt);
        else bus.discard(other);
        break;
      }
      case 13: {  // partial reads, NEXTMSG, LENLEFT
        if (!other) break;
        std::string out;
        const std::uint32_t len = bus.next_msg(other);
        const std::uint32_t part = in.pick(200);
        auto r = bus.read(other, part, out);
        FUZZ_CHECK(r.ok() && *r == std::min(part, len));
        FUZZ_CHECK(bus.len_left(other) == len - *r);
        break;
      }
      case 14:
        (void)bus.max_msg_size(in.pick(2) ? 100 + in.byte() * 16u : 0);
        break;
      case 15: {  // the daemon's view: touched Ksocks are open or just closed
        for (KsockId k : bus.take_touched()) FUZZ_CHECK(bus.is_open(k));
        break;
      }
    }
    bus.check_invariants();
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Input in(data, size);
  const std::uint8_t setup = in.byte();
  BusLimits limits;
  limits.max_msg_size = 4096;
  if (setup & 1) limits.max_ksocks = 4 + (setup >> 4);
  if (setup & 2) limits.max_queued_bytes = 200 + 64u * (setup >> 2);
  LedgerLimits budgets{0, 0, 0};
  if (setup & 4) budgets.per_user = 1000 + 256u * (setup >> 4);
  Run run(limits, budgets);
  for (int i = 0; i < 2; ++i) run.requesters.push_back(run.bus.open(as_user(run.opened++)));
  for (int i = 0; i < 2; ++i) run.others.push_back(run.bus.open(as_user(run.opened++)));
  for (int steps = 0; in.more() && steps < 5000; ++steps) run.step(in);

  // §6.1: close everything that can answer; the requesters then hold
  // exactly one answer for every Request SEND accepted.
  for (KsockId k : run.requesters) run.bus.discard(k);
  for (KsockId k : run.others) run.bus.close(k);
  run.bus.check_invariants();
  for (KsockId k : run.requesters) run.drain(k);
  for (const auto& [id, k] : run.accepted) FUZZ_CHECK(run.answers[id] == 1);
  for (MessageId id : run.maybe) FUZZ_CHECK(run.answers[id] <= 1);
  for (KsockId k : run.requesters) FUZZ_CHECK(run.bus.unreplied_to(k) == 0);
  for (KsockId k : run.requesters) run.bus.close(k);
  FUZZ_CHECK(run.ledger.total() == 0);  // closing gives every charge back
  return 0;
}
