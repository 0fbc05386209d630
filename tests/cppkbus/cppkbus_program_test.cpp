// cppkbus/cppkbus_program_test.cpp - runs cppkbus_program.cpp (a C++98
// program written for the original cppkbus, KBUS-SPEC.md §12.3) against a
// real kbusd and checks what it printed, line by line, and what a kbus::Ksock
// of another client saw of it.
#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "kbus/ksock.hpp"
#include "support/child_process.hpp"
#include "support/test_daemon.hpp"

namespace kbus::test {
namespace {

using namespace std::chrono_literals;

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  return lines;
}

TEST(CppkbusProgram, HoldsAWholeConversation) {
  TestDaemon daemon(1);
  // Another client (the C++ client) listens to the news: Ksock 1.
  Ksock outsider = daemon.open(0);
  outsider.bind("$.Talk.News");

  auto r = run_process({CPPKBUS_PROGRAM_PATH}, {{"KBUS_DIR", daemon.dir()}}, {}, 60s);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.err, "");

  // KBUS-SPEC.md §12.3 ToString forms; ids per §1.2 and §1.5 (Ksock 1 is the
  // outsider; the Device calls each use a short-lived Ksock: 5, 6, 7, 8).
  const std::vector<std::string> expected = {
      "<Ksock (closed) on device 0, \"/dev/kbus0\">",
      "<Ksock 2 on device 0, \"/dev/kbus0\" open for read/write>",
      "<Ksock 3 on device \"/dev/kbus0\" open for read/write>",
      "<Ksock 4 on device 0, \"/dev/kbus0\" open for read/write>",
      "<Device 0, \"/dev/kbus0\" open for read/write>",
      // §8.2, §8.5: the bind event, flags SYN|aFL (0x204).
      "listener got <ReplierBindEvent id=[0,1] flags=204 SYN|aFL [Bind \"$.Talk.Question\" for 3]>",
      // The Message as built (no id, no from) and as heard.
      "sent <Message \"$.Talk.News\" data=\"hello\"> as [0,2]",
      "listener got <Message \"$.Talk.News\" id=[0,2] from=4 data=\"hello\">",
      // §5.4: YOU only on the replier's copy.
      "replier got <Request \"$.Talk.Question\" id=[0,3] from=4 flags=3 REQ|YOU data=\"why?\">",
      "listener got <Request \"$.Talk.Question\" id=[0,3] from=4 flags=1 REQ data=\"why?\">",
      // BecomesReplyTo: the request's name, to = its from, in_reply_to = its id.
      "sent <Reply \"$.Talk.Question\" to=4 in_reply_to=[0,3] data=\"because\"> as [0,4]",
      "sender got <Reply \"$.Talk.Question\" id=[0,4] to=4 from=3 in_reply_to=[0,3] "
      "data=\"because\">",
      "listener got <Reply \"$.Talk.Question\" id=[0,4] to=4 from=3 in_reply_to=[0,3] "
      "data=\"because\">",
      // A Stateful Request (to = the replier, WANT_A_REPLY set).
      "replier got <Request \"$.Talk.Question\" id=[0,5] to=3 from=4 flags=3 REQ|YOU "
      "data=\"again\">",
      "closing <Ksock 3 on device \"/dev/kbus0\" open for read/write>",
      "<Ksock (closed) on device \"/dev/kbus0\">",
      // §7.2: GoneAway for the queued request (step 3, serial 7), then the
      // unbind event (step 4, serial 8), then Ignored for the read one (step 6).
      "sender got <Status \"$.KBUS.Replier.GoneAway\" id=[0,7] to=4 from=3 in_reply_to=[0,6] "
      "flags=4 SYN>",
      "sender got <Status \"$.KBUS.Replier.Ignored\" id=[0,9] to=4 from=3 in_reply_to=[0,5] "
      "flags=4 SYN>",
      "status flags SYN",
      "listener got <Request \"$.Talk.Question\" id=[0,5] to=3 from=4 flags=1 REQ data=\"again\">",
      "listener got <Request \"$.Talk.Question\" id=[0,6] from=4 flags=1 REQ>",
      "listener got <ReplierBindEvent id=[0,8] flags=204 SYN|aFL [Unbind \"$.Talk.Question\" for "
      "3]>",
      "no replier: EADDRNOTAVAIL (Cannot assign requested address): On attempting to send a "
      "Request, there is no Replier bound for the message's name. On attempting to send a "
      "Reply, the sender of the original Request (the Ksock in 'to') no longer exists.",
      "listener can Transmit",
      "<EmptyMessage>",
  };
  auto got = lines_of(r.out);
  ASSERT_FALSE(got.empty());
  const std::string summary = got.back();
  got.pop_back();
  EXPECT_NE(summary.find(" checks, 0 failed"), std::string::npos) << r.out;
  EXPECT_EQ(got.size(), expected.size()) << r.out;
  for (std::size_t i = 0; i < expected.size() && i < got.size(); ++i) {
    EXPECT_EQ(got[i], expected[i]) << "line " << i + 1;
  }

  // What the C++98 program sent is what another client reads (§1.6).
  auto m = outsider.read_next_msg();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->name, "$.Talk.News");
  EXPECT_EQ(m->data, "hello");
  EXPECT_EQ(m->hdr.from, 4u);
  EXPECT_FALSE(outsider.read_next_msg().has_value());
  EXPECT_EQ(daemon.stop(), 0);
}

}  // namespace
}  // namespace kbus::test
