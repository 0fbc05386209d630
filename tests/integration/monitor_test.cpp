// MONITOR through kbusd and the C++ client (docs/decisions.md D25): a
// monitor Ksock sees every message of its bus, Status messages included
// (KBUS-SPEC.md §6.2), in bus order, its poll fd and blocking reads work as
// for any Ksock, and it changes nothing for the others (§5.2).
#include <poll.h>

#include "integration/fixture.hpp"

namespace kbus::test {
namespace {

using namespace std::chrono_literals;

class MonitorTest : public KbusTest {};

// §6.2: a Status goes only to the requester; the monitor sees it too, after
// the Request it answers, and a blocked wait_for_msg is woken by a copy.
TEST_F(MonitorTest, SeesRequestsRepliesAndStatusInBusOrder) {
  Ksock mon = open(0, Mode::read);
  EXPECT_EQ(mon.monitor(Toggle::on), 0u);
  Ksock replier = open(0), requester = open(0), listener = open(0);
  replier.bind("$.Fred", true);
  listener.bind("$.*");
  const MessageId r1 = requester.send_msg(make_request("$.Fred", "one"));
  Message got = replier.wait_for_msg(10s).value();
  const MessageId rep = replier.send_msg(make_reply(got, "answer").value());
  const MessageId r2 = requester.send_msg(make_request("$.Fred", "two"));
  replier.close();  // §7.2-3: GoneAway for r2, still queued

  // The poll fd shows the monitor's queue (docs/protocol.md §3.1).
  pollfd p{mon.fileno(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 10000), 1);
  std::vector<Message> seen;
  while (seen.size() < 4) {
    auto m = mon.wait_for_msg(10s);
    ASSERT_TRUE(m.has_value()) << "only " << seen.size() << " copies arrived";
    seen.push_back(*m);
  }
  EXPECT_EQ(seen[0].hdr.id, r1);
  EXPECT_TRUE(seen[0].is_request());
  EXPECT_FALSE(seen[0].wants_us_to_reply());
  EXPECT_EQ(seen[1].hdr.id, rep);
  EXPECT_EQ(seen[1].data, "answer");
  EXPECT_EQ(seen[2].hdr.id, r2);
  EXPECT_EQ(seen[3].name, "$.KBUS.Replier.GoneAway");
  EXPECT_TRUE(seen[3].is_status());
  EXPECT_EQ(seen[3].hdr.in_reply_to, r2);
  EXPECT_EQ(seen[3].hdr.to, requester.id());
  EXPECT_FALSE(mon.read_next_msg().has_value());
  // The others got what they get without a monitor: the listener of $.*
  // the two Requests and the Reply, never the Status (§6.2).
  std::vector<std::string> names;
  while (auto m = listener.read_next_msg()) names.push_back(m->name);
  EXPECT_EQ(names, (std::vector<std::string>{"$.Fred", "$.Fred", "$.Fred"}));
  EXPECT_EQ(requester.wait_for_msg(10s).value().hdr.id, rep);
  EXPECT_EQ(requester.wait_for_msg(10s).value().name, "$.KBUS.Replier.GoneAway");
}

// §5.2-13: a full monitor never makes ALL_OR_FAIL fail; it misses copies,
// and MONITOR says how many, once.
TEST_F(MonitorTest, FullMonitorMissesCopiesAndSaysHowMany) {
  Ksock mon = open(0, Mode::read);
  mon.set_max_messages(2);
  mon.monitor(Toggle::on);
  Ksock s = open(0), l = open(0);
  l.bind("$.Flow");
  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(s.try_send_msg(make_announcement("$.Flow", std::to_string(i), flag::kAllOrFail)).ok());
  }
  EXPECT_EQ(l.num_messages(), 5u);
  EXPECT_EQ(mon.monitor(Toggle::query), 3u);
  EXPECT_EQ(mon.monitor(), 0u);
  EXPECT_EQ(mon.read_next_msg().value().data, "0");
  EXPECT_EQ(mon.read_next_msg().value().data, "1");
}

// D25: who may not monitor, and what a monitor may not do.
TEST_F(MonitorTest, Refusals) {
  Ksock bound = open(0);
  bound.bind("$.Fred");
  EXPECT_EQ(err(bound.try_monitor(Toggle::on)), Errc::ebusy);
  Ksock wo = open(0, Mode::write);
  EXPECT_EQ(err(wo.try_monitor(Toggle::on)), Errc::ebadf);
  Ksock mon = open(0);
  mon.monitor(Toggle::on);
  EXPECT_EQ(err(mon.try_bind("$.Jim")), Errc::ebusy);
  EXPECT_EQ(err(mon.try_send_msg(make_announcement("$.Jim"))), Errc::ebusy);
  EXPECT_EQ(err(mon.try_monitor(static_cast<Toggle>(7))), Errc::einval);
  mon.monitor(Toggle::off);
  EXPECT_TRUE(mon.try_bind("$.Jim").ok());
}

// Issue 15: kbusd -v names each operation in its trace (docs/protocol.md
// §4's names), with the number beside it.
TEST(KbusdVerbose, TraceNamesOperations) {
  TestDaemon d(1, {"-v"});
  {
    Ksock k = d.open(0);
    k.bind("$.Fred");
    k.monitor(Toggle::query);
  }
  EXPECT_EQ(d.stop(), 0);
  const std::string log = d.log();
  EXPECT_NE(log.find("op BIND (2)"), std::string::npos) << log;
  EXPECT_NE(log.find("op MONITOR (77)"), std::string::npos) << log;
  EXPECT_EQ(log.find("op 2\n"), std::string::npos) << log;
}

}  // namespace
}  // namespace kbus::test
