// Bad input against the daemon over raw sockets (docs/protocol.md §2, §3):
// malformed and truncated frames, unknown operations, impossible lengths,
// huge names, clients that die mid-frame or never read. After each, the
// daemon keeps serving other clients (checked with a round trip from
// another Ksock).
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "integration/fixture.hpp"
#include "support/raw_client.hpp"

namespace kbus::test {
namespace {

using namespace std::chrono_literals;

constexpr std::uint32_t kOpReset = 1;
constexpr std::uint32_t kOpBind = 2;
constexpr std::uint32_t kOpKsockId = 4;
constexpr std::uint32_t kOpNextMsg = 6;
constexpr std::uint32_t kOpSend = 8;
constexpr std::uint32_t kOpMaxMsgs = 11;
constexpr std::uint32_t kOpWrite = 65;
constexpr std::uint32_t kOpStats = 71;

class BadInputTest : public KbusTest {
 protected:
  std::string bus0() const { return daemon_.dir() + "/kbus0"; }

  // A raw client that has said HELLO.
  std::unique_ptr<RawClient> raw(std::uint32_t header_len = kNativeHeaderLen) {
    auto c = std::make_unique<RawClient>(bus0());
    auto r = c->hello(1, 3, header_len);
    EXPECT_TRUE(r.has_value());
    if (r) {
      EXPECT_EQ(r->status, 0);
    }
    EXPECT_GE(c->poll_fd(), 0);
    return c;
  }

  // The daemon still serves others: a fresh Ksock and a round trip.
  void expect_daemon_serves() {
    auto k = daemon_.try_open(1);
    ASSERT_TRUE(k.ok()) << errc_name(k.error());
    EXPECT_TRUE(k->try_reset().ok());
    EXPECT_TRUE(k->try_bind("$.Still.Alive").ok());
    EXPECT_TRUE(k->try_send_msg(make_announcement("$.Still.Alive", "yes")).ok());
    auto m = k->read_next_msg();
    ASSERT_TRUE(m);
    EXPECT_EQ(m->data, "yes");
  }

  static std::string name_arg(std::uint32_t is_replier, std::string_view name) {
    return u32_bytes(is_replier) + u32_bytes(static_cast<std::uint32_t>(name.size())) +
           std::string(name);
  }
};

TEST_F(BadInputTest, UnknownOperationIsENOTTYAndTheConnectionStaysUsable) {
  auto c = raw();
  for (std::uint32_t op : {0u, 19u, 63u, 82u, 999u, 0xFFFFFFFFu}) {  // 77-80 are MONITOR (D25), BINDINGSPART, STATSPART, SHMRING
    ASSERT_TRUE(c->send_frame(op, "junk"));
    auto r = c->read_reply();
    ASSERT_TRUE(r) << op;
    EXPECT_EQ(r->status, -ENOTTY) << op;
    EXPECT_EQ(r->payload, "") << op;
  }
  ASSERT_TRUE(c->send_frame(kOpKsockId));
  auto r = c->read_reply();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 0);
  EXPECT_EQ(r->payload, u32_bytes(1));
  expect_daemon_serves();
}

TEST_F(BadInputTest, WrongPayloadSizesAreEFAULT) {
  auto c = raw();
  // BIND whose name_len promises more than the frame holds.
  ASSERT_TRUE(c->send_frame(kOpBind, u32_bytes(0) + u32_bytes(10) + "$.F"));
  // BIND with bytes left over.
  ASSERT_TRUE(c->send_frame(kOpBind, name_arg(0, "$.Fred") + "xx"));
  // BIND with no payload at all.
  ASSERT_TRUE(c->send_frame(kOpBind));
  // KSOCKID and RESET take nothing.
  ASSERT_TRUE(c->send_frame(kOpKsockId, "x"));
  ASSERT_TRUE(c->send_frame(kOpReset, "abcd"));
  // MAXMSGS takes exactly one u32.
  ASSERT_TRUE(c->send_frame(kOpMaxMsgs, "ab"));
  ASSERT_TRUE(c->send_frame(kOpMaxMsgs, u32_bytes(1) + u32_bytes(2)));
  for (int i = 0; i < 7; ++i) {
    auto r = c->read_reply();
    ASSERT_TRUE(r) << i;
    EXPECT_EQ(r->status, -EFAULT) << i;
  }
  // Nothing was bound by those.
  Ksock k = open(0);
  EXPECT_EQ(k.bindings_report().find("$.Fred"), std::string::npos);
  ASSERT_TRUE(c->send_frame(kOpBind, name_arg(0, "$.Fred")));
  auto ok = c->read_reply();
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 0);
  expect_daemon_serves();
}

TEST_F(BadInputTest, FramesMayArriveInPieces) {
  auto c = raw();
  std::string frames = frame_bytes(kOpBind, name_arg(0, "$.Fred")) + frame_bytes(kOpKsockId, "");
  for (char ch : frames) ASSERT_TRUE(c->send_bytes(std::string_view(&ch, 1)));
  auto r1 = c->read_reply();
  auto r2 = c->read_reply();
  ASSERT_TRUE(r1 && r2);
  EXPECT_EQ(r1->status, 0);
  EXPECT_EQ(r2->payload, u32_bytes(1));
}

TEST_F(BadInputTest, PipelinedRequestsAreAnsweredInOrder) {
  auto c = raw();
  std::string batch;
  for (std::uint32_t i = 1; i <= 50; ++i) batch += frame_bytes(kOpMaxMsgs, u32_bytes(i));
  ASSERT_TRUE(c->send_bytes(batch));
  for (std::uint32_t i = 1; i <= 50; ++i) {
    auto r = c->read_reply();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->payload, u32_bytes(i));
  }
}

TEST_F(BadInputTest, ImpossibleLengthsDisconnect) {
  for (std::uint32_t len : {0u, 3u, (1u << 20) + 1, 0xFFFFFFFFu}) {
    auto c = raw();
    ASSERT_TRUE(c->send_bytes(u32_bytes(len) + u32_bytes(kOpReset)));
    EXPECT_TRUE(c->wait_closed()) << len;
  }
  // A maximal frame is still fine (WRITE of 1 MiB - 4 bytes: EMSGSIZE).
  auto c = raw();
  ASSERT_TRUE(c->send_frame(kOpWrite, std::string((1u << 20) - 4, '\0')));
  auto r = c->read_reply(30s);
  ASSERT_TRUE(r);
  EXPECT_LT(r->status, 0);
  expect_daemon_serves();
}

TEST_F(BadInputTest, AnythingBeforeHelloDisconnects) {
  RawClient c(bus0());
  ASSERT_TRUE(c.send_frame(kOpKsockId));
  EXPECT_TRUE(c.wait_closed());
  expect_daemon_serves();
}

TEST_F(BadInputTest, BadHellos) {
  {
    RawClient c(bus0());
    auto r = c.hello(2, 3, kNativeHeaderLen);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, -EPROTO);
    EXPECT_TRUE(c.wait_closed());
  }
  for (std::uint32_t mode : {0u, 4u, 8u, 11u, 0x103u}) {
    RawClient c(bus0());
    auto r = c.hello(1, mode, kNativeHeaderLen);
    ASSERT_TRUE(r) << mode;
    EXPECT_EQ(r->status, -EINVAL) << mode;
    EXPECT_TRUE(c.wait_closed());
  }
  for (std::uint32_t h : {0u, 80u, 64u, 100u}) {
    RawClient c(bus0());
    auto r = c.hello(1, 3, h);
    ASSERT_TRUE(r) << h;
    EXPECT_EQ(r->status, -EINVAL) << h;
  }
  {
    RawClient c(bus0());
    ASSERT_TRUE(c.send_frame(64, u32_bytes(1)));  // too short
    auto r = c.read_reply();
    EXPECT_TRUE(!r || r->status < 0);
  }
  // None of those became a Ksock.
  Ksock k = open(0);
  EXPECT_EQ(k.ksock_id(), 1u);
}

TEST_F(BadInputTest, A32BitClientSeesItsOwnHeaderSize) {
  auto c32 = raw(kHeaderLen32);
  Ksock s = open(0);
  ASSERT_TRUE(c32->send_frame(kOpBind, name_arg(0, "$.Fred")));
  ASSERT_EQ(c32->read_reply()->status, 0);
  s.send_msg(make_announcement("$.Fred"));
  ASSERT_TRUE(c32->send_frame(kOpNextMsg));
  auto r = c32->read_reply();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 1);
  EXPECT_EQ(r->payload, u32_bytes(84));  // ENTIRE_LEN with H = 72
}

TEST_F(BadInputTest, TenThousandByteNamesAreENAMETOOLONG) {
  auto c = raw();
  std::string name = "$." + std::string(9998, 'a');
  ASSERT_TRUE(c->send_frame(kOpBind, name_arg(0, name)));
  auto r = c->read_reply();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, -ENAMETOOLONG);
  // Same through the client, for BIND, UNBIND, REPLIER and a message.
  Ksock k = open(0);
  EXPECT_EQ(err(k.try_bind(name)), Errc::enametoolong);
  EXPECT_EQ(err(k.try_unbind(name, true)), Errc::enametoolong);
  EXPECT_EQ(err(k.try_find_replier(name)), Errc::enametoolong);
  EXPECT_EQ(err(k.try_send_msg(make_announcement(name))), Errc::enametoolong);
  expect_daemon_serves();
}

TEST_F(BadInputTest, PointySendWithoutItsPayloadIsEFAULT) {
  auto c = raw();
  Message m = make_announcement("$.Fred", "dada");
  std::string hdr = encode_entire(m, kNativeHeaderLen).substr(0, kNativeHeaderLen);
  std::uint32_t one = 1;
  std::memcpy(hdr.data() + (kNativeHeaderLen == 88 ? 64 : 60), &one, 4);  // name pointer
  std::memcpy(hdr.data() + (kNativeHeaderLen == 88 ? 72 : 64), &one, 4);  // data pointer
  ASSERT_TRUE(c->send_frame(kOpWrite, hdr));
  ASSERT_EQ(c->read_reply()->status, static_cast<std::int32_t>(hdr.size()));
  ASSERT_TRUE(c->send_frame(kOpSend));
  auto r = c->read_reply();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, -EFAULT);
  EXPECT_EQ(r->payload.size(), 8u);
  // The message was discarded.
  ASSERT_TRUE(c->send_frame(kOpSend));
  EXPECT_EQ(c->read_reply()->status, -ENOMSG);
  // Wrong size of payload.
  ASSERT_TRUE(c->send_frame(kOpWrite, hdr));
  c->read_reply();
  ASSERT_TRUE(c->send_frame(kOpSend, "$.Fred" + std::string("dad")));
  EXPECT_EQ(c->read_reply()->status, -EFAULT);
  // The right payload works.
  ASSERT_TRUE(c->send_frame(kOpWrite, hdr));
  c->read_reply();
  ASSERT_TRUE(c->send_frame(kOpSend, "$.Freddada"));
  EXPECT_EQ(c->read_reply()->status, 0);
}

TEST_F(BadInputTest, AClientThatDiesMidFrame) {
  Ksock l = open(0);
  l.bind("$.Fred");
  // Its departure is observed through the replier bind events it causes.
  Ksock watcher = open(0);
  watcher.bind("$.KBUS.ReplierBindEvent");
  watcher.report_replier_binds(Toggle::on);
  std::string dir = daemon_.dir();
  Actor dying([dir](Channel& ch) {
    RawClient c(dir + "/kbus0");
    auto r = c.hello(1, 3, kNativeHeaderLen);
    if (!r || r->status != 0) return 1;
    // Bind as replier, then send half of a WRITE frame, then die.
    c.send_frame(kOpBind, u32_bytes(1) + u32_bytes(5) + "$.Die");
    c.read_reply();
    std::string frame = frame_bytes(
        kOpWrite, encode_entire(make_announcement("$.Fred", "never"), kNativeHeaderLen));
    c.send_bytes(frame.substr(0, frame.size() / 2));
    ch.say("half sent");
    ch.hear(60s);  // killed here
    return 0;
  });
  ASSERT_EQ(dying.hear(), "half sent");
  auto bind = watcher.wait_for_msg(10s);
  ASSERT_TRUE(bind);
  dying.kill(SIGKILL);
  EXPECT_EQ(dying.wait(), 128 + SIGKILL);
  auto unbind = watcher.wait_for_msg(10s);
  ASSERT_TRUE(unbind);
  auto ev = decode_replier_bind_event(unbind->data);
  ASSERT_TRUE(ev.ok());
  EXPECT_FALSE(ev->is_bind);
  EXPECT_EQ(ev->name, "$.Die");
  Ksock s = open(0);
  EXPECT_EQ(s.find_replier("$.Die"), std::nullopt);
  EXPECT_EQ(l.num_messages(), 0u);  // the half message was never sent
  expect_daemon_serves();
}

TEST_F(BadInputTest, AClientThatNeverReadsItsReplies) {
  auto lazy = raw();
  lazy->set_nonblocking();
  // Pipeline STATS requests without reading a single reply, until the
  // socket buffers are full (or 64 MiB of requests have gone out).
  std::string frame = frame_bytes(kOpStats, "");
  std::string batch;
  for (int i = 0; i < 4096; ++i) batch += frame;
  std::size_t sent = 0;
  for (int rounds = 0; rounds < 8192; ++rounds) {
    ssize_t n = ::send(lazy->fd(), batch.data(), batch.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n <= 0) break;
    sent += static_cast<std::size_t>(n);
  }
  EXPECT_GT(sent, 0u);
  // Everyone else is served promptly.
  for (int i = 0; i < 3; ++i) expect_daemon_serves();
  Ksock a = open(0);
  Ksock b = open(0);
  b.bind("$.Fred");
  a.send_msg(make_announcement("$.Fred"));
  EXPECT_TRUE(b.wait_for_msg(5s).has_value());
}

TEST_F(BadInputTest, AKsockThatNeverReadsItsQueue) {
  Ksock deaf = open(0, Mode::read);
  deaf.bind("$.Fred");
  Ksock s = open(0);
  for (int i = 0; i < 150; ++i) s.send_msg(make_announcement("$.Fred", std::string(500, 'x')));
  EXPECT_EQ(deaf.num_messages(), 100u);  // the rest were silently skipped
  expect_daemon_serves();
}

TEST_F(BadInputTest, AWaitReadNobodyAnswersThenHangUp) {
  {
    auto c = raw();
    ASSERT_TRUE(c->send_frame(69));  // WAITREAD, then leave
  }
  {
    auto c = raw();
    ASSERT_TRUE(c->send_frame(69));
    ASSERT_TRUE(c->send_frame(kOpKsockId));  // answers the WAITREAD with 0
    auto w = c->read_reply();
    auto k = c->read_reply();
    ASSERT_TRUE(w && k);
    EXPECT_EQ(w->status, 0);
    EXPECT_EQ(w->payload, "");
    EXPECT_EQ(k->status, 0);
    EXPECT_EQ(k->payload.size(), 4u);
  }
  expect_daemon_serves();
}

}  // namespace
}  // namespace kbus::test
