// cppkbus/cppkbus_test.cpp - every class of cppkbus (KBUS-SPEC.md §12.3)
// and its error paths; the Ksock and Device tests run against a real kbusd
// (a TestDaemon per test, $KBUS_DIR pointing at it, so that "/dev/kbusN" is
// its bus N). Waits are bounded and driven by the bus (WaitForMessage on a
// message queued), never by sleeping.
#include "cppkbus/cppkbus.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <stdlib.h>

#include <climits>
#include <cstring>
#include <iterator>
#include <sstream>
#include <string>
#include <type_traits>

#include "kbus/errors.hpp"
#include "support/test_daemon.hpp"

namespace {

using cppkbus::Device;
using cppkbus::Ksock;
using cppkbus::Message;
using cppkbus::MessageId;
using cppkbus::OrigFrom;
namespace Error = cppkbus::Error;
namespace MessageFlags = cppkbus::MessageFlags;
namespace PollFlags = cppkbus::PollFlags;

template <class T>
std::string streamed(const T& v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

std::string name_of(const Message& m) {
  std::string n;
  EXPECT_EQ(m.GetName(n), 0);
  return n;
}

std::string data_of(const Message& m) {
  const int len = m.GetDataLength();
  if (len <= 0) return {};
  return std::string(reinterpret_cast<const char*>(m.GetData()), static_cast<std::size_t>(len));
}

// A message as the 11-argument constructor builds it.
struct Fields {
  uint32_t flags = 0;
  MessageId id;
  MessageId in_reply_to;
  uint32_t to = 0;
  uint32_t from = 0;
  OrigFrom orig_from;
  OrigFrom final_to;
};

// ---- no daemon needed ----

TEST(CppkbusConstants, AreTheNamesOfKbusMessages) {  // §6.3
  const cppkbus::Constants& k = cppkbus::Constants::Get();
  EXPECT_EQ(&k, &cppkbus::Constants::Get());  // a singleton
  EXPECT_EQ(k.kMessageNameReplierGone, "$.KBUS.Replier.GoneAway");
  EXPECT_EQ(k.kMessageNameReplierIgnored, "$.KBUS.Replier.Ignored");
  EXPECT_EQ(k.kMessageNameReplierUnbound, "$.KBUS.Replier.Unbound");
  EXPECT_EQ(k.kMessageNameReplierDisappeared, "$.KBUS.Replier.Disappeared");
  EXPECT_EQ(k.kMessageNameErrorSending, "$.KBUS.ErrorSending");
  EXPECT_EQ(k.kMessageNameUnbindEventsLost, "$.KBUS.UnbindEventsLost");
  EXPECT_EQ(k.kMessageNameReplierBindEvent, "$.KBUS.ReplierBindEvent");
}

TEST(CppkbusError, CodesHaveTheOriginalValues) {  // §12.3
  EXPECT_EQ(Error::MessageIsEmpty, -(INT_MAX - 1));
  EXPECT_EQ(Error::MessageIsNotEmpty, -(INT_MAX - 2));
  EXPECT_EQ(Error::MessageHasNoId, -(INT_MAX - 3));
  EXPECT_EQ(Error::DeviceHasNoName, -(INT_MAX - 4));
  EXPECT_EQ(Error::DeviceModeUnset, -(INT_MAX - 5));
  EXPECT_EQ(Error::InvalidArguments, -(INT_MAX - 6));
  EXPECT_EQ(Error::MessageNotInitialized, -(INT_MAX - 7));
  EXPECT_EQ(Error::MessageNotInitialised, Error::MessageNotInitialized);
  const std::pair<int, int> errnos[] = {
      {Error::MessageEADDRINUSE, EADDRINUSE},
      {Error::MessageEADDRNOTAVAIL, EADDRNOTAVAIL},
      {Error::MessageEALREADY, EALREADY},
      {Error::MessageEBADMSG, EBADMSG},
      {Error::MessageEBUSY, EBUSY},
      {Error::MessageECONNREFUSED, ECONNREFUSED},
      {Error::MessageEINVAL, EINVAL},
      {Error::MessageEMSGSIZE, EMSGSIZE},
      {Error::MessageENAMETOOLONG, ENAMETOOLONG},
      {Error::MessageENOENT, ENOENT},
      {Error::MessageENOLCK, ENOLCK},
      {Error::MessageENOMSG, ENOMSG},
      {Error::MessageEPIPE, EPIPE},
      {Error::MessageEFAULT, EFAULT},
      {Error::MessageENOMEM, ENOMEM},
      {Error::MessageEAGAIN, EAGAIN},
  };
  for (const auto& [code, err] : errnos) {
    EXPECT_EQ(code, -err);
    // Every KBUS errno is named and explained (§13.5).
    const std::string text = Error::ToString(code);
    EXPECT_EQ(text.rfind(kbus::errno_name(err) + " (", 0), 0u) << text;
    EXPECT_NE(text.find("): "), std::string::npos) << text;
  }
}

TEST(CppkbusError, ToStringNamesEveryCode) {
  const Error::Enum own[] = {Error::MessageIsEmpty,       Error::MessageIsNotEmpty,
                             Error::MessageHasNoId,       Error::DeviceHasNoName,
                             Error::DeviceModeUnset,      Error::InvalidArguments,
                             Error::MessageNotInitialized};
  const char* names[] = {
      "MessageIsEmpty:",  "MessageIsNotEmpty:", "MessageHasNoId:",       "DeviceHasNoName:",
      "DeviceModeUnset:", "InvalidArguments:",  "MessageNotInitialized:"};
  for (std::size_t i = 0; i < std::size(own); ++i) {
    EXPECT_EQ(Error::ToString(own[i]).rfind(names[i], 0), 0u) << Error::ToString(own[i]);
    EXPECT_EQ(streamed(own[i]), Error::ToString(own[i]));
  }
  EXPECT_EQ(Error::ToString(0), "Success");
  EXPECT_EQ(Error::ToString(-EPIPE).rfind("EPIPE (Broken pipe): ", 0), 0u);
  // An errno with no KBUS meaning: named, not explained.
  EXPECT_EQ(Error::ToString(-EBADF), "EBADF (Bad file descriptor)");
  // kbusd going away is explained (kbus's own, ECONNRESET).
  EXPECT_EQ(Error::ToString(-ECONNRESET).rfind("ECONNRESET (Connection reset by peer): kbusd went away", 0),
            0u);
  EXPECT_EQ(Error::ToString(12345), "Unknown error 12345");
  EXPECT_EQ(Error::ToString(-4000), "Unknown error -4000");
  EXPECT_EQ(Error::ToString(-(INT_MAX - 8)), "Unknown error " + std::to_string(-(INT_MAX - 8)));
}

TEST(CppkbusFlags, MessageFlagsAreTheKbusBits) {  // §3.3
  EXPECT_EQ(MessageFlags::WantReply, 0x1);
  EXPECT_EQ(MessageFlags::WantYouToReply, 0x2);
  EXPECT_EQ(MessageFlags::Synthetic, 0x4);
  EXPECT_EQ(MessageFlags::Urgent, 0x8);
  EXPECT_EQ(MessageFlags::AllOrWait, 0x100);
  EXPECT_EQ(MessageFlags::AllOrFail, 0x200);
  EXPECT_EQ(MessageFlags::ToString(0), "");
  EXPECT_EQ(MessageFlags::ToString(0x1), "REQ");
  EXPECT_EQ(MessageFlags::ToString(0x204), "SYN|aFL");
  EXPECT_EQ(MessageFlags::ToString(0x30F), "REQ|YOU|SYN|URG|aWT|aFL");
  // Reserved and user bits have no mnemonic.
  EXPECT_EQ(MessageFlags::ToString(0xFFFF0000u | 0x10 | 0x8), "URG");
}

TEST(CppkbusFlags, PollFlags) {
  EXPECT_EQ(PollFlags::Receive, 1);
  EXPECT_EQ(PollFlags::Transmit, 2);
  EXPECT_EQ(PollFlags::Error, 4);
  EXPECT_EQ(PollFlags::ToString(0), "");
  EXPECT_EQ(PollFlags::ToString(1), "Receive");
  EXPECT_EQ(PollFlags::ToString(6), "Transmit|Error");
  EXPECT_EQ(PollFlags::ToString(7), "Receive|Transmit|Error");
}

TEST(CppkbusNoCopy, MessagesAndKsocksCannotBeCopied) {
  static_assert(!std::is_copy_constructible_v<Message>);
  static_assert(!std::is_copy_assignable_v<Message>);
  static_assert(!std::is_copy_constructible_v<Ksock>);
  static_assert(!std::is_copy_assignable_v<Ksock>);
  static_assert(std::is_base_of_v<cppkbus::NoCopy, Message>);
  static_assert(std::is_base_of_v<cppkbus::NoCopy, Ksock>);
  // A Device is a value.
  Device d(2, std::ios::in);
  Device copy = d;
  EXPECT_EQ(copy.ToString(), "<Device 2, \"/dev/kbus2\" open for read>");
}

TEST(CppkbusIds, MessageIdComparesAndPrints) {  // §1.5
  MessageId zero;
  EXPECT_EQ(zero.mNetworkId, 0u);
  EXPECT_EQ(zero.mSerialNum, 0u);
  MessageId a(0, 5), b(0, 6), c(1, 0);
  EXPECT_EQ(a.compare(a), 0);
  EXPECT_EQ(a.compare(b), -1);
  EXPECT_EQ(b.compare(a), 1);
  EXPECT_EQ(b.compare(c), -1);  // network id first
  EXPECT_TRUE(a == MessageId(0, 5));
  EXPECT_FALSE(a == b);
  EXPECT_TRUE(a != b);
  EXPECT_TRUE(a < b && b < c && !(b < a));
  EXPECT_TRUE(c > b && !(a > b));
  EXPECT_EQ(MessageId(3, 4000000000u).ToString(), "[3,4000000000]");
  EXPECT_EQ(streamed(a), "[0,5]");
  kbus_msg_id_t raw = {7, 8};
  EXPECT_EQ(MessageId(raw), MessageId(7, 8));
}

TEST(CppkbusIds, OrigFromComparesAndPrints) {
  OrigFrom zero;
  EXPECT_EQ(zero.mNetworkId, 0u);
  EXPECT_EQ(zero.mLocalId, 0u);
  OrigFrom a(1, 9), b(2, 1);
  EXPECT_EQ(a.compare(b), -1);
  EXPECT_EQ(b.compare(a), 1);
  EXPECT_EQ(a.compare(OrigFrom(1, 9)), 0);
  EXPECT_TRUE(a < b && b > a && a != b && a == OrigFrom(1, 9));
  EXPECT_EQ(a.ToString(), "[1,9]");
  EXPECT_EQ(streamed(b), "[2,1]");
}

TEST(CppkbusMessage, EmptyMessageGettersFail) {  // §12.3: each −1 if empty
  Message m;
  EXPECT_TRUE(m.IsEmpty());
  EXPECT_FALSE(m.IsEntire());
  EXPECT_EQ(m.GetData(), nullptr);
  EXPECT_EQ(m.GetDataLength(), -1);
  std::string name = "unchanged";
  EXPECT_EQ(m.GetName(name), -1);
  EXPECT_EQ(name, "unchanged");
  uint32_t u = 77;
  EXPECT_EQ(m.GetFlags(u), -1);
  EXPECT_EQ(m.SetFlags(1), -1);
  EXPECT_EQ(m.GetTo(u), -1);
  EXPECT_EQ(m.GetFrom(u), -1);
  EXPECT_EQ(u, 77u);
  MessageId id;
  EXPECT_EQ(m.GetMessageId(id), -1);
  EXPECT_EQ(m.GetInReplyTo(id), -1);
  OrigFrom o;
  EXPECT_EQ(m.GetOrigFrom(o), -1);
  EXPECT_EQ(m.GetFinalTo(o), -1);
  EXPECT_FALSE(m.IsRequest());
  EXPECT_FALSE(m.WantsUsToReply());
  EXPECT_FALSE(m.IsStatefulRequest());
  EXPECT_FALSE(m.IsReply());
  EXPECT_FALSE(m.IsReplierBindEvent());
  bool is_bind = false;
  uint32_t binder = 0;
  EXPECT_EQ(m.GetReplierBindEventData(is_bind, binder, name), -1);
  EXPECT_EQ(m.ToString(), "<EmptyMessage>");
  EXPECT_EQ(streamed(m), "<EmptyMessage>");
}

TEST(CppkbusMessage, Constructors) {
  Message by_string(std::string("$.Fred"));
  EXPECT_FALSE(by_string.IsEmpty());
  EXPECT_TRUE(by_string.IsEntire());
  EXPECT_EQ(name_of(by_string), "$.Fred");
  EXPECT_EQ(by_string.GetDataLength(), 0);
  EXPECT_EQ(by_string.GetData(), nullptr);
  uint32_t flags = 99;
  EXPECT_EQ(by_string.GetFlags(flags), 0);
  EXPECT_EQ(flags, 0u);
  EXPECT_FALSE(by_string.IsRequest());

  Message by_chars("$.Jim");
  EXPECT_EQ(name_of(by_chars), "$.Jim");

  Message request("$.Fred", true);
  EXPECT_TRUE(request.IsRequest());
  EXPECT_FALSE(request.IsStatefulRequest());
  Message not_request("$.Fred", false);
  EXPECT_FALSE(not_request.IsRequest());

  // Data is copied by default...
  char data[] = "abc";
  Message copied("$.Fred", data, 3, MessageFlags::Urgent);
  data[0] = 'X';
  EXPECT_TRUE(copied.IsEntire());
  EXPECT_EQ(data_of(copied), "abc");
  EXPECT_EQ(copied.GetFlags(flags), 0);
  EXPECT_EQ(flags, static_cast<uint32_t>(MessageFlags::Urgent));
  // ... or referred to (a pointy message, §3.4).
  Message referring("$.Fred", data, 3, 0, false, true);
  EXPECT_FALSE(referring.IsEntire());
  EXPECT_EQ(referring.GetData(), reinterpret_cast<const uint8_t*>(data));
  EXPECT_TRUE(referring.IsRequest());
  EXPECT_EQ(name_of(referring), "$.Fred");

  // Every header field.
  const MessageId id(1, 2), in_reply_to(3, 4);
  const OrigFrom orig(5, 6), final_to(7, 8);
  Message full("$.Fred", 0x30001, &id, &in_reply_to, 9, 10, &orig, &final_to, "xyz", 3, true);
  MessageId got_id;
  OrigFrom got_of;
  uint32_t u = 0;
  EXPECT_EQ(full.GetMessageId(got_id), 0);
  EXPECT_EQ(got_id, id);
  EXPECT_EQ(full.GetInReplyTo(got_id), 0);
  EXPECT_EQ(got_id, in_reply_to);
  EXPECT_EQ(full.GetTo(u), 0);
  EXPECT_EQ(u, 9u);
  EXPECT_EQ(full.GetFrom(u), 0);
  EXPECT_EQ(u, 10u);
  EXPECT_EQ(full.GetOrigFrom(got_of), 0);
  EXPECT_EQ(got_of, orig);
  EXPECT_EQ(full.GetFinalTo(got_of), 0);
  EXPECT_EQ(got_of, final_to);
  EXPECT_EQ(full.GetFlags(u), 0);
  EXPECT_EQ(u, 0x30001u);
  EXPECT_EQ(data_of(full), "xyz");
  EXPECT_TRUE(full.IsReply());
  EXPECT_TRUE(full.IsStatefulRequest());
  // NULL pointers mean zero.
  Message zeros("$.Fred", 0, nullptr, nullptr, 0, 0, nullptr, nullptr, nullptr, 0, false);
  EXPECT_EQ(zeros.GetMessageId(got_id), 0);
  EXPECT_EQ(got_id, MessageId());
  EXPECT_EQ(zeros.GetFinalTo(got_of), 0);
  EXPECT_EQ(got_of, OrigFrom());
  EXPECT_FALSE(zeros.IsEntire());

  EXPECT_EQ(full.SetFlags(MessageFlags::Urgent), 0);
  EXPECT_EQ(full.GetFlags(u), 0);
  EXPECT_EQ(u, static_cast<uint32_t>(MessageFlags::Urgent));
}

TEST(CppkbusMessage, FailedConstructionLeavesItEmpty) {
  // data NULL with a length: the message cannot be built.
  Message bad("$.Fred", nullptr, 5, 0);
  EXPECT_TRUE(bad.IsEmpty());
  EXPECT_EQ(bad.GetDataLength(), -1);
  const char* no_name = nullptr;
  Message unnamed(no_name);
  EXPECT_TRUE(unnamed.IsEmpty());
}

TEST(CppkbusMessage, ToStringShowsKindAndFields) {  // §12.3
  const MessageId id(0, 5);
  Message request("$.Fred", MessageFlags::WantReply, &id, nullptr, 0, 3, nullptr, nullptr, "abc", 3,
                  true);
  EXPECT_EQ(request.ToString(), "<Request \"$.Fred\" id=[0,5] from=3 flags=1 REQ data=\"abc\">");
  EXPECT_EQ(streamed(request), request.ToString());

  EXPECT_EQ(Message("$.Fred").ToString(), "<Message \"$.Fred\">");

  const MessageId in_reply_to(0, 4);
  const OrigFrom orig(1, 2), final_to(3, 4);
  Message reply("$.Fred", 0x10000, &id, &in_reply_to, 7, 8, &orig, &final_to, nullptr, 0, true);
  EXPECT_EQ(reply.ToString(),
            "<Reply \"$.Fred\" id=[0,5] to=7 from=8 orig_from=[1,2] final_to=[3,4] "
            "in_reply_to=[0,4] flags=10000>");

  Message status("$.KBUS.Replier.GoneAway", MessageFlags::Synthetic, &id, &in_reply_to, 7, 8,
                 nullptr, nullptr, nullptr, 0, true);
  EXPECT_EQ(status.ToString(),
            "<Status \"$.KBUS.Replier.GoneAway\" id=[0,5] to=7 from=8 in_reply_to=[0,4] "
            "flags=4 SYN>");

  // Data that is not printable is escaped; long data is cut at 64 bytes.
  Message odd("$.Odd", "a\"b\\c\n\x01\xff", 8, 0);
  EXPECT_EQ(odd.ToString(), "<Message \"$.Odd\" data=\"a\\\"b\\\\c\\x0a\\x01\\xff\">");
  const std::string long_data(100, 'z');
  Message big("$.Big", long_data.data(), long_data.size(), 0);
  EXPECT_EQ(big.ToString(), "<Message \"$.Big\" data=\"" + std::string(64, 'z') + "\"...>");

  // A bind event (§3.6): the name is omitted, the data split.
  unsigned char event[20] = {};
  const uint32_t words[3] = {1, 3, 6};
  std::memcpy(event, words, sizeof words);
  std::memcpy(event + 12, "$.Fred", 6);
  const MessageId eid(0, 7);
  Message bind_event("$.KBUS.ReplierBindEvent", 0x204, &eid, nullptr, 0, 0, nullptr, nullptr, event,
                     sizeof event, true);
  EXPECT_TRUE(bind_event.IsReplierBindEvent());
  EXPECT_EQ(bind_event.ToString(),
            "<ReplierBindEvent id=[0,7] flags=204 SYN|aFL [Bind \"$.Fred\" for 3]>");
  bool is_bind = false;
  uint32_t binder = 0;
  std::string name;
  EXPECT_EQ(bind_event.GetReplierBindEventData(is_bind, binder, name), 0);
  EXPECT_TRUE(is_bind);
  EXPECT_EQ(binder, 3u);
  EXPECT_EQ(name, "$.Fred");
}

TEST(CppkbusMessage, ReplierBindEventDataMustBeWellFormed) {
  bool is_bind = true;
  uint32_t binder = 0;
  std::string name;
  // Too short to hold the three words.
  Message short_event("$.KBUS.ReplierBindEvent", "12345678", 8, 0);
  EXPECT_TRUE(short_event.IsReplierBindEvent());
  EXPECT_EQ(short_event.GetReplierBindEventData(is_bind, binder, name), -1);
  // A name longer than the data.
  unsigned char event[16] = {};
  const uint32_t words[3] = {0, 3, 50};
  std::memcpy(event, words, sizeof words);
  Message overlong("$.KBUS.ReplierBindEvent", event, sizeof event, 0);
  EXPECT_EQ(overlong.GetReplierBindEventData(is_bind, binder, name), -1);
  // Not a bind event at all; and a Reply of that name is not one either.
  Message other("$.Fred", event, sizeof event, 0);
  EXPECT_FALSE(other.IsReplierBindEvent());
  EXPECT_EQ(other.GetReplierBindEventData(is_bind, binder, name), -1);
  const MessageId irt(0, 1);
  Message reply("$.KBUS.ReplierBindEvent", 0, nullptr, &irt, 0, 0, nullptr, nullptr, event,
                sizeof event, true);
  EXPECT_FALSE(reply.IsReplierBindEvent());
}

TEST(CppkbusMessage, BecomesReplyTo) {  // §12.3, §11.5 reply_to
  const MessageId id(0, 9);
  const OrigFrom orig(4, 4);
  Message request("$.Question", MessageFlags::WantReply | MessageFlags::WantYouToReply, &id,
                  nullptr, 0, 6, &orig, nullptr, "q", 1, true);
  Message reply("$.Ignored", "answer", 6, MessageFlags::Urgent);
  ASSERT_EQ(reply.BecomesReplyTo(request), 0);
  EXPECT_EQ(name_of(reply), "$.Question");
  EXPECT_EQ(data_of(reply), "answer");
  uint32_t u = 0;
  EXPECT_EQ(reply.GetTo(u), 0);
  EXPECT_EQ(u, 6u);
  MessageId irt;
  EXPECT_EQ(reply.GetInReplyTo(irt), 0);
  EXPECT_EQ(irt, id);
  EXPECT_EQ(reply.GetFlags(u), 0);
  EXPECT_EQ(u, static_cast<uint32_t>(MessageFlags::Urgent));
  EXPECT_EQ(reply.ToString(),
            "<Reply \"$.Question\" to=6 in_reply_to=[0,9] flags=8 URG data=\"answer\">");

  // An empty message becomes a Reply with no data; a pointy one stays pointy.
  Message empty;
  EXPECT_EQ(empty.BecomesReplyTo(request), 0);
  EXPECT_EQ(empty.GetDataLength(), 0);
  EXPECT_TRUE(empty.IsReply());
  char data[] = "pp";
  Message pointy("$.X", data, 2, 0, false);
  EXPECT_EQ(pointy.BecomesReplyTo(request), 0);
  EXPECT_FALSE(pointy.IsEntire());
  EXPECT_EQ(pointy.GetData(), reinterpret_cast<const uint8_t*>(data));
  EXPECT_EQ(name_of(pointy), "$.Question");

  // Only a Request we are to answer: else -EBADMSG, the message unchanged.
  Message target("$.Target", "t", 1, 0);
  Message announcement("$.Question");
  Message listened("$.Question", MessageFlags::WantReply, &id, nullptr, 0, 6, nullptr, nullptr,
                   nullptr, 0, true);
  Message nothing;
  EXPECT_EQ(target.BecomesReplyTo(announcement), -EBADMSG);
  EXPECT_EQ(target.BecomesReplyTo(listened), -EBADMSG);
  EXPECT_EQ(target.BecomesReplyTo(nothing), -EBADMSG);
  EXPECT_EQ(name_of(target), "$.Target");
  EXPECT_FALSE(target.IsReply());
  // A request that was never sent has no id to reply to.
  Message unsent("$.Question", MessageFlags::WantReply | MessageFlags::WantYouToReply, nullptr,
                 nullptr, 0, 6, nullptr, nullptr, nullptr, 0, true);
  EXPECT_EQ(target.BecomesReplyTo(unsent), Error::MessageHasNoId);
}

TEST(CppkbusMessage, BecomesStatefulRequest) {  // §12.3, §11.5 stateful_request
  const MessageId id(0, 3), irt(0, 2);
  const OrigFrom orig(5, 6), final_to(7, 8);
  Message reply("$.Answer", 0, &id, &irt, 1, 4, &orig, nullptr, nullptr, 0, true);
  Message next("$.Next", "d", 1, MessageFlags::Urgent);
  ASSERT_EQ(next.BecomesStatefulRequest(reply), 0);
  uint32_t u = 0;
  EXPECT_EQ(next.GetTo(u), 0);
  EXPECT_EQ(u, 4u);  // the replier
  OrigFrom of;
  EXPECT_EQ(next.GetFinalTo(of), 0);
  EXPECT_EQ(of, orig);
  EXPECT_TRUE(next.IsStatefulRequest());  // WantReply is set too
  EXPECT_EQ(next.GetFlags(u), 0);
  EXPECT_EQ(u, static_cast<uint32_t>(MessageFlags::Urgent | MessageFlags::WantReply));
  EXPECT_EQ(name_of(next), "$.Next");
  EXPECT_EQ(data_of(next), "d");

  // From a previous Stateful Request: its to and final_to.
  Message earlier("$.Earlier", MessageFlags::WantReply, nullptr, nullptr, 9, 0, nullptr, &final_to,
                  nullptr, 0, true);
  Message third("$.Third");
  ASSERT_EQ(third.BecomesStatefulRequest(earlier), 0);
  EXPECT_EQ(third.GetTo(u), 0);
  EXPECT_EQ(u, 9u);
  EXPECT_EQ(third.GetFinalTo(of), 0);
  EXPECT_EQ(of, final_to);

  // Anything else: -EBADMSG.
  Message plain_request("$.Req", true);
  Message announcement("$.Ann");
  Message empty;
  Message target("$.Target");
  EXPECT_EQ(target.BecomesStatefulRequest(plain_request), -EBADMSG);
  EXPECT_EQ(target.BecomesStatefulRequest(announcement), -EBADMSG);
  EXPECT_EQ(target.BecomesStatefulRequest(empty), -EBADMSG);
  EXPECT_FALSE(target.IsRequest());
  // An empty message has no name to keep.
  EXPECT_EQ(empty.BecomesStatefulRequest(reply), Error::MessageIsEmpty);
}

// ---- against kbusd ----

class CppkbusBus : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(::setenv("KBUS_DIR", daemon_.dir().c_str(), 1), 0); }
  void TearDown() override { EXPECT_EQ(daemon_.stop(), 0); }

  // Opens a Ksock on bus `n`, asserting success.
  static void open(Ksock& k) { ASSERT_EQ(k.Open(), 0) << k.ToString(); }

  kbus::test::TestDaemon daemon_{3};
};

TEST_F(CppkbusBus, DeviceDescribesABus) {
  Device d0(0);
  EXPECT_EQ(d0.GetDeviceNumber(), 0);
  std::string name;
  EXPECT_EQ(d0.GetDeviceName(name), 0);
  EXPECT_EQ(name, "/dev/kbus0");
  std::ios_base::openmode mode = std::ios::app;
  EXPECT_EQ(d0.GetDeviceMode(mode), 0);
  EXPECT_EQ(mode, std::ios::in | std::ios::out);
  EXPECT_EQ(d0.ToString(), "<Device 0, \"/dev/kbus0\" open for read/write>");
  EXPECT_EQ(streamed(d0), d0.ToString());
  EXPECT_TRUE(d0.IsOpen());

  Device by_name("/dev/kbus2", std::ios::out);
  EXPECT_EQ(by_name.GetDeviceNumber(), -1);
  EXPECT_EQ(by_name.GetDeviceName(name), 0);
  EXPECT_EQ(name, "/dev/kbus2");
  EXPECT_EQ(by_name.ToString(), "<Device \"/dev/kbus2\" open for write>");
  EXPECT_TRUE(by_name.IsOpen());
  EXPECT_EQ(Device(std::string("/dev/kbus1"), std::ios::in).ToString(),
            "<Device \"/dev/kbus1\" open for read>");

  // §1.2-1: no such bus.
  EXPECT_FALSE(Device(7).IsOpen());
  EXPECT_FALSE(Device(-1).IsOpen());
  EXPECT_FALSE(Device("/dev/kbus9").IsOpen());
  EXPECT_FALSE(Device("/dev/fred").IsOpen());
  bool b = false;
  uint32_t n = 0;
  EXPECT_EQ(Device(7).QueryKernelVerbose(b), -ENOENT);
  EXPECT_EQ(Device(7).AddNewDevice(n), -ENOENT);
  EXPECT_EQ(Device("/dev/kbus9").FindReplier(n, "$.Fred"), -ENOENT);
}

TEST_F(CppkbusBus, DeviceWithoutNameOrMode) {
  Device unnamed("");
  std::string name = "unchanged";
  EXPECT_EQ(unnamed.GetDeviceName(name), Error::DeviceHasNoName);
  EXPECT_EQ(name, "unchanged");
  EXPECT_FALSE(unnamed.IsOpen());
  bool b = false;
  EXPECT_EQ(unnamed.QueryKernelVerbose(b), Error::DeviceHasNoName);
  Ksock k(unnamed);
  EXPECT_EQ(k.Open(), Error::DeviceHasNoName);
  EXPECT_EQ(Ksock(static_cast<const char*>(nullptr)).Open(), Error::DeviceHasNoName);

  Device modeless(0, std::ios::binary);
  std::ios_base::openmode mode = std::ios::app;
  EXPECT_EQ(modeless.GetDeviceMode(mode), Error::DeviceModeUnset);
  EXPECT_EQ(mode, std::ios::app);
  EXPECT_EQ(modeless.ToString(), "<Device 0, \"/dev/kbus0\" with no mode>");
  EXPECT_FALSE(modeless.IsOpen());
  EXPECT_EQ(modeless.MakeKernelVerbose(), Error::DeviceModeUnset);
  Ksock k2(0, std::ios::binary);
  EXPECT_EQ(k2.Open(), Error::DeviceModeUnset);
  EXPECT_FALSE(k2.IsOpen());
}

TEST_F(CppkbusBus, DeviceOperations) {  // §4.6
  Device d(1);
  bool b = true;
  EXPECT_EQ(d.QueryKernelVerbose(b), 0);
  EXPECT_FALSE(b);
  EXPECT_EQ(d.MakeKernelVerbose(), 0);
  EXPECT_EQ(d.QueryKernelVerbose(b), 0);
  EXPECT_TRUE(b);
  EXPECT_EQ(d.MakeKernelVerbose(false), 0);
  EXPECT_EQ(d.QueryKernelVerbose(b), 0);
  EXPECT_FALSE(b);
  // Per bus (§1.1-3).
  EXPECT_EQ(d.MakeKernelVerbose(true), 0);
  EXPECT_EQ(Device(0).QueryKernelVerbose(b), 0);
  EXPECT_FALSE(b);

  EXPECT_EQ(d.ReportingReplierBinds(b), 0);
  EXPECT_FALSE(b);
  EXPECT_EQ(d.ReportReplierBinds(), 0);
  EXPECT_EQ(d.ReportingReplierBinds(b), 0);
  EXPECT_TRUE(b);
  EXPECT_EQ(d.ReportReplierBinds(false), 0);
  EXPECT_EQ(d.ReportingReplierBinds(b), 0);
  EXPECT_FALSE(b);

  uint32_t n = 0;
  EXPECT_EQ(d.AddNewDevice(n), 0);
  EXPECT_EQ(n, 3u);
  EXPECT_TRUE(Device(3).IsOpen());
  EXPECT_TRUE(Device("/dev/kbus3").IsOpen());

  // FindReplier: exact names only (§4.6 REPLIER).
  Ksock r(1);
  open(r);
  uint32_t rid = 0;
  ASSERT_EQ(r.GetId(rid), 0);
  ASSERT_EQ(r.Bind("$.Fred.*", true), 0);
  uint32_t found = 99;
  EXPECT_EQ(d.FindReplier(found, "$.Fred.*"), 1);
  EXPECT_EQ(found, rid);
  EXPECT_EQ(d.FindReplier(found, "$.Fred.Jim"), 0);
  EXPECT_EQ(found, 0u);
  EXPECT_EQ(d.FindReplier(found, ""), -ENAMETOOLONG);
  EXPECT_EQ(d.FindReplier(found, std::string(1001, 'a')), -ENAMETOOLONG);
}

// Turning reporting on also reports every existing replier binding to the
// caller (§4.6); the Device's short-lived Ksock overflows (EBUSY) with more
// than 100, but reporting is on, which is what ReportReplierBinds is for.
TEST_F(CppkbusBus, ReportReplierBindsWithManyRepliers) {
  Ksock r(0);
  open(r);
  for (int i = 0; i < 101; ++i) ASSERT_EQ(r.Bind("$.R" + std::to_string(i), true), 0);
  Device d(0);
  EXPECT_EQ(d.ReportReplierBinds(true), 0);
  bool b = false;
  EXPECT_EQ(d.ReportingReplierBinds(b), 0);
  EXPECT_TRUE(b);
}

TEST_F(CppkbusBus, KsockOpenAndClose) {
  Ksock k(0);
  EXPECT_FALSE(k.IsOpen());
  EXPECT_EQ(k.ToString(), "<Ksock (closed) on device 0, \"/dev/kbus0\">");
  int fd = 0;
  EXPECT_EQ(k.GetFd(fd), -EBADF);
  uint32_t id = 0;
  EXPECT_EQ(k.GetId(id), -EBADF);
  EXPECT_EQ(k.Bind("$.Fred"), -EBADF);
  Message msg("$.Fred");
  EXPECT_EQ(k.Send(msg), -EBADF);
  Message in;
  EXPECT_EQ(k.Receive(in), -EBADF);
  int flags = 0;
  EXPECT_EQ(k.WaitForMessage(flags, PollFlags::Receive, 0), -EBADF);
  EXPECT_EQ(k.Close(), -EBADF);

  open(k);
  EXPECT_TRUE(k.IsOpen());
  EXPECT_EQ(k.Open(), -EALREADY);
  EXPECT_EQ(k.GetId(id), 0);
  EXPECT_EQ(id, 1u);  // §1.2-2
  EXPECT_EQ(k.ToString(), "<Ksock 1 on device 0, \"/dev/kbus0\" open for read/write>");
  EXPECT_EQ(streamed(k), k.ToString());
  EXPECT_EQ(k.GetDevice().GetDeviceNumber(), 0);
  EXPECT_EQ(k.GetFd(fd), 0);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(k.Close(), 0);
  EXPECT_FALSE(k.IsOpen());
  EXPECT_EQ(k.Close(), -EBADF);
  // Opened again, it is a new Ksock (ids are never reused).
  open(k);
  EXPECT_EQ(k.GetId(id), 0);
  EXPECT_EQ(id, 2u);

  Ksock by_name("/dev/kbus2", std::ios::in);
  open(by_name);
  EXPECT_EQ(by_name.ToString(), "<Ksock 1 on device \"/dev/kbus2\" open for read>");
  Ksock by_std_name(std::string("/dev/kbus1"));
  open(by_std_name);
  Ksock by_device(Device(1, std::ios::out));
  open(by_device);
  EXPECT_EQ(by_device.ToString(), "<Ksock 2 on device 1, \"/dev/kbus1\" open for write>");

  // §1.2-1: ENOENT for a bus that does not exist.
  EXPECT_EQ(Ksock(3).Open(), -ENOENT);
  EXPECT_EQ(Ksock(-1).Open(), -ENOENT);
  EXPECT_EQ(Ksock("/dev/kbus3").Open(), -ENOENT);
  EXPECT_EQ(Ksock("kbus0").Open(), -ENOENT);
}

TEST_F(CppkbusBus, KsockSettingsAndQueries) {  // §4.6
  Ksock k(0);
  open(k);
  MessageId last(9, 9);
  EXPECT_EQ(k.GetLastMessageId(last), 0);
  EXPECT_EQ(last, MessageId(0, 0));

  uint32_t n = 0;
  EXPECT_EQ(k.GetMaxUnreadMessages(n), 0);
  EXPECT_EQ(n, 100u);  // §4.7
  EXPECT_EQ(k.SetMaxUnreadMessages(5), 0);
  EXPECT_EQ(k.GetMaxUnreadMessages(n), 0);
  EXPECT_EQ(n, 5u);
  EXPECT_EQ(k.SetMaxUnreadMessages(0), Error::InvalidArguments);
  EXPECT_EQ(k.GetMaxUnreadMessages(n), 0);
  EXPECT_EQ(n, 5u);

  uint32_t size = 0, system = 0;
  EXPECT_EQ(k.GetMaxMessageSize(size), 0);
  EXPECT_EQ(size, 1024u);
  EXPECT_EQ(k.GetSystemMaxMessageSize(system), 0);
  EXPECT_GE(system, size);
  EXPECT_EQ(k.SetMaxMessageSize(2000), 0);
  EXPECT_EQ(k.GetMaxMessageSize(size), 0);
  EXPECT_EQ(size, 2000u);
  EXPECT_EQ(k.SetMaxMessageSize(99), -EINVAL);
  EXPECT_EQ(k.SetMaxMessageSize(0), -EINVAL);
  EXPECT_EQ(k.SetMaxMessageSize(1), -EINVAL);
  EXPECT_EQ(k.SetMaxMessageSize(system + 1), -EINVAL);
  EXPECT_EQ(k.GetMaxMessageSize(size), 0);
  EXPECT_EQ(size, 2000u);

  bool once = true;
  EXPECT_EQ(k.WillReceiveOnlyOnce(once), 0);
  EXPECT_FALSE(once);
  // Bound twice: two copies, then one once only-once is on (§5.3-1).
  ASSERT_EQ(k.Bind("$.Fred"), 0);
  ASSERT_EQ(k.Bind("$.*"), 0);
  Message m("$.Fred");
  EXPECT_EQ(k.Send(m), 0);
  EXPECT_EQ(k.HowManyMessagesUnread(n), 0);
  EXPECT_EQ(n, 2u);
  EXPECT_EQ(k.ReceiveMessagesOnlyOnce(), 0);
  EXPECT_EQ(k.WillReceiveOnlyOnce(once), 0);
  EXPECT_TRUE(once);
  MessageId sent;
  EXPECT_EQ(k.Send(m, &sent), 0);
  EXPECT_EQ(k.HowManyMessagesUnread(n), 0);
  EXPECT_EQ(n, 3u);
  EXPECT_EQ(k.GetLastMessageId(last), 0);
  EXPECT_EQ(last, sent);
  EXPECT_EQ(k.ReceiveMessagesOnlyOnce(false), 0);
  EXPECT_EQ(k.WillReceiveOnlyOnce(once), 0);
  EXPECT_FALSE(once);
  EXPECT_EQ(k.HowManyMessagesUnrepliedTo(n), 0);
  EXPECT_EQ(n, 0u);
}

TEST_F(CppkbusBus, BindErrors) {  // §4.6 BIND / UNBIND, §2.2
  Ksock a(0), b(0);
  open(a);
  open(b);
  EXPECT_EQ(a.Bind("Fred"), -EBADMSG);
  EXPECT_EQ(a.Bind(""), -EBADMSG);
  EXPECT_EQ(a.Bind(std::string(1001, 'a')), -ENAMETOOLONG);
  EXPECT_EQ(a.Bind("$.KBUS.ReplierBindEvent", true), -EBADMSG);
  EXPECT_EQ(a.Bind("$.Fred", true), 0);
  EXPECT_EQ(b.Bind("$.Fred", true), -EADDRINUSE);
  EXPECT_EQ(b.Unbind("$.Fred", true), -EINVAL);
  EXPECT_EQ(a.Unbind("$.Fred"), -EINVAL);  // not as listener
  EXPECT_EQ(a.Unbind("$.Fred", true), 0);
  EXPECT_EQ(b.Bind("$.Fred", true), 0);
}

TEST_F(CppkbusBus, SendErrors) {  // §5.2
  Ksock k(0);
  open(k);
  Message empty;
  EXPECT_EQ(k.Send(empty), Error::MessageIsEmpty);
  EXPECT_EQ(k.SendRequest(empty), Error::MessageIsEmpty);
  Message broken("$.Fred", nullptr, 3, 0);
  EXPECT_EQ(k.Send(broken), Error::MessageNotInitialized);
  EXPECT_EQ(k.SendReply(broken, empty), Error::MessageNotInitialized);
  EXPECT_EQ(k.SendStatefulRequest(broken, empty), Error::MessageNotInitialised);

  Message wildcard("$.Fred.*");
  EXPECT_EQ(k.Send(wildcard), -EBADMSG);
  Message bad_name("Fred");
  EXPECT_EQ(k.Send(bad_name), -EBADMSG);
  Message request("$.Nobody");
  MessageId id(5, 5);
  EXPECT_EQ(k.SendRequest(request, &id), -EADDRNOTAVAIL);
  EXPECT_EQ(id, MessageId(5, 5));  // no id given back on failure
  EXPECT_TRUE(request.IsRequest());

  Message not_a_request("$.Fred");
  Message reply("$.Fred");
  EXPECT_EQ(k.SendReply(reply, not_a_request), -EBADMSG);
  EXPECT_EQ(k.SendStatefulRequest(reply, not_a_request), -EBADMSG);

  Message huge("$.Huge", std::string(2000, 'x').data(), 2000, 0);
  EXPECT_EQ(k.Send(huge), -EMSGSIZE);
  Message both("$.Fred", MessageFlags::AllOrWait | MessageFlags::AllOrFail, nullptr, nullptr, 0, 0,
               nullptr, nullptr, nullptr, 0, true);
  EXPECT_EQ(k.Send(both), -EINVAL);

  // Read-only Ksocks cannot send (§1.2-3); write-only ones cannot receive.
  Ksock reader(0, std::ios::in), writer(0, std::ios::out);
  open(reader);
  open(writer);
  Message hello("$.Hello");
  EXPECT_EQ(reader.Send(hello), -EBADF);
  EXPECT_EQ(writer.Send(hello), 0);
  Message in;
  EXPECT_EQ(writer.Receive(in), -EBADF);
  EXPECT_EQ(reader.Receive(in), 0);
}

TEST_F(CppkbusBus, StatefulRequestToAnotherReplierIsEPIPE) {  // §5.2-12
  Ksock r1(0), r2(0), s(0);
  open(r1);
  open(r2);
  open(s);
  ASSERT_EQ(r1.Bind("$.A", true), 0);
  ASSERT_EQ(r2.Bind("$.B", true), 0);
  Message req("$.A");
  ASSERT_EQ(s.SendRequest(req), 0);
  Message got;
  ASSERT_EQ(r1.Receive(got), 1);
  Message reply("$.A", "r", 1, 0);
  ASSERT_EQ(r1.SendReply(reply, got), 0);
  Message answer;
  ASSERT_EQ(s.Receive(answer), 1);
  Message to_b("$.B");
  EXPECT_EQ(s.SendStatefulRequest(to_b, answer), -EPIPE);  // to = r1, replier is r2
  Message to_a("$.A");
  MessageId id;
  EXPECT_EQ(s.SendStatefulRequest(to_a, answer, &id), 0);
  Message stateful;
  ASSERT_EQ(r1.Receive(stateful), 1);
  EXPECT_TRUE(stateful.IsStatefulRequest());
  MessageId got_id;
  EXPECT_EQ(stateful.GetMessageId(got_id), 0);
  EXPECT_EQ(got_id, id);
}

TEST_F(CppkbusBus, ReceiveNeedsAnEmptyMessage) {  // §12.3
  Ksock k(0);
  open(k);
  ASSERT_EQ(k.Bind("$.Fred"), 0);
  Message m("$.Fred", "one", 3, 0);
  ASSERT_EQ(k.Send(m), 0);
  Message full("$.Other", "keep", 4, 0);
  EXPECT_EQ(k.Receive(full), Error::MessageIsNotEmpty);
  EXPECT_EQ(name_of(full), "$.Other");  // untouched
  uint32_t n = 0;
  EXPECT_EQ(k.HowManyMessagesUnread(n), 0);
  EXPECT_EQ(n, 1u);  // and nothing was taken
  Message got;
  EXPECT_EQ(k.Receive(got), 1);
  EXPECT_TRUE(got.IsEntire());
  EXPECT_EQ(data_of(got), "one");
  Message none;
  EXPECT_EQ(k.Receive(none), 0);
  EXPECT_TRUE(none.IsEmpty());
}

// A pointy message's data is read when it is sent (§3.4).
TEST_F(CppkbusBus, PointyMessageIsReadAtSend) {
  Ksock k(0);
  open(k);
  ASSERT_EQ(k.Bind("$.Fred"), 0);
  char data[] = "before";
  Message pointy("$.Fred", data, 6, 0, false);
  std::memcpy(data, "after!", 6);
  ASSERT_EQ(k.Send(pointy), 0);
  Message got;
  ASSERT_EQ(k.Receive(got), 1);
  EXPECT_EQ(data_of(got), "after!");
}

// A pointy Reply: BecomesReplyTo keeps it pointing at the caller's data,
// read when it is sent (§3.4).
TEST_F(CppkbusBus, PointyReplyIsReadAtSend) {
  Ksock r(0), s(0);
  open(r);
  open(s);
  ASSERT_EQ(r.Bind("$.Q", true), 0);
  Message q("$.Q", true);
  MessageId id;
  ASSERT_EQ(s.Send(q, &id), 0);
  Message got;
  ASSERT_EQ(r.Receive(got), 1);
  char data[] = "draft";
  Message reply("$.Whatever", data, 5, 0, false);
  ASSERT_EQ(reply.BecomesReplyTo(got), 0);
  EXPECT_FALSE(reply.IsEntire());
  std::memcpy(data, "final", 5);
  ASSERT_EQ(r.Send(reply), 0);
  Message answer;
  ASSERT_EQ(s.Receive(answer), 1);
  EXPECT_EQ(name_of(answer), "$.Q");
  EXPECT_EQ(data_of(answer), "final");
  MessageId irt;
  EXPECT_EQ(answer.GetInReplyTo(irt), 0);
  EXPECT_EQ(irt, id);
}

TEST_F(CppkbusBus, WaitForMessage) {  // §4.4
  Ksock k(0);
  open(k);
  int flags = -1;
  EXPECT_EQ(k.WaitForMessage(flags, 0, 0), Error::InvalidArguments);
  EXPECT_EQ(k.WaitForMessage(flags, PollFlags::Error, 0), Error::InvalidArguments);
  EXPECT_EQ(k.WaitForMessage(flags, PollFlags::Receive, 0), 0);  // nothing queued
  EXPECT_EQ(flags, 0);
  EXPECT_EQ(k.WaitForMessage(flags, PollFlags::Transmit, -1), 1);
  EXPECT_EQ(flags, PollFlags::Transmit);
  ASSERT_EQ(k.Bind("$.Fred"), 0);
  Message m("$.Fred");
  ASSERT_EQ(k.Send(m), 0);
  EXPECT_EQ(k.WaitForMessage(flags, PollFlags::Receive | PollFlags::Transmit, -1), 1);
  EXPECT_EQ(flags, PollFlags::Receive | PollFlags::Transmit);
  EXPECT_EQ(k.WaitForMessage(flags), 1);  // defaults: Receive, forever
  EXPECT_EQ(flags, PollFlags::Receive);
  // The descriptor itself works with poll().
  int fd = -1;
  ASSERT_EQ(k.GetFd(fd), 0);
  pollfd p = {fd, POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 0), 1);
  Message got;
  ASSERT_EQ(k.Receive(got), 1);
  EXPECT_EQ(k.WaitForMessage(flags, PollFlags::Receive, 0), 0);

  // A read-only Ksock is never writable (§1.2-3).
  Ksock reader(0, std::ios::in);
  open(reader);
  EXPECT_EQ(reader.WaitForMessage(flags, PollFlags::Transmit, 0), 0);
}

// ALL_OR_FAIL and ALL_OR_WAIT against a full listener (§5.2-13, §5.5); a
// pending send makes the Ksock unwritable until it completes.
TEST_F(CppkbusBus, AllOrFailAndAllOrWait) {
  Ksock listener(0), sender(0);
  open(listener);
  open(sender);
  ASSERT_EQ(listener.SetMaxUnreadMessages(1), 0);
  ASSERT_EQ(listener.Bind("$.Fred"), 0);
  Message first("$.Fred");
  ASSERT_EQ(sender.Send(first), 0);
  Message fail("$.Fred", MessageFlags::AllOrFail, nullptr, nullptr, 0, 0, nullptr, nullptr, nullptr,
               0, true);
  EXPECT_EQ(sender.Send(fail), -EBUSY);
  Message wait("$.Fred", MessageFlags::AllOrWait, nullptr, nullptr, 0, 0, nullptr, nullptr, nullptr,
               0, true);
  MessageId pending;
  EXPECT_EQ(sender.Send(wait, &pending), -EAGAIN);
  EXPECT_NE(pending, MessageId());  // the id is given with EAGAIN
  int flags = -1;
  EXPECT_EQ(sender.WaitForMessage(flags, PollFlags::Transmit, 0), 0);
  Message other("$.Other");
  EXPECT_EQ(sender.Send(other), -EALREADY);
  // The listener makes room: the pending send completes.
  Message got;
  ASSERT_EQ(listener.Receive(got), 1);
  EXPECT_EQ(sender.WaitForMessage(flags, PollFlags::Transmit, 10000), 1);
  EXPECT_EQ(flags, PollFlags::Transmit);
  Message second;
  ASSERT_EQ(listener.Receive(second), 1);
  MessageId id;
  EXPECT_EQ(second.GetMessageId(id), 0);
  EXPECT_EQ(id, pending);
}

// ENOLCK: a requester with no room for the reply (§5.2-5).
TEST_F(CppkbusBus, RequestWithoutRoomForTheReplyIsENOLCK) {
  Ksock r(0), s(0);
  open(r);
  open(s);
  ASSERT_EQ(r.Bind("$.Q", true), 0);
  ASSERT_EQ(s.SetMaxUnreadMessages(1), 0);
  Message q1("$.Q", true), q2("$.Q", true);
  EXPECT_EQ(s.Send(q1), 0);
  EXPECT_EQ(s.Send(q2), -ENOLCK);
}

// Replies that KBUS refuses (§5.2-10).
TEST_F(CppkbusBus, ReplyErrors) {
  Ksock r(0), s(0);
  open(r);
  open(s);
  ASSERT_EQ(r.Bind("$.Q", true), 0);
  Message q("$.Q", true);
  ASSERT_EQ(s.Send(q), 0);
  Message got;
  ASSERT_EQ(r.Receive(got), 1);
  Message answer("$.Q");
  ASSERT_EQ(r.SendReply(answer, got), 0);
  Message again("$.Q");
  EXPECT_EQ(r.SendReply(again, got), -ECONNREFUSED);  // already answered
  // The requester has gone.
  Message q2("$.Q", true);
  ASSERT_EQ(s.Send(q2), 0);
  Message got2;
  ASSERT_EQ(r.Receive(got2), 1);
  ASSERT_EQ(s.Close(), 0);
  Message late("$.Q");
  EXPECT_EQ(r.SendReply(late, got2), -EADDRNOTAVAIL);
}

// The replier unbinds with a request queued: $.KBUS.Replier.Unbound (§7.1).
TEST_F(CppkbusBus, UnboundStatus) {
  Ksock r(0), s(0);
  open(r);
  open(s);
  ASSERT_EQ(r.Bind("$.Q", true), 0);
  Message q("$.Q", true);
  MessageId id;
  ASSERT_EQ(s.Send(q, &id), 0);
  ASSERT_EQ(r.Unbind("$.Q", true), 0);
  int flags = 0;
  ASSERT_EQ(s.WaitForMessage(flags, PollFlags::Receive, 10000), 1);
  Message status;
  ASSERT_EQ(s.Receive(status), 1);
  EXPECT_EQ(name_of(status), cppkbus::Constants::Get().kMessageNameReplierUnbound);
  MessageId irt;
  EXPECT_EQ(status.GetInReplyTo(irt), 0);
  EXPECT_EQ(irt, id);
  EXPECT_TRUE(status.IsReply());
  EXPECT_EQ(status.ToString().rfind("<Status \"$.KBUS.Replier.Unbound\"", 0), 0u);
}

// kbusd gone: calls fail with errors, WaitForMessage reports PollFlags::Error.
TEST(CppkbusDaemonGone, CallsFailAndWaitReportsError) {
  kbus::test::TestDaemon daemon(1);
  ASSERT_EQ(::setenv("KBUS_DIR", daemon.dir().c_str(), 1), 0);
  Ksock k(0);
  ASSERT_EQ(k.Open(), 0);
  daemon.kill_hard();
  int flags = 0;
  EXPECT_EQ(k.WaitForMessage(flags, PollFlags::Receive, 10000), -ECONNRESET);
  EXPECT_EQ(flags, PollFlags::Error);
  uint32_t id = 0;
  const int rc = k.GetId(id);
  EXPECT_EQ(rc, -ECONNRESET) << Error::ToString(rc);
  EXPECT_EQ(k.Close(), 0);
  EXPECT_EQ(Ksock(0).Open(), -ENOENT);
}

}  // namespace
