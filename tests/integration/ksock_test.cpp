// Open, close, ids, modes and the query/flag operations of a Ksock
// (KBUS-SPEC.md §1.2, §4.1, §4.6, §4.7, §9) through the C++ client.
#include <unistd.h>

#include <cstdlib>

#include "integration/fixture.hpp"

namespace kbus::test {
namespace {

using OpenTest = KbusTest;

TEST_F(OpenTest, FirstKsockOnAFreshBusIsOneAndIdsAreNeverReused) {
  Ksock a = open(0);
  Ksock b = open(0);
  EXPECT_EQ(a.id(), 1u);
  EXPECT_EQ(b.id(), 2u);
  EXPECT_EQ(a.ksock_id(), 1u);
  EXPECT_EQ(b.ksock_id(), 2u);
  b.close();
  Ksock c = open(0);
  EXPECT_EQ(c.ksock_id(), 3u);
  // Buses are isolated: each has its own counter.
  Ksock d = open(1);
  EXPECT_EQ(d.ksock_id(), 1u);
  EXPECT_EQ(d.bus(), 1u);
}

TEST_F(OpenTest, MissingBusesAreENOENT) {
  EXPECT_EQ(err(daemon_.try_open(3)), Errc::enoent);
  EXPECT_EQ(err(daemon_.try_open(-1)), Errc::enoent);
  EXPECT_EQ(err(daemon_.try_open(255)), Errc::enoent);
  EXPECT_EQ(err(Ksock::try_open(0, Mode::read_write, daemon_.dir() + "/nowhere")), Errc::enoent);
  try {
    Ksock::open(7, Mode::read_write, daemon_.dir());
    FAIL() << "no exception";
  } catch (const Error& e) {
    EXPECT_EQ(e.errc(), Errc::enoent);
    EXPECT_EQ(e.code().value(), ENOENT);
  }
}

TEST_F(OpenTest, DefaultDirectoryComesFromKBUS_DIR) {
  const char* old = std::getenv("KBUS_DIR");
  std::string saved = old ? old : "";
  ::setenv("KBUS_DIR", daemon_.dir().c_str(), 1);
  EXPECT_EQ(default_bus_dir(), daemon_.dir());
  auto k = Ksock::try_open(0);
  ASSERT_TRUE(k.ok()) << errc_name(k.error());
  EXPECT_EQ(k->path(), daemon_.dir() + "/kbus0");
  if (old) {
    ::setenv("KBUS_DIR", saved.c_str(), 1);
  } else {
    ::unsetenv("KBUS_DIR");
  }
}

TEST_F(OpenTest, ToStringIsThePythonForm) {
  Ksock a = open(0);
  EXPECT_EQ(a.to_string(), "Ksock device 0, id 1, mode read/write");
  Ksock r = open(2, Mode::read);
  EXPECT_EQ(r.to_string(), "Ksock device 2, id 1, mode read");
  r.close();
  EXPECT_EQ(r.to_string(), "Ksock (closed)");
}

TEST_F(OpenTest, ClosedAndMovedFromKsocksFailWithEBADF) {
  Ksock a = open(0);
  Ksock b = std::move(a);
  EXPECT_FALSE(a.is_open());  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(err(a.try_ksock_id()), Errc::ebadf);
  EXPECT_EQ(a.fileno(), -1);
  EXPECT_EQ(b.ksock_id(), 1u);
  Ksock c;
  EXPECT_EQ(err(c.try_bind("$.Fred")), Errc::ebadf);
  EXPECT_THROW(c.send(), Error);
  c = std::move(b);
  EXPECT_EQ(c.ksock_id(), 1u);
  c.close();
  c.close();  // twice is fine
}

TEST_F(OpenTest, ReadOnlyCannotWriteAndWriteOnlyCannotRead) {
  Ksock r = open(0, Mode::read);
  Ksock w = open(0, Mode::write);
  Ksock rw = open(0);
  EXPECT_EQ(err(r.try_write_data("abc")), Errc::ebadf);
  EXPECT_EQ(err(r.try_send_msg(make_announcement("$.Fred"))), Errc::ebadf);
  EXPECT_EQ(err(w.try_read_data(10)), Errc::ebadf);

  // Every other operation is allowed in any mode, including a replier bind
  // on a read-only Ksock (§1.2-3).
  EXPECT_TRUE(r.try_bind("$.Fred", true).ok());
  EXPECT_TRUE(w.try_bind("$.Jim").ok());
  EXPECT_TRUE(w.try_num_messages().ok());

  // NEXTREAD on a write-only Ksock: EBADF before anything is popped.
  rw.send_msg(make_announcement("$.Jim", "x"));
  EXPECT_EQ(w.num_messages(), 1u);
  EXPECT_EQ(err(w.try_read_next_msg()), Errc::ebadf);
  EXPECT_EQ(w.num_messages(), 1u);
  EXPECT_EQ(w.next_msg(), entire_len(kNativeHeaderLen, 5, 1));
}

TEST_F(OpenTest, QueueLimitDefaultsTo100AndCanBeSet) {
  Ksock a = open(0);
  EXPECT_EQ(a.max_messages(), 100u);
  EXPECT_EQ(a.set_max_messages(5), 5u);
  EXPECT_EQ(a.max_messages(), 5u);
  EXPECT_EQ(a.set_max_messages(0), 5u);  // 0 queries
  EXPECT_EQ(a.set_max_messages(100000), 100000u);
}

TEST_F(OpenTest, FlagOperationsReturnThePreviousValue) {
  Ksock a = open(0);
  Ksock b = open(0);
  // only-once is per Ksock.
  EXPECT_FALSE(a.only_once());
  EXPECT_FALSE(a.only_once(Toggle::on));
  EXPECT_TRUE(a.only_once(Toggle::query));
  EXPECT_FALSE(b.only_once());
  EXPECT_TRUE(a.only_once(Toggle::off));
  EXPECT_FALSE(a.only_once());
  EXPECT_EQ(err(a.try_only_once(static_cast<Toggle>(2))), Errc::einval);

  // verbose and report-replier-binds are per bus.
  EXPECT_FALSE(a.verbose());
  EXPECT_FALSE(a.verbose(Toggle::on));
  EXPECT_TRUE(b.verbose());
  EXPECT_TRUE(b.verbose(Toggle::off));
  EXPECT_EQ(err(a.try_verbose(static_cast<Toggle>(7))), Errc::einval);

  EXPECT_FALSE(a.report_replier_binds());
  EXPECT_FALSE(a.report_replier_binds(Toggle::on));
  EXPECT_TRUE(b.report_replier_binds());
  EXPECT_TRUE(b.report_replier_binds(Toggle::off));
  EXPECT_FALSE(a.report_replier_binds());
  EXPECT_EQ(err(a.try_report_replier_binds(static_cast<Toggle>(3))), Errc::einval);

  Ksock other_bus = open(1);
  EXPECT_FALSE(other_bus.verbose());
}

TEST_F(OpenTest, MaxMessageSize) {
  Ksock a = open(0);
  Ksock b = open(0);
  EXPECT_EQ(a.max_message_size(), 1024u);
  EXPECT_EQ(a.set_max_message_size(1), 409600u);  // the absolute maximum
  EXPECT_EQ(err(a.try_set_max_message_size(99)), Errc::einval);
  EXPECT_EQ(err(a.try_set_max_message_size(409601)), Errc::einval);
  EXPECT_EQ(a.set_max_message_size(100), 100u);
  EXPECT_EQ(a.set_max_message_size(2048), 2048u);
  EXPECT_EQ(b.max_message_size(), 2048u);  // per bus
  EXPECT_EQ(open(1).max_message_size(), 1024u);
}

TEST_F(OpenTest, NewDeviceCreatesTheNextBus) {
  Ksock a = open(0);
  EXPECT_EQ(err(daemon_.try_open(3)), Errc::enoent);
  EXPECT_EQ(a.new_device(), 3u);
  Ksock three = open(3);
  EXPECT_EQ(three.ksock_id(), 1u);
  EXPECT_EQ(three.bus(), 3u);
  EXPECT_EQ(three.new_device(), 4u);
  EXPECT_TRUE(daemon_.try_open(4).ok());
}

TEST_F(OpenTest, NewDeviceFailsWithEINVALAt256Buses) {
  Ksock a = open(0);
  for (std::uint32_t n = 3; n < 256; ++n) ASSERT_EQ(a.new_device(), n);
  EXPECT_EQ(err(a.try_new_device()), Errc::einval);
  EXPECT_TRUE(daemon_.try_open(255).ok());
}

TEST_F(OpenTest, LastSentStartsAtZero) {
  Ksock a = open(0);
  EXPECT_EQ(a.last_sent(), (MessageId{0, 0}));
  MessageId id = a.send_msg(make_announcement("$.Fred"));
  EXPECT_EQ(a.last_sent(), id);
}

TEST_F(OpenTest, BindingsReportIsTheProcFormat) {
  Ksock a = open(0);
  Ksock b = open(1);
  a.bind("$.Fred");
  a.bind("$.Sensors.*", true);
  b.bind("$.Jim", true);
  std::string pid = std::to_string(::getpid());
  auto pad = [](std::string s, std::size_t w) { return std::string(w - s.size(), ' ') + s; };
  const std::string header =
      "# <device> is bound to <Ksock-ID> in <process-PID> as <Replier|Listener> for "
      "<message-name>\n";
  std::string expected = header + "  0:        1 " + pad(pid, 8) + "  R  $.Sensors.*\n" +
                         "  0:        1 " + pad(pid, 8) + "  L  $.Fred\n" + header +
                         "  1:        1 " + pad(pid, 8) + "  R  $.Jim\n" + header;
  EXPECT_EQ(a.bindings_report(), expected);
}

TEST_F(OpenTest, StatsReportIsTheProcFormat) {
  Ksock a = open(0);
  a.send_msg(make_announcement("$.Fred"));
  std::string s = a.stats_report();
  EXPECT_EQ(s.rfind("dev  0: next ksock ", 0), 0u) << s;
  EXPECT_NE(s.find("    ksock 1 last msg 0:1 queue 0 of 100\n"), std::string::npos) << s;
  EXPECT_NE(s.find("      read byte 0 of 0, wrote byte 0 of HDR (not finished), not sending\n"),
            std::string::npos)
      << s;
  EXPECT_NE(s.find("      outstanding requests 0 (size 16, max 0), unsent replies 0 (max 0)\n"),
            std::string::npos)
      << s;
  EXPECT_NE(s.find("dev  1: next ksock 0 next msg 0 unsent unbindings 0\n"), std::string::npos)
      << s;
  EXPECT_NE(s.find("dev  2: "), std::string::npos) << s;
}

}  // namespace
}  // namespace kbus::test
