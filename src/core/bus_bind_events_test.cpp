// core/bus_bind_events_test.cpp - Replier Bind Events, REPORTREPLIERBINDS
// and the set-aside list (KBUS-SPEC.md §4.6, §6.2, §7.1-5/-6, §7.2-4/-5,
// §8, §14-9, §14-17, §14-24).
#include "core/bus.hpp"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

#include "core/test_helpers.hpp"

namespace kbus::core {
namespace {

using namespace test;

constexpr std::string_view kEvent = "$.KBUS.ReplierBindEvent";

// §8.5 / §6.2 / §14-9: the event message and its data (§3.6).
void expect_event(const Message& m, bool is_bind, KsockId binder, std::string_view name) {
  EXPECT_EQ(m.name, kEvent);
  EXPECT_EQ(m.hdr.flags, flag::kSynthetic | flag::kAllOrFail);
  EXPECT_EQ(m.hdr.from, 0u);
  EXPECT_EQ(m.hdr.to, 0u);
  EXPECT_TRUE(m.hdr.in_reply_to.is_zero());
  EXPECT_EQ(m.hdr.id.network_id, 0u);
  EXPECT_NE(m.hdr.id.serial_num, 0u);
  EXPECT_TRUE(m.hdr.orig_from.is_zero());
  EXPECT_TRUE(m.hdr.final_to.is_zero());
  EXPECT_EQ(m.data.size(), 12u + padded_name_len(static_cast<std::uint32_t>(name.size())));
  auto ev = decode_replier_bind_event(m.data);
  ASSERT_TRUE(ev.ok());
  EXPECT_EQ(ev->is_bind, is_bind);
  EXPECT_EQ(ev->binder, binder);
  EXPECT_EQ(ev->name, name);
}

std::string stats(const Bus& bus) {
  std::string s;
  bus.append_stats(s);
  return s;
}
std::string first_line(const std::string& s) { return s.substr(0, s.find('\n') + 1); }

class BusBindEventsTest : public BusTest {
 protected:
  // Turns reporting on from a Ksock of its own (no replier exists yet, so
  // nothing is flooded).
  void report_on() {
    KsockId r = bus.open(rw());
    ASSERT_EQ(*bus.report_replier_binds(r, 1), 0u);
  }
  // A Ksock listening for events.
  KsockId event_listener(std::string_view binding = kEvent) {
    KsockId l = bus.open(rw());
    EXPECT_TRUE(bus.bind(l, 0, binding).ok());
    return l;
  }
  // Makes k full: queue limit 1 and one "$.Fill" message queued.
  void fill(KsockId k) {
    if (filler_ == 0) filler_ = bus.open(rw());
    ASSERT_TRUE(bus.bind(k, 0, "$.Fill").ok());
    ASSERT_EQ(bus.max_msgs(k, 1), 1u);
    send_ok(bus, filler_, announcement("$.Fill"));
    ASSERT_EQ(bus.num_msgs(k), 1u);
  }
  KsockId filler_ = 0;
};

// §4.6 REPORTREPLIERBINDS: 1 on, 0 off, 0xFFFFFFFF query, else EINVAL;
// returns the previous value; per bus.
TEST_F(BusBindEventsTest, ReportFlagValueConvention) {
  KsockId a = bus.open(rw());
  KsockId b = bus.open(rw());
  EXPECT_EQ(*bus.report_replier_binds(a, 0xFFFFFFFF), 0u);
  EXPECT_EQ(*bus.report_replier_binds(a, 1), 0u);
  EXPECT_EQ(*bus.report_replier_binds(b, 0xFFFFFFFF), 1u);
  EXPECT_EQ(bus.report_replier_binds(a, 2).error(), Errc::einval);
  EXPECT_EQ(*bus.report_replier_binds(b, 0), 1u);
  EXPECT_EQ(*bus.report_replier_binds(a, 0xFFFFFFFF), 0u);
}

// §4.6 / §8.1 / §14-24: setting the flag to 1 queues, to the caller only and
// regardless of its bindings, an is_bind event per existing replier binding,
// newest first; again on every call.
TEST_F(BusBindEventsTest, ReportFloodsCaller) {
  KsockId p1 = bus.open(rw());
  KsockId p2 = bus.open(rw());
  KsockId c = bus.open(rw());
  KsockId l = event_listener();
  ASSERT_TRUE(bus.bind(p1, 1, "$.a").ok());
  ASSERT_TRUE(bus.bind(p1, 0, "$.c").ok());  // listener bindings are not reported
  ASSERT_TRUE(bus.bind(p2, 1, "$.b.*").ok());
  EXPECT_EQ(*bus.report_replier_binds(c, 1), 0u);
  ASSERT_EQ(bus.num_msgs(c), 2u);
  Message e1 = receive_one(bus, c);
  Message e2 = receive_one(bus, c);
  expect_event(e1, true, p2, "$.b.*");
  expect_event(e2, true, p1, "$.a");
  EXPECT_EQ(e1.hdr.id, (MessageId{0, 1}));
  EXPECT_EQ(e2.hdr.id, (MessageId{0, 2}));
  EXPECT_EQ(bus.num_msgs(l), 0u);
  EXPECT_EQ(bus.num_msgs(p1), 0u);
  EXPECT_EQ(*bus.report_replier_binds(c, 1), 1u);
  ASSERT_EQ(bus.num_msgs(c), 2u);
  expect_event(receive_one(bus, c), true, p2, "$.b.*");
  expect_event(receive_one(bus, c), true, p1, "$.a");
  EXPECT_EQ(*bus.report_replier_binds(c, 0), 1u);
  EXPECT_EQ(bus.num_msgs(c), 0u);
}

// §4.6 / §14-24: if the caller's queue fills during the report → EBUSY;
// events already queued stay and the flag stays set.
TEST_F(BusBindEventsTest, ReportFloodEbusy) {
  KsockId p1 = bus.open(rw());
  KsockId p2 = bus.open(rw());
  KsockId c = bus.open(rw());
  ASSERT_TRUE(bus.bind(p1, 1, "$.a").ok());
  ASSERT_TRUE(bus.bind(p2, 1, "$.b").ok());
  ASSERT_EQ(bus.max_msgs(c, 1), 1u);
  EXPECT_EQ(bus.report_replier_binds(c, 1).error(), Errc::ebusy);
  EXPECT_EQ(*bus.report_replier_binds(c, 0xFFFFFFFF), 1u);
  ASSERT_EQ(bus.num_msgs(c), 1u);
  Message ev = receive_one(bus, c);
  expect_event(ev, true, p2, "$.b");
  EXPECT_EQ(ev.hdr.id, (MessageId{0, 1}));
  // §1.5-4: the event refused with EBUSY ($.a) was built, so it used [0:2].
  EXPECT_EQ(send_ok(bus, c, announcement("$.Jim")), (MessageId{0, 3}));
}

// §7.1-2: report-existing-binds events are not removed by UNBIND.
TEST_F(BusBindEventsTest, FloodEventsSurviveUnbind) {
  KsockId p = bus.open(rw());
  KsockId c = bus.open(rw());
  ASSERT_TRUE(bus.bind(p, 1, "$.a").ok());
  ASSERT_TRUE(bus.bind(c, 0, kEvent).ok());
  EXPECT_EQ(*bus.report_replier_binds(c, 1), 0u);
  ASSERT_EQ(bus.num_msgs(c), 1u);
  ASSERT_TRUE(bus.unbind(c, 0, kEvent).ok());
  EXPECT_EQ(bus.num_msgs(c), 1u);
}

// §8.2 / §6.2: a replier BIND sends an is_bind event to every listener
// binding matching the event name (wildcards included), to the binder
// itself if it listens, and to no replier; listener BINDs send nothing.
TEST_F(BusBindEventsTest, BindEventDelivery) {
  report_on();
  KsockId rep = bus.open(rw());
  ASSERT_TRUE(bus.bind(rep, 1, "$.KBUS.*").ok());  // nobody listening yet
  KsockId l1 = event_listener();
  KsockId l2 = event_listener("$.KBUS.*");
  KsockId l3 = event_listener("$.KBUS.%");
  KsockId l4 = event_listener("$.*");
  KsockId p = event_listener();
  ASSERT_TRUE(bus.bind(l1, 0, "$.Fred").ok());  // a listener BIND: no event
  for (KsockId l : {l1, l2, l3, l4, p}) EXPECT_EQ(bus.num_msgs(l), 0u);
  ASSERT_TRUE(bus.bind(p, 1, "$.Fred").ok());
  MessageId id;
  for (KsockId l : {l1, l2, l3, l4, p}) {
    ASSERT_EQ(bus.num_msgs(l), 1u) << l;
    Message m = receive_one(bus, l);
    expect_event(m, true, p, "$.Fred");
    if (id.is_zero()) id = m.hdr.id;
    EXPECT_EQ(m.hdr.id, id);  // one event, one id
  }
  EXPECT_EQ(bus.num_msgs(rep), 0u);
  EXPECT_EQ(*bus.find_replier("$.Fred"), p);
}

// §8.3: a replier UNBIND sends an is_bind = 0 event; §7.2-4 so does CLOSE.
TEST_F(BusBindEventsTest, UnbindAndCloseEvents) {
  report_on();
  KsockId l = event_listener();
  KsockId p = bus.open(rw());
  ASSERT_TRUE(bus.bind(p, 1, "$.Fred").ok());
  ASSERT_TRUE(bus.bind(p, 1, "$.Jim.%").ok());
  ASSERT_TRUE(bus.bind(p, 0, "$.Bob").ok());
  ASSERT_TRUE(bus.unbind(p, 1, "$.Fred").ok());
  ASSERT_TRUE(bus.unbind(p, 0, "$.Bob").ok());  // listener: no event
  bus.close(p);
  ASSERT_EQ(bus.num_msgs(l), 4u);
  expect_event(receive_one(bus, l), true, p, "$.Fred");
  expect_event(receive_one(bus, l), true, p, "$.Jim.%");
  expect_event(receive_one(bus, l), false, p, "$.Fred");
  expect_event(receive_one(bus, l), false, p, "$.Jim.%");
  EXPECT_EQ(first_line(stats(bus)), "dev  0: next ksock 4 next msg 5 unsent unbindings 0\n");
}

// §1.5-4: a bind event consumes a serial even if nobody receives it.
TEST_F(BusBindEventsTest, BindEventConsumesSerial) {
  report_on();
  KsockId p = bus.open(rw());
  ASSERT_TRUE(bus.bind(p, 1, "$.Fred").ok());
  EXPECT_EQ(send_ok(bus, p, announcement("$.Jim")), (MessageId{0, 2}));
}

// §8.2-3: a full listener → BIND fails with EAGAIN, nobody receives the
// event, no binding is made; §4.6 EADDRINUSE takes precedence.
TEST_F(BusBindEventsTest, BindEagain) {
  report_on();
  KsockId full = event_listener();
  KsockId roomy = event_listener();
  KsockId x = bus.open(rw());
  KsockId p = bus.open(rw());
  ASSERT_TRUE(bus.bind(x, 1, "$.Jim").ok());
  drain_names(bus, full);
  drain_names(bus, roomy);
  fill(full);
  EXPECT_EQ(bus.bind(p, 1, "$.Fred").error(), Errc::eagain);
  EXPECT_EQ(*bus.find_replier("$.Fred"), 0u);
  EXPECT_EQ(bus.num_msgs(roomy), 0u);
  EXPECT_EQ(bus.num_msgs(full), 1u);
  EXPECT_EQ(bus.bind(p, 1, "$.Jim").error(), Errc::eaddrinuse);
  EXPECT_TRUE(bus.bind(p, 0, "$.Fred").ok());  // listener binds need no event
  KsockId q = bus.open(rw());
  EXPECT_EQ(send(bus, q, request("$.Fred")).error, Errc::eaddrnotavail);
  // §1.5-4: the refused event was built, so it used a serial; an EADDRINUSE
  // BIND builds none.
  const MessageId before = send_ok(bus, q, announcement("$.Nobody"));
  EXPECT_EQ(bus.bind(p, 1, "$.Jim").error(), Errc::eaddrinuse);
  EXPECT_EQ(bus.bind(p, 1, "$.Fred").error(), Errc::eagain);
  EXPECT_EQ(send_ok(bus, q, announcement("$.Nobody")), (MessageId{0, before.serial_num + 2}));
  EXPECT_EQ(receive_one(bus, full).name, "$.Fill");
  EXPECT_TRUE(bus.bind(p, 1, "$.Fred").ok());
  expect_event(receive_one(bus, full), true, p, "$.Fred");
  expect_event(receive_one(bus, roomy), true, p, "$.Fred");
}

// §8.3: a full listener → replier UNBIND fails with EAGAIN; binding, queue
// and everything else unchanged.
TEST_F(BusBindEventsTest, UnbindEagain) {
  report_on();
  KsockId l = event_listener();
  KsockId p = bus.open(rw());
  KsockId q = bus.open(rw());
  ASSERT_TRUE(bus.bind(p, 1, "$.Fred").ok());
  drain_names(bus, l);
  MessageId r = send_ok(bus, q, request("$.Fred"));
  fill(l);
  EXPECT_EQ(bus.unbind(p, 1, "$.Fred").error(), Errc::eagain);
  EXPECT_EQ(*bus.find_replier("$.Fred"), p);
  EXPECT_EQ(bus.num_msgs(p), 1u);
  EXPECT_EQ(bus.num_msgs(q), 0u);
  EXPECT_EQ(bus.num_msgs(l), 1u);
  EXPECT_EQ(receive_one(bus, l).name, "$.Fill");
  ASSERT_TRUE(bus.unbind(p, 1, "$.Fred").ok());
  expect_event(receive_one(bus, l), false, p, "$.Fred");
  Message st = receive_one(bus, q);
  EXPECT_EQ(st.name, status_name::kReplierUnbound);
  EXPECT_EQ(st.hdr.in_reply_to, r);
}

// §8.4-1: at CLOSE, listeners with room get the unbind event directly.
TEST_F(BusBindEventsTest, CloseEventDeliveredDirectly) {
  report_on();
  KsockId l = event_listener();
  KsockId p = bus.open(rw());
  ASSERT_TRUE(bus.bind(p, 1, "$.Fred").ok());
  bus.close(p);
  EXPECT_EQ(bus.num_msgs(l), 2u);
  EXPECT_TRUE(bus.readable(l));
  EXPECT_NE(stats(bus).find("unsent unbindings 0\n"), std::string::npos);
}

// §8.4: the test-derived example: a listener with queue limit 1 holds one
// bind event; the binder closes; NUMMSGS = 2; the first NEXTMSG returns the
// bind event and moves the unbind event in; NUMMSGS = 1; then the unbind
// event.
TEST_F(BusBindEventsTest, SetAsideLimitOneExample) {
  report_on();
  KsockId l = event_listener();
  ASSERT_EQ(bus.max_msgs(l, 1), 1u);
  KsockId p = bus.open(rw());
  ASSERT_TRUE(bus.bind(p, 1, "$.Fred").ok());
  ASSERT_EQ(bus.num_msgs(l), 1u);
  bus.close(p);
  EXPECT_EQ(bus.num_msgs(l), 2u);
  EXPECT_TRUE(bus.readable(l));
  EXPECT_TRUE(first_line(stats(bus)).ends_with(" unsent unbindings 1\n"));
  Message a = receive_one(bus, l);
  expect_event(a, true, p, "$.Fred");
  EXPECT_EQ(bus.num_msgs(l), 1u);
  EXPECT_TRUE(bus.readable(l));
  Message b = receive_one(bus, l);
  expect_event(b, false, p, "$.Fred");
  EXPECT_GT(b.hdr.id, a.hdr.id);
  EXPECT_EQ(bus.num_msgs(l), 0u);
  EXPECT_FALSE(bus.readable(l));
  EXPECT_TRUE(first_line(stats(bus)).ends_with(" unsent unbindings 0\n"));
}

// §1.5-4: an unbind event set aside at CLOSE is one KBUS-generated message:
// it consumes one serial, like a directly delivered one.
TEST_F(BusBindEventsTest, SetAsideEventConsumesOneSerial) {
  report_on();
  KsockId l = event_listener();
  ASSERT_EQ(bus.max_msgs(l, 1), 1u);
  KsockId p = bus.open(rw());
  KsockId s = bus.open(rw());
  ASSERT_TRUE(bus.bind(p, 1, "$.Fred").ok());  // event [0:1]
  bus.close(p);                                // event [0:2], set aside
  ASSERT_EQ(bus.num_msgs(l), 2u);
  EXPECT_EQ(send_ok(bus, s, announcement("$.Jim")), (MessageId{0, 3}));
  receive_one(bus, l);
  EXPECT_EQ(receive_one(bus, l).hdr.id, (MessageId{0, 2}));
}

// §8.4-2/-5: when set aside, every matching listener gets a set-aside copy,
// even one with room; set-aside entries count in NUMMSGS but not for poll,
// and NEXTMSG on an empty queue moves nothing. §14-17 [DEV] with
// docs/decisions.md D4: the next bind event moves a listener's set-aside
// events into its queue ahead of itself, so nothing overtakes them and a
// listener whose queue was empty sees them at last.
TEST_F(BusBindEventsTest, SetAsideForListenersWithRoom) {
  report_on();
  KsockId full = event_listener();
  KsockId roomy = event_listener();
  KsockId p = bus.open(rw());
  KsockId p2 = bus.open(rw());
  ASSERT_TRUE(bus.bind(p, 1, "$.Fred").ok());
  drain_names(bus, full);
  drain_names(bus, roomy);
  fill(full);
  bus.close(p);
  EXPECT_EQ(bus.num_msgs(full), 2u);
  EXPECT_EQ(bus.num_msgs(roomy), 1u);
  EXPECT_FALSE(bus.readable(roomy));
  EXPECT_EQ(bus.next_msg(roomy), 0u);
  EXPECT_EQ(bus.num_msgs(roomy), 1u);
  EXPECT_NE(stats(bus).find("unsent unbindings 2\n"), std::string::npos);
  ASSERT_EQ(bus.max_msgs(full, 10), 10u);  // now nobody is full
  ASSERT_TRUE(bus.bind(p2, 1, "$.Jim").ok());
  EXPECT_EQ(bus.num_msgs(roomy), 2u);
  EXPECT_EQ(bus.num_msgs(full), 3u);
  EXPECT_TRUE(bus.readable(roomy));
  EXPECT_NE(stats(bus).find("unsent unbindings 0\n"), std::string::npos);
  expect_event(receive_one(bus, roomy), false, p, "$.Fred");
  expect_event(receive_one(bus, roomy), true, p2, "$.Jim");
  EXPECT_EQ(bus.num_msgs(roomy), 0u);
  EXPECT_EQ(receive_one(bus, full).name, "$.Fill");
  expect_event(receive_one(bus, full), false, p, "$.Fred");
  expect_event(receive_one(bus, full), true, p2, "$.Jim");
  EXPECT_EQ(bus.num_msgs(full), 0u);
}

// D4: a listener with room for fewer events than it has set aside takes
// what fits; the new event waits behind the rest. The set-aside list does
// not grow (one moved in, one added), and the listener's queue never
// exceeds its MAXMSGS.
TEST_F(BusBindEventsTest, NewEventWaitsBehindSetAsideThatDoesNotFit) {
  report_on();
  KsockId l = event_listener();
  std::vector<KsockId> p;
  for (int i = 0; i < 2; ++i) {
    p.push_back(bus.open(rw()));
    ASSERT_TRUE(bus.bind(p.back(), 1, "$.P" + std::to_string(i)).ok());
  }
  drain_names(bus, l);
  fill(l);
  for (KsockId k : p) bus.close(k);
  ASSERT_EQ(bus.num_msgs(l), 3u);  // filler + two set aside
  ASSERT_NE(stats(bus).find("unsent unbindings 2\n"), std::string::npos);
  ASSERT_EQ(bus.max_msgs(l, 2), 2u);  // room for one
  KsockId q = bus.open(rw());
  ASSERT_TRUE(bus.bind(q, 1, "$.Q").ok());
  EXPECT_EQ(bus.num_msgs(l), 4u);
  EXPECT_NE(stats(bus).find("unsent unbindings 2\n"), std::string::npos);
  EXPECT_NE(stats(bus).find("queue 2 of 2\n"), std::string::npos);
  EXPECT_EQ(bus.bind(q, 1, "$.Q2").error(), Errc::eagain);  // now full: §8.2-3
  EXPECT_EQ(receive_one(bus, l).name, "$.Fill");
  expect_event(receive_one(bus, l), false, p[0], "$.P0");
  expect_event(receive_one(bus, l), false, p[1], "$.P1");
  expect_event(receive_one(bus, l), true, q, "$.Q");
  EXPECT_EQ(bus.num_msgs(l), 0u);
}

// §8.2-3 / §8.3 / §13.5 EAGAIN, as in the original: while a listener of
// bind events is full, replier BINDs and UNBINDs fail with EAGAIN, even if
// it has set-aside events; they never add to the set-aside list. So one
// stalled listener never turns another listener's events into
// $.KBUS.UnbindEventsLost (§8.4-3): CLOSEs still set events aside for both.
TEST_F(BusBindEventsTest, StalledListenerNeverTurnsOthersEventsIntoLost) {
  report_on();
  KsockId stalled = event_listener();
  KsockId active = event_listener();
  KsockId p1 = bus.open(rw());
  KsockId p2 = bus.open(rw());
  ASSERT_TRUE(bus.bind(p1, 1, "$.P1").ok());
  ASSERT_TRUE(bus.bind(p2, 1, "$.P2").ok());
  drain_names(bus, stalled);
  drain_names(bus, active);
  fill(stalled);
  bus.close(p1);  // set aside for both
  ASSERT_EQ(bus.num_msgs(stalled), 2u);
  ASSERT_EQ(bus.num_msgs(active), 1u);
  KsockId b = bus.open(rw());
  for (int i = 0; i < 1200; ++i)  // more than the set-aside capacity (1000)
    ASSERT_EQ(bus.bind(b, 1, "$.B" + std::to_string(i)).error(), Errc::eagain) << i;
  EXPECT_EQ(bus.unbind(p2, 1, "$.P2").error(), Errc::eagain);
  EXPECT_EQ(*bus.find_replier("$.P2"), p2);
  EXPECT_NE(stats(bus).find("unsent unbindings 2\n"), std::string::npos);
  bus.close(p2);
  EXPECT_NE(stats(bus).find("unsent unbindings 4\n"), std::string::npos);  // not lost
  ASSERT_TRUE(bus.bind(active, 0, "$.Poke").ok());
  send_ok(bus, b, announcement("$.Poke"));
  EXPECT_EQ(receive_one(bus, active).name, "$.Poke");
  expect_event(receive_one(bus, active), false, p1, "$.P1");
  expect_event(receive_one(bus, active), false, p2, "$.P2");
  EXPECT_EQ(bus.num_msgs(active), 0u);
  EXPECT_EQ(receive_one(bus, stalled).name, "$.Fill");
  expect_event(receive_one(bus, stalled), false, p1, "$.P1");
  expect_event(receive_one(bus, stalled), false, p2, "$.P2");
  EXPECT_EQ(bus.num_msgs(stalled), 0u);
}

// §8.4-5 / §5.3-1 / §5.6: moving a set-aside event into the queue is a
// listener delivery, so only-once applies: a Ksock bound twice for events
// gets two set-aside copies of one event but reads it once.
TEST_F(BusBindEventsTest, SetAsideMoveHonoursOnlyOnce) {
  report_on();
  KsockId p = bus.open(rw());
  ASSERT_TRUE(bus.bind(p, 1, "$.Fred").ok());
  KsockId l = event_listener();
  ASSERT_TRUE(bus.bind(l, 0, "$.KBUS.*").ok());
  ASSERT_EQ(*bus.only_once(l, 1), 0u);
  fill(l);
  bus.close(p);
  ASSERT_EQ(bus.num_msgs(l), 3u);  // filler + one set-aside copy per binding
  EXPECT_EQ(receive_one(bus, l).name, "$.Fill");
  Message ev = receive_one(bus, l);
  expect_event(ev, false, p, "$.Fred");
  EXPECT_EQ(bus.num_msgs(l), 0u);  // the second copy was the same message
  EXPECT_FALSE(receive(bus, l).has_value());
  EXPECT_NE(stats(bus).find("unsent unbindings 0\n"), std::string::npos);
  // Without only-once, both copies are delivered (§5.3-1).
  KsockId p2 = bus.open(rw());
  ASSERT_TRUE(bus.bind(p2, 1, "$.Jim").ok());
  ASSERT_EQ(*bus.only_once(l, 0), 1u);
  drain_names(bus, l);
  fill(l);
  bus.close(p2);
  EXPECT_EQ(drain_names(bus, l), (std::vector<std::string>{"$.Fill", std::string(kEvent),
                                                           std::string(kEvent)}));
}

// §8.4-3 / §6.2 / §1.5-4: in lost mode, the $.KBUS.UnbindEventsLost set
// aside for several listeners is one message with one id; building it uses
// one serial, whether or not a listener still needed a marker.
TEST(BusBindEventsLostTest, UnbindEventsLostIsOneMessage) {
  BusLimits lim;
  lim.set_aside_capacity = 2;
  Bus bus(0, lim);
  KsockId x = bus.open(rw());
  ASSERT_EQ(*bus.report_replier_binds(x, 1), 0u);
  std::vector<KsockId> b;
  for (int i = 0; i < 3; ++i) {  // events [0:1] .. [0:3], to nobody
    b.push_back(bus.open(rw()));
    ASSERT_TRUE(bus.bind(b.back(), 1, "$.b" + std::to_string(i)).ok());
  }
  KsockId s = bus.open(rw());
  std::vector<KsockId> l;
  for (int i = 0; i < 2; ++i) {
    l.push_back(bus.open(rw()));
    ASSERT_TRUE(bus.bind(l.back(), 0, kEvent).ok());
    ASSERT_TRUE(bus.bind(l.back(), 0, "$.Fill").ok());
    ASSERT_EQ(bus.max_msgs(l.back(), 1), 1u);
  }
  EXPECT_EQ(send_ok(bus, s, announcement("$.Fill")), (MessageId{0, 4}));
  bus.close(b[0]);  // event [0:5], set aside for both
  bus.close(b[1]);  // event [0:6] refused; lost: one UnbindEventsLost [0:7]
  bus.close(b[2]);  // event [0:8] refused; lost message [0:9], nobody needs it
  EXPECT_EQ(send_ok(bus, s, announcement("$.Other")), (MessageId{0, 10}));
  std::string st;
  bus.append_stats(st);
  EXPECT_NE(st.find(" unsent unbindings 4(gone tragic)\n"), std::string::npos) << st;
  for (KsockId k : l) {
    EXPECT_EQ(receive_one(bus, k).name, "$.Fill");
    Message ev = receive_one(bus, k);
    expect_event(ev, false, b[0], "$.b0");
    EXPECT_EQ(ev.hdr.id, (MessageId{0, 5}));
    Message lost = receive_one(bus, k);
    EXPECT_EQ(lost.name, status_name::kUnbindEventsLost);
    EXPECT_EQ(lost.hdr.id, (MessageId{0, 7}));  // the same message for both
    EXPECT_EQ(bus.num_msgs(k), 0u);
  }
  bus.check_invariants();
}

// §8.4-3/-4: beyond the set-aside capacity the bus enters lost mode: one
// UnbindEventsLost per listener binding (not repeated), "(gone tragic)" in
// the stats until the list is empty again.
TEST(BusBindEventsLostTest, LostMode) {
  BusLimits lim;
  lim.set_aside_capacity = 2;
  Bus bus(0, lim);
  KsockId x = bus.open(rw());
  ASSERT_EQ(*bus.report_replier_binds(x, 1), 0u);
  std::vector<KsockId> b;
  for (int i = 0; i < 4; ++i) {
    b.push_back(bus.open(rw()));
    ASSERT_TRUE(bus.bind(b.back(), 1, "$.b" + std::to_string(i)).ok());
  }
  KsockId l = bus.open(rw());
  KsockId s = bus.open(rw());
  ASSERT_TRUE(bus.bind(l, 0, kEvent).ok());
  ASSERT_TRUE(bus.bind(l, 0, "$.Fill").ok());
  ASSERT_EQ(bus.max_msgs(l, 1), 1u);
  send_ok(bus, s, announcement("$.Fill"));  // serial 5 (4 bind events before)
  for (KsockId k : b) bus.close(k);
  EXPECT_EQ(bus.num_msgs(l), 4u);           // filler, 2 set aside, 1 lost marker
  std::string st;
  bus.append_stats(st);
  EXPECT_EQ(first_line(st).substr(0, 30), "dev  0: next ksock 8 next msg ");
  EXPECT_TRUE(first_line(st).ends_with(" unsent unbindings 3(gone tragic)\n")) << st;

  EXPECT_EQ(receive_one(bus, l).name, "$.Fill");
  expect_event(receive_one(bus, l), false, b[0], "$.b0");
  Message e2 = receive_one(bus, l);  // the Lost marker is now in the queue
  expect_event(e2, false, b[1], "$.b1");
  st.clear();
  bus.append_stats(st);
  EXPECT_TRUE(first_line(st).ends_with(" unsent unbindings 0\n")) << st;
  Message lost = receive_one(bus, l);
  EXPECT_EQ(lost.name, status_name::kUnbindEventsLost);
  EXPECT_EQ(lost.hdr.flags, flag::kSynthetic);
  EXPECT_EQ(lost.hdr.from, 0u);
  EXPECT_EQ(lost.hdr.to, 0u);
  EXPECT_TRUE(lost.hdr.in_reply_to.is_zero());
  EXPECT_EQ(lost.data, "");
  EXPECT_GT(lost.hdr.id, e2.hdr.id);
  EXPECT_EQ(bus.num_msgs(l), 0u);
  bus.check_invariants();
}

// §7.1-5 / §14-17 [DEV]: UNBIND discards the set-aside entries of the removed
// binding (any name), and unbinding exactly $.KBUS.ReplierBindEvent discards
// all of the Ksock's set-aside entries.
TEST_F(BusBindEventsTest, UnbindDropsSetAside) {
  report_on();
  KsockId l = event_listener("$.*");
  ASSERT_TRUE(bus.bind(l, 0, "$.KBUS.%").ok());
  ASSERT_TRUE(bus.bind(l, 0, kEvent).ok());
  KsockId p = bus.open(rw());
  ASSERT_TRUE(bus.bind(p, 1, "$.Fred").ok());
  drain_names(bus, l);
  fill(l);
  bus.close(p);
  EXPECT_EQ(bus.num_msgs(l), 4u);  // filler + one entry per binding
  EXPECT_NE(stats(bus).find("unsent unbindings 3\n"), std::string::npos);
  ASSERT_TRUE(bus.unbind(l, 0, "$.KBUS.%").ok());
  EXPECT_EQ(bus.num_msgs(l), 3u);
  EXPECT_NE(stats(bus).find("unsent unbindings 2\n"), std::string::npos);
  ASSERT_TRUE(bus.unbind(l, 0, kEvent).ok());
  EXPECT_EQ(bus.num_msgs(l), 1u);
  EXPECT_NE(stats(bus).find("unsent unbindings 0\n"), std::string::npos);
  EXPECT_EQ(receive_one(bus, l).name, "$.Fill");
  EXPECT_EQ(bus.num_msgs(l), 0u);
}

// §7.1-6: an UNBIND that shrank the queue moves one set-aside entry in.
TEST_F(BusBindEventsTest, UnbindThatShrinksQueueMovesSetAsideIn) {
  report_on();
  KsockId l = event_listener();
  KsockId p = bus.open(rw());
  ASSERT_TRUE(bus.bind(p, 1, "$.Fred").ok());
  drain_names(bus, l);
  fill(l);
  bus.close(p);
  ASSERT_EQ(bus.num_msgs(l), 2u);
  ASSERT_TRUE(bus.unbind(l, 0, "$.Fill").ok());
  EXPECT_EQ(bus.num_msgs(l), 1u);
  EXPECT_TRUE(bus.readable(l));
  expect_event(receive_one(bus, l), false, p, "$.Fred");
}

// §7.2-5: CLOSE discards the Ksock's own set-aside entries.
TEST_F(BusBindEventsTest, CloseDiscardsOwnSetAside) {
  report_on();
  KsockId l = event_listener();
  KsockId p = bus.open(rw());
  ASSERT_TRUE(bus.bind(p, 1, "$.Fred").ok());
  ASSERT_EQ(bus.max_msgs(l, 1), 1u);  // full with the bind event
  bus.close(p);
  EXPECT_NE(stats(bus).find("unsent unbindings 1\n"), std::string::npos);
  bus.close(l);
  EXPECT_NE(stats(bus).find("unsent unbindings 0\n"), std::string::npos);
}

}  // namespace
}  // namespace kbus::core
