// Raw write and read (KBUS-SPEC.md §3.4, §4.2, §4.3): WRITE, READ, NEXTMSG,
// LENLEFT, DISCARD, the pointy and entire forms, and header checks.
#include <cstring>

#include "integration/fixture.hpp"

namespace kbus::test {
namespace {

using ReadWriteTest = KbusTest;

constexpr std::uint32_t H = kNativeHeaderLen;

// Header field offsets (KBUS-SPEC.md §3.1).
constexpr std::size_t kOffStartGuard = 0;
constexpr std::size_t kOffFlags = 48;
constexpr std::size_t kOffNameLen = 52;
constexpr std::size_t kOffDataLen = 56;
constexpr std::size_t kOffNamePtr = H == 88 ? 64 : 60;
constexpr std::size_t kOffDataPtr = H == 88 ? 72 : 64;
constexpr std::size_t kOffEndGuard = H == 88 ? 80 : 68;

void put(std::string& s, std::size_t at, std::uint32_t v) { std::memcpy(s.data() + at, &v, 4); }

std::string entire(const Message& m) { return encode_entire(m, H); }
std::string header_of(const Message& m) { return entire(m).substr(0, H); }

TEST_F(ReadWriteTest, EntireMessageWrittenAndReadInPieces) {
  Ksock s = open(0);
  Ksock l = open(0);
  l.bind("$.Fred");
  Message m = make_announcement("$.Fred", "dada");
  std::string bytes = entire(m);
  ASSERT_EQ(bytes.size(), entire_len(H, 6, 4));
  // One byte per write.
  for (char c : bytes) ASSERT_EQ(s.write_data(std::string_view(&c, 1)), 1u);
  MessageId id = s.send();
  EXPECT_EQ(id, (MessageId{0, 1}));

  EXPECT_EQ(l.len_left(), 0u);
  EXPECT_EQ(l.read_data(100), "");  // no current message: EOF
  std::uint32_t len = l.next_msg();
  EXPECT_EQ(len, entire_len(H, 6, 4));
  EXPECT_EQ(l.num_messages(), 0u);  // the current message is not counted
  EXPECT_EQ(l.len_left(), len);
  std::string got;
  std::uint32_t chunk = 1;
  while (got.size() < len) {
    std::string part = l.read_data(chunk);
    ASSERT_FALSE(part.empty());
    got += part;
    EXPECT_EQ(l.len_left(), len - got.size()) << "at " << got.size();
    chunk = chunk % 13 + 3;
  }
  EXPECT_EQ(l.read_data(100), "");
  EXPECT_EQ(l.len_left(), 0u);
  Message expect = m;
  expect.hdr.id = id;
  expect.hdr.from = s.id();
  EXPECT_EQ(got, entire(expect));
  auto back = decode_entire(got, H);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, expect);
  EXPECT_EQ(l.next_msg(), 0u);
}

TEST_F(ReadWriteTest, NextMsgDiscardsAPartlyReadMessage) {
  Ksock s = open(0);
  Ksock l = open(0);
  l.bind("$.Fred");
  s.send_msg(make_announcement("$.Fred", "1"));
  s.send_msg(make_announcement("$.Fred", "2"));
  l.next_msg();
  EXPECT_EQ(l.read_data(10).size(), 10u);
  l.next_msg();
  auto m = decode_entire(l.read_data(l.len_left()), H);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->data, "2");
}

TEST_F(ReadWriteTest, PointyMessagesCarryNameAndDataAtSend) {
  Ksock s = open(0);
  Ksock l = open(0);
  l.bind("$.Fred");
  s.write_msg(make_announcement("$.Fred", "pointy data"), Form::pointy);
  MessageId id = s.send();
  Message got = next(l);
  EXPECT_EQ(got.hdr.id, id);
  EXPECT_EQ(got.name, "$.Fred");
  EXPECT_EQ(got.data, "pointy data");
  // Without data.
  s.write_msg(make_announcement("$.Fred"), Form::pointy);
  s.send();
  EXPECT_EQ(next(l).data, "");
}

TEST_F(ReadWriteTest, PointyNamesAreCheckedAtSendEntireNamesAtWrite) {
  Ksock s = open(0);
  // Pointy: the header is fine, the name fails at SEND.
  EXPECT_TRUE(s.try_write_msg(make_announcement("$.Fred.*"), Form::pointy).ok());
  EXPECT_EQ(err(s.try_send()), Errc::ebadmsg);
  EXPECT_TRUE(s.try_write_msg(make_announcement("Fred"), Form::pointy).ok());
  EXPECT_EQ(err(s.try_send()), Errc::ebadmsg);
  // Entire: the name fails as soon as its last byte is written.
  EXPECT_EQ(err(s.try_write_msg(make_announcement("$.Fred.*"), Form::entire)), Errc::ebadmsg);
  std::string bytes = entire(make_announcement("$.Fred.%", "xyz"));
  EXPECT_TRUE(s.try_write_data(bytes.substr(0, H + 7)).ok());
  EXPECT_EQ(err(s.try_write_data(bytes.substr(H + 7, 1))), Errc::ebadmsg);
  // Nothing was sent: no serial used.
  EXPECT_EQ(s.send_msg(make_announcement("$.Fred")), (MessageId{0, 1}));
}

TEST_F(ReadWriteTest, PointyHeaderErrorsAppearAtWrite) {
  Ksock s = open(0);
  Message big = make_announcement("$.Fred", std::string(2000, 'x'));
  EXPECT_EQ(err(s.try_write_msg(big, Form::pointy)), Errc::emsgsize);
  EXPECT_EQ(err(s.try_write_msg(make_announcement(""), Form::pointy)), Errc::einval);
  EXPECT_EQ(err(s.try_write_msg(make_announcement("$.a", "", flag::kAllOrWait | flag::kAllOrFail),
                                Form::pointy)),
            Errc::einval);
}

TEST_F(ReadWriteTest, HeaderChecks) {
  Ksock s = open(0);
  const std::string good = header_of(make_announcement("$.Fred", "data"));
  auto with = [&](std::size_t at, std::uint32_t v) {
    std::string h = good;
    put(h, at, v);
    return h;
  };
  EXPECT_EQ(err(s.try_write_data(with(kOffStartGuard, 0x12345678))), Errc::einval);
  EXPECT_EQ(err(s.try_write_data(with(kOffEndGuard, 0))), Errc::einval);
  EXPECT_EQ(err(s.try_write_data(with(kOffNameLen, 0))), Errc::einval);
  EXPECT_EQ(err(s.try_write_data(with(kOffNameLen, 1001))), Errc::enametoolong);
  EXPECT_EQ(err(s.try_write_data(with(kOffFlags, flag::kAllOrWait | flag::kAllOrFail))),
            Errc::einval);
  EXPECT_EQ(err(s.try_write_data(with(kOffDataLen, 5000))), Errc::emsgsize);
  // Pointer consistency (§3.4): name NULL with data non-NULL ...
  EXPECT_EQ(err(s.try_write_data(with(kOffDataPtr, 0x1000))), Errc::einval);
  // ... name non-NULL, data NULL and data_len != 0 ...
  EXPECT_EQ(err(s.try_write_data(with(kOffNamePtr, 0x1000))), Errc::einval);
  // ... data_len == 0 and data non-NULL.
  std::string h = with(kOffNamePtr, 0x1000);
  put(h, kOffDataPtr, 0x2000);
  put(h, kOffDataLen, 0);
  EXPECT_EQ(err(s.try_write_data(h)), Errc::einval);

  // A bad final guard.
  std::string bytes = entire(make_announcement("$.Fred", "data"));
  put(bytes, bytes.size() - 4, 0);
  EXPECT_EQ(err(s.try_write_data(bytes)), Errc::einval);
  // After each error the next write starts afresh.
  EXPECT_TRUE(s.try_write_data(entire(make_announcement("$.Fred", "data"))).ok());
  EXPECT_TRUE(s.try_send().ok());
}

TEST_F(ReadWriteTest, WritingPastTheEndIsEMSGSIZE) {
  Ksock s = open(0);
  std::string bytes = entire(make_announcement("$.Fred"));
  EXPECT_EQ(err(s.try_write_data(bytes + bytes)), Errc::emsgsize);
  EXPECT_TRUE(s.try_write_data(bytes).ok());
  EXPECT_EQ(err(s.try_write_data("x")), Errc::emsgsize);
}

TEST_F(ReadWriteTest, IncompleteAndEmptyMessagesAreEINVALAtSend) {
  Ksock s = open(0);
  std::string bytes = entire(make_announcement("$.Fred"));
  EXPECT_EQ(s.write_data(bytes.substr(0, 10)), 10u);
  EXPECT_EQ(err(s.try_send()), Errc::einval);
  EXPECT_EQ(err(s.try_send()), Errc::enomsg);  // the partial message was discarded
  EXPECT_EQ(s.write_data(""), 0u);               // a zero-length write starts a message
  EXPECT_EQ(err(s.try_send()), Errc::einval);
  EXPECT_EQ(s.last_sent(), (MessageId{0, 0}));
}

TEST_F(ReadWriteTest, DiscardDropsTheMessageBeingWritten) {
  Ksock s = open(0);
  Ksock l = open(0);
  l.bind("$.Fred");
  s.write_msg(make_announcement("$.Fred"));
  s.discard();
  EXPECT_EQ(err(s.try_send()), Errc::enomsg);
  s.write_msg(make_announcement("$.Fred"), Form::pointy);
  s.discard();
  EXPECT_EQ(err(s.try_send()), Errc::enomsg);
  s.discard();  // nothing to discard: still fine
  EXPECT_EQ(l.num_messages(), 0u);
}

TEST_F(ReadWriteTest, WriteThenSendEqualsSendMsg) {
  Ksock s = open(0);
  Ksock l = open(0);
  l.bind("$.Fred");
  Message m = make_request("$.Fred", "abc");
  l.bind("$.Fred", true);
  s.write_msg(m);
  MessageId a = s.send();
  MessageId b = s.send_msg(m);
  EXPECT_EQ(b.serial_num, a.serial_num + 1);
  Message ra = next(l);
  Message la = next(l);
  EXPECT_EQ(ra.hdr.id, a);
  EXPECT_EQ(la.hdr.id, a);
  EXPECT_EQ(next(l).hdr.id, b);
}

TEST_F(ReadWriteTest, ReadNextMsgReturnsNothingOnAnEmptyQueue) {
  Ksock k = open(0);
  EXPECT_EQ(k.read_next_msg(), std::nullopt);
  EXPECT_EQ(k.num_messages(), 0u);
}

}  // namespace
}  // namespace kbus::test
