// preload/preload_test.cpp - programs that use /dev/kbusN directly (a C
// program in the original libkbus's manner, a C++ one in cppkbus's, a
// Python one in the original Python module's), run unchanged under
// `kbus run` (libkbus-dev.so) against a real kbusd (docs/device.md).
//
// Each test starts its own kbusd (TestDaemon, 3 buses) and runs a program
// with KBUS_DIR pointing at it. The programs check the device's behaviour
// themselves and exit 0 with "N checks, 0 failed"; the scenarios name the
// rules they check (KBUS-SPEC.md §4.1-§4.6, §5.5, §7.2, docs/decisions.md
// D19). Waits are bounded and driven by the programs' output or by
// messages, never by sleeping.
#include <gtest/gtest.h>
#include <signal.h>

#include <map>
#include <string>
#include <vector>

#include "kbus/ksock.hpp"
#include "kbus/message.hpp"
#include "support/child_process.hpp"
#include "support/test_daemon.hpp"

namespace kbus::test {
namespace {

using namespace std::chrono_literals;

// In a sanitizer build (tests/preload/CMakeLists.txt) the sanitizer's
// runtime goes first in LD_PRELOAD; python3's own leaks are not ours.
std::string preload_base() { return SANITIZER_RUNTIME; }
Env sanitizer_env() {
  if (preload_base().empty()) return {};
  return {{"LD_PRELOAD", preload_base()}, {"ASAN_OPTIONS", "detect_leaks=0"}};
}
std::string after_base(const std::string& lib) {
  return preload_base().empty() ? lib : preload_base() + ":" + lib;
}

class PreloadTest : public ::testing::Test {
 protected:
  Env env() const {
    Env e = sanitizer_env();
    e.emplace_back("KBUS_DIR", daemon_.dir());
    return e;
  }
  // `kbus run PROGRAM ARGS...`
  static std::vector<std::string> under_kbus_run(std::vector<std::string> argv) {
    argv.insert(argv.begin(), {KBUS_CLI_PATH, "run"});
    return argv;
  }
  void expect_all_checks_pass(const std::vector<std::string>& argv,
                              std::chrono::milliseconds timeout = 60s) {
    auto r = run_process(under_kbus_run(argv), env(), {}, timeout);
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_NE(r.out.find(" checks, 0 failed"), std::string::npos) << r.out << r.err;
  }
  void TearDown() override { EXPECT_EQ(daemon_.stop(), 0) << "kbusd did not exit cleanly"; }

  TestDaemon daemon_{3};
};

// ---- C, in the original libkbus's manner (dev_c_test.c) ----

// Every KBUS_IOC_* with its argument structure, and its error paths; open's
// errors (ENOENT, EINVAL...), EBADF by mode, ENOTTY (§4.1, §4.5, §4.6).
TEST_F(PreloadTest, CEveryIoctlAndItsErrors) {
  expect_all_checks_pass({DEV_C_TEST_PATH, "ioctls"});
}

// Writes and reads in any pieces, LENLEFT at every position, NEXTMSG,
// write errors, pointy messages followed at SEND, long messages, fopen
// (§3.4, §4.2, §4.3, §14-3).
TEST_F(PreloadTest, CPartialReadsAndWrites) { expect_all_checks_pass({DEV_C_TEST_PATH, "rw"}); }

// poll/select readiness: readable iff queued; writable unless read-only or
// an ALL_OR_WAIT send is pending; EALREADY meanwhile (§4.4, §5.5).
TEST_F(PreloadTest, CPollReadiness) { expect_all_checks_pass({DEV_C_TEST_PATH, "poll"}); }

// One descriptor, two threads: one blocked in poll() and reading, the other
// sending and doing ioctls.
TEST_F(PreloadTest, CTwoThreadsOnOneDescriptor) {
  expect_all_checks_pass({DEV_C_TEST_PATH, "threads"});
}

// fork(): the child's copy fails with ENXIO, the parent's Ksock works on
// (docs/decisions.md D19).
TEST_F(PreloadTest, CForkKeepsTheKsockTheParents) {
  auto r = run_process(under_kbus_run({DEV_C_TEST_PATH, "fork"}), env(), {}, 60s);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find(" checks, 0 failed"), std::string::npos) << r.out << r.err;
  // The child was told why, once.
  EXPECT_NE(r.err.find("was opened by process"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("Open /dev/kbus0 again in this process"), std::string::npos) << r.err;
}

// dup, dup2, dup3, F_DUPFD share the Ksock; the last close closes it;
// descriptor flags per descriptor; nothing crosses exec (§7.2, D19).
TEST_F(PreloadTest, CDupSharesTheKsockAndTheLastCloseClosesIt) {
  expect_all_checks_pass({DEV_C_TEST_PATH, "dup"});
}

// A replier killed in the middle of writing its Reply: the partial message
// is dropped, each of its Requests gets its Status (the one it had read:
// Replier.Ignored; the one still queued: Replier.GoneAway), and the bus
// serves everyone else on (§4.2-7, §7.2).
TEST_F(PreloadTest, CProgramKilledMidWrite) {
  Ksock requester = daemon_.open(0);
  Ksock listener = daemon_.open(0);
  listener.bind("$.Kill.Me");  // sees every message of that name
  SpawnedProcess p(under_kbus_run({DEV_C_TEST_PATH, "killed"}), env());
  ASSERT_EQ(p.line(), "bound") << p.err(1s);
  const MessageId first = requester.send_msg(make_request("$.Kill.Me", "one"));
  ASSERT_EQ(p.line(), "ready") << p.err(1s);
  const MessageId second = requester.send_msg(make_request("$.Kill.Me", "two"));
  p.kill(SIGKILL);
  EXPECT_EQ(p.wait(), 128 + SIGKILL);

  std::map<std::uint32_t, std::string> statuses;  // in_reply_to serial -> name
  for (int i = 0; i < 2; ++i) {
    auto m = requester.wait_for_msg(10s);
    ASSERT_TRUE(m.has_value()) << "no Status for the killed replier's Requests";
    EXPECT_TRUE(m->is_synthetic());
    statuses[m->hdr.in_reply_to.serial_num] = m->name;
  }
  EXPECT_EQ(statuses[first.serial_num], "$.KBUS.Replier.Ignored");
  EXPECT_EQ(statuses[second.serial_num], "$.KBUS.Replier.GoneAway");
  settle(requester);
  EXPECT_EQ(requester.num_messages(), 0u);
  // The half-written Reply never went anywhere: the listener has the two
  // Requests only.
  auto a = listener.read_next_msg();
  auto b = listener.read_next_msg();
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->data, "one");
  EXPECT_EQ(b->data, "two");
  EXPECT_FALSE(listener.read_next_msg().has_value());

  // The bus serves on: the name is free for a new replier, and a Request
  // reaches it and is answered.
  EXPECT_EQ(daemon_.open(0).find_replier("$.Kill.Me"), std::nullopt);
  Ksock replier = daemon_.open(0);
  replier.bind("$.Kill.Me", true);
  const MessageId third = requester.send_msg(make_request("$.Kill.Me", "three"));
  auto req = replier.read_next_msg();
  ASSERT_TRUE(req.has_value());
  replier.send_msg(make_reply(*req, "answered").value());
  auto reply = requester.wait_for_msg(10s);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->hdr.in_reply_to, third);
  EXPECT_EQ(reply->data, "answered");
  // No binding of the killed process is left (§9.1: "bus: id pid R|L name").
  const std::string report = daemon_.open(0).bindings_report();
  EXPECT_EQ(report.find(" " + std::to_string(p.pid()) + "  R  "), std::string::npos) << report;
  EXPECT_EQ(report.find(" " + std::to_string(p.pid()) + "  L  "), std::string::npos) << report;
}

// ---- C++, in cppkbus's manner (dev_cpp_test.cpp) ----

TEST_F(PreloadTest, CppRequestsRepliesAndStatus) {
  expect_all_checks_pass({DEV_CPP_TEST_PATH, "request_reply"});
}

TEST_F(PreloadTest, CppOneKsockTwoThreads) {
  expect_all_checks_pass({DEV_CPP_TEST_PATH, "shared_ksock"});
}

// ---- Python, in the original module's manner (dev_py_test.py) ----

TEST_F(PreloadTest, PythonEveryIoctlAndItsErrors) {
  expect_all_checks_pass({"/usr/bin/python3", DEV_PY_TEST_PATH, "ioctls"});
}

TEST_F(PreloadTest, PythonPartialReadsWritesAndPoll) {
  expect_all_checks_pass({"/usr/bin/python3", DEV_PY_TEST_PATH, "rw_poll"});
}

TEST_F(PreloadTest, PythonFork) {
  expect_all_checks_pass({"/usr/bin/python3", DEV_PY_TEST_PATH, "fork"});
}

// A program that also uses the kbus Python package (its own connections to
// kbusd) beside the device: the library leaves the package's descriptors
// alone, and the two kinds of Ksock talk to each other.
TEST_F(PreloadTest, PythonPackageAndDeviceInOneProgram) {
  Env e = env();
  e.emplace_back("PYTHONPATH", std::string(KBUS_SOURCE_DIR) + "/python");
  auto r = run_process(under_kbus_run({"/usr/bin/python3", DEV_PY_TEST_PATH, "with_package"}), e,
                       {}, 60s);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find(" checks, 0 failed"), std::string::npos) << r.out << r.err;
}

// ---- kbus run itself ----

TEST(KbusRun, AppendsTheLibraryToLdPreloadAndSetsKbusDir) {
  Env e = sanitizer_env();
  e.emplace_back("LD_PRELOAD", after_base(KBUS_SHARED_PATH));
  auto r = run_process({KBUS_CLI_PATH, "run", "-d", "/some/dir", "/usr/bin/env"}, e);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\nLD_PRELOAD=" + after_base(KBUS_SHARED_PATH) + ":" + KBUS_DEV_PATH + "\n"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("\nKBUS_DIR=/some/dir\n"), std::string::npos) << r.out;

  if (!preload_base().empty()) return;  // there LD_PRELOAD is never empty
  auto alone = run_process({KBUS_CLI_PATH, "run", "/usr/bin/env"}, {{"LD_PRELOAD", ""}});
  EXPECT_NE(alone.out.find(std::string("\nLD_PRELOAD=") + KBUS_DEV_PATH + "\n"), std::string::npos)
      << alone.out;
}

TEST(KbusRun, ReportsWhatIsMissing) {
  auto none = run_process({KBUS_CLI_PATH, "run"}, sanitizer_env());
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_NE(none.err.find("give the program to run"), std::string::npos) << none.err;

  auto missing = run_process({KBUS_CLI_PATH, "run", "/nonexistent/program"}, sanitizer_env());
  EXPECT_EQ(missing.exit_code, 127);
  EXPECT_NE(missing.err.find("cannot run /nonexistent/program"), std::string::npos) << missing.err;

  Env e = sanitizer_env();
  e.emplace_back("KBUS_PRELOAD_LIBRARY", "/nonexistent/libkbus-dev.so");
  auto nolib = run_process({KBUS_CLI_PATH, "run", "/usr/bin/env"}, e);
  EXPECT_EQ(nolib.exit_code, 1);
  EXPECT_NE(nolib.err.find("/nonexistent/libkbus-dev.so"), std::string::npos) << nolib.err;
  EXPECT_NE(nolib.err.find("KBUS_PRELOAD_LIBRARY"), std::string::npos) << nolib.err;
}

// A statically linked program cannot be reached (docs/device.md): kbus run
// says so and runs it anyway; its open() of the device fails.
TEST_F(PreloadTest, StaticallyLinkedProgramIsRunWithAWarning) {
  if (std::string(STATIC_OPEN_PATH).empty()) GTEST_SKIP() << "no static C library here";
  auto r = run_process(under_kbus_run({STATIC_OPEN_PATH}), env());
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "open: ENOENT\n");
  EXPECT_NE(r.err.find("is statically linked, so no preload library can reach it"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("-lkbus"), std::string::npos) << r.err;

  // A dynamically linked one gets no warning.
  auto d = run_process(under_kbus_run({DEV_C_TEST_PATH, "poll"}), env());
  EXPECT_EQ(d.exit_code, 0) << d.err;
  EXPECT_EQ(d.err.find("warning"), std::string::npos) << d.err;
}

}  // namespace
}  // namespace kbus::test
