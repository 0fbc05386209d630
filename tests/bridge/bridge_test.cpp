// bridge/bridge_test.cpp - kbus bridge against real nats-server processes:
// a three-node cluster (routes, JetStream) and three kbusd hosts, each
// bridged to a different node (fleet_fixture.hpp). docs/fleet.md states the
// guarantees tested here; KBUS-SPEC.md sections are cited per rule.
#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <set>

#include "bridge/fleet_fixture.hpp"
#include "limpet/wire.hpp"
#include "support/child_process.hpp"

namespace kbus::test {
namespace {

using namespace std::chrono_literals;

// A replier in a process of its own on `daemon`'s bus 0: says "bound <id>",
// then answers each Request with "<tag>:<data>" until told "unbind" (then
// says "unbound") or killed.
std::unique_ptr<Actor> start_replier(TestDaemon& daemon, const std::string& name,
                                     const std::string& tag) {
  TestDaemon* d = &daemon;
  auto a = std::make_unique<Actor>([d, name, tag](Channel& ch) {
    Ksock k = d->open(0);
    auto b = k.try_bind(name, true);
    if (!b) {
      ch.say("bind failed " + errno_name(to_errno(b.error())));
      return 1;
    }
    ch.say("bound " + std::to_string(k.ksock_id()));
    for (;;) {
      if (ch.line_ready(0ms)) {
        std::string cmd = ch.hear();
        if (cmd == "unbind") {
          k.unbind(name, true);
          ch.say("unbound");
          continue;
        }
      }
      auto m = k.wait_for_msg(50ms);
      if (!m || !m->wants_us_to_reply()) continue;
      auto r = make_reply(*m, tag + ":" + m->data);
      if (r) (void)k.try_send_msg(*r);
    }
  });
  return a;
}

std::uint32_t bound_id(Actor& a) {
  std::string l = a.hear(20s);
  if (l.rfind("bound ", 0) != 0) return 0;
  return static_cast<std::uint32_t>(std::stoul(l.substr(6)));
}

bool has_replier(Ksock& k, const std::string& name) {
  auto r = k.try_find_replier(name);
  return r && r->has_value();
}

void dump(Fleet& f) {
  for (auto& h : f.hosts) std::fprintf(stderr, "%s", h.bridge->all().c_str());
}

// Requests from `k`, `window` outstanding at a time, `total` in all; every
// answer is counted per request id (KBUS-SPEC.md §6.1: exactly one each).
struct Traffic {
  std::map<MessageId, int> answers;  // accepted request -> answers seen
  std::map<std::string, int> kinds;  // answer name (or "reply") -> count
  int refused = 0;                   // SEND failed (EADDRNOTAVAIL, §5.2-9)
  int replies_after = 0;             // replies after `mark` answers
};

Traffic run_traffic(Ksock& k, const std::string& name, int total, int window,
                    const std::function<void(int)>& at_answered, int mark = -1) {
  Traffic t;
  int sent = 0, answered = 0;
  std::set<MessageId> open;
  while (sent < total || !open.empty()) {
    while (sent < total && static_cast<int>(open.size()) < window) {
      auto id = k.try_send_msg(request(name, std::to_string(sent)));
      ++sent;
      if (!id) {
        EXPECT_EQ(id.error(), Errc::eaddrnotavail) << errno_name(to_errno(id.error()));
        ++t.refused;
        continue;
      }
      t.answers[*id] = 0;
      open.insert(*id);
    }
    if (open.empty()) continue;
    auto m = k.wait_for_msg(30s);
    if (!m) {
      ADD_FAILURE() << open.size() << " request(s) never answered";
      return t;
    }
    auto it = t.answers.find(m->hdr.in_reply_to);
    if (it == t.answers.end()) {
      ADD_FAILURE() << "an answer to no request of ours: " << m->to_string();
      continue;
    }
    ++it->second;
    if (it->second > 1) ADD_FAILURE() << "a second answer: " << m->to_string();
    open.erase(m->hdr.in_reply_to);
    const bool is_reply = m->name == name;
    ++t.kinds[is_reply ? "reply" : m->name];
    ++answered;
    if (mark >= 0 && answered > mark && is_reply) ++t.replies_after;
    at_answered(answered);
  }
  std::string summary = "traffic: " + std::to_string(t.answers.size()) + " accepted, " +
                        std::to_string(t.refused) + " refused at SEND;";
  for (const auto& [kind, n] : t.kinds) summary += " " + kind + "=" + std::to_string(n);
  std::fprintf(stderr, "%s\n", summary.c_str());
  return t;
}

// Every accepted request was answered exactly once, and each of the `total`
// sends was either accepted or refused (KBUS-SPEC.md §6.1).
void expect_each_answered_once(const Traffic& t, int total) {
  for (const auto& [id, n] : t.answers) EXPECT_EQ(n, 1) << id.to_string();
  EXPECT_EQ(static_cast<int>(t.answers.size()) + t.refused, total);
}

// A replier of `name` on host 2 (answering "h2:<data>"), and a Ksock on
// host 0 that sees it through the bridges.
struct ServedFleet {
  Fleet f;
  std::unique_ptr<Actor> rep;
  Ksock a;
  explicit ServedFleet(const std::string& name)
      : rep(start_replier(*f.hosts[2].daemon, name, "h2")), a(f.open(0)) {}
  // Whether the replier is reached from host 0 (its proxy is bound there).
  bool ready(const std::string& name) {
    return bound_id(*rep) != 0 && eventually([&] { return has_replier(a, name); });
  }
};

// Whether a Request from `a` for `name` is again answered "h2:<data>".
bool answered_again(Ksock& a, const std::string& name, const std::string& data) {
  return eventually([&] {
    auto id = a.try_send_msg(request(name, data));
    if (!id) return false;
    auto m = a.wait_for_msg(20s);
    return m && m->data == "h2:" + data;
  }, 60s);
}

// After the traffic: no late second answer is queued. A local round trip
// on the same Ksock proves the queue holds nothing before its own reply.
void expect_no_more(Fleet& f, int host, Ksock& k) {
  Ksock rep = f.open(host);
  rep.bind("$.Local.Fence", true);
  auto id = k.send_msg(request("$.Local.Fence", "x"));
  auto q = rep.wait_for_msg(10s);
  ASSERT_TRUE(q);
  rep.send_msg(*make_reply(*q, "fence"));
  auto m = k.wait_for_msg(10s);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->hdr.in_reply_to, id) << "a message before the fence: " << m->to_string();
}

// A NATS client of a few lines (the text protocol): a foreign publisher
// that is not libnats and not a bridge.
class RawNatsClient {
 public:
  explicit RawNatsClient(const std::string& url) {
    const int port = std::stoi(url.substr(url.rfind(':') + 1));
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) ADD_FAILURE() << "connect " << url;
    send_all("CONNECT {\"verbose\":false,\"pedantic\":false,\"name\":\"foreign\"}\r\n");
  }
  ~RawNatsClient() { ::close(fd_); }
  void publish(const std::string& subject, const std::string& payload, const std::string& reply = {}) {
    send_all("PUB " + subject + (reply.empty() ? "" : " " + reply) + " " +
             std::to_string(payload.size()) + "\r\n" + payload + "\r\n");
  }
  // PING, then read (bounded) until the server's PONG: it has processed
  // everything sent before.
  bool flush() {
    send_all("PING\r\n");
    std::string in;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) != 1) continue;
      char buf[4096];
      ssize_t n = ::read(fd_, buf, sizeof buf);
      if (n <= 0) return false;
      in.append(buf, static_cast<std::size_t>(n));
      if (in.find("PONG\r\n") != std::string::npos) return true;
    }
    return false;
  }

 private:
  void send_all(const std::string& s) {
    std::size_t off = 0;
    while (off < s.size()) {
      ssize_t n = ::write(fd_, s.data() + off, s.size() - off);
      if (n <= 0) {
        ADD_FAILURE() << "write to nats-server failed";
        return;
      }
      off += static_cast<std::size_t>(n);
    }
  }
  int fd_ = -1;
};

// ---- announcements (docs/fleet.md "Announcements") ----

TEST(Bridge, AnnouncementsReachListenersOnEveryOtherBusOnceAndInOrder) {
  Fleet f;
  Ksock wide = f.open(1), narrow = f.open(1), pct = f.open(2), local = f.open(0);
  wide.bind("$.News.*");
  narrow.bind("$.News.Flash");  // overlaps: bus 1's bridge holds two subscriptions
  pct.bind("$.News.%");
  local.bind("$.News.*");
  for (Ksock* k : {&wide, &narrow, &pct, &local}) k->set_max_messages(1000);
  ASSERT_GE(f.hosts[1].bridge->wait_for("subscribed to kbus.News.Flash"), 0);
  ASSERT_GE(f.hosts[1].bridge->wait_for("subscribed to kbus.News.>"), 0);
  ASSERT_GE(f.hosts[2].bridge->wait_for("subscribed to kbus.News.*"), 0);
  Ksock s = f.open(0);
  // Interest crosses the cluster's routes a moment after the subscription:
  // send until the first copy arrives everywhere (a real signal, bounded).
  int warm = 0;
  std::set<Ksock*> reached;
  int local_warm = 0;
  for (int i = 0; i < 400 && reached.size() < 3; ++i) {
    s.send_msg(announcement("$.News.Flash", "warm"));
    ++warm;
    for (Ksock* k : {&wide, &narrow, &pct}) {
      if (!reached.count(k) && k->wait_for_msg(20ms)) reached.insert(k);
    }
    while (local.wait_for_msg(0ms)) ++local_warm;
  }
  ASSERT_EQ(reached.size(), 3u);
  s.send_msg(announcement("$.News.Flash", "mark"));
  for (;;) {
    auto m = local.wait_for_msg(20s);
    ASSERT_TRUE(m);
    if (m->data == "mark") break;
    ++local_warm;
  }
  // The sender's own bus sees each exactly once: nothing is echoed back.
  EXPECT_EQ(local_warm, warm);
  for (Ksock* k : {&wide, &narrow, &pct}) {
    for (;;) {
      auto m = k->wait_for_msg(20s);
      ASSERT_TRUE(m);
      if (m->data == "mark") break;
      EXPECT_EQ(m->data, "warm");
    }
  }
  const int n = 100;
  for (int i = 0; i < n; ++i) s.send_msg(announcement("$.News.Flash", std::to_string(i)));
  s.send_msg(announcement("$.News.Flash", "end"));
  // Order kept, nothing twice, nothing lost (KBUS-SPEC.md §5.3: one bus's
  // messages are seen in one order by all).
  for (Ksock* k : {&wide, &narrow, &pct}) {
    for (int i = 0; i < n; ++i) {
      auto m = k->wait_for_msg(20s);
      ASSERT_TRUE(m);
      EXPECT_EQ(m->data, std::to_string(i));
      EXPECT_EQ(m->name, "$.News.Flash");
      EXPECT_EQ(m->hdr.orig_from.network_id, 1u);  // stamped by host 0's bridge
    }
    auto end = k->wait_for_msg(20s);
    ASSERT_TRUE(end);
    EXPECT_EQ(end->data, "end");
  }
  for (int i = 0; i < n; ++i) {
    auto m = local.wait_for_msg(20s);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->data, std::to_string(i));
  }
  auto end = local.wait_for_msg(20s);
  ASSERT_TRUE(end);
  EXPECT_EQ(end->data, "end");
  EXPECT_FALSE(local.wait_for_msg(200ms)) << "an echo";
  if (HasFailure()) dump(f);
}

TEST(Bridge, OnlyListenedNamesAreSubscribedAndUnsubscribedWhenTheListenerGoes) {
  Fleet f;
  {
    Ksock l = f.open(2);
    l.bind("$.Only.This");
    ASSERT_GE(f.hosts[2].bridge->wait_for("subscribed to kbus.Only.This"), 0);
  }
  // The listener closed: the subscription follows (§9.1 report).
  EXPECT_GE(f.hosts[2].bridge->wait_for("unsubscribed from kbus.Only.This"), 0);
  EXPECT_EQ(f.hosts[0].bridge->count("subscribed to kbus.Only"), 0u);
}

// ---- requests (docs/fleet.md "Requests") ----

TEST(Bridge, RequestsReachTheOneReplierAndGetItsReply) {
  Fleet f;
  auto rep = start_replier(*f.hosts[2].daemon, "$.Svc.Echo", "h2");
  const std::uint32_t rid = bound_id(*rep);
  ASSERT_NE(rid, 0u);
  Ksock a = f.open(0), b = f.open(1);
  ASSERT_TRUE(eventually([&] { return has_replier(a, "$.Svc.Echo") && has_replier(b, "$.Svc.Echo"); }));
  for (Ksock* k : {&a, &b}) {
    for (int i = 0; i < 10; ++i) {
      auto id = k->send_msg(request("$.Svc.Echo", std::to_string(i)));
      auto m = k->wait_for_msg(20s);
      ASSERT_TRUE(m);
      EXPECT_EQ(m->name, "$.Svc.Echo");
      EXPECT_EQ(m->data, "h2:" + std::to_string(i));
      EXPECT_EQ(m->hdr.in_reply_to, id);
      EXPECT_FALSE(m->is_synthetic());
      // orig_from names the replier: {its bridge's network id, its Ksock}.
      EXPECT_EQ(m->hdr.orig_from.network_id, 3u);
      EXPECT_EQ(m->hdr.orig_from.local_id, rid);
    }
  }
  // §5.2-9: no replier anywhere in the fleet -> EADDRNOTAVAIL at SEND.
  auto none = a.try_send_msg(request("$.Svc.Nobody", "x"));
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error(), Errc::eaddrnotavail);
  // §1.3: one replier per name, fleet-wide: the proxy holds it on bus 0.
  Ksock second = f.open(0);
  auto bind = second.try_bind("$.Svc.Echo", true);
  ASSERT_FALSE(bind);
  EXPECT_EQ(bind.error(), Errc::eaddrinuse);
  if (HasFailure()) dump(f);
}

TEST(Bridge, WildcardRepliersAreSelectedAsOnOneBus) {
  // §2.4: exact > '%' > '*', whichever bus each replier is on.
  Fleet f;
  auto star = start_replier(*f.hosts[1].daemon, "$.Sensors.*", "star");
  ASSERT_NE(bound_id(*star), 0u);
  auto pct = start_replier(*f.hosts[2].daemon, "$.Sensors.%", "pct");
  ASSERT_NE(bound_id(*pct), 0u);
  Ksock a = f.open(0);
  ASSERT_TRUE(eventually([&] { return has_replier(a, "$.Sensors.*") && has_replier(a, "$.Sensors.%"); }));
  a.send_msg(request("$.Sensors.Kitchen", "1"));
  auto m = a.wait_for_msg(20s);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->data, "pct:1");
  a.send_msg(request("$.Sensors.Kitchen.Temperature", "2"));
  m = a.wait_for_msg(20s);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->data, "star:2");
  if (HasFailure()) dump(f);
}

TEST(Bridge, StatefulRequestsKeepTheirMeaning) {
  Fleet f;
  auto rep = start_replier(*f.hosts[2].daemon, "$.Dialog", "first");
  const std::uint32_t rid = bound_id(*rep);
  ASSERT_NE(rid, 0u);
  Ksock a = f.open(0);
  ASSERT_TRUE(eventually([&] { return has_replier(a, "$.Dialog"); }));
  a.send_msg(request("$.Dialog", "hello"));
  auto reply = a.wait_for_msg(20s);
  ASSERT_TRUE(reply);
  // §10.6: the stateful request goes to the proxy (`to`) with final_to =
  // the reply's orig_from, i.e. the replier on host 2.
  auto st = make_stateful_request(*reply, "$.Dialog", "again");
  ASSERT_TRUE(st);
  EXPECT_EQ(st->hdr.final_to.network_id, 3u);
  EXPECT_EQ(st->hdr.final_to.local_id, rid);
  auto id = a.send_msg(*st);
  auto m = a.wait_for_msg(20s);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->hdr.in_reply_to, id);
  EXPECT_EQ(m->data, "first:again");
  // Another replier takes the name: the stateful request is refused, as
  // EPIPE would refuse it on one bus.
  rep->tell("unbind");
  ASSERT_EQ(rep->hear(), "unbound");
  auto other = start_replier(*f.hosts[2].daemon, "$.Dialog", "second");
  ASSERT_NE(bound_id(*other), 0u);
  ASSERT_GE(f.hosts[2].bridge->wait_for("claimed $.Dialog for Ksock " +
                                        std::to_string(rid + 1)), 0);
  auto id2 = a.try_send_msg(*st);
  if (id2) {
    auto n = a.wait_for_msg(20s);
    ASSERT_TRUE(n);
    EXPECT_EQ(n->hdr.in_reply_to, *id2);
    EXPECT_EQ(n->name, "$.KBUS.Replier.NotSameKsock") << n->to_string();
  } else {
    // The proxy on bus 0 was removed and re-made meanwhile: KBUS refuses it.
    EXPECT_TRUE(id2.error() == Errc::epipe || id2.error() == Errc::eaddrnotavail);
  }
  if (HasFailure()) dump(f);
}

// ---- claims (docs/fleet.md "One replier per name") ----

TEST(Bridge, TwoRepliersBindingAtOnceOnDifferentHostsExactlyOneWins) {
  Fleet f;
  Ksock refusal0 = f.open(0), refusal1 = f.open(1);
  refusal0.bind("$.KBUS.Bridge.ClaimRefused");
  refusal1.bind("$.KBUS.Bridge.ClaimRefused");
  auto r0 = start_replier(*f.hosts[0].daemon, "$.Race", "h0");
  auto r1 = start_replier(*f.hosts[1].daemon, "$.Race", "h1");
  ASSERT_NE(bound_id(*r0), 0u);
  ASSERT_NE(bound_id(*r1), 0u);
  // Exactly one claim succeeds; the other bridge announces the refusal.
  std::optional<Message> refused;
  int loser = -1;
  ASSERT_TRUE(eventually([&] {
    if ((refused = refusal0.wait_for_msg(5ms))) loser = 0;
    else if ((refused = refusal1.wait_for_msg(5ms))) loser = 1;
    return loser >= 0;
  }));
  EXPECT_EQ(refused->data, "$.Race");
  const int winner = 1 - loser;
  EXPECT_GE(f.hosts[winner].bridge->wait_for("claimed $.Race"), 0);
  EXPECT_EQ(f.hosts[loser].bridge->count("claimed $.Race"), 0u);
  EXPECT_FALSE((loser == 0 ? refusal1 : refusal0).wait_for_msg(300ms));
  // The third host reaches the winner.
  Ksock c = f.open(2);
  ASSERT_TRUE(eventually([&] { return has_replier(c, "$.Race"); }));
  c.send_msg(request("$.Race", "q"));
  auto m = c.wait_for_msg(20s);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->data, "h" + std::to_string(winner) + ":q");
  // The winner unbinds: the claim is released and the loser's replier
  // takes the name fleet-wide.
  (winner == 0 ? r0 : r1)->tell("unbind");
  ASSERT_EQ((winner == 0 ? r0 : r1)->hear(), "unbound");
  ASSERT_GE(f.hosts[loser].bridge->wait_for("claimed $.Race"), 0);
  bool served = eventually([&] {
    auto id = c.try_send_msg(request("$.Race", "again"));
    if (!id) return false;
    auto n = c.wait_for_msg(20s);
    return n && n->data == "h" + std::to_string(loser) + ":again";
  });
  EXPECT_TRUE(served);
  if (HasFailure()) dump(f);
}

TEST(Bridge, AClaimIsReleasedWhenItsReplierCloses) {
  Fleet f;
  auto rep = start_replier(*f.hosts[1].daemon, "$.Gone", "h1");
  ASSERT_NE(bound_id(*rep), 0u);
  Ksock a = f.open(0);
  ASSERT_TRUE(eventually([&] { return has_replier(a, "$.Gone"); }));
  rep.reset();  // SIGKILL: its Ksock closes (§7.2-4 unbind event)
  ASSERT_GE(f.hosts[1].bridge->wait_for("released $.Gone"), 0);
  EXPECT_TRUE(eventually([&] { return !has_replier(a, "$.Gone"); }));
  auto r = a.try_send_msg(request("$.Gone", "x"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), Errc::eaddrnotavail);
}

TEST(Bridge, AClaimLapsesWhenItsBridgeDiesAndTheLeaseRunsOut) {
  // The host disappears (its bridge is killed and not restarted): nobody
  // releases the claim, the lease (--lease-ms 3000) does.
  Fleet f;
  auto rep = start_replier(*f.hosts[2].daemon, "$.Lapse", "h2");
  ASSERT_NE(bound_id(*rep), 0u);
  Ksock a = f.open(0);
  ASSERT_TRUE(eventually([&] { return has_replier(a, "$.Lapse"); }));
  f.hosts[2].bridge->kill(SIGKILL);
  f.hosts[2].bridge->wait_exit();
  ASSERT_GE(f.hosts[0].bridge->wait_for("proxy replier for $.Lapse removed", 30s), 0);
  EXPECT_FALSE(has_replier(a, "$.Lapse"));
  auto r = a.try_send_msg(request("$.Lapse", "x"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), Errc::eaddrnotavail);  // §5.2-9, as on one bus
  // Now another host may serve the name (once its proxy has gone too).
  ASSERT_GE(f.hosts[1].bridge->wait_for("proxy replier for $.Lapse removed", 30s), 0);
  auto other = start_replier(*f.hosts[1].daemon, "$.Lapse", "h1");
  ASSERT_NE(bound_id(*other), 0u);
  EXPECT_GE(f.hosts[1].bridge->wait_for("claimed $.Lapse"), 0);
  if (HasFailure()) dump(f);
}

// ---- failures during traffic: every request answered exactly once ----

TEST(Bridge, KillingTheReplierDuringTrafficAnswersEveryRequestOnce) {
  ServedFleet sf("$.Work");
  ASSERT_TRUE(sf.ready("$.Work"));
  auto& [f, rep, a] = sf;
  auto t = run_traffic(a, "$.Work", 300, 16, [&](int answered) {
    if (answered == 50) rep->kill(SIGKILL);
  });
  expect_each_answered_once(t, 300);
  EXPECT_GE(t.kinds["reply"], 50);
  // After the death: Statuses (GoneAway/Ignored/Disappeared), then SEND
  // refusals once the claim is gone (EADDRNOTAVAIL, §5.2-9).
  EXPECT_GT(t.refused + t.kinds["$.KBUS.Replier.GoneAway"] + t.kinds["$.KBUS.Replier.Ignored"] +
                t.kinds["$.KBUS.Replier.Disappeared"], 0);
  expect_no_more(f, 0, a);
  if (HasFailure()) dump(f);
}

TEST(Bridge, KillingANatsNodeDuringTrafficAnswersEveryRequestOnceAndTheBridgeReconnects) {
  ServedFleet sf("$.Work");
  ASSERT_TRUE(sf.ready("$.Work"));
  auto& [f, rep, a] = sf;
  // The node host 0's bridge is connected to (the client picks one of its
  // URLs at random).
  const int node = f.nats.index_of(f.hosts[0].connected_url());
  ASSERT_GE(node, 0) << f.hosts[0].bridge->all();
  const std::size_t seen = f.hosts[0].bridge->lines_seen();
  auto t = run_traffic(a, "$.Work", 300, 16, [&](int answered) {
    if (answered == 60) f.nats.kill_node(node);
  }, 60);
  expect_each_answered_once(t, 300);
  EXPECT_GE(f.hosts[0].bridge->wait_for("disconnected from NATS", 20s, seen), 0);
  EXPECT_GE(f.hosts[0].bridge->wait_for("reconnected to", 20s, seen), 0);
  // Traffic flows again through another node.
  EXPECT_TRUE(answered_again(a, "$.Work", "after"));
  expect_no_more(f, 0, a);
  if (HasFailure()) dump(f);
}

TEST(Bridge, KillingTheServingBridgeDuringTrafficAnswersEveryRequestOnce) {
  ServedFleet sf("$.Work");
  ASSERT_TRUE(sf.ready("$.Work"));
  auto& [f, rep, a] = sf;
  auto t = run_traffic(a, "$.Work", 200, 16, [&](int answered) {
    if (answered == 40) f.hosts[2].bridge->kill(SIGKILL);
  });
  expect_each_answered_once(t, 200);
  EXPECT_GT(t.kinds["$.KBUS.Replier.GoneAway"] + t.kinds["$.KBUS.Replier.Ignored"], 0);
  // A new bridge on host 2 (same --id) takes its bus's claims back.
  f.hosts[2].start_bridge();
  ASSERT_GE(f.hosts[2].bridge->wait_for("claimed $.Work"), 0);
  EXPECT_TRUE(answered_again(a, "$.Work", "back"));
  expect_no_more(f, 0, a);
  if (HasFailure()) dump(f);
}

TEST(Bridge, KillingTheRequestingBridgeDuringTrafficAnswersEveryRequestOnce) {
  ServedFleet sf("$.Work");
  ASSERT_TRUE(sf.ready("$.Work"));
  auto& [f, rep, a] = sf;
  // Its Ksock closes: KBUS answers what it held (§7.2: GoneAway, Ignored),
  // and later sends find no replier (EADDRNOTAVAIL).
  auto t = run_traffic(a, "$.Work", 200, 16, [&](int answered) {
    if (answered == 40) f.hosts[0].bridge->kill(SIGKILL);
  });
  expect_each_answered_once(t, 200);
  EXPECT_GT(t.refused, 0);
  expect_no_more(f, 0, a);
  if (HasFailure()) dump(f);
}

// ---- bad input from NATS ----

TEST(Bridge, GarbageFromAForeignPublisherIsLoggedAndDropped) {
  Fleet f;
  Ksock l = f.open(1);
  l.bind("$.News.*");
  ASSERT_GE(f.hosts[1].bridge->wait_for("subscribed to kbus.News.>"), 0);
  // The foreign publisher speaks the NATS text protocol itself.
  RawNatsClient nc(f.nats.url(1));
  // The bridge's interest reaches this node of the cluster by its routes,
  // some time after the bridge subscribed: wait until a well-formed probe
  // crosses, so that the garbage below is surely delivered to the bridge.
  const std::string probe = limpet::serialise(announcement("$.News.Probe", "p"));
  ASSERT_TRUE(eventually([&] {
    nc.publish("kbus.News.Probe", probe);
    if (!nc.flush()) return false;
    auto m = l.wait_for_msg(50ms);
    return m && m->name == "$.News.Probe";
  }));
  // The next message on the bus that is not a (late) probe.
  auto next_not_probe = [&](std::chrono::milliseconds timeout) -> std::optional<Message> {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      auto m = l.wait_for_msg(left);
      if (!m || m->name != "$.News.Probe") return m;
    }
  };
  // Not a KBUS message at all; a truncated one; one whose name is not its
  // subject's; a subject that is no KBUS name; a Request on a name subject;
  // garbage on a bridge's request subject.
  Message good = announcement("$.News.Other", "x");
  std::string wire = limpet::serialise(good);
  Message req = request("$.News.Flash", "x");
  std::string req_wire = limpet::serialise(req);
  nc.publish("kbus.News.Flash", "hello");
  nc.publish("kbus.News.Flash", wire.substr(0, 20));
  nc.publish("kbus.News.Flash", wire);
  nc.publish("kbus.News.a-b", "x");
  nc.publish("kbus.News.Flash", req_wire);
  nc.publish("_KBUS.kbus.2.req", "junk", "_INBOX.x");
  ASSERT_TRUE(nc.flush());
  EXPECT_GE(f.hosts[1].bridge->wait_for("(5 so far)"), 0);
  EXPECT_GE(f.hosts[1].bridge->wait_for("not a KBUS message"), 0);
  EXPECT_GE(f.hosts[1].bridge->wait_for("carries $.News.Other on the subject of $.News.Flash"), 0);
  EXPECT_GE(f.hosts[1].bridge->wait_for("token 'a-b'"), 0);
  EXPECT_GE(f.hosts[1].bridge->wait_for("only Announcements travel on name subjects"), 0);
  EXPECT_GE(f.hosts[1].bridge->wait_for("dropped a message on _KBUS.kbus.2.req"), 0);
  EXPECT_FALSE(next_not_probe(200ms)) << "garbage reached the bus";
  // A well-formed announcement from the same foreign publisher is delivered.
  nc.publish("kbus.News.Flash", limpet::serialise(announcement("$.News.Flash", "fine")));
  ASSERT_TRUE(nc.flush());
  auto m = next_not_probe(20s);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->data, "fine");
  // Still bridging.
  Ksock s = f.open(0);
  bool crossed = eventually([&] {
    s.send_msg(announcement("$.News.Flash", "after"));
    auto n = l.wait_for_msg(50ms);
    return n && n->data == "after";
  });
  EXPECT_TRUE(crossed);
  if (HasFailure()) dump(f);
}

// ---- stopping ----

TEST(Bridge, SigtermStopsTheBridgeWithExit0AndReleasesItsClaims) {
  Fleet f;
  auto rep = start_replier(*f.hosts[2].daemon, "$.Stop", "h2");
  ASSERT_NE(bound_id(*rep), 0u);
  Ksock a = f.open(0);
  ASSERT_TRUE(eventually([&] { return has_replier(a, "$.Stop"); }));
  f.hosts[2].bridge->kill(SIGTERM);
  EXPECT_EQ(f.hosts[2].bridge->wait_exit(), 0);
  EXPECT_GE(f.hosts[2].bridge->wait_for("released $.Stop"), 0);
  // Released at once, not at lease expiry: the proxy on bus 0 goes.
  EXPECT_TRUE(eventually([&] { return !has_replier(a, "$.Stop"); }));
}

TEST(Bridge, ANetworkIdHeldByALiveBridgeIsRefusedWithExit3) {
  Fleet f({}, 2);
  TestDaemon other(1);
  LoggedProcess dup({bridge_path(), "-d", other.dir(), "--id", "1", "--kv-timeout-ms", "2000",
                     f.nats.urls(2)},
                    "dup");
  EXPECT_EQ(dup.wait_exit(60s), 3);
  EXPECT_GE(dup.wait_for("network id 1 is held by another bridge"), 0) << dup.all();
}

TEST(Bridge, ABridgeWaitsForNatsAndStopsOnSigterm) {
  // Nothing listens on this port: the bridge keeps retrying (with backoff)
  // until stopped; SIGTERM ends it with exit status 0.
  TestDaemon d(1);
  const int port = free_port();
  LoggedProcess b({bridge_path(), "-d", d.dir(), "nats://127.0.0.1:" + std::to_string(port)}, "b");
  ASSERT_GE(b.wait_for("waiting for a NATS server"), 0) << b.all();
  b.kill(SIGTERM);
  EXPECT_EQ(b.wait_exit(), 0) << b.all();
}

TEST(Bridge, UsageErrorsExit1AndSayWhatIsWrong) {
  auto r = run_process({kbus_cli_path(), "bridge", "-m", "$.A-B", "nats://127.0.0.1:1"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("$.A-B"), std::string::npos) << r.err;
  r = run_process({bridge_path(), "--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("--prefix"), std::string::npos);
  r = run_process({kbus_cli_path(), "help", "bridge"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("URL"), std::string::npos);
}

}  // namespace
}  // namespace kbus::test
