// capi/capi_test.cpp - C programs written against the original libkbus API
// (tests/capi/*.c, linked with libkbus.so) run against a real kbusd.
//
// Each test starts its own kbusd (TestDaemon) and runs the programs with
// KBUS_DIR pointing at it. Waits are bounded and driven by the programs'
// output or by round trips to the daemon (the bindings report), never by
// sleeping.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "kbus/ksock.hpp"
#include "support/child_process.hpp"
#include "support/test_daemon.hpp"

namespace kbus::test {
namespace {

using namespace std::chrono_literals;

class CApiTest : public ::testing::Test {
 protected:
  Env env() const {
    Env e = {{"KBUS_DIR", daemon_.dir()}};
    if (can_check_pointers()) e.emplace_back("CAPI_CAN_CHECK_POINTERS", "1");
    return e;
  }
  static bool can_check_pointers() {
    char from = 'k', to = 0;
    iovec local{&to, 1}, remote{&from, 1};
    return ::process_vm_readv(::getpid(), &local, 1, &remote, 1, 0) == 1;
  }
  ProcessResult run(std::vector<std::string> argv, const std::string& input = {},
                    std::chrono::milliseconds timeout = kDefaultTimeout) {
    return run_process(argv, env(), input, timeout);
  }
  // Waits until the bindings report shows `text` (the spawned program has
  // bound), or it has died, or 10 s have passed. Each check is a round trip.
  bool wait_for_binding(SpawnedProcess& p, const std::string& text) {
    Ksock k = daemon_.open(2);
    for (int i = 0; i < 1000; ++i) {
      if (k.bindings_report().find(text) != std::string::npos) return true;
      if (!p.alive()) return false;
      p.out().ready(10ms);  // waits on the program's output, not on a clock
    }
    return false;
  }
  void TearDown() override { EXPECT_EQ(daemon_.stop(), 0) << "kbusd did not exit cleanly"; }

  TestDaemon daemon_{3};
};

// ---- every function of the API ----

TEST_F(CApiTest, EveryFunctionOfTheApi) {
  auto r = run({CAPI_FUNCTIONS_PATH}, {}, 60s);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find(" checks, 0 failed"), std::string::npos) << r.out << r.err;
  // kbus_msg_dump wrote its fields.
  EXPECT_NE(r.out.find("  start_guard: 7375624b"), std::string::npos) << r.out;
}

// The same programs over both negotiated transports (docs/protocol.md §7):
// above, kbus_ksock_read_next_msg() reads from the shared-memory receive
// queue and kbus_wait_for_message() polls its tokens; here the socket only.
TEST_F(CApiTest, EveryFunctionOfTheApiOverTheSocketOnly) {
  Env e = env();
  e.emplace_back("KBUS_TRANSPORT", "socket");
  auto r = run_process({CAPI_FUNCTIONS_PATH}, e, {}, 60s);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find(" checks, 0 failed"), std::string::npos) << r.out << r.err;
}

TEST_F(CApiTest, ThreadsShareOneKsockOverTheSocketOnly) {
  Env e = env();
  e.emplace_back("KBUS_TRANSPORT", "socket");
  auto r = run_process({CAPI_THREADS_PATH}, e, {}, 120s);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find(" checks, 0 failed"), std::string::npos) << r.out << r.err;
}

// One kbus_ksock_t used by several threads at once (KBUS-SPEC.md §1.2, §4;
// docs/protocol.md §4.4): a thread blocked in kbus_wait_for_message() or
// kbus_ksock_wait_for_msgs() never holds up the others' calls, a close ends
// it with -EBADF, and many threads' mixed calls each get their own results.
TEST_F(CApiTest, ThreadsShareOneKsock) {
  auto r = run({CAPI_THREADS_PATH}, {}, 120s);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find(" checks, 0 failed"), std::string::npos) << r.out << r.err;
}

// kbusd killed under a C program: every call fails with an errno, nothing
// crashes, no SIGPIPE (its own daemon: the fixture's must stop cleanly).
TEST(CApiDaemonGone, CallsFailWithErrorsAndCloseStillWorks) {
  TestDaemon daemon(1);
  SpawnedProcess p({CAPI_DAEMON_GONE_PATH}, {{"KBUS_DIR", daemon.dir()}});
  ASSERT_EQ(p.line(), "ready");
  daemon.kill_hard();
  p.close_stdin();
  EXPECT_EQ(p.wait(), 0) << p.out().rest();
}

// ---- kmsg ----

TEST_F(CApiTest, KmsgSendReachesListenerInEveryFormat) {
  SpawnedProcess listener({KMSG_PATH, "listen", "$.Fred"}, env());
  ASSERT_TRUE(wait_for_binding(listener, "L  $.Fred"));

  auto s = run({KMSG_PATH, "send", "$.Fred", "s", "Hello"});
  EXPECT_EQ(s.exit_code, 0) << s.out << s.err;
  EXPECT_EQ(s.out,
            "Msg data:\n  48 65 6c 6c 6f\n"
            "> Sending $.Fred [want_reply? 0]\n"
            "<Announcement '$.Fred' data=Hello>\n"
            "> Sent message 0:1 .. \n");
  EXPECT_EQ(listener.line(), "<Announcement '$.Fred' id=[0:1] from=2 data=Hello>");

  EXPECT_EQ(run({KMSG_PATH, "send", "$.Fred", "z", "Hi"}).exit_code, 0);
  EXPECT_EQ(listener.line(), "<Announcement '$.Fred' id=[0:2] from=3 data=Hi\\x00>");
  EXPECT_EQ(run({KMSG_PATH, "send", "$.Fred", "h", "00ff7A"}).exit_code, 0);
  EXPECT_EQ(listener.line(), "<Announcement '$.Fred' id=[0:3] from=4 data=\\x00\\xffz>");
  auto in = run({KMSG_PATH, "send", "$.Fred", "-"}, "from stdin");
  EXPECT_EQ(in.exit_code, 0) << in.out;
  EXPECT_EQ(listener.line(), "<Announcement '$.Fred' id=[0:4] from=5 data=from stdin\\x00>");
  // Long data is abbreviated unless --full.
  EXPECT_EQ(run({KMSG_PATH, "send", "$.Fred", "s", "0123456789abcdefghijKLMN"}).exit_code, 0);
  EXPECT_EQ(listener.line(),
            "<Announcement '$.Fred' id=[0:5] from=6 data=0123456789abcdefghij...>");

  // A C++ client sees exactly what the C program sent.
  Ksock k = daemon_.open(0);
  k.bind("$.Jim");
  EXPECT_EQ(run({KMSG_PATH, "--bus", "0", "send", "$.Jim", "s", "bytes"}).exit_code, 0);
  auto m = k.read_next_msg();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->name, "$.Jim");
  EXPECT_EQ(m->data, "bytes");
  listener.kill(SIGTERM);
}

TEST_F(CApiTest, KmsgListenFullAndDumpOnAnotherBus) {
  SpawnedProcess full({KMSG_PATH, "-bus", "1", "--full", "listen", "$.Fred.*"}, env());
  ASSERT_TRUE(wait_for_binding(full, "L  $.Fred.*"));
  SpawnedProcess dump({KMSG_PATH, "-bus", "1", "-v", "--dump", "listen", "$.Fred.%"}, env());
  ASSERT_TRUE(wait_for_binding(dump, "L  $.Fred.%"));
  EXPECT_EQ(dump.line(), "> Bound to '$.Fred.%' as listener");
  EXPECT_EQ(run({KMSG_PATH, "--bus", "1", "send", "$.Fred.Jim", "s", "0123456789abcdefghijKLMN"})
                .exit_code,
            0);
  EXPECT_EQ(full.line(),
            "<Announcement '$.Fred.Jim' id=[0:1] from=3 data=0123456789abcdefghijKLMN>");
  EXPECT_EQ(dump.line(),
            "Message: <Announcement '$.Fred.Jim' id=[0:1] from=3 data=0123456789abcdefghijKLMN>");
  EXPECT_EQ(dump.line(), "  start_guard: 7375624b");
  full.kill(SIGTERM);
  dump.kill(SIGTERM);
}

TEST_F(CApiTest, KmsgCallAndReply) {
  SpawnedProcess replier({KMSG_PATH, "reply", "$.Question"}, env());
  ASSERT_TRUE(wait_for_binding(replier, "R  $.Question"));
  auto c = run({KMSG_PATH, "call", "$.Question", "s", "why?"});
  EXPECT_EQ(c.exit_code, 0) << c.out << c.err;
  EXPECT_NE(c.out.find("> Sending $.Question [want_reply? 1]\n"
                       "<Request '$.Question' flags=0x1 REQ data=why?>\n"
                       "> Sent message 0:1 .. \n"),
            std::string::npos)
      << c.out;
  EXPECT_NE(c.out.find("<Reply '$.Question' id=[0:2] to=2 from=1 in_reply_to=[0:1]>\n"
                       "> Got Reply!\n"),
            std::string::npos)
      << c.out;
  EXPECT_EQ(replier.line(), "<Request '$.Question' id=[0:1] from=2 flags=0x3 REQ YOU data=why?>");
  EXPECT_EQ(replier.line(), "Sent <Reply '$.Question' to=2 in_reply_to=[0:1]> as 0:2");

  // With nobody to answer, call fails to send.
  auto n = run({KMSG_PATH, "call", "$.Nobody", "s", "x"});
  EXPECT_EQ(n.exit_code, 22);
  EXPECT_NE(n.out.find("### Error sending"), std::string::npos);
  replier.kill(SIGTERM);
}

TEST_F(CApiTest, KmsgExitCodes) {
  EXPECT_EQ(run({KMSG_PATH}).exit_code, 1);
  EXPECT_EQ(run({KMSG_PATH, "listen"}).exit_code, 2);
  EXPECT_EQ(run({KMSG_PATH, "listen", "$.A", "$.B"}).exit_code, 2);
  EXPECT_EQ(run({KMSG_PATH, "send", "$.A", "s"}).exit_code, 3);
  EXPECT_EQ(run({KMSG_PATH, "send", "$.A", "-", "x"}).exit_code, 3);
  EXPECT_EQ(run({KMSG_PATH, "send", "$.A", "h", "abc"}).exit_code, 3);
  EXPECT_EQ(run({KMSG_PATH, "frobnicate", "$.A"}).exit_code, 4);
  EXPECT_EQ(run({KMSG_PATH, "listen", "$.A..B"}).exit_code, 11);
  EXPECT_EQ(run({KMSG_PATH, "send", "$.A*", "s", "x"}).exit_code, 22);
  // No such bus.
  EXPECT_EQ(run({KMSG_PATH, "--bus", "9", "listen", "$.A"}).exit_code, 10);
  EXPECT_EQ(run({KMSG_PATH, "--bus", "9", "send", "$.A", "s", "x"}).exit_code, 20);
}

// docs/reliability.md §9: a directory others may write to is refused before
// connecting: kbus_ksock_open returns -EPERM and the library says why on
// stderr (the program itself can only print strerror).
TEST_F(CApiTest, UnsafeBusDirectoryIsRefusedWithEperm) {
  ASSERT_EQ(::chmod(daemon_.dir().c_str(), 0777), 0);
  const ProcessResult r = run({KMSG_PATH, "send", "$.A", "s", "x"});
  ASSERT_EQ(::chmod(daemon_.dir().c_str(), 0700), 0);
  EXPECT_EQ(r.exit_code, 20);
  EXPECT_NE(r.out.find("Cannot open KBUS 0: " + std::string(std::strerror(EPERM))),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.err.find("kbus: unsafe bus directory " + daemon_.dir() +
                       ": it is writable by others (mode 0777)"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(run({KMSG_PATH, "send", "$.A", "s", "x"}).exit_code, 0);  // fixed: it opens
}

// ---- kspeed ----

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

TEST_F(CApiTest, KspeedSendsAndListens) {
  SpawnedProcess listener({KSPEED_PATH, "listen", "$.Speed"}, env());
  ASSERT_TRUE(wait_for_binding(listener, "L  $.Speed"));
  SpawnedProcess sender({KSPEED_PATH, "--bus", "0", "send", "$.Speed", "100"}, env());
  // The sender reports each round of 1000; the listener each 1000 received
  // (it may miss some while its queue is full, so it reports later).
  std::string sent = sender.line(60s);
  EXPECT_TRUE(starts_with(sent, "> Sent 1000 messages in ")) << sent;
  std::string recvd = listener.line(60s);
  EXPECT_TRUE(starts_with(recvd, "> Recvd 1000 messages in ")) << recvd;
  sender.kill(SIGKILL);
  listener.kill(SIGKILL);
  EXPECT_EQ(sender.wait(), 128 + SIGKILL);
  EXPECT_EQ(listener.wait(), 128 + SIGKILL);
}

TEST_F(CApiTest, KspeedExitCodes) {
  EXPECT_EQ(run({KSPEED_PATH}).exit_code, 1);
  EXPECT_EQ(run({KSPEED_PATH, "send", "$.A"}).exit_code, 1);
  EXPECT_EQ(run({KSPEED_PATH, "send", "$.A", "12x"}).exit_code, 1);
  EXPECT_EQ(run({KSPEED_PATH, "-bus", "9", "listen", "$.A"}).exit_code, 2);
  EXPECT_EQ(run({KSPEED_PATH, "-bus", "9", "send", "$.A", "4"}).exit_code, 2);
}

// ---- programs that include only what the original's did ----

// Issue "The original's programs and rules, unchanged", item 1: a program
// that includes only <libkbus/kbus.h> and uses errno, strerror, strlen,
// memcmp, malloc, assert, getpid, struct timeval ... builds (as C, and as
// C++ from the same source) and works; <linux/kbus_defns.h> is reachable by
// its original name (KBUS-SPEC.md §12.1, §12.2).
TEST_F(CApiTest, ProgramRelyingOnTheOriginalIncludesWorksAsCAndCxx) {
  for (const char* prog : {ORIGINAL_INCLUDES_PATH, ORIGINAL_INCLUDES_CXX_PATH}) {
    auto r = run({prog, "1"});
    EXPECT_EQ(r.exit_code, 0) << prog << "\n" << r.out << r.err;
    EXPECT_NE(r.out.find("original includes: ok"), std::string::npos) << prog << "\n" << r.out;
  }
  // A bus that does not exist: the program reports the errno by strerror.
  auto missing = run({ORIGINAL_INCLUDES_PATH, "7"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.out.find("kbus_ksock_open failed: -2 No such file or directory"),
            std::string::npos)
      << missing.out;
}

TEST_F(CApiTest, LinuxKbusDefnsHeaderByItsOriginalName) {
  auto r = run({ORIGINAL_DEFNS_PATH});
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(r.out, "linux/kbus_defns.h: ok\n");
}

}  // namespace
}  // namespace kbus::test
