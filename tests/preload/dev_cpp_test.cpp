// dev_cpp_test.cpp - a C++ program on /dev/kbusN through cppkbus_dev.hpp (the
// original cppkbus's way: ioctl, read, write and poll on the descriptor),
// run under `kbus run` against a kbusd with fresh buses
// (tests/preload/preload_test.cpp).
//
//   dev_cpp_test request_reply | shared_ksock
//
// Exits 0 if every check passed, else 1 listing the failed checks.
#include <atomic>
#include <cstdio>
#include <string>
#include <thread>

#include "cppkbus_dev.hpp"

namespace {

int checks = 0;
int failures = 0;

#define CHECK(cond)                                                                 \
  do {                                                                              \
    ++checks;                                                                       \
    if (!(cond)) {                                                                  \
      ++failures;                                                                   \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                               \
  } while (0)

#define CHECK_EQ(a, b)                                                                            \
  do {                                                                                            \
    ++checks;                                                                                     \
    long long a_ = static_cast<long long>(a), b_ = static_cast<long long>(b);                     \
    if (a_ != b_) {                                                                               \
      ++failures;                                                                                 \
      std::fprintf(stderr, "%s:%d: %s is %lld, expected %lld\n", __FILE__, __LINE__, #a, a_, b_); \
    }                                                                                             \
  } while (0)

using cppkbus::Ksock;
using cppkbus::Message;
using cppkbus::MessageId;
using cppkbus::PollFlags;

// A replier in its own thread answers N Requests; the requester checks each
// Reply; then the replier closes with a Request queued, which is answered by
// a $.KBUS.Replier.GoneAway Status (KBUS-SPEC.md §7.2).
void request_reply() {
  constexpr int kRequests = 50;
  Ksock replier(0), requester(0);
  CHECK_EQ(replier.Open(), 0);
  CHECK_EQ(requester.Open(), 0);
  CHECK_EQ(replier.Bind("$.Cpp.Service", true), 0);
  CHECK_EQ(replier.Bind("$.Cpp.Service", true), -EADDRINUSE);
  uint32_t replier_id = 0;
  CHECK_EQ(replier.GetId(replier_id), 0);

  std::thread t([&] {
    for (int i = 0; i < kRequests; ++i) {
      uint32_t flags = 0;
      if (replier.WaitForMessage(flags, PollFlags::Receive, -1) != 1) break;
      Message req;
      if (replier.Receive(req) != 1) break;
      Message reply("ignored", "re:" + req.GetData());
      if (replier.SendReply(reply, req) != 0) break;
    }
  });
  for (int i = 0; i < kRequests; ++i) {
    Message req("$.Cpp.Service", std::to_string(i), 0, true);
    MessageId id;
    CHECK_EQ(requester.Send(req, &id), 0);
    uint32_t flags = 0;
    CHECK_EQ(requester.WaitForMessage(flags, PollFlags::Receive, -1), 1);
    Message reply;
    CHECK_EQ(requester.Receive(reply), 1);
    CHECK(reply.IsReply());
    CHECK(reply.GetInReplyTo() == id);
    CHECK_EQ(reply.GetFrom(), replier_id);
    CHECK(reply.GetData() == "re:" + std::to_string(i));
  }
  t.join();
  uint32_t n = 9;
  CHECK_EQ(replier.HowManyMessagesUnrepliedTo(n), 0);
  CHECK_EQ(n, 0);

  Message last("$.Cpp.Service", "late", 0, true);
  MessageId late;
  CHECK_EQ(requester.Send(last, &late), 0);
  CHECK_EQ(replier.Close(), 0);  // synchronous CLOSE: the Status is queued
  Message status;
  CHECK_EQ(requester.Receive(status), 1);
  CHECK(status.GetName() == "$.KBUS.Replier.GoneAway");
  CHECK(status.GetInReplyTo() == late);
}

// One Ksock, two threads: one blocks in WaitForMessage (poll) and receives,
// the other sends to it and asks for its id and counts meanwhile.
void shared_ksock() {
  constexpr int kMessages = 200;
  Ksock k(1);
  CHECK_EQ(k.Open(), 0);
  CHECK_EQ(k.Bind("$.Cpp.Shared"), 0);
  CHECK_EQ(k.SetMaxUnreadMessages(kMessages + 1), 0);
  uint32_t id = 0;
  CHECK_EQ(k.GetId(id), 0);
  std::atomic<int> received{0};
  std::atomic<bool> in_order{true};
  std::thread reader([&] {
    while (received < kMessages) {
      uint32_t flags = 0;
      if (k.WaitForMessage(flags, PollFlags::Receive, -1) != 1) break;
      Message m;
      int rv = k.Receive(m);
      if (rv < 0) break;
      if (rv == 0) continue;
      if (m.GetData() != std::to_string(received.load())) in_order = false;
      ++received;
    }
  });
  for (int i = 0; i < kMessages; ++i) {
    CHECK_EQ(k.Send(Message("$.Cpp.Shared", std::to_string(i))), 0);
    uint32_t again = 0, n = 0;
    CHECK_EQ(k.GetId(again), 0);
    CHECK_EQ(again, id);
    CHECK_EQ(k.HowManyMessagesUnread(n), 0);
    MessageId last;
    CHECK_EQ(k.GetLastMessageId(last), 0);
  }
  reader.join();
  CHECK_EQ(received.load(), kMessages);
  CHECK(in_order.load());
}

}  // namespace

int main(int argc, char** argv) {
  std::string what = argc > 1 ? argv[1] : "";
  if (what == "request_reply") {
    request_reply();
  } else if (what == "shared_ksock") {
    shared_ksock();
  } else {
    std::fprintf(stderr, "usage: dev_cpp_test request_reply|shared_ksock\n");
    return 2;
  }
  std::printf("%d checks, %d failed\n", checks, failures);
  return failures ? 1 : 0;
}
