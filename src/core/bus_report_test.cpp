// core/bus_report_test.cpp - the bindings and stats reports, byte for byte
// (KBUS-SPEC.md §9, §14-3, §14-11).
#include "core/bus.hpp"

#include <gtest/gtest.h>

#include <string>

#include "core/test_helpers.hpp"

namespace kbus::core {
namespace {

using namespace test;

const std::string kBindingsHeader =
    "# <device> is bound to <Ksock-ID> in <process-PID> as <Replier|Listener> for "
    "<message-name>\n";

OpenOptions with_pid(std::int64_t pid) {
  OpenOptions o;
  o.pid = pid;
  return o;
}

std::string bindings(const Bus& bus) {
  std::string s = "before\n";
  bus.append_bindings_report(s);
  EXPECT_EQ(s.substr(0, 7), "before\n");  // appends
  return s.substr(7);
}

std::string stats(const Bus& bus) {
  std::string s = "before\n";
  bus.append_stats(s);
  EXPECT_EQ(s.substr(0, 7), "before\n");  // appends
  return s.substr(7);
}

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n') + 1); }

// §9.1: a bus without bindings has just the header line.
TEST(BusReportTest, BindingsEmpty) {
  Bus bus(0);
  EXPECT_EQ(bindings(bus), kBindingsHeader);
}

// §9.1: one line per binding, newest first, "%3u: %8u %8lu  %c  %s".
TEST(BusReportTest, BindingsLines) {
  Bus bus(0);
  KsockId a = bus.open(with_pid(22158));
  KsockId b = bus.open(with_pid(7));
  ASSERT_EQ(a, 1u);
  ASSERT_EQ(b, 2u);
  ASSERT_TRUE(bus.bind(a, 1, "$.Sensors.*").ok());
  ASSERT_TRUE(bus.bind(b, 0, "$.Fred").ok());
  ASSERT_TRUE(bus.bind(a, 0, "$.Jim").ok());
  ASSERT_TRUE(bus.bind(b, 0, "$.Fred").ok());
  EXPECT_EQ(bindings(bus), kBindingsHeader +
                               "  0:        2        7  L  $.Fred\n"
                               "  0:        1    22158  L  $.Jim\n"
                               "  0:        2        7  L  $.Fred\n"
                               "  0:        1    22158  R  $.Sensors.*\n");
  ASSERT_TRUE(bus.unbind(a, 0, "$.Jim").ok());
  bus.close(b);
  EXPECT_EQ(bindings(bus), kBindingsHeader + "  0:        1    22158  R  $.Sensors.*\n");
  bus.check_invariants();
}

// §9.1: the bus number and wide values.
TEST(BusReportTest, BindingsOtherBus) {
  Bus bus(12);
  KsockId a = bus.open(with_pid(123456789));
  ASSERT_TRUE(bus.bind(a, 1, "$.X").ok());
  EXPECT_EQ(bindings(bus), kBindingsHeader + " 12:        1 123456789  R  $.X\n");
}

// §9.2: a bus never used shows both counters as 0.
TEST(BusReportTest, StatsFreshBus) {
  Bus bus(0);
  EXPECT_EQ(stats(bus), "dev  0: next ksock 0 next msg 0 unsent unbindings 0\n");
  Bus bus7(7);
  EXPECT_EQ(stats(bus7), "dev  7: next ksock 0 next msg 0 unsent unbindings 0\n");
}

// §9.2: "next ksock" and "next msg" are the bus's counters, the next Ksock
// id and the next serial to be assigned (the original's values, byte for
// byte); 0 until first used (§1.2-2, §1.5-4: the first assigned is 1).
TEST(BusReportTest, StatsShowNextIdsToAssign) {
  Bus bus(0);
  KsockId a = bus.open(rw());
  ASSERT_EQ(a, 1u);
  EXPECT_EQ(first_line(stats(bus)), "dev  0: next ksock 2 next msg 0 unsent unbindings 0\n");
  EXPECT_EQ(send_ok(bus, a, announcement("$.Fred")), (MessageId{0, 1}));
  EXPECT_EQ(first_line(stats(bus)), "dev  0: next ksock 2 next msg 2 unsent unbindings 0\n");
  KsockId b = bus.open(rw());
  EXPECT_EQ(b, 2u);
  bus.close(b);
  EXPECT_EQ(first_line(stats(bus)), "dev  0: next ksock 3 next msg 2 unsent unbindings 0\n");
  EXPECT_EQ(bus.open(rw()), 3u);  // the shown value is the one assigned next
  EXPECT_EQ(send_ok(bus, a, announcement("$.Fred")), (MessageId{0, 2}));
}

// §9.2: per-Ksock lines, most recently opened first; read/write positions,
// LASTSENT, queue, outstanding requests and owed replies with high-water
// marks.
TEST(BusReportTest, StatsLines) {
  Bus bus(0);
  KsockId k1 = bus.open(rw());
  KsockId k2 = bus.open(rw());
  KsockId k3 = bus.open(rw());
  KsockId gone = bus.open(rw());
  bus.close(gone);
  ASSERT_TRUE(bus.bind(k3, 1, "$.Ask").ok());
  ASSERT_TRUE(bus.bind(k2, 0, "$.Fred").ok());
  send_ok(bus, k1, announcement("$.Fred", "dada"));  // [0:1]
  send_ok(bus, k1, request("$.Ask"));                // [0:2]
  ASSERT_EQ(bus.next_msg(k3), 100u);
  std::string out;
  ASSERT_EQ(*bus.read(k3, 10, out), 10u);
  ASSERT_EQ(bus.max_msgs(k2, 50), 50u);
  ASSERT_TRUE(bus.write(k1, entire("$.Jim").substr(0, 10)).ok());
  EXPECT_EQ(stats(bus),
            "dev  0: next ksock 5 next msg 3 unsent unbindings 0\n"
            "    ksock 3 last msg 0:0 queue 0 of 100\n"
            "      read byte 10 of 100, wrote byte 0 of HDR (not finished), not sending\n"
            "      outstanding requests 0 (size 16, max 0), unsent replies 1 (max 1)\n"
            "    ksock 2 last msg 0:0 queue 1 of 50\n"
            "      read byte 0 of 0, wrote byte 0 of HDR (not finished), not sending\n"
            "      outstanding requests 0 (size 16, max 0), unsent replies 0 (max 0)\n"
            "    ksock 1 last msg 0:2 queue 0 of 100\n"
            "      read byte 0 of 0, wrote byte 10 of HDR (not finished), not sending\n"
            "      outstanding requests 1 (size 16, max 1), unsent replies 0 (max 0)\n");

  // k3 answers: outstanding and owed drop to 0, their maxima stay.
  out.clear();
  ASSERT_EQ(*bus.read(k3, 200, out), 90u);
  Message rep;
  rep.name = "$.Ask";
  rep.hdr.to = k1;
  rep.hdr.in_reply_to = {0, 2};
  ASSERT_TRUE(bus.write(k3, encode_entire(rep, kH)).ok());
  ASSERT_EQ(bus.send(k3).error, Errc::ok);  // [0:3]
  ASSERT_EQ(bus.next_msg(k2), 104u);
  out.clear();
  ASSERT_EQ(*bus.read(k2, 25, out), 25u);
  EXPECT_EQ(stats(bus),
            "dev  0: next ksock 5 next msg 4 unsent unbindings 0\n"
            "    ksock 3 last msg 0:3 queue 0 of 100\n"
            "      read byte 0 of 0, wrote byte 0 of HDR (not finished), not sending\n"
            "      outstanding requests 0 (size 16, max 0), unsent replies 0 (max 1)\n"
            "    ksock 2 last msg 0:0 queue 0 of 50\n"
            "      read byte 25 of 104, wrote byte 0 of HDR (not finished), not sending\n"
            "      outstanding requests 0 (size 16, max 0), unsent replies 0 (max 0)\n"
            "    ksock 1 last msg 0:2 queue 1 of 100\n"
            "      read byte 0 of 0, wrote byte 10 of HDR (not finished), not sending\n"
            "      outstanding requests 0 (size 16, max 1), unsent replies 0 (max 0)\n");
  bus.check_invariants();
}

// §9.2 / §14-3: "read byte" is exact inside the data part too.
TEST(BusReportTest, StatsReadByteInData) {
  Bus bus(0);
  KsockId s = bus.open(rw());
  KsockId l = bus.open(rw());
  ASSERT_TRUE(bus.bind(l, 0, "$.Fred").ok());
  send_ok(bus, s, announcement("$.Fred", std::string(40, 'd')));  // 88+8+40+4 = 140
  ASSERT_EQ(bus.next_msg(l), 140u);
  std::string out;
  ASSERT_EQ(*bus.read(l, 100, out), 100u);  // inside the data
  EXPECT_EQ(bus.len_left(l), 40u);
  EXPECT_NE(stats(bus).find("      read byte 100 of 140, wrote byte 0 of HDR (not finished), not sending\n"),
            std::string::npos);
}

// §9.2: a Ksock whose ALL_OR_WAIT send is pending is shown as "sending",
// with its written message finished.
TEST(BusReportTest, StatsSending) {
  Bus bus(0);
  KsockId s = bus.open(rw());
  KsockId l = bus.open(rw());
  ASSERT_TRUE(bus.bind(l, 0, "$.Fred").ok());
  ASSERT_EQ(bus.max_msgs(l, 1), 1u);
  send_ok(bus, s, announcement("$.Fred"));
  ASSERT_EQ(send(bus, s, announcement("$.Fred", "", flag::kAllOrWait)).error, Errc::eagain);
  const std::string st = stats(bus);
  const std::string ksock1 = st.substr(st.find("    ksock 1 "));
  EXPECT_EQ(ksock1.substr(0, ksock1.find('\n') + 1), "    ksock 1 last msg 0:2 queue 0 of 100\n");
  EXPECT_NE(ksock1.find("(finished), sending\n"), std::string::npos) << ksock1;
  EXPECT_EQ(ksock1.find("not finished"), std::string::npos) << ksock1;
}

}  // namespace
}  // namespace kbus::core
