// core/bus_ledger_test.cpp - the bus's rules when what each Ksock holds is
// charged to its user (core/ledger.hpp, docs/decisions.md D28,
// docs/reliability.md §4): who pays, what fails with which errno, what is
// never refused, and that closing gives everything back. Also the
// per-Ksock binding limit, removal by Ksock, and the reports in parts.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/bus.hpp"
#include "core/ledger.hpp"
#include "core/test_helpers.hpp"

namespace kbus::core {
namespace {

using namespace test;

constexpr std::uint32_t kAlice = 1000, kBob = 2000;

class BusLedger : public ::testing::Test {
 protected:
  void TearDown() override { bus.check_invariants(); }
  static BusLimits big_messages() {
    BusLimits l;
    l.max_msg_size = 409600;
    return l;
  }
  KsockId open_as(std::uint32_t uid) {
    OpenOptions o;
    o.uid = uid;
    return bus.open(o);
  }
  // A message whose queued copy costs exactly `bytes` (88 + name + data).
  static Message sized(std::string name, std::size_t bytes, std::uint32_t flags = 0) {
    return msg(name, std::string(bytes - 88 - name.size(), 'x'), flags);
  }
  Ledger ledger{{10000, 0, 0}};
  Bus bus{0, big_messages(), &ledger};
};

// KBUS-SPEC.md §5.1, §5.2-14: a listener whose user cannot pay for a copy
// is full for it and silently gets nothing, like any full listener; other
// users' listeners are not affected. The receiver pays (D28).
TEST_F(BusLedger, AListenerWhoseUserIsOverBudgetMissesMessagesAndOthersDoNot) {
  const KsockId sender = open_as(kBob), slow = open_as(kAlice), other = open_as(0);
  bus.max_msgs(slow, 1000);
  ASSERT_TRUE(bus.bind(slow, 0, "$.Feed").ok());
  ASSERT_TRUE(bus.bind(other, 0, "$.Feed").ok());
  const std::uint64_t binding = ledger.used(kAlice);
  for (int i = 0; i < 12; ++i) send_ok(bus, sender, sized("$.Feed", 1000));
  EXPECT_EQ(bus.num_msgs(slow), 9u);  // 9 x 1000 + the binding fit in 10000
  EXPECT_EQ(ledger.used(kAlice, Charge::kQueued), 9000u);
  EXPECT_EQ(ledger.used(kAlice), 9000u + binding);
  EXPECT_EQ(bus.num_msgs(other), 12u);  // root's budget (none by default) is its own
  EXPECT_EQ(ledger.used(kBob), 0u);      // the sender pays for nothing queued elsewhere
  // The three copies missed are counted against Alice, for kbusd's log line.
  using Refused = std::vector<std::pair<std::uint32_t, std::uint64_t>>;
  EXPECT_EQ(ledger.take_refused(), (Refused{{kAlice, 3}}));
  EXPECT_FALSE(ledger.has_refusals());
  // Reading gives the budget back: the next message is queued again.
  receive_one(bus, slow);
  send_ok(bus, sender, sized("$.Feed", 1000));
  EXPECT_EQ(bus.num_msgs(slow), 9u);
  EXPECT_EQ(ledger.used(kAlice, Charge::kQueued), 9000u);
}

// §5.2-12: a replier whose user cannot pay is full: EBUSY, or EAGAIN with
// ALL_OR_WAIT (the send then waits, §5.5, and goes through once it reads).
TEST_F(BusLedger, ARequestToAReplierWhoseUserIsOverBudgetIsEBUSYOrWaits) {
  const KsockId requester = open_as(kBob), replier = open_as(kAlice), filler = open_as(kAlice);
  ASSERT_TRUE(bus.bind(replier, 1, "$.Svc").ok());
  ASSERT_TRUE(bus.bind(filler, 0, "$.Fill").ok());
  bus.max_msgs(filler, 1000);
  while (bus.num_msgs(filler) < 20 && ledger.fits(kAlice, 1000))
    send_ok(bus, requester, sized("$.Fill", 1000));
  ASSERT_FALSE(ledger.fits(kAlice, 500));
  EXPECT_EQ(send(bus, requester, sized("$.Svc", 500, flag::kWantAReply)).error, Errc::ebusy);
  EXPECT_EQ(send(bus, requester, sized("$.Svc", 500, flag::kWantAReply | flag::kAllOrWait)).error,
            Errc::eagain);
  EXPECT_TRUE(bus.sending(requester));
  drain_names(bus, filler);  // Alice pays for less now: the pending send completes
  EXPECT_FALSE(bus.sending(requester));
  EXPECT_EQ(bus.num_msgs(replier), 1u);
}

// §5.2-13: ALL_OR_FAIL needs every copy paid for; two listeners of one
// user that could each take a copy but not both make it EBUSY.
TEST_F(BusLedger, AllOrFailCountsEveryCopyOfOneUserTogether) {
  const KsockId sender = open_as(kBob), a1 = open_as(kAlice), a2 = open_as(kAlice);
  ASSERT_TRUE(bus.bind(a1, 0, "$.Both").ok());
  ASSERT_TRUE(bus.bind(a2, 0, "$.Both").ok());
  const std::uint64_t room = 10000 - ledger.used(kAlice);
  const Message m = sized("$.Both", room / 2 + 100, flag::kAllOrFail);
  EXPECT_EQ(send(bus, sender, m).error, Errc::ebusy);
  EXPECT_EQ(bus.num_msgs(a1) + bus.num_msgs(a2), 0u);  // nobody got it
  EXPECT_EQ(send(bus, sender, sized("$.Both", room / 2 - 100, flag::kAllOrFail)).error, Errc::ok);
  EXPECT_EQ(bus.num_msgs(a1) + bus.num_msgs(a2), 2u);
}

// §4.6 MAXMSGS, §4.7, §5.2-5: outstanding Requests are charged to the
// requester (kRequestCost each): with MAXMSGS 0xFFFFFFFF a Ksock still
// cannot own more than its user's budget pays for; the next is ENOLCK.
// Answers give the charge back.
TEST_F(BusLedger, OutstandingRequestsAreChargedAndBoundedByTheBudget) {
  const KsockId requester = open_as(kBob), replier = open_as(kAlice);
  ASSERT_TRUE(bus.bind(replier, 1, "$.Svc").ok());
  bus.max_msgs(requester, 0xFFFFFFFF);
  bus.max_msgs(replier, 0xFFFFFFFF);
  std::uint32_t sent = 0;
  SendOutcome s;
  for (;;) {
    s = send(bus, requester, request("$.Svc"));
    if (s.error != Errc::ok) break;
    ++sent;
    ASSERT_LT(sent, 1000u);
  }
  EXPECT_EQ(s.error, Errc::enolck);
  EXPECT_EQ(sent, 10000 / kRequestCost);
  EXPECT_EQ(ledger.used(kBob, Charge::kRequests), sent * kRequestCost);
  // The replier answers one (the Reply uses the room its Request reserved,
  // §5.1): the Request's charge is released.
  const Message req = receive_one(bus, replier);
  send_ok(bus, replier, reply_to(req));
  EXPECT_EQ(ledger.used(kBob, Charge::kRequests), (sent - 1) * kRequestCost);
}

// §5.2-10, §6.1: a Reply the requester's user cannot pay for is refused
// like a Reply to a full requester (EBUSY); the Request stays owed, so when
// the replier goes away the requester still gets its one answer (a Status,
// which is never refused: it is charged whatever the budget).
TEST_F(BusLedger, AReplyTheRequesterCannotPayForFailsAsForAFullQueueAndTheAnswerStillComes) {
  const KsockId requester = open_as(kBob), replier = open_as(kAlice), feed = open_as(kBob);
  ASSERT_TRUE(bus.bind(replier, 1, "$.Svc").ok());
  ASSERT_TRUE(bus.bind(requester, 0, "$.Feed").ok());
  bus.max_msgs(requester, 1000);
  const MessageId id = send_ok(bus, requester, request("$.Svc"));
  while (ledger.fits(kBob, 200)) send_ok(bus, feed, sized("$.Feed", 200));
  const Message req = receive_one(bus, replier);
  EXPECT_EQ(send(bus, replier, reply_to(req, std::string(500, 'r'))).error, Errc::ebusy);
  EXPECT_EQ(bus.unreplied_to(replier), 1u);  // still owed
  bus.close(replier);
  std::vector<std::string> names = drain_names(bus, requester);
  ASSERT_FALSE(names.empty());
  EXPECT_EQ(names.back(), status_name::kReplierIgnored);
  (void)id;
}

// docs/decisions.md D28: BIND is ENOMEM beyond max_bindings_per_ksock or
// beyond the binder's budget (§4.5: a resource failure is ENOMEM); UNBIND
// gives the charge back.
TEST_F(BusLedger, BindingsArePaidForAndLimitedPerKsock) {
  BusLimits l;
  l.max_bindings_per_ksock = 3;
  Ledger small({3 * (kBindingCost + 2 * 10) + 5, 0, 0});
  Bus b(0, l, &small);
  OpenOptions o;
  o.uid = kAlice;
  const KsockId k = b.open(o), k2 = b.open(o);
  for (const char* n : {"$.Name.01", "$.Name.02", "$.Name.03"}) ASSERT_TRUE(b.bind(k, 0, n).ok());
  EXPECT_EQ(b.binding_count(k), 3u);
  EXPECT_EQ(b.bind(k, 0, "$.Name.04").error(), Errc::enomem);   // 3 per Ksock
  EXPECT_EQ(b.bind(k2, 0, "$.Name.04").error(), Errc::enomem);  // Alice's budget
  EXPECT_EQ(small.used(kAlice, Charge::kBindings), 3 * (kBindingCost + 2 * 9));
  ASSERT_TRUE(b.unbind(k, 0, "$.Name.02").ok());
  EXPECT_TRUE(b.bind(k2, 0, "$.Name.04").ok());
  b.close(k);
  b.close(k2);
  EXPECT_EQ(small.total(), 0u);
  b.check_invariants();
}

// §4.6 UNBIND removes the most recent identical binding of the Ksock; §7.1:
// its queued messages go with it. Found through the Ksock index.
TEST_F(BusLedger, UnbindRemovesTheMostRecentIdenticalBindingOfThatKsock) {
  const KsockId sender = open_as(kBob), k = open_as(kAlice), j = open_as(kAlice);
  ASSERT_TRUE(bus.bind(k, 0, "$.X.*").ok());
  ASSERT_TRUE(bus.bind(j, 0, "$.X.*").ok());
  ASSERT_TRUE(bus.bind(k, 0, "$.X.*").ok());
  send_ok(bus, sender, msg("$.X.A"));
  EXPECT_EQ(bus.num_msgs(k), 2u);
  ASSERT_TRUE(bus.unbind(k, 0, "$.X.*").ok());
  EXPECT_EQ(bus.num_msgs(k), 1u);  // the newer binding's copy went with it
  EXPECT_EQ(bus.unbind(k, 1, "$.X.*").error(), Errc::einval);  // not a replier binding
  ASSERT_TRUE(bus.unbind(k, 0, "$.X.*").ok());
  EXPECT_EQ(bus.unbind(k, 0, "$.X.*").error(), Errc::einval);
  EXPECT_EQ(bus.binding_count(j), 1u);
}

// §7.2: CLOSE releases everything the Ksock's user paid for, thousands of
// bindings of one name included (each removal O(log n)).
TEST_F(BusLedger, CloseGivesBackEverything) {
  Ledger roomy;
  Bus b(0, big_messages(), &roomy);
  OpenOptions o;
  o.uid = kAlice;
  const KsockId k = b.open(o), r = b.open(o);
  OpenOptions ob;
  ob.uid = kBob;
  const KsockId s = b.open(ob);
  for (int i = 0; i < 5000; ++i) ASSERT_TRUE(b.bind(k, 0, "$.*").ok());
  ASSERT_TRUE(b.bind(r, 1, "$.Svc").ok());
  send_ok(b, s, msg("$.A", "data"));
  send_ok(b, s, request("$.Svc"));
  EXPECT_GT(roomy.used(kAlice, Charge::kQueued), 0u);
  EXPECT_GT(roomy.used(kAlice, Charge::kBindings), 5000 * kBindingCost);
  EXPECT_EQ(roomy.used(kBob, Charge::kRequests), kRequestCost);
  b.close(k);
  b.close(r);  // s gets GoneAway (§7.2-3), its outstanding request ends
  EXPECT_EQ(roomy.used(kAlice), 0u);
  EXPECT_EQ(roomy.used(kBob, Charge::kRequests), 0u);
  EXPECT_EQ(drain_names(b, s).back(), status_name::kReplierGoneAway);
  b.close(s);
  EXPECT_EQ(roomy.total(), 0u);
  b.check_invariants();
}

// §8.4: set-aside unbind events can never be refused; they are charged to
// the listener whatever its budget, and released when moved or dropped.
TEST_F(BusLedger, SetAsideEventsAreChargedEvenOverBudget) {
  const KsockId watcher = open_as(kAlice), replier = open_as(kBob);
  ASSERT_TRUE(bus.bind(watcher, 0, status_name::kReplierBindEvent).ok());
  ASSERT_TRUE(bus.report_replier_binds(watcher, 1).ok());
  ASSERT_TRUE(bus.bind(replier, 1, "$.Svc").ok());  // its bind event is queued for the watcher
  bus.max_msgs(watcher, 1);                          // the watcher is full now
  bus.close(replier);                                // the unbind event is set aside
  EXPECT_GT(ledger.used(kAlice, Charge::kSetAside), 0u);
  receive_one(bus, watcher);  // room: the set-aside event moves into the queue
  EXPECT_EQ(ledger.used(kAlice, Charge::kSetAside), 0u);
  EXPECT_EQ(receive_one(bus, watcher).name, status_name::kReplierBindEvent);
}

// §4.2, §4.5: a message being written is charged to its writer once its
// header says how long it is; one larger than kFreeWriting its user cannot
// pay for is ENOMEM and is dropped (the next WRITE starts a new message). A message waiting to be
// sent (ALL_OR_WAIT, §5.5) stays charged until it goes or is discarded.
TEST_F(BusLedger, AMessageBeingWrittenIsPaidForByItsWriter) {
  const KsockId w = open_as(kAlice), l = open_as(kBob);
  const std::string big = entire("$.Big", std::string(kFreeWriting, 'b'));
  EXPECT_EQ(bus.write(w, big.substr(0, kH)).error(), Errc::enomem);  // > 10 000
  EXPECT_EQ(ledger.used(kAlice, Charge::kWriting), 0u);
  EXPECT_EQ(bus.send(w).error, Errc::enomsg);  // nothing is being written (§5.2-1)
  const std::string small = entire("$.Small", std::string(1000, 's'), flag::kAllOrWait);
  ASSERT_TRUE(bus.write(w, small.substr(0, kH)).ok());
  EXPECT_EQ(ledger.used(kAlice, Charge::kWriting), 88u + 7 + 1000);
  ASSERT_TRUE(bus.write(w, small.substr(kH)).ok());
  EXPECT_EQ(bus.send(w).error, Errc::ok);  // nobody listens yet
  EXPECT_EQ(ledger.used(kAlice, Charge::kWriting), 0u);
  ASSERT_TRUE(bus.bind(l, 0, "$.Small").ok());
  bus.max_msgs(l, 1);
  send_ok(bus, w, msg("$.Small"));  // fills l
  ASSERT_TRUE(bus.write(w, small).ok());
  EXPECT_EQ(bus.send(w).error, Errc::eagain);  // waits (§5.5), still charged
  EXPECT_EQ(ledger.used(kAlice, Charge::kWriting), 88u + 7 + 1000);
  bus.discard(w);
  EXPECT_EQ(ledger.used(kAlice, Charge::kWriting), 0u);
}

// §9.1, §9.2, docs/protocol.md §4.8: the reports in parts of any size put
// together are the whole report, and a binding made between two parts is
// listed at most once (the report runs from the newest binding down).
TEST_F(BusLedger, ReportsInPartsAreTheWholeReport) {
  std::vector<KsockId> ks;
  for (int i = 0; i < 5; ++i) ks.push_back(open_as(0));  // root: no budget
  for (int i = 0; i < 40; ++i)
    ASSERT_TRUE(bus.bind(ks[i % 5], i % 7 == 0 && i < 7, "$.R." + std::to_string(i)).ok());
  std::string whole_b, whole_s;
  bus.append_bindings_report(whole_b);
  bus.append_stats(whole_s);
  for (std::size_t max : {1u, 50u, 200u, 100000u}) {
    std::string b, s;
    std::uint64_t pos = Bus::kReportStart;
    int parts = 0;
    while (!bus.append_bindings_part(pos, max, b)) ASSERT_LT(++parts, 100);
    pos = Bus::kReportStart;
    while (!bus.append_stats_part(pos, max, s)) ASSERT_LT(++parts, 200);
    EXPECT_EQ(b, whole_b) << max;
    EXPECT_EQ(s, whole_s) << max;
  }
  std::string b;
  std::uint64_t pos = Bus::kReportStart;
  ASSERT_FALSE(bus.append_bindings_part(pos, 200, b));
  ASSERT_TRUE(bus.bind(ks[0], 0, "$.Late").ok());  // newer than the cursor: not listed
  while (!bus.append_bindings_part(pos, 200, b)) {
  }
  EXPECT_EQ(b, whole_b);
}

}  // namespace
}  // namespace kbus::core
