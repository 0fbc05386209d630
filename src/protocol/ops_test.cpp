// The per-operation codecs (protocol/ops.hpp) against the byte vectors of
// tests/vectors/protocol.json (docs/protocol.md §6): every encoder produces
// exactly the vector's bytes and every decoder reads them back; every
// decoder refuses a payload one byte too short or too long (docs/protocol.md
// §2: the daemon answers it with -EFAULT).
#include "protocol/ops.hpp"

#include <gtest/gtest.h>

#include <cerrno>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

namespace kbus::protocol {
namespace {

const std::map<std::string, std::string>& vectors() {
  static const auto v = [] {
    std::ifstream in(std::string(KBUS_SOURCE_DIR) + "/tests/vectors/protocol.json");
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();
    std::map<std::string, std::string> m;
    static const std::regex re(R"re("name":\s*"([^"]+)"[\s\S]*?"hex":\s*"([0-9a-f]*)")re");
    for (auto it = std::sregex_iterator(text.begin(), text.end(), re);
         it != std::sregex_iterator(); ++it) {
      const std::string hex = (*it)[2];
      std::string bytes;
      for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
        bytes += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
      m[(*it)[1]] = bytes;
    }
    return m;
  }();
  return v;
}

const std::string& vec(const std::string& name) {
  auto it = vectors().find(name);
  if (it == vectors().end()) ADD_FAILURE() << "no vector " << name;
  static const std::string none;
  return it == vectors().end() ? none : it->second;
}

// Splits a whole frame into its word and payload.
Frame split(const std::string& bytes) {
  Frame f;
  std::size_t used = 0;
  EXPECT_EQ(parse_frame(bytes, f, used), Parse::kOk);
  EXPECT_EQ(used, bytes.size());
  return f;
}

template <Op O>
typename Codec<O>::Request request_of(const std::string& name) {
  const Frame f = split(vec(name));
  EXPECT_EQ(f.word, static_cast<std::uint32_t>(O)) << name;
  typename Codec<O>::Request args;
  EXPECT_TRUE(decode_request<O>(f.payload, args)) << name;
  return args;
}

template <Op O>
typename Codec<O>::Reply reply_of(const std::string& name, std::int32_t status) {
  const Frame f = split(vec(name));
  EXPECT_EQ(static_cast<std::int32_t>(f.word), status) << name;
  typename Codec<O>::Reply value;
  EXPECT_TRUE(decode_reply<O>(f.payload, value)) << name;
  return value;
}

template <Op O>
std::string req(const typename Codec<O>::Request& args = {}) {
  std::string out;
  append_request<O>(out, args);
  return out;
}
template <Op O>
std::string rep(std::int32_t status, const typename Codec<O>::Reply& value = {}) {
  std::string out;
  append_reply<O>(out, status, value);
  return out;
}

TEST(OpsVectors, Hello) {  // docs/protocol.md §3
  EXPECT_EQ(req<Op::kHello>({1, 7, 88}), vec("frame_hello"));
  const HelloArgs a = request_of<Op::kHello>("frame_hello");
  EXPECT_EQ(a.version, 1u);
  EXPECT_EQ(a.mode, 7u);
  EXPECT_EQ(a.header_len, 88u);
  EXPECT_EQ(rep<Op::kHello>(0, {1, 0}), vec("frame_hello_reply"));
  const HelloValue v = reply_of<Op::kHello>("frame_hello_reply", 0);
  EXPECT_EQ(v.ksock_id, 1u);
  EXPECT_EQ(v.bus, 0u);
}

TEST(OpsVectors, PollFd) {  // docs/protocol.md §3.1
  EXPECT_EQ(req<Op::kPollFd>(), vec("frame_pollfd"));
  (void)request_of<Op::kPollFd>("frame_pollfd");
  EXPECT_EQ(rep<Op::kPollFd>(0), vec("frame_pollfd_reply"));
  (void)reply_of<Op::kPollFd>("frame_pollfd_reply", 0);
}

TEST(OpsVectors, BindUnbind) {  // KBUS-SPEC.md §4.5 BIND/UNBIND
  EXPECT_EQ(req<Op::kBind>({1, "$.Fred"}), vec("frame_bind_replier"));
  const BindArgs b = request_of<Op::kBind>("frame_bind_replier");
  EXPECT_EQ(b.is_replier, 1u);
  EXPECT_EQ(b.name, "$.Fred");
  EXPECT_EQ(req<Op::kUnbind>({0, "$.Fred.*"}), vec("frame_unbind_listener"));
  const BindArgs u = request_of<Op::kUnbind>("frame_unbind_listener");
  EXPECT_EQ(u.is_replier, 0u);
  EXPECT_EQ(u.name, "$.Fred.*");
}

TEST(OpsVectors, Replier) {
  EXPECT_EQ(req<Op::kReplier>({"$.Fred"}), vec("frame_replier_query"));
  EXPECT_EQ(request_of<Op::kReplier>("frame_replier_query").name, "$.Fred");
  EXPECT_EQ(rep<Op::kReplier>(1, {3}), vec("frame_replier_reply"));
  EXPECT_EQ(reply_of<Op::kReplier>("frame_replier_reply", 1).value, 3u);
}

TEST(OpsVectors, Errors) {  // docs/protocol.md §2
  std::string out;
  append_error(out, EBADMSG);
  EXPECT_EQ(out, vec("frame_error_ebadmsg"));
  out.clear();
  append_error(out, ENOTTY);
  EXPECT_EQ(out, vec("frame_unknown_reply"));
  (void)reply_of<Op::kBind>("frame_error_ebadmsg", -EBADMSG);
}

TEST(OpsVectors, NextMsgReadWaitReset) {  // docs/protocol.md §4.2, §4.4
  EXPECT_EQ(req<Op::kNextMsg>(), vec("frame_nextmsg"));
  (void)request_of<Op::kNextMsg>("frame_nextmsg");
  EXPECT_EQ(rep<Op::kNextMsg>(1, {100}), vec("frame_nextmsg_reply"));
  EXPECT_EQ(reply_of<Op::kNextMsg>("frame_nextmsg_reply", 1).value, 100u);
  EXPECT_EQ(req<Op::kRead>({4096}), vec("frame_read"));
  EXPECT_EQ(request_of<Op::kRead>("frame_read").value, 4096u);
  EXPECT_EQ(req<Op::kWaitRead>(), vec("frame_waitread"));
  (void)request_of<Op::kWaitRead>("frame_waitread");
  EXPECT_EQ(req<Op::kReset>(), vec("frame_reset"));
  (void)request_of<Op::kReset>("frame_reset");
}

TEST(OpsVectors, NextReadReplyCarriesTheEntireMessage) {  // docs/protocol.md §4.2
  const BytesValue v = reply_of<Op::kNextRead>("frame_nextread_reply", 1);
  auto m = decode_entire(v.bytes, kHeaderLen64);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->name, "$.Fred");
  EXPECT_EQ(m->data, "dada");
  EXPECT_EQ(m->hdr.id, (MessageId{0, 5}));
  EXPECT_EQ(rep<Op::kNextRead>(1, {v.bytes}), vec("frame_nextread_reply"));
}

TEST(OpsVectors, SendAndIds) {  // docs/protocol.md §4.1
  EXPECT_EQ(req<Op::kSend>(), vec("frame_send_empty"));
  EXPECT_TRUE(request_of<Op::kSend>("frame_send_empty").bytes.empty());
  EXPECT_EQ(req<Op::kSend>({"$.Freddada"}), vec("frame_send_pointy"));
  EXPECT_EQ(request_of<Op::kSend>("frame_send_pointy").bytes, "$.Freddada");
  EXPECT_EQ(rep<Op::kSend>(0, {MessageId{0, 5}}), vec("frame_send_reply"));
  EXPECT_EQ(reply_of<Op::kSend>("frame_send_reply", 0).id, (MessageId{0, 5}));
  // A failed SEND still reports the id it was given (§5.2 step 7).
  EXPECT_EQ(rep<Op::kSend>(-EAGAIN, {MessageId{0, 6}}), vec("frame_send_eagain"));
  EXPECT_EQ(reply_of<Op::kSend>("frame_send_eagain", -EAGAIN).id, (MessageId{0, 6}));
}

TEST(OpsVectors, U32Arguments) {
  EXPECT_EQ(req<Op::kMaxMsgs>({10}), vec("frame_maxmsgs"));
  EXPECT_EQ(request_of<Op::kMaxMsgs>("frame_maxmsgs").value, 10u);
  EXPECT_EQ(req<Op::kMsgOnlyOnce>({0xFFFFFFFFu}), vec("frame_onlyonce_query"));
  EXPECT_EQ(request_of<Op::kMsgOnlyOnce>("frame_onlyonce_query").value, 0xFFFFFFFFu);
  // MONITOR (docs/decisions.md D25): on/off/query in, the copies missed out.
  EXPECT_EQ(req<Op::kMonitor>({1}), vec("frame_monitor_on"));
  EXPECT_EQ(request_of<Op::kMonitor>("frame_monitor_on").value, 1u);
  EXPECT_EQ(rep<Op::kMonitor>(0, {3}), vec("frame_monitor_reply"));
  EXPECT_EQ(reply_of<Op::kMonitor>("frame_monitor_reply", 0).value, 3u);
}

// The names kbusd -v logs (issue 15): every operation by its protocol.md name.
TEST(OpsNames, EveryOperationHasItsName) {
  EXPECT_STREQ(op_name(static_cast<std::uint32_t>(Op::kBind)), "BIND");
  EXPECT_STREQ(op_name(static_cast<std::uint32_t>(Op::kReportReplierBinds)), "REPORTREPLIERBINDS");
  EXPECT_STREQ(op_name(static_cast<std::uint32_t>(Op::kReadBatch)), "READBATCH");
  EXPECT_STREQ(op_name(static_cast<std::uint32_t>(Op::kMonitor)), "MONITOR");
  EXPECT_STREQ(op_name(0), "unknown");
  EXPECT_STREQ(op_name(19), "unknown");
  EXPECT_STREQ(op_name(1000), "unknown");
  // Each row "| N | NAME | ..." of the table in docs/protocol.md, and no
  // other number has a name.
  std::ifstream in(std::string(KBUS_SOURCE_DIR) + "/docs/protocol.md");
  ASSERT_TRUE(in) << "docs/protocol.md";
  const std::regex row(R"(^\| (\d+) \| ([A-Z]+) \|)");
  std::map<std::uint32_t, std::string> documented;
  for (std::string line; std::getline(in, line);) {
    std::smatch m;
    if (std::regex_search(line, m, row)) documented[static_cast<std::uint32_t>(std::stoul(m[1]))] = m[2];
  }
  ASSERT_GE(documented.size(), 32u) << "the table of docs/protocol.md was not read";
  for (std::uint32_t op = 0; op <= 128; ++op) {
    auto it = documented.find(op);
    EXPECT_EQ(op_name(op), it == documented.end() ? std::string("unknown") : it->second) << op;
  }
}

TEST(OpsVectors, WriteAndSendMsgCarryTheMessageBytes) {  // docs/protocol.md §4.1
  const std::string& dada = vec("entire_fred_dada_h88");
  EXPECT_EQ(req<Op::kWrite>({dada}), vec("frame_write"));
  EXPECT_EQ(request_of<Op::kWrite>("frame_write").bytes, dada);
  const std::string& nodata = vec("entire_fred_nodata_h88");
  EXPECT_EQ(req<Op::kSendMsg>({nodata}), vec("frame_sendmsg"));
  EXPECT_EQ(request_of<Op::kSendMsg>("frame_sendmsg").bytes, nodata);
}

// Shapes without a vector of their own: the batches, REQUEST/SENDWAIT replies.
TEST(OpsRoundTrip, SendBatch) {  // docs/protocol.md §4.6
  BatchItems items;
  std::string payload;
  append_batch_item(payload, vec("entire_fred_nodata_h88"));
  append_batch_item(payload, vec("entire_fred_dada_h88"));
  ASSERT_TRUE(decode(payload, items));
  EXPECT_EQ(items.count, 2u);
  std::string_view m;
  ASSERT_TRUE(items.next(m));
  EXPECT_EQ(m, vec("entire_fred_nodata_h88"));
  ASSERT_TRUE(items.next(m));
  EXPECT_EQ(m, vec("entire_fred_dada_h88"));
  EXPECT_FALSE(items.next(m));
  // An item whose length runs past the end: the whole batch is refused.
  payload.pop_back();
  EXPECT_FALSE(decode(payload, items));
  EXPECT_FALSE(decode(std::string_view("\1\0\0", 3), items));
  EXPECT_TRUE(decode(std::string_view{}, items));  // empty batch: count 0
  EXPECT_EQ(items.count, 0u);

  std::string ids;
  put_id(ids, MessageId{0, 7});
  put_id(ids, MessageId{0, 8});
  const std::string out = rep<Op::kSendBatch>(0, {2, ids});
  const Frame f = split(out);
  BatchIdsValue v;
  ASSERT_TRUE(decode_reply<Op::kSendBatch>(f.payload, v));
  EXPECT_EQ(v.count, 2u);
  EXPECT_EQ(v.id(1), (MessageId{0, 8}));
  EXPECT_FALSE(decode(f.payload.substr(0, f.payload.size() - 1), v));
}

TEST(OpsRoundTrip, ReadBatchNeedsAtLeastOneMessage) {  // docs/protocol.md §4.6
  const std::string out = req<Op::kReadBatch>({5, 4096, 1});
  const Frame f = split(out);
  ReadBatchArgs a;
  ASSERT_TRUE(decode_request<Op::kReadBatch>(f.payload, a));
  EXPECT_EQ(a.max_count, 5u);
  EXPECT_EQ(a.max_bytes, 4096u);
  EXPECT_EQ(a.wait, 1u);
  std::string zero;
  encode(zero, ReadBatchArgs{0, 4096, 0});
  EXPECT_FALSE(decode(zero, a));
}

TEST(OpsRoundTrip, RequestReplyIsIdThenMessage) {  // docs/protocol.md §4.5
  const std::string& msg = vec("entire_reply_h88");
  const std::string answered = rep<Op::kRequest>(1, {MessageId{0, 342}, msg});
  const Frame f = split(answered);
  IdBytesValue v;
  ASSERT_TRUE(decode_reply<Op::kRequest>(f.payload, v));
  EXPECT_EQ(v.id, (MessageId{0, 342}));
  EXPECT_EQ(v.bytes, msg);
  const std::string early_bytes = rep<Op::kSendWait>(0, {MessageId{0, 9}, {}});
  const Frame early = split(early_bytes);
  ASSERT_TRUE(decode_reply<Op::kSendWait>(early.payload, v));
  EXPECT_TRUE(v.bytes.empty());
  EXPECT_FALSE(decode(early.payload.substr(0, 7), v));
}

// docs/protocol.md §4.3: BINDINGSPART/STATSPART carry a u64 position as two
// u32, low word first, in the request and in the reply.
TEST(OpsRoundTrip, ReportPartsCarryWhereTheNextPartStarts) {
  const std::string out = req<Op::kBindingsPart>({2, 0x0000000500000007ull, 65536});
  const Frame f = split(out);
  EXPECT_EQ(f.word, static_cast<std::uint32_t>(Op::kBindingsPart));
  EXPECT_EQ(f.payload, std::string("\x02\0\0\0\x07\0\0\0\x05\0\0\0\0\0\x01\0", 16));
  ReportPartArgs a;
  ASSERT_TRUE(decode_request<Op::kStatsPart>(f.payload, a));
  EXPECT_EQ(a.bus, 2u);
  EXPECT_EQ(a.pos, 0x0000000500000007ull);
  EXPECT_EQ(a.max_bytes, 65536u);

  const std::string text = "# header\n";
  const std::string r = rep<Op::kStatsPart>(static_cast<std::int32_t>(text.size()),
                                            {kReportDone, kReportFirst, text});
  const Frame g = split(r);
  ReportPartValue v;
  ASSERT_TRUE(decode_reply<Op::kStatsPart>(g.payload, v));
  EXPECT_EQ(v.next_bus, kReportDone);
  EXPECT_EQ(v.next_pos, kReportFirst);
  EXPECT_EQ(v.bytes, text);
  EXPECT_FALSE(decode(g.payload.substr(0, 11), v));  // shorter than where-next
}

// docs/protocol.md §2: a payload too short or too long for its op is refused
// (-EFAULT in the daemon), for every fixed-size shape.
template <typename T>
void expect_exact(const T& value) {
  std::string p;
  encode(p, value);
  T back;
  EXPECT_TRUE(decode(p, back));
  EXPECT_FALSE(decode(p + 'x', back)) << "one byte too long accepted";
  if (!p.empty()) {
    EXPECT_FALSE(decode(std::string_view(p).substr(0, p.size() - 1), back))
        << "one byte too short accepted";
  }
}

TEST(OpsBounds, FixedShapesRefuseWrongSizes) {
  expect_exact(NoArgs{});
  expect_exact(U32Arg{3});
  expect_exact(BindArgs{1, "$.Fred"});
  expect_exact(NameArg{"$.Fred"});
  expect_exact(HelloArgs{1, 3, 88});
  expect_exact(ReadBatchArgs{1, 0, 0});
  expect_exact(ReportPartArgs{0, kReportFirst, 1});
  expect_exact(Empty{});
  expect_exact(U32Value{9});
  expect_exact(IdValue{MessageId{1, 2}});
  expect_exact(HelloValue{4, 5});
}

TEST(OpsBounds, NameLengthMustMatch) {
  BindArgs b;
  std::string p;
  put_u32(p, 0);
  put_u32(p, 100);  // says 100 bytes of name, has 6
  p += "$.Fred";
  EXPECT_FALSE(decode(p, b));
}

TEST(FrameBudget, OneRuleForDaemonAndClients) {  // docs/protocol.md §2
  EXPECT_EQ(kMinFrameBudget, 1124u);
  EXPECT_EQ(frame_budget(1u << 19), (1u << 19) + 1024u);
  EXPECT_EQ(max_abs_msg_size_for_frame(kMaxFrameLen), kMaxFrameLen - 1024u);
  EXPECT_EQ(frame_budget(max_abs_msg_size_for_frame(4096)), 4096u);
}

}  // namespace
}  // namespace kbus::protocol
