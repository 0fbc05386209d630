// One Ksock used by several threads at once, as an open /dev/kbusN could be
// (KBUS-SPEC.md §1.2: a Ksock is the open file, whoever uses it; §4: each
// operation is applied whole). The client multiplexes the threads' calls on
// its one connection (docs/protocol.md §2: replies strictly in order; §4.4:
// a held WAITREAD is answered early by any further frame, and the waiter
// waits again; docs/decisions.md D22).
//
// Each test has a thread blocked in a wait while others call; whether the
// wait is already held by kbusd when the others' frames arrive varies from
// run to run, and every order must give the same results, so the tests run
// each scenario many times. No test waits on a clock: threads meet on
// messages and joins, and timeouts are only upper bounds.
#include <poll.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "integration/fixture.hpp"

namespace kbus::test {
namespace {

using namespace std::chrono_literals;

class ThreadsTest : public KbusTest {};

constexpr int kRounds = 30;

// §4.4 / docs/protocol.md §4.4: a thread blocked in wait_for_msg() (no
// timeout) while another thread binds, asks, and sends to the same Ksock:
// the waiter gets exactly the message meant for it, the other thread's
// calls get their own replies.
TEST_F(ThreadsTest, UntimedWaitWhileAnotherThreadBindsAsksAndSendsToItself) {
  Ksock k = open();
  k.bind("$.T.Self");
  for (int round = 0; round < kRounds; ++round) {
    std::optional<Message> got;
    std::thread waiter([&] { got = k.wait_for_msg(); });
    const std::string other = "$.T.Other" + std::to_string(round);
    k.bind(other, true);
    EXPECT_EQ(k.find_replier(other), k.id());
    EXPECT_EQ(k.ksock_id(), k.id());
    EXPECT_EQ(k.num_messages(), 0u);  // nothing sent yet: the waiter cannot have popped anything
    k.unbind(other, true);
    EXPECT_EQ(k.find_replier(other), std::nullopt);
    const std::string data = "round " + std::to_string(round);
    const MessageId id = k.send_msg(make_announcement("$.T.Self", data));
    waiter.join();
    ASSERT_TRUE(got.has_value()) << "the waiter returned with no message";
    EXPECT_EQ(got->name, "$.T.Self");
    EXPECT_EQ(got->data, data);
    EXPECT_EQ(got->hdr.id, id);
    EXPECT_EQ(k.num_messages(), 0u);
  }
}

// The same with a timed wait: answered early by the other thread's frames,
// it waits again until its own deadline (an upper bound never reached here).
TEST_F(ThreadsTest, TimedWaitWhileAnotherThreadWorksGetsTheMessage) {
  Ksock k = open();
  k.bind("$.T.Self");
  for (int round = 0; round < kRounds; ++round) {
    std::optional<Message> got;
    std::thread waiter([&] { got = k.wait_for_msg(60s); });
    for (int i = 0; i < 5; ++i) {
      EXPECT_EQ(k.ksock_id(), k.id());
      k.reset();
    }
    const MessageId id = k.send_msg(make_announcement("$.T.Self", "timed"));
    waiter.join();
    ASSERT_TRUE(got.has_value()) << "an early answer was taken for a timeout";
    EXPECT_EQ(got->hdr.id, id);
    EXPECT_EQ(got->data, "timed");
  }
}

// A timed wait that ends while another thread is inside calls: it returns
// nullopt (its RESET is an ordinary frame among the others), and neither
// thread loses a reply; the Ksock stays usable (docs/decisions.md D6).
TEST_F(ThreadsTest, TimedWaitsExpireAmongOtherThreadsCalls) {
  Ksock k = open();
  k.bind("$.T.Self");
  std::atomic<bool> stop{false};
  int timeouts = 0;
  std::thread waiter([&] {
    do {  // at least once, however late this thread starts
      auto m = k.wait_for_msg(1ms);
      if (m) {
        ADD_FAILURE() << "no message was sent, got " << m->to_string();
      } else {
        ++timeouts;
      }
    } while (!stop);
  });
  for (int i = 0; i < 500; ++i) ASSERT_EQ(k.ksock_id(), k.id());
  stop = true;
  waiter.join();
  EXPECT_GT(timeouts, 0);
  const MessageId id = k.send_msg(make_announcement("$.T.Self", "after"));
  auto m = k.wait_for_msg(60s);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->hdr.id, id);
}

// Readers on both threads: every message is read exactly once, each thread
// sees its share in queue order (§5.3: a Ksock's queue is FIFO).
TEST_F(ThreadsTest, WaiterAndReaderShareTheQueueExactlyOnce) {
  Ksock k = open();
  k.bind("$.T.Data");
  k.bind("$.T.Stop");
  k.set_max_messages(10000);  // all may be queued at once: none dropped (§5.5)
  constexpr int kMessages = 400;
  std::vector<Message> waited;
  std::thread waiter([&] {
    for (;;) {
      auto m = k.wait_for_msg();
      if (!m) {
        ADD_FAILURE() << "untimed wait returned nothing";
        return;
      }
      if (m->name == "$.T.Stop") return;
      waited.push_back(*m);
    }
  });
  std::vector<Message> read;
  std::map<MessageId, std::string> sent;
  for (int i = 0; i < kMessages; ++i) {
    const std::string data = "m" + std::to_string(i);
    sent[k.send_msg(make_announcement("$.T.Data", data))] = data;
    if (i % 3 == 0) {
      if (auto m = k.read_next_msg()) read.push_back(*m);
    }
  }
  k.send_msg(make_announcement("$.T.Stop"));
  waiter.join();
  std::set<MessageId> seen;
  for (const auto* list : {&waited, &read}) {
    for (std::size_t i = 0; i < list->size(); ++i) {
      const Message& m = (*list)[i];
      EXPECT_TRUE(seen.insert(m.hdr.id).second) << "read twice: " << m.to_string();
      ASSERT_EQ(sent.count(m.hdr.id), 1u) << "an id never sent: " << m.to_string();
      EXPECT_EQ(sent[m.hdr.id], m.data);
      if (i > 0) {
        EXPECT_LT((*list)[i - 1].hdr.id, m.hdr.id) << "out of queue order";
      }
    }
  }
  EXPECT_EQ(seen.size(), sent.size());
  EXPECT_EQ(k.num_messages(), 0u);
}

// request() while another thread waits on the same Ksock: the answer goes to
// request() (never to the waiter), the waiter gets the message meant for it.
TEST_F(ThreadsTest, RequestWhileAnotherThreadWaits) {
  Ksock k = open();
  k.bind("$.T.Self");
  Ksock replier = open();
  replier.bind("$.T.Echo", true);
  std::thread answering([&] {
    for (;;) {
      auto m = replier.wait_for_msg();
      if (!m || !m->is_request()) return;  // the closing announcement
      replier.send_msg(*make_reply(*m, "echo " + m->data));
    }
  });
  for (int round = 0; round < kRounds; ++round) {
    std::optional<Message> got;
    std::thread waiter([&] { got = k.wait_for_msg(); });
    const std::string q = "q" + std::to_string(round);
    const Message ans = k.request(make_request("$.T.Echo", q));
    EXPECT_TRUE(ans.is_reply());
    EXPECT_EQ(ans.data, "echo " + q);
    EXPECT_EQ(ans.hdr.to, k.id());
    const MessageId id = k.send_msg(make_announcement("$.T.Self", "for the waiter"));
    waiter.join();
    ASSERT_TRUE(got);
    EXPECT_EQ(got->hdr.id, id);
    EXPECT_EQ(got->data, "for the waiter");
  }
  replier.bind("$.T.Stop");
  k.send_msg(make_announcement("$.T.Stop"));
  answering.join();
}

// send_and_wait() (SENDWAIT) answered early by another thread's frame waits
// on for its message.
TEST_F(ThreadsTest, SendAndWaitWhileAnotherThreadCalls) {
  Ksock k = open();
  k.bind("$.T.Self");
  Ksock other = open();
  other.bind("$.T.Out");
  for (int round = 0; round < kRounds; ++round) {
    std::optional<Ksock::SentAndReceived> got;
    std::thread waiter([&] { got = k.send_and_wait(make_announcement("$.T.Out", "out"), 60s); });
    EXPECT_EQ(k.ksock_id(), k.id());
    EXPECT_EQ(k.ksock_id(), k.id());
    // The SENDWAIT's message reaches `other` whenever it was sent.
    auto out = other.wait_for_msg(60s);
    ASSERT_TRUE(out);
    const MessageId id = k.send_msg(make_announcement("$.T.Self", "in"));
    waiter.join();
    ASSERT_TRUE(got);
    EXPECT_EQ(got->sent, out->hdr.id);
    ASSERT_TRUE(got->received) << "an early answer was taken for a timeout";
    EXPECT_EQ(got->received->hdr.id, id);
  }
}

// close() from another thread wakes every thread blocked in the Ksock with
// EBADF (untimed and timed waits, request(), poll-based wait()), whether it
// came before or after they blocked.
TEST_F(ThreadsTest, CloseWakesBlockedThreadsWithEbadf) {
  Ksock replier = open();
  replier.bind("$.T.Silent", true);  // never answers
  for (int round = 0; round < 10; ++round) {
    Ksock k = open();
    ASSERT_GE(k.fileno(), 0);  // the poll fd, before request() holds the Ksock
    std::vector<Errc> errors(4, Errc::ok);
    std::vector<std::thread> ts;
    ts.emplace_back([&] { errors[0] = k.try_wait_for_msg().error(); });
    ts.emplace_back([&] { errors[1] = k.try_wait_for_msg(600s).error(); });
    ts.emplace_back([&] { errors[2] = k.try_request(make_request("$.T.Silent")).error(); });
    ts.emplace_back([&] { errors[3] = k.try_wait(ready::kReadable).error(); });
    // The request has reached the replier: request() is blocked for good.
    auto req = replier.wait_for_msg(60s);
    ASSERT_TRUE(req);
    EXPECT_EQ(req->hdr.from, k.id());
    k.close();
    for (auto& t : ts) t.join();
    for (std::size_t i = 0; i < errors.size(); ++i)
      EXPECT_EQ(errors[i], Errc::ebadf) << "thread " << i << " got " << errc_name(errors[i]);
    EXPECT_FALSE(k.is_open());
    EXPECT_EQ(k.fileno(), -1);
    EXPECT_EQ(err(k.try_ksock_id()), Errc::ebadf);
    EXPECT_EQ(err(k.try_wait_for_msg()), Errc::ebadf);
  }
}

// While one thread's request() waits for its answer, other threads' calls
// on the Ksock wait for it (docs/decisions.md D22): a REQUEST answered early
// would leave its answer in the queue for any reader. They go on as soon as
// it is answered, and the answer is request()'s alone.
TEST_F(ThreadsTest, CallsDuringARequestGoOnOnceItIsAnswered) {
  Ksock k = open();
  k.bind("$.T.Self");
  Ksock replier = open();
  replier.bind("$.T.Slow", true);
  Result<Message> ans = Errc::einval;
  std::thread requester([&] { ans = k.try_request(make_request("$.T.Slow", "q")); });
  auto req = replier.wait_for_msg(60s);  // the REQUEST is held now
  ASSERT_TRUE(req);
  std::optional<MessageId> sent;
  std::thread sender([&] { sent = k.send_msg(make_announcement("$.T.Self", "meanwhile")); });
  replier.send_msg(*make_reply(*req, "a"));
  requester.join();
  sender.join();
  ASSERT_TRUE(ans) << "answered early by the other thread's frame: " << errc_name(ans.error());
  EXPECT_EQ(ans->data, "a");
  EXPECT_EQ(ans->hdr.in_reply_to, req->hdr.id);
  ASSERT_TRUE(sent);
  auto m = k.read_next_msg();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->hdr.id, *sent);
  EXPECT_FALSE(k.read_next_msg());  // the Reply was not left queued
}

// Many threads hammering one Ksock with mixed calls: every call gets its own
// reply (ids strictly increasing per thread, contents intact), every
// message sent to the Ksock is received exactly once by one of its threads.
TEST_F(ThreadsTest, ManyThreadsMixedCallsEachGetTheirOwnReplies) {
  Ksock k = open();
  k.bind("$.T.Data");
  k.bind("$.T.Stop");
  k.set_max_messages(10000);  // all may be queued at once: none dropped (§5.5)
  Ksock replier = open();
  replier.bind("$.T.Echo", true);
  std::thread answering([&] {
    for (;;) {
      auto m = replier.wait_for_msg();
      if (!m || !m->is_request()) return;
      replier.send_msg(*make_reply(*m, m->data + "!"));
    }
  });

  constexpr int kThreads = 6;
  constexpr int kIterations = 160;
  std::mutex mu;
  std::map<std::string, MessageId> sent;  // data -> the id send_msg returned
  std::vector<Message> received;
  auto record = [&](const Message& m) {
    std::lock_guard<std::mutex> lk(mu);
    received.push_back(m);
  };
  std::thread waiter([&] {
    for (;;) {
      auto m = k.wait_for_msg();
      if (!m) {
        ADD_FAILURE() << "untimed wait returned nothing";
        return;
      }
      if (m->name == "$.T.Stop") return;
      record(*m);
    }
  });
  std::vector<std::thread> workers;
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([&, t] {
      MessageId last{};
      const std::string mine = "$.T.Mine" + std::to_string(t);
      for (int i = 0; i < kIterations; ++i) {
        const std::string data = "t" + std::to_string(t) + "-" + std::to_string(i);
        switch (i % 8) {
          case 0:
          case 1: {
            auto id = k.try_send_msg(make_announcement("$.T.Data", data));
            ASSERT_TRUE(id) << errc_name(id.error());
            EXPECT_LT(last, *id) << "ids must increase";
            last = *id;
            std::lock_guard<std::mutex> lk(mu);
            sent[data] = *id;
            break;
          }
          case 2: {
            auto m = k.try_read_next_msg();
            ASSERT_TRUE(m) << errc_name(m.error());
            if (*m) record(**m);
            break;
          }
          case 3: {
            auto ans = k.try_request(make_request("$.T.Echo", data));
            ASSERT_TRUE(ans) << errc_name(ans.error());
            EXPECT_EQ(ans->data, data + "!");
            EXPECT_EQ(ans->hdr.to, k.id());
            EXPECT_LT(last, ans->hdr.in_reply_to);
            last = ans->hdr.in_reply_to;
            break;
          }
          case 4: {
            EXPECT_EQ(k.try_bind(mine, true).error(), Errc::ok);
            auto who = k.try_find_replier(mine);
            ASSERT_TRUE(who);
            EXPECT_EQ(*who, k.id());
            EXPECT_EQ(k.try_unbind(mine, true).error(), Errc::ok);
            EXPECT_EQ(k.try_find_replier(mine).value(), std::nullopt);
            break;
          }
          case 5: {
            auto id = k.try_ksock_id();
            ASSERT_TRUE(id);
            EXPECT_EQ(*id, k.id());
            auto n = k.try_num_messages();
            ASSERT_TRUE(n);
            EXPECT_LT(*n, 10000u);
            break;
          }
          case 6: {
            auto m = k.try_wait_for_msg(1ms);
            ASSERT_TRUE(m) << errc_name(m.error());
            if (*m) record(**m);
            break;
          }
          case 7: {
            auto ms = k.try_read_msgs(3);
            ASSERT_TRUE(ms) << errc_name(ms.error());
            for (const Message& m : *ms) record(m);
            break;
          }
        }
      }
    });
  }
  for (auto& w : workers) w.join();
  k.send_msg(make_announcement("$.T.Stop"));
  waiter.join();
  replier.bind("$.T.EchoStop");
  Ksock(open()).send_msg(make_announcement("$.T.EchoStop"));
  answering.join();

  // Nothing left, nothing lost, nothing twice, nothing garbled.
  EXPECT_EQ(k.num_messages(), 0u);
  std::set<MessageId> seen;
  for (const Message& m : received) {
    ASSERT_EQ(m.name, "$.T.Data") << m.to_string();
    EXPECT_TRUE(seen.insert(m.hdr.id).second) << "received twice: " << m.to_string();
    auto it = sent.find(m.data);
    ASSERT_NE(it, sent.end()) << "data never sent: " << m.to_string();
    EXPECT_EQ(it->second, m.hdr.id) << m.data << " came with another message's id";
  }
  EXPECT_EQ(received.size(), sent.size());
  EXPECT_EQ(sent.size(), static_cast<std::size_t>(kThreads * kIterations / 4));
}

}  // namespace
}  // namespace kbus::test
