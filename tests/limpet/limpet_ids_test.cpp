// limpet/limpet_ids_test.cpp - request records of a limpet never alias
// (docs/decisions.md D18; KBUS-SPEC.md §10.4-3, §10.5-2, §6.1), with
// three kbusd joined by kbus-limpet over TCP on 127.0.0.1:
//
//     bus A  <- 1 == 2 ->  bus B  <- 3 == 4 ->  bus C
//
// A replier R on C, a requester Q on A, and an ordinary client X on B that
// listens to the Requests passing through B and sends Requests of its own
// with the very same (explicit) ids while the originals still await their
// answers. Before D18 the B->C limpet keyed its records by id alone: X's
// Request replaced Q's record, and Q's Request was never answered. Now
// every Request of Q is answered exactly once, by R, and each of X's is
// refused exactly once with $.KBUS.RemoteError.<EADDRINUSE>.
#include <cerrno>
#include <set>

#include "limpet/limpet_fixture.hpp"

namespace kbus::test {
namespace {

using namespace std::chrono_literals;

TEST(LimpetIds, ReplayedIdsOnAMiddleBusNeverTakeAnAnswer) {
  TestDaemon a(1), b(1), c(1);
  LimpetPair ab(b, a, "127.0.0.1:0", 2, 1);
  LimpetPair bc(c, b, "127.0.0.1:0", 4, 3);

  Ksock r = c.open(0), q = a.open(0), x = b.open(0);
  r.bind("$.Far", true);
  x.bind("$.Far");  // X hears every Request to $.Far that passes through B
  ASSERT_TRUE(wait_replier(x, "$.Far")) << "B's proxy for R";
  ASSERT_TRUE(wait_replier(q, "$.Far")) << "A's proxy for B's proxy";

  constexpr int kN = 10;
  std::set<MessageId> asked;
  for (int i = 0; i < kN; ++i) asked.insert(q.send_msg(make_request("$.Far", std::to_string(i))));

  // R holds them all, unanswered.
  std::vector<Message> held;
  while (held.size() < static_cast<std::size_t>(kN)) {
    auto m = r.wait_for_msg(10s);
    ASSERT_TRUE(m) << "R got " << held.size() << " of " << kN;
    ASSERT_TRUE(m->wants_us_to_reply());
    held.push_back(*m);
  }

  // X replays the id of each while it awaits its answer.
  std::set<MessageId> replayed;
  while (replayed.size() < static_cast<std::size_t>(kN)) {
    auto m = x.wait_for_msg(10s);
    ASSERT_TRUE(m) << "X saw " << replayed.size() << " of " << kN;
    if (!m->is_request() || m->hdr.from == x.id()) continue;
    EXPECT_EQ(m->hdr.id.network_id, 1u) << "stamped by A's limpet";
    Message replay = make_request("$.Far", "replayed");
    replay.hdr.id = m->hdr.id;
    auto sent = x.try_send_msg(replay);
    ASSERT_TRUE(sent.ok()) << "another sender's id: B accepts it (D13), "
                           << errno_name(to_errno(sent.error()));
    EXPECT_EQ(*sent, m->hdr.id) << "a non-zero network id is kept (§1.5-3)";
    replayed.insert(m->hdr.id);
  }
  auto refused = collect_answers(x, replayed);
  for (auto& id : replayed) {
    ASSERT_EQ(refused[id].size(), 1u) << id.to_string();
    EXPECT_EQ(refused[id][0].name, "$.KBUS.RemoteError." + std::to_string(EADDRINUSE));
    EXPECT_EQ(refused[id][0].hdr.to, x.id());
  }

  // R answers the real Requests: each reaches Q.
  for (auto& m : held) r.send_msg(make_reply(m, "for " + m.data).value());
  auto answers = collect_answers(q, asked);
  int answered = 0;
  for (auto& id : asked) {
    ASSERT_EQ(answers[id].size(), 1u) << id.to_string() << " on A";
    EXPECT_FALSE(answers[id][0].is_status()) << answers[id][0].to_string();
    EXPECT_EQ(answers[id][0].data.rfind("for ", 0), 0u);
    ++answered;
  }
  EXPECT_EQ(answered, kN);

  // One more round trip A -> C -> A: whatever else the Requests or replays
  // caused is queued by now (each link is one ordered stream).
  auto last = q.send_msg(make_request("$.Far", "last"));
  auto m = r.wait_for_msg(10s);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->data, "last") << "no replay reached R";
  r.send_msg(make_reply(*m, "bye").value());
  auto tail = collect_answers(q, {last});
  ASSERT_EQ(tail[last].size(), 1u);
  EXPECT_EQ(q.num_messages(), 0u) << "no second answer for any Request on A";
  EXPECT_EQ(r.num_messages(), 0u);
  std::size_t extra_for_x = 0;
  while (auto mx = x.read_next_msg()) {
    if (mx->hdr.to == x.id()) ++extra_for_x;
  }
  EXPECT_EQ(extra_for_x, 0u) << "no second answer for any replay";
}

}  // namespace
}  // namespace kbus::test
