// Randomised operation sequences against the bus core, checking its
// invariants after every step and, at the end, the guarantee of §6.1: every
// Request that SEND accepted gets exactly one answer (Reply or Status) at
// the requester, and none gets two.
//
// Requesters are Ksocks that never bind and are never closed during the run; everything else (listeners, repliers, which also reply,
// forget to reply, unbind and close at random) comes and goes.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "core/bus.hpp"
#include "kbus/message.hpp"

namespace kbus::core {
namespace {

const char* const kNames[] = {"$.A", "$.A.B", "$.A.C", "$.B.C.D", "$.KBUS.ReplierBindEvent"};
const char* const kBindNames[] = {"$.A",   "$.A.B", "$.A.C", "$.B.C.D", "$.A.*",
                                  "$.A.%", "$.*",   "$.B.%", "$.KBUS.ReplierBindEvent"};

struct RandomRun {
  // With a ledger (docs/decisions.md D28), small budgets: three users, one
  // of them root (never refused for the total), so that sends, Requests
  // and binds are refused now and then; check_invariants() checks that
  // every Ksock's charges match what it holds.
  explicit RandomRun(unsigned seed, bool with_ledger = false)
      : rng(seed), ledger({4000, 9000, 0}), bus(0, {}, with_ledger ? &ledger : nullptr) {}

  std::mt19937 rng;
  Ledger ledger;
  Bus bus;
  unsigned opened = 0;
  OpenOptions user_opts() {
    OpenOptions o;
    o.uid = (opened++ % 3) * 1000;  // 0 (root), 1000, 2000
    return o;
  }
  std::vector<KsockId> requesters;
  std::vector<KsockId> others;
  std::map<KsockId, std::vector<Message>> to_answer;  // popped Requests with YOU
  std::map<MessageId, KsockId> accepted;              // request id -> requester
  std::set<MessageId> maybe;                          // went pending: 0 or 1 answer
  std::map<MessageId, int> answers;
  std::string buf;

  unsigned pick(unsigned n) { return std::uniform_int_distribution<unsigned>(0, n - 1)(rng); }

  void drain(KsockId k, bool requester) {
    for (;;) {
      buf.clear();
      auto r = bus.next_read(k, buf);
      ASSERT_TRUE(r.ok());
      if (*r == 0) return;
      auto m = decode_entire(buf, kHeaderLen64);
      ASSERT_TRUE(m.ok());
      if (m->is_reply() && m->hdr.to == k && requester &&
          (accepted.count(m->hdr.in_reply_to) || maybe.count(m->hdr.in_reply_to)) &&
          m->name.rfind("$.KBUS.ReplierBindEvent", 0) != 0) {
        // Listener copies of Replies are addressed to someone else, so only
        // count the requester's own answers (to == k).
        if (accepted.count(m->hdr.in_reply_to) && accepted[m->hdr.in_reply_to] == k)
          ++answers[m->hdr.in_reply_to];
        else if (maybe.count(m->hdr.in_reply_to))
          ++answers[m->hdr.in_reply_to];
      }
      if (m->wants_us_to_reply()) to_answer[k].push_back(*m);
    }
  }

  void send_from(KsockId k, Message m) {
    std::string bytes = encode_entire(m, kHeaderLen64);
    auto w = bus.write(k, bytes);
    if (!w.ok()) {
      bus.discard(k);
      return;
    }
    const bool req = m.is_request();
    SendOutcome s = bus.send(k);
    if (s.error == Errc::ok && req) accepted[s.id] = k;
    if (s.error == Errc::eagain) {
      if (req) maybe.insert(s.id);
      if (pick(2)) bus.discard(k);  // abandon it, or leave it pending
    }
  }

  void step() {
    const unsigned op = pick(12);
    std::vector<KsockId> all = requesters;
    all.insert(all.end(), others.begin(), others.end());
    const KsockId any = all[pick(static_cast<unsigned>(all.size()))];
    switch (op) {
      case 0:
        if (others.size() < 6) others.push_back(bus.open(user_opts()));
        break;
      case 1:
        if (!others.empty()) {
          const unsigned i = pick(static_cast<unsigned>(others.size()));
          bus.close(others[i]);
          to_answer.erase(others[i]);
          others.erase(others.begin() + i);
        }
        break;
      case 2:
      case 3: {  // requesters never bind: listener copies of a Reply look
                 // exactly like the requester's own copy
        if (others.empty()) break;
        const KsockId k = others[pick(static_cast<unsigned>(others.size()))];
        if (op == 2)
          (void)bus.bind(k, pick(2), kBindNames[pick(9)]);
        else
          (void)bus.unbind(k, pick(2), kBindNames[pick(9)]);
        break;
      }
      case 4:
      case 5: {  // requests from requesters, announcements from anyone
        const bool req = op == 4;
        const KsockId k = req ? requesters[pick(static_cast<unsigned>(requesters.size()))] : any;
        std::uint32_t flags = 0;
        if (pick(4) == 0) flags |= flag::kUrgent;
        const unsigned all_or = pick(5);
        if (all_or == 0) flags |= flag::kAllOrWait;
        if (all_or == 1) flags |= flag::kAllOrFail;
        Message m = req ? make_request(kNames[pick(4)], "q", flags)
                        : make_announcement(kNames[pick(4)], "a", flags);
        send_from(k, m);
        break;
      }
      case 6:
      case 7: {
        const bool is_req = std::find(requesters.begin(), requesters.end(), any) != requesters.end();
        drain(any, is_req);
        break;
      }
      case 8: {  // answer (sometimes from the wrong Ksock)
        if (to_answer.empty()) break;
        auto it = to_answer.begin();
        std::advance(it, pick(static_cast<unsigned>(to_answer.size())));
        if (it->second.empty()) break;
        Message req = it->second.back();
        it->second.pop_back();
        if (!bus.is_open(it->first)) break;
        auto rep = make_reply(req, "r", pick(3) == 0 ? flag::kAllOrWait : 0);
        send_from(pick(5) == 0 ? any : it->first, *rep);
        break;
      }
      case 9:
        bus.max_msgs(any, 1 + pick(pick(2) ? 4 : 40));
        break;
      case 10:
        (void)bus.report_replier_binds(any, pick(2));
        break;
      case 11:
        (void)bus.only_once(any, pick(2));
        break;
    }
    bus.check_invariants();
  }
};

class BusRandom : public ::testing::TestWithParam<std::tuple<unsigned, bool>> {};

TEST_P(BusRandom, InvariantsHoldAndEveryAcceptedRequestGetsExactlyOneAnswer) {
  const bool with_ledger = std::get<1>(GetParam());
  RandomRun run(std::get<0>(GetParam()), with_ledger);
  for (int i = 0; i < 3; ++i) run.requesters.push_back(run.bus.open(run.user_opts()));
  for (int i = 0; i < 3; ++i) run.others.push_back(run.bus.open(run.user_opts()));
  for (int i = 0; i < 10000; ++i) {
    run.step();
    if (::testing::Test::HasFatalFailure()) return;
  }
  // §6.1: close everything that can answer; the requesters then hold exactly
  // one answer for every request SEND accepted.
  for (KsockId k : run.requesters) run.bus.discard(k);
  for (KsockId k : run.others) run.bus.close(k);
  run.bus.check_invariants();
  for (KsockId k : run.requesters) run.drain(k, true);
  for (const auto& [id, k] : run.accepted) {
    EXPECT_EQ(run.answers[id], 1) << "request " << id.to_string() << " from ksock " << k;
  }
  for (MessageId id : run.maybe) EXPECT_LE(run.answers[id], 1) << id.to_string();
  for (KsockId k : run.requesters) EXPECT_EQ(run.bus.unreplied_to(k), 0u);
  EXPECT_GT(run.accepted.size(), 60u) << "the run should exercise many requests";
  // Everything charged is released when the Ksocks that hold it close.
  for (KsockId k : run.requesters) run.bus.close(k);
  EXPECT_EQ(run.ledger.total(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Seeds, BusRandom,
                         ::testing::Combine(::testing::Range(1u, 21u), ::testing::Bool()));

}  // namespace
}  // namespace kbus::core
