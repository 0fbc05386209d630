// limpet/limpet_test.cpp - the Limpet's forwarding and bookkeeping, with
// real buses run in-process (kbus::core::Bus behind a BusPort) and an
// in-memory link that carries the exact wire bytes (STYLE.md 12). No
// sockets, no daemon, no clocks: pump() moves messages until nothing moves,
// and a message storm shows up as a pump that does not settle.
#include "limpet/limpet.hpp"

#include <gtest/gtest.h>

#include <deque>
#include <memory>
#include <set>
#include <vector>

#include "core/bus.hpp"
#include "limpet/wire.hpp"

namespace kbus::limpet {
namespace {

using core::KsockId;
constexpr std::uint32_t kH = kHeaderLen64;

// ---- an in-process bus as a limpet's BusPort ----

class CoreBusPort final : public BusPort {
 public:
  explicit CoreBusPort(core::Bus& bus) : bus_(bus) {}
  ~CoreBusPort() override {
    if (id_ != 0) bus_.close(id_);
  }
  Result<void> reopen() override {
    if (id_ != 0) bus_.close(id_);
    id_ = bus_.open({});
    return {};
  }
  std::uint32_t ksock_id() const override { return id_; }
  std::uint32_t bus_number() const override { return bus_.number(); }
  Result<void> bind(std::string_view name, bool replier) override {
    return bus_.bind(id_, replier ? 1 : 0, name);
  }
  Result<void> unbind(std::string_view name, bool replier) override {
    return bus_.unbind(id_, replier ? 1 : 0, name);
  }
  Result<std::optional<std::uint32_t>> find_replier(std::string_view name) override {
    auto r = bus_.find_replier(name);
    if (!r) return r.error();
    if (*r == 0) return std::optional<std::uint32_t>{};
    return std::optional<std::uint32_t>(*r);
  }
  Result<MessageId> send(const Message& m) override {
    auto w = bus_.write(id_, encode_entire(m, kH));
    if (!w) return w.error();
    auto s = bus_.send(id_);
    if (s.error != Errc::ok) return s.error;
    return s.id;
  }
  Result<bool> only_once(bool on) override {
    auto r = bus_.only_once(id_, on ? 1 : 0);
    if (!r) return r.error();
    return *r != 0;
  }
  Result<bool> report_replier_binds() override {
    auto r = bus_.report_replier_binds(id_, 1);
    if (!r) return r.error();
    return *r != 0;
  }
  Result<std::uint32_t> set_max_messages(std::uint32_t n) override { return bus_.max_msgs(id_, n); }
  Result<std::string> bindings_report() override {
    std::string s;
    bus_.append_bindings_report(s);
    return s;
  }
  std::optional<Message> read_next() {
    std::string out;
    auto r = bus_.next_read(id_, out);
    if (!r || *r == 0) return std::nullopt;
    return decode_entire(out, kH).value();
  }
  bool writable() const { return bus_.writable(id_); }

 private:
  core::Bus& bus_;
  KsockId id_ = 0;
};

// ---- an in-memory link: each end queues wire bytes for the other ----

class MemoryEnd final : public PeerPort {
 public:
  void send_to_peer(const Message& m) override {
    if (!cut) serialise(bytes, m);
  }
  std::string bytes;  // in flight to the other end
  bool cut = false;
};

struct Node {
  Node(core::Bus& bus, std::uint32_t net, std::string name = "$.*")
      : port(bus), limpet(LimpetConfig{net, std::move(name), std::nullopt, 1000}, port, end,
                          [this](LogLevel l, const std::string& s) {
                            if (l == LogLevel::kError) errors.push_back(s);
                          }) {}
  CoreBusPort port;
  MemoryEnd end;
  Limpet limpet;
  WireDecoder incoming;
  std::vector<std::string> errors;
};

struct Pair {
  Node* a;
  Node* b;
};

class World {
 public:
  core::Bus& bus(int i) {
    while (static_cast<int>(buses_.size()) <= i) {
      buses_.push_back(std::make_unique<core::Bus>(static_cast<std::uint32_t>(buses_.size())));
    }
    return *buses_[static_cast<std::size_t>(i)];
  }
  Node& limpet(int bus_index, std::uint32_t net) {
    nodes_.push_back(std::make_unique<Node>(bus(bus_index), net));
    Node& n = *nodes_.back();
    EXPECT_FALSE(n.limpet.start().has_value());
    return n;
  }
  // Two limpets joined by a link whose HELO exchange is done.
  void join(Node& x, Node& y) {
    pairs_.push_back({&x, &y});
    x.end.cut = y.end.cut = false;
    auto fx = x.limpet.link_up(y.limpet.config().network_id);
    auto fy = y.limpet.link_up(x.limpet.config().network_id);
    ASSERT_FALSE(fx.has_value()) << fx->what;
    ASSERT_FALSE(fy.has_value()) << fy->what;
  }
  void cut(Node& x, Node& y) {
    x.end.cut = y.end.cut = true;
    x.end.bytes.clear();
    y.end.bytes.clear();
    x.incoming = WireDecoder();
    y.incoming = WireDecoder();
    EXPECT_FALSE(x.limpet.link_down().has_value());
    EXPECT_FALSE(y.limpet.link_down().has_value());
    std::erase_if(pairs_, [&](const Pair& p) { return p.a == &x || p.a == &y; });
  }
  // Moves messages until nothing moves; returns the number of rounds, or
  // -1 if it did not settle (a storm).
  int pump(int max_rounds = 200) {
    for (int round = 0; round < max_rounds; ++round) {
      bool moved = false;
      for (auto& n : nodes_) {
        if (n->limpet.bus_blocked() && n->port.writable()) {
          n->limpet.bus_writable();
          moved = true;
        }
        if (n->limpet.has_retries()) n->limpet.retry();
        while (auto m = n->port.read_next()) {
          moved = true;
          n->limpet.from_bus(*m);
        }
      }
      for (auto& p : pairs_) {
        moved |= carry(*p.a, *p.b);
        moved |= carry(*p.b, *p.a);
      }
      if (!moved) return round;
    }
    return -1;
  }

 private:
  static bool carry(Node& from, Node& to) {
    if (from.end.bytes.empty()) return false;
    to.incoming.feed(from.end.bytes);
    from.end.bytes.clear();
    for (;;) {
      auto m = to.incoming.next();
      EXPECT_TRUE(m.ok());
      if (!m.ok() || !m->has_value()) break;
      to.limpet.from_peer(**m);
    }
    return true;
  }
  std::vector<std::unique_ptr<core::Bus>> buses_;
  std::vector<std::unique_ptr<Node>> nodes_;
  std::vector<Pair> pairs_;
};

// ---- plain clients on an in-process bus ----

struct Client {
  Client(core::Bus& b) : bus(b), id(b.open({})) {}
  ~Client() {
    if (id != 0) bus.close(id);
  }
  void close() {
    bus.close(id);
    id = 0;
  }
  void bind(std::string_view name, bool replier = false) {
    ASSERT_TRUE(bus.bind(id, replier ? 1 : 0, name).ok()) << name;
  }
  Result<MessageId> send(const Message& m) {
    auto w = bus.write(id, encode_entire(m, kH));
    if (!w) return w.error();
    auto s = bus.send(id);
    if (s.error != Errc::ok) return s.error;
    return s.id;
  }
  std::optional<Message> read() {
    std::string out;
    auto r = bus.next_read(id, out);
    if (!r || *r == 0) return std::nullopt;
    return decode_entire(out, kH).value();
  }
  std::vector<Message> read_all() {
    std::vector<Message> v;
    while (auto m = read()) v.push_back(*m);
    return v;
  }
  core::Bus& bus;
  KsockId id;
};

// Requests held by the limpets when a link is cut must all be answered.
std::size_t count_named(const std::vector<Message>& v, std::string_view name) {
  std::size_t n = 0;
  for (auto& m : v) n += m.name == name ? 1 : 0;
  return n;
}

// ---- announcements ----

TEST(Limpet, AnnouncementsCrossBothWaysExactlyOnce) {
  World w;
  Node& la = w.limpet(0, 1);
  Node& lb = w.limpet(1, 2);
  w.join(la, lb);
  Client sa(w.bus(0)), ha(w.bus(0)), hb(w.bus(1)), sb(w.bus(1));
  ha.bind("$.Fish.*");
  hb.bind("$.Fish.*");
  ASSERT_GE(w.pump(), 0);

  auto id = sa.send(make_announcement("$.Fish.Gold", "blub"));
  ASSERT_TRUE(id.ok());
  ASSERT_GE(w.pump(), 0);
  auto got_a = ha.read_all();
  auto got_b = hb.read_all();
  ASSERT_EQ(got_a.size(), 1u) << "no echo back onto bus A";
  ASSERT_EQ(got_b.size(), 1u);
  EXPECT_EQ(got_b[0].name, "$.Fish.Gold");
  EXPECT_EQ(got_b[0].data, "blub");
  EXPECT_EQ(got_b[0].hdr.id, (MessageId{1, id->serial_num})) << "id keeps its serial, net id 1";
  EXPECT_EQ(got_b[0].hdr.from, lb.port.ksock_id()) << "sent on B by B's limpet";
  EXPECT_EQ(got_b[0].hdr.orig_from, (OrigFrom{1, sa.id}));

  ASSERT_TRUE(sb.send(make_announcement("$.Fish.Koi")).ok());
  ASSERT_GE(w.pump(), 0);
  EXPECT_EQ(ha.read_all().size(), 1u);
  EXPECT_EQ(hb.read_all().size(), 1u);
}

TEST(Limpet, OnlyTheProxiedNamesCross) {
  World w;
  auto& a_bus = w.bus(0);
  Node& lb = w.limpet(1, 2);
  auto node_a = std::make_unique<Node>(a_bus, 1, "$.Sensors.*");
  ASSERT_FALSE(node_a->limpet.start().has_value());
  // (joined by hand: World::join wants nodes it made)
  ASSERT_FALSE(node_a->limpet.link_up(2).has_value());
  ASSERT_FALSE(lb.limpet.link_up(1).has_value());
  Client sa(a_bus);
  ASSERT_TRUE(sa.send(make_announcement("$.Sensors.T", "20")).ok());
  ASSERT_TRUE(sa.send(make_announcement("$.Other")).ok());
  while (auto m = node_a->port.read_next()) node_a->limpet.from_bus(*m);
  WireDecoder d;
  d.feed(node_a->end.bytes);
  std::vector<std::string> names;
  while (true) {
    auto m = d.next();
    if (!m.ok() || !m->has_value()) break;
    names.push_back((*m)->name);
  }
  EXPECT_EQ(names, std::vector<std::string>{"$.Sensors.T"});
}

// ---- requests and replies ----

struct PairFixture : ::testing::Test {
  World w;
  Node& la = w.limpet(0, 1);
  Node& lb = w.limpet(1, 2);
  void SetUp() override { w.join(la, lb); }
  // A replier on B, proxied on A.
  void replier_on_b(Client& g, const std::string& name) {
    g.bind(name, true);
    ASSERT_GE(w.pump(), 0);
    auto r = w.bus(0).find_replier(name);
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(*r, la.port.ksock_id()) << "A's limpet proxies " << name;
  }
};

TEST_F(PairFixture, RequestToARemoteReplierGetsItsReply) {
  Client q(w.bus(0)), g(w.bus(1));
  replier_on_b(g, "$.Gulp");
  auto id = q.send(make_request("$.Gulp", "food?"));
  ASSERT_TRUE(id.ok());
  ASSERT_GE(w.pump(), 0);
  auto req = g.read();
  ASSERT_TRUE(req);
  EXPECT_TRUE(req->wants_us_to_reply());
  EXPECT_EQ(req->hdr.id, (MessageId{1, id->serial_num}));
  EXPECT_EQ(req->hdr.orig_from, (OrigFrom{1, q.id}));
  ASSERT_TRUE(g.send(make_reply(*req, "yes").value()).ok());
  ASSERT_GE(w.pump(), 0);
  auto rep = q.read_all();
  ASSERT_EQ(rep.size(), 1u);
  EXPECT_EQ(rep[0].name, "$.Gulp");
  EXPECT_EQ(rep[0].data, "yes");
  EXPECT_EQ(rep[0].hdr.in_reply_to, *id);
  EXPECT_EQ(rep[0].hdr.from, la.port.ksock_id());
  EXPECT_EQ(rep[0].hdr.orig_from, (OrigFrom{2, g.id}));
  EXPECT_FALSE(rep[0].is_synthetic());
  EXPECT_EQ(la.limpet.requests_held(), 0u);
  EXPECT_EQ(w.bus(0).unreplied_to(la.port.ksock_id()), 0u);
  EXPECT_EQ(w.bus(1).unreplied_to(lb.port.ksock_id()), 0u);
}

TEST_F(PairFixture, StatefulRequestsReachTheSameRemoteReplier) {
  Client q(w.bus(0)), g(w.bus(1));
  replier_on_b(g, "$.Chat");
  ASSERT_TRUE(q.send(make_request("$.Chat", "hello")).ok());
  ASSERT_GE(w.pump(), 0);
  auto req = g.read();
  ASSERT_TRUE(g.send(make_reply(*req, "hi").value()).ok());
  ASSERT_GE(w.pump(), 0);
  auto rep = q.read();
  ASSERT_TRUE(rep);
  Message st = make_stateful_request(*rep, "$.Chat", "again").value();
  EXPECT_EQ(st.hdr.to, la.port.ksock_id());
  EXPECT_EQ(st.hdr.final_to, (OrigFrom{2, g.id}));
  auto sid = q.send(st);
  ASSERT_TRUE(sid.ok());
  ASSERT_GE(w.pump(), 0);
  auto req2 = g.read();
  ASSERT_TRUE(req2);
  EXPECT_EQ(req2->data, "again");
  EXPECT_EQ(req2->hdr.to, g.id) << "to = final_to.local_id on the final bus";
  ASSERT_TRUE(g.send(make_reply(*req2, "ok").value()).ok());
  ASSERT_GE(w.pump(), 0);
  auto rep2 = q.read();
  ASSERT_TRUE(rep2);
  EXPECT_EQ(rep2->hdr.in_reply_to, *sid);

  // Another Ksock takes over the name: NotSameKsock, as a Reply.
  g.close();
  Client g2(w.bus(1));
  replier_on_b(g2, "$.Chat");
  Message st2 = make_stateful_request(*rep2, "$.Chat", "you?").value();
  auto sid2 = q.send(st2);
  ASSERT_TRUE(sid2.ok());
  ASSERT_GE(w.pump(), 0);
  EXPECT_FALSE(g2.read()) << "the new replier never sees it";
  auto err = q.read();
  ASSERT_TRUE(err);
  EXPECT_EQ(err->name, status_name::kReplierNotSameKsock);
  EXPECT_EQ(err->hdr.in_reply_to, *sid2);
  EXPECT_FALSE(q.read());
}

TEST_F(PairFixture, StatefulRequestToAWildcardReplierGetsGoneAway) {
  // §14-6: REPLIER is exact-match, so the far limpet cannot find G.
  Client q(w.bus(0)), g(w.bus(1));
  replier_on_b(g, "$.Tank.*");
  ASSERT_TRUE(q.send(make_request("$.Tank.Fill")).ok());
  ASSERT_GE(w.pump(), 0);
  auto req = g.read();
  ASSERT_TRUE(req);
  ASSERT_TRUE(g.send(make_reply(*req).value()).ok());
  ASSERT_GE(w.pump(), 0);
  auto rep = q.read();
  ASSERT_TRUE(rep);
  auto sid = q.send(make_stateful_request(*rep, "$.Tank.Drain").value());
  ASSERT_TRUE(sid.ok());
  ASSERT_GE(w.pump(), 0);
  auto err = q.read();
  ASSERT_TRUE(err);
  EXPECT_EQ(err->name, status_name::kReplierGoneAway);
  EXPECT_EQ(err->hdr.in_reply_to, *sid);
  EXPECT_FALSE(g.read());
}

TEST_F(PairFixture, RemoteSendFailureComesBackAsRemoteError) {
  Client q(w.bus(0)), g(w.bus(1));
  replier_on_b(g, "$.Busy");
  // The replier's queue holds one message; a listener keeps it full.
  ASSERT_EQ(w.bus(1).max_msgs(g.id, 1), 1u);
  ASSERT_TRUE(q.send(make_request("$.Busy", "1")).ok());
  auto id2 = q.send(make_request("$.Busy", "2"));
  ASSERT_TRUE(id2.ok());
  ASSERT_GE(w.pump(), 0);
  auto got = q.read_all();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].name, remote_error_name(EBUSY));
  EXPECT_EQ(got[0].hdr.in_reply_to, *id2);
  EXPECT_EQ(la.limpet.requests_held(), 1u) << "the first is still with G";
}

TEST_F(PairFixture, RemoteReplierGoingAwayAnswersEveryRequestOnce) {
  Client q(w.bus(0)), g(w.bus(1));
  replier_on_b(g, "$.Gone");
  auto r1 = q.send(make_request("$.Gone", "1"));
  auto r2 = q.send(make_request("$.Gone", "2"));
  ASSERT_TRUE(r1.ok() && r2.ok());
  ASSERT_GE(w.pump(), 0);
  ASSERT_TRUE(g.read());  // popped: owed, Ignored at close; the other is queued: GoneAway
  g.close();
  ASSERT_GE(w.pump(), 0);
  auto got = q.read_all();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(count_named(got, status_name::kReplierGoneAway), 1u);
  EXPECT_EQ(count_named(got, status_name::kReplierIgnored), 1u);
  EXPECT_EQ(la.limpet.requests_held(), 0u);
  EXPECT_TRUE(la.limpet.proxies().empty()) << "the unbind event removed the proxy";
  EXPECT_EQ(*w.bus(0).find_replier("$.Gone"), 0u);
}

TEST_F(PairFixture, ACutAnswersEveryHeldRequestAndARelinkRestoresProxies) {
  Client q(w.bus(0)), g(w.bus(1));
  replier_on_b(g, "$.Slow");
  std::vector<MessageId> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(q.send(make_request("$.Slow")).value());
  ASSERT_GE(w.pump(), 0);
  ASSERT_TRUE(g.read());  // G has one in hand; the rest wait in its queue
  // Two more that never leave A's limpet's queue before the cut.
  ids.push_back(q.send(make_request("$.Slow")).value());
  ids.push_back(q.send(make_request("$.Slow")).value());
  w.cut(la, lb);
  auto got = q.read_all();
  ASSERT_EQ(got.size(), ids.size()) << "one answer per request";
  std::set<MessageId> answered;
  for (auto& m : got) {
    EXPECT_TRUE(m.is_status()) << m.to_string();
    answered.insert(m.hdr.in_reply_to);
  }
  EXPECT_EQ(answered, std::set<MessageId>(ids.begin(), ids.end()));
  EXPECT_EQ(*w.bus(0).find_replier("$.Slow"), 0u) << "proxy gone with the link";
  // A reply G sends now finds its requester (B's limpet) gone.
  ASSERT_GE(w.pump(), 0);
  EXPECT_FALSE(q.read());

  w.join(la, lb);
  ASSERT_GE(w.pump(), 0);
  EXPECT_NE(*w.bus(0).find_replier("$.Slow"), 0u) << "proxy back after the relink";
  auto id = q.send(make_request("$.Slow", "again"));
  ASSERT_TRUE(id.ok());
  ASSERT_GE(w.pump(), 0);
  std::optional<Message> req;
  while (auto m = g.read()) {
    if (m->data == "again") req = m;
  }
  ASSERT_TRUE(req);
  ASSERT_TRUE(g.send(make_reply(*req, "back").value()).ok());
  ASSERT_GE(w.pump(), 0);
  auto rep = q.read_all();
  ASSERT_EQ(rep.size(), 1u);
  EXPECT_EQ(rep[0].data, "back");
  EXPECT_EQ(rep[0].hdr.in_reply_to, *id);
}

TEST_F(PairFixture, ListenerCopiesOfRequestsAndRepliesStayHome) {
  Client q(w.bus(0)), r(w.bus(0)), hb(w.bus(1));
  r.bind("$.Local", true);
  hb.bind("$.*");
  ASSERT_GE(w.pump(), 0);
  (void)hb.read_all();  // nothing, or bind-event traffic: not asserted
  auto id = q.send(make_request("$.Local"));
  ASSERT_TRUE(id.ok());
  ASSERT_GE(w.pump(), 0);
  auto req = r.read();
  ASSERT_TRUE(r.send(make_reply(*req).value()).ok());
  ASSERT_GE(w.pump(), 0);
  EXPECT_TRUE(hb.read_all().empty()) << "routed traffic does not spill onto B";
  EXPECT_EQ(la.limpet.counters().errors_to_peer + lb.limpet.counters().errors_to_peer, 0u);
  EXPECT_EQ(q.read_all().size(), 1u);
}

TEST_F(PairFixture, AllOrWaitFromThePeerWaitsForRoomAndKeepsOrder) {
  Client sb(w.bus(1)), ha(w.bus(0));
  ha.bind("$.Q");
  ASSERT_EQ(w.bus(0).max_msgs(ha.id, 1), 1u);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(sb.send(make_announcement("$.Q", std::to_string(i), flag::kAllOrWait)).ok());
  }
  ASSERT_GE(w.pump(), 0);
  EXPECT_TRUE(la.limpet.bus_blocked());
  std::vector<std::string> got;
  for (int i = 0; i < 10 && got.size() < 3; ++i) {
    if (auto m = ha.read()) got.push_back(m->data);
    ASSERT_GE(w.pump(), 0);
  }
  EXPECT_EQ(got, (std::vector<std::string>{"0", "1", "2"}));
  EXPECT_FALSE(la.limpet.bus_blocked());
}

TEST_F(PairFixture, TheTerminationMessageStopsTheLimpet) {
  World w2;
  auto& bus = w2.bus(0);
  CoreBusPort port(bus);
  MemoryEnd end;
  Limpet l(LimpetConfig{7, "$.*", std::string("$.Stop"), 1000}, port, end);
  ASSERT_FALSE(l.start().has_value());
  ASSERT_FALSE(l.link_up(8).has_value());
  Client c(bus);
  ASSERT_TRUE(c.send(make_announcement("$.Go")).ok());
  ASSERT_TRUE(c.send(make_announcement("$.Stop")).ok());
  auto m1 = port.read_next();
  EXPECT_EQ(l.from_bus(*m1), Limpet::Action::kContinue);
  auto m2 = port.read_next();
  EXPECT_EQ(l.from_bus(*m2), Limpet::Action::kTerminate);
}

// ---- misconfiguration and loops ----

TEST(LimpetMisconfig, EqualNetworkIdsAreRefused) {
  World w;
  Node& a = w.limpet(0, 4);
  auto f = a.limpet.link_up(4);
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->kind, Fault::Kind::kMisconfig);
  EXPECT_NE(f->what.find("same network id 4"), std::string::npos) << f->what;
}

TEST(LimpetMisconfig, BothEndsOnOneBusAreRefused) {
  World w;
  Node& a = w.limpet(0, 1);
  Node& b = w.limpet(0, 2);
  auto f = a.limpet.link_up(2);
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->kind, Fault::Kind::kMisconfig);
  EXPECT_NE(f->what.find("same bus"), std::string::npos) << f->what;
  EXPECT_TRUE(b.limpet.link_up(1).has_value());
}

TEST(LimpetMisconfig, TwoLimpetsWithOneNetworkIdOnABusAreRefused) {
  World w;
  (void)w.limpet(0, 5);
  CoreBusPort port(w.bus(0));
  MemoryEnd end;
  LimpetConfig c5;
  c5.network_id = 5;
  Limpet second(c5, port, end);
  auto f = second.start();
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->kind, Fault::Kind::kMisconfig);
  EXPECT_NE(f->what.find("network id 5"), std::string::npos) << f->what;
  // Another bus of the same daemon is another bus: fine.
  CoreBusPort other(w.bus(1));
  Limpet third(c5, other, end);
  EXPECT_FALSE(third.start().has_value());
}

TEST(LimpetMisconfig, OnOneBusWithoutTheMarkerCheckThereIsNoStorm) {
  // As if the far end were an original limpet (no marker to find): the
  // loop rules alone keep it quiet.
  World w;
  Node& a = w.limpet(0, 1);
  Node& b = w.limpet(0, 2);
  // Bypass the marker check by removing both markers.
  ASSERT_TRUE(w.bus(0).unbind(b.port.ksock_id(), 0, marker_name(2)).ok());
  ASSERT_TRUE(w.bus(0).unbind(a.port.ksock_id(), 0, marker_name(1)).ok());
  ASSERT_FALSE(a.limpet.link_up(2).has_value());
  ASSERT_FALSE(b.limpet.link_up(1).has_value());
  Client s(w.bus(0)), h(w.bus(0));
  h.bind("$.Ping");
  ASSERT_TRUE(s.send(make_announcement("$.Ping")).ok());
  // Pump by hand between the two nodes.
  int rounds = 0;
  for (; rounds < 100; ++rounds) {
    bool moved = false;
    for (Node* n : {&a, &b}) {
      while (auto m = n->port.read_next()) {
        moved = true;
        n->limpet.from_bus(*m);
      }
    }
    for (auto [x, y] : {std::pair{&a, &b}, std::pair{&b, &a}}) {
      if (x->end.bytes.empty()) continue;
      moved = true;
      y->incoming.feed(x->end.bytes);
      x->end.bytes.clear();
      while (true) {
        auto m = y->incoming.next();
        if (!m.ok() || !m->has_value()) break;
        y->limpet.from_peer(**m);
      }
    }
    if (!moved) break;
  }
  EXPECT_LT(rounds, 100) << "a message storm";
  // The original plus one copy injected by each limpet, then silence.
  EXPECT_LE(h.read_all().size(), 3u);
  EXPECT_GT(a.limpet.counters().loops + b.limpet.counters().loops, 0u);
}

// ---- three buses ----

struct ChainFixture : ::testing::Test {
  World w;
  Node& a = w.limpet(0, 1);   // A's limpet, paired with b1
  Node& b1 = w.limpet(1, 2);
  Node& b2 = w.limpet(1, 3);  // B's limpet, paired with c
  Node& c = w.limpet(2, 4);
  void SetUp() override {
    w.join(a, b1);
    w.join(b2, c);
    ASSERT_GE(w.pump(), 0);
  }
};

TEST_F(ChainFixture, AnnouncementsReachEveryBusOnce) {
  Client sa(w.bus(0)), ha(w.bus(0)), hb(w.bus(1)), hc(w.bus(2)), sc(w.bus(2));
  for (Client* h : {&ha, &hb, &hc}) h->bind("$.News");
  ASSERT_TRUE(sa.send(make_announcement("$.News", "from A")).ok());
  ASSERT_TRUE(sc.send(make_announcement("$.News", "from C")).ok());
  ASSERT_GE(w.pump(), 0);
  for (Client* h : {&ha, &hb, &hc}) {
    auto got = h->read_all();
    ASSERT_EQ(got.size(), 2u) << "bus " << h->bus.number();
  }
}

TEST_F(ChainFixture, RequestsAndStatefulRequestsCrossTwoLinks) {
  Client q(w.bus(0)), g(w.bus(2));
  g.bind("$.Far", true);
  ASSERT_GE(w.pump(), 0);
  ASSERT_EQ(*w.bus(1).find_replier("$.Far"), b2.port.ksock_id());
  ASSERT_EQ(*w.bus(0).find_replier("$.Far"), a.port.ksock_id());
  auto id = q.send(make_request("$.Far", "x"));
  ASSERT_TRUE(id.ok());
  ASSERT_GE(w.pump(), 0);
  auto req = g.read();
  ASSERT_TRUE(req);
  EXPECT_EQ(req->hdr.id, (MessageId{1, id->serial_num}));
  ASSERT_TRUE(g.send(make_reply(*req, "y").value()).ok());
  ASSERT_GE(w.pump(), 0);
  auto rep = q.read();
  ASSERT_TRUE(rep);
  EXPECT_EQ(rep->data, "y");
  EXPECT_EQ(rep->hdr.in_reply_to, *id);
  EXPECT_EQ(rep->hdr.orig_from, (OrigFrom{4, g.id}));

  auto sid = q.send(make_stateful_request(*rep, "$.Far", "z").value());
  ASSERT_TRUE(sid.ok());
  ASSERT_GE(w.pump(), 0);
  auto req2 = g.read();
  ASSERT_TRUE(req2);
  EXPECT_EQ(req2->data, "z");
  ASSERT_TRUE(g.send(make_reply(*req2, "w").value()).ok());
  ASSERT_GE(w.pump(), 0);
  auto rep2 = q.read();
  ASSERT_TRUE(rep2);
  EXPECT_EQ(rep2->hdr.in_reply_to, *sid);
  EXPECT_FALSE(q.read());
  for (Node* n : {&a, &b1, &b2, &c}) EXPECT_EQ(n->limpet.requests_held(), 0u);
}

TEST_F(ChainFixture, ACutInTheMiddleAnswersRequestsAtTheFarEnd) {
  Client q(w.bus(0)), g(w.bus(2));
  g.bind("$.Far", true);
  ASSERT_GE(w.pump(), 0);
  auto id = q.send(make_request("$.Far"));
  ASSERT_TRUE(id.ok());
  ASSERT_GE(w.pump(), 0);
  ASSERT_TRUE(g.read());
  w.cut(b2, c);  // B's proxy for $.Far goes; the request it held is answered
  ASSERT_GE(w.pump(), 0);
  auto got = q.read_all();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_TRUE(got[0].is_status());
  EXPECT_EQ(got[0].hdr.in_reply_to, *id);
  EXPECT_EQ(*w.bus(0).find_replier("$.Far"), 0u) << "the unbind travelled on to A";
}

TEST(LimpetLoop, ACycleOfThreePairsDoesNotStorm) {
  World w;
  Node& ab = w.limpet(0, 1);
  Node& ba = w.limpet(1, 2);
  Node& bc = w.limpet(1, 3);
  Node& cb = w.limpet(2, 4);
  Node& ca = w.limpet(2, 5);
  Node& ac = w.limpet(0, 6);
  w.join(ab, ba);
  w.join(bc, cb);
  w.join(ca, ac);
  ASSERT_GE(w.pump(), 0);
  Client s(w.bus(0)), h(w.bus(1));
  h.bind("$.Round");
  ASSERT_TRUE(s.send(make_announcement("$.Round")).ok());
  ASSERT_GE(w.pump(), 0) << "a storm";
  EXPECT_LE(h.read_all().size(), 2u);
  std::uint64_t loops = 0;
  for (Node* n : {&ab, &ba, &bc, &cb, &ca, &ac}) loops += n->limpet.counters().loops;
  EXPECT_GT(loops, 0u);
}


// ---- request records never alias (docs/decisions.md D18) ----

// A client on B that replays the ids of Requests it saw pass (as a
// listener) while they still await their answer must not take the answer
// from the real requester on A: every Request on A is answered exactly
// once, with its own Reply, and each replay is refused with
// $.KBUS.RemoteError.<EADDRINUSE> by B's proxy (KBUS-SPEC.md §10.4-3,
// §10.5-2, §6.1).
TEST_F(ChainFixture, ReplayedIdsNeverTakeAnotherRequestersAnswer) {
  Client q(w.bus(0)), g(w.bus(2)), x(w.bus(1));
  g.bind("$.Far", true);
  x.bind("$.Far");  // x sees every Request to $.Far that passes through B
  ASSERT_GE(w.pump(), 0);
  constexpr int kN = 5;
  std::vector<MessageId> ids;
  for (int i = 0; i < kN; ++i) {
    auto id = q.send(make_request("$.Far", "q" + std::to_string(i)));
    ASSERT_TRUE(id.ok());
    ids.push_back(*id);
  }
  ASSERT_GE(w.pump(), 0);
  auto held = g.read_all();  // g holds them all, unanswered
  ASSERT_EQ(held.size(), static_cast<std::size_t>(kN));
  auto seen = x.read_all();
  ASSERT_EQ(seen.size(), static_cast<std::size_t>(kN));
  for (auto& copy : seen) {
    Message replay = make_request("$.Far", "replayed");
    replay.hdr.id = copy.hdr.id;  // e.g. [1:n], an id still awaiting its answer
    ASSERT_TRUE(x.send(replay).ok()) << "another sender's id: the bus accepts it (D13)";
  }
  ASSERT_GE(w.pump(), 0);
  std::vector<Message> refused;  // (x also hears its own replays as a listener)
  for (auto& m : x.read_all()) {
    if (m.is_reply() && m.hdr.to == x.id) refused.push_back(m);
  }
  ASSERT_EQ(refused.size(), static_cast<std::size_t>(kN));
  std::set<MessageId> refused_ids;
  for (auto& r : refused) {
    EXPECT_EQ(r.name, remote_error_name(EADDRINUSE));
    EXPECT_EQ(r.hdr.to, x.id);
    refused_ids.insert(r.hdr.in_reply_to);
  }
  EXPECT_EQ(refused_ids.size(), static_cast<std::size_t>(kN)) << "one answer per replay";
  EXPECT_FALSE(g.read()) << "no replay crossed";
  EXPECT_EQ(b2.limpet.counters().id_clashes, static_cast<std::uint64_t>(kN));

  for (auto& r : held) ASSERT_TRUE(g.send(make_reply(r, "for " + r.data).value()).ok());
  ASSERT_GE(w.pump(), 0);
  auto answers = q.read_all();
  ASSERT_EQ(answers.size(), static_cast<std::size_t>(kN));
  for (int i = 0; i < kN; ++i) {
    EXPECT_EQ(answers[static_cast<std::size_t>(i)].hdr.in_reply_to, ids[static_cast<std::size_t>(i)]);
    EXPECT_EQ(answers[static_cast<std::size_t>(i)].data, "for q" + std::to_string(i));
    EXPECT_FALSE(answers[static_cast<std::size_t>(i)].is_status());
  }
  for (auto& m : x.read_all()) {  // only listener copies of the Replies crossing B
    EXPECT_TRUE(m.is_reply());
    EXPECT_NE(m.hdr.to, x.id) << m.to_string();
  }
  for (Node* n : {&a, &b1, &b2, &c}) EXPECT_EQ(n->limpet.requests_held(), 0u);

  // Once answered, the id may be used again: the replay then crosses and
  // gets its own answer from the far replier. (x stops listening, so that
  // the Reply to it arrives once, not also as a listener copy.)
  ASSERT_TRUE(w.bus(1).unbind(x.id, 0, "$.Far").ok());
  Message again = make_request("$.Far", "later");
  again.hdr.id = seen[0].hdr.id;
  ASSERT_TRUE(x.send(again).ok());
  ASSERT_GE(w.pump(), 0);
  auto req = g.read();
  ASSERT_TRUE(req);
  EXPECT_EQ(req->data, "later");
  ASSERT_TRUE(g.send(make_reply(*req, "ok").value()).ok());
  ASSERT_GE(w.pump(), 0);
  std::vector<Message> got;
  for (auto& m : x.read_all()) {
    if (m.hdr.to == x.id) got.push_back(m);
  }
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].data, "ok");
  EXPECT_TRUE(q.read_all().empty()) << "nothing more for A's requester";
}

// An answer from the peer is matched by the id its Request crossed with:
// one carrying an id of the peer's own bus ({0,n}, as an original limpet
// forwards listener copies of local Replies) never matches a record, even
// when this bus has a Request with the same serial (§14-21).
TEST_F(PairFixture, AnAnswerWithAForeignLocalIdMatchesNoRecord) {
  Client q(w.bus(0)), g(w.bus(1));
  replier_on_b(g, "$.Gulp");
  auto id = q.send(make_request("$.Gulp", "food?"));
  ASSERT_TRUE(id.ok());
  ASSERT_GE(w.pump(), 0);
  auto req = g.read();
  ASSERT_TRUE(req);
  ASSERT_EQ(la.limpet.requests_held(), 1u);
  Message stray;
  stray.name = "$.Gulp";
  stray.data = "stray";
  stray.hdr.id = MessageId{2, 77};
  stray.hdr.in_reply_to = *id;  // {0, n}: the same serial, but of bus B
  stray.hdr.to = 12345;
  la.limpet.from_peer(stray);
  ASSERT_GE(w.pump(), 0);
  EXPECT_TRUE(q.read_all().empty()) << "the stray answer was not taken for q's Request";
  EXPECT_EQ(la.limpet.requests_held(), 1u);
  ASSERT_TRUE(g.send(make_reply(*req, "yes").value()).ok());
  ASSERT_GE(w.pump(), 0);
  auto rep = q.read_all();
  ASSERT_EQ(rep.size(), 1u);
  EXPECT_EQ(rep[0].data, "yes");
  EXPECT_EQ(rep[0].hdr.in_reply_to, *id);
}

}  // namespace
}  // namespace kbus::limpet
