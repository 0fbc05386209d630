// core/message_test.cpp - message layout and codec (KBUS-SPEC.md §1.4-§1.5,
// §3, §11.3-§11.5), checked against tests/vectors/protocol.json.
#include "kbus/message.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "core/test_helpers.hpp"

namespace kbus {
namespace {

using core::test::get32;
using core::test::raw_entire;
using core::test::RawHeader;

// --- the shared byte vectors ------------------------------------------------

std::string unhex(std::string_view hex) {
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  }
  return out;
}

// name -> bytes, for every vector in protocol.json. A minimal parser: the
// file is a flat list of objects whose "name" precedes their "hex".
std::map<std::string, std::string> load_vectors() {
  std::ifstream f(std::string(KBUS_SOURCE_DIR) + "/tests/vectors/protocol.json");
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string text = ss.str();
  std::map<std::string, std::string> out;
  auto string_after = [&](const std::string& key, std::size_t from, std::size_t& end) {
    std::size_t k = text.find("\"" + key + "\"", from);
    if (k == std::string::npos) return std::string();
    std::size_t colon = text.find(':', k);
    std::size_t q1 = text.find('"', colon + 1);
    std::size_t q2 = text.find('"', q1 + 1);
    end = q2 + 1;
    return text.substr(q1 + 1, q2 - q1 - 1);
  };
  std::size_t pos = 0;
  while (true) {
    std::size_t end = 0;
    std::string name = string_after("name", pos, end);
    if (name.empty()) break;
    std::size_t end2 = 0;
    std::string hex = string_after("hex", end, end2);
    out[name] = unhex(hex);
    pos = end2;
  }
  return out;
}

const std::map<std::string, std::string>& vectors() {
  static const auto v = load_vectors();
  return v;
}

Message fred(std::string data) {
  Message m;
  m.name = "$.Fred";
  m.data = std::move(data);
  return m;
}

Message guildenstern_request() {
  Message m;
  m.name = "$.Actor.Ask.Guildenstern";
  m.data = "Were you speaking to me?";
  m.hdr.id = {0, 342};
  m.hdr.from = 113;
  m.hdr.flags = 0x3;
  return m;
}

Message guildenstern_reply() {
  Message m;
  m.name = "$.Actor.Ask.Guildenstern";
  m.data = "Yes, yes I was";
  m.hdr.id = {0, 343};
  m.hdr.to = 113;
  m.hdr.from = 115;
  m.hdr.in_reply_to = {0, 342};
  m.hdr.orig_from = {7, 9};
  m.hdr.final_to = {8, 10};
  return m;
}

struct VectorCase {
  std::string name;
  Message msg;
  std::uint32_t h;
};

std::vector<VectorCase> entire_cases() {
  std::vector<VectorCase> v;
  for (std::uint32_t h : {88u, 72u}) {
    std::string s = std::to_string(h);
    v.push_back({"entire_fred_nodata_h" + s, fred(""), h});
    v.push_back({"entire_fred_dada_h" + s, fred("dada"), h});
    v.push_back({"entire_fred_7_h" + s, fred("1234567"), h});
    v.push_back({"entire_request_h" + s, guildenstern_request(), h});
    v.push_back({"entire_reply_h" + s, guildenstern_reply(), h});
  }
  return v;
}

// The vector file is there and holds every entry this file uses.
TEST(MessageVectorsTest, FileHasTheEntries) {
  for (const auto& c : entire_cases()) EXPECT_EQ(vectors().count(c.name), 1u) << c.name;
  EXPECT_EQ(vectors().count("replier_bind_event_data"), 1u);
}

// §3.1/§3.5: encode_entire produces exactly the vector bytes (H=88 and H=72).
TEST(MessageVectorsTest, EncodeMatchesVectors) {
  for (const auto& c : entire_cases()) {
    auto it = vectors().find(c.name);
    ASSERT_NE(it, vectors().end()) << c.name;
    EXPECT_EQ(encode_entire(c.msg, c.h), it->second) << c.name;
    std::string appended = "xy";
    encode_entire(appended, c.msg.hdr, c.msg.name, c.msg.data, c.h);
    EXPECT_EQ(appended, "xy" + it->second) << c.name;
  }
}

// §3.1/§3.5: decode_entire reads the vectors back field for field.
TEST(MessageVectorsTest, DecodeMatchesVectors) {
  for (const auto& c : entire_cases()) {
    auto it = vectors().find(c.name);
    ASSERT_NE(it, vectors().end()) << c.name;
    auto m = decode_entire(it->second, c.h);
    ASSERT_TRUE(m.ok()) << c.name;
    EXPECT_EQ(*m, c.msg) << c.name;
  }
}

// The test helpers' independent encoder agrees with the vectors too.
TEST(MessageVectorsTest, HelperEncoderMatchesVectors) {
  for (const auto& c : entire_cases()) {
    RawHeader r;
    r.hdr = c.msg.hdr;
    r.name_len = static_cast<std::uint32_t>(c.msg.name.size());
    r.data_len = static_cast<std::uint32_t>(c.msg.data.size());
    EXPECT_EQ(raw_entire(r, c.msg.name, c.msg.data, c.h), vectors().at(c.name)) << c.name;
  }
}

// §3.6: replier bind event data, bind / binder 3 / '$.Fred', 20 bytes.
TEST(MessageVectorsTest, ReplierBindEventData) {
  const std::string& bytes = vectors().at("replier_bind_event_data");
  ASSERT_EQ(bytes.size(), 20u);
  EXPECT_EQ(encode_replier_bind_event({true, 3, "$.Fred"}), bytes);
  auto ev = decode_replier_bind_event(bytes);
  ASSERT_TRUE(ev.ok());
  EXPECT_TRUE(ev->is_bind);
  EXPECT_EQ(ev->binder, 3u);
  EXPECT_EQ(ev->name, "$.Fred");
}

// §3.6: an unbind event; data_len = 12 + PADDED_NAME_LEN(name_len).
TEST(MessageTest, ReplierBindEventUnbindRoundTrip) {
  std::string d = encode_replier_bind_event({false, 77, "$.Sensors.*"});
  ASSERT_EQ(d.size(), 12u + 12u);
  EXPECT_EQ(get32(d, 0), 0u);
  EXPECT_EQ(get32(d, 4), 77u);
  EXPECT_EQ(get32(d, 8), 11u);
  EXPECT_EQ(d.substr(12), std::string("$.Sensors.*\0", 12));
  auto ev = decode_replier_bind_event(d);
  ASSERT_TRUE(ev.ok());
  EXPECT_FALSE(ev->is_bind);
  EXPECT_EQ(ev->binder, 77u);
  EXPECT_EQ(ev->name, "$.Sensors.*");
}

// --- layout arithmetic ------------------------------------------------------

// §3.1: header sizes and guards.
TEST(MessageTest, HeaderConstants) {
  EXPECT_EQ(kHeaderLen64, 88u);
  EXPECT_EQ(kHeaderLen32, 72u);
  EXPECT_EQ(kStartGuard, 0x7375624Bu);
  EXPECT_EQ(kEndGuard, 0x4B627573u);
  EXPECT_EQ(kMaxNameLen, 1000u);
  EXPECT_EQ(flag::kWantAReply, 0x1u);
  EXPECT_EQ(flag::kWantYouToReply, 0x2u);
  EXPECT_EQ(flag::kSynthetic, 0x4u);
  EXPECT_EQ(flag::kUrgent, 0x8u);
  EXPECT_EQ(flag::kAllOrWait, 0x100u);
  EXPECT_EQ(flag::kAllOrFail, 0x200u);
}

// §3.5: padding always leaves room for a NUL after the name.
TEST(MessageTest, PaddedLengths) {
  EXPECT_EQ(padded_name_len(0), 4u);
  EXPECT_EQ(padded_name_len(3), 4u);
  EXPECT_EQ(padded_name_len(4), 8u);
  EXPECT_EQ(padded_name_len(6), 8u);
  EXPECT_EQ(padded_name_len(7), 8u);
  EXPECT_EQ(padded_name_len(8), 12u);
  EXPECT_EQ(padded_name_len(1000), 1004u);
  EXPECT_EQ(padded_data_len(0), 0u);
  EXPECT_EQ(padded_data_len(1), 4u);
  EXPECT_EQ(padded_data_len(4), 4u);
  EXPECT_EQ(padded_data_len(5), 8u);
  EXPECT_EQ(padded_data_len(7), 8u);
}

// §3.5 worked examples, H=88 and H=72.
TEST(MessageTest, EntireLenWorkedExamples) {
  EXPECT_EQ(entire_len(88, 6, 0), 100u);
  EXPECT_EQ(entire_len(88, 6, 4), 104u);
  EXPECT_EQ(entire_len(88, 6, 7), 108u);
  EXPECT_EQ(entire_len(72, 6, 0), 84u);
  EXPECT_EQ(entire_len(72, 6, 4), 88u);
  EXPECT_EQ(entire_len(72, 6, 7), 92u);
  EXPECT_EQ(encode_entire(fred(""), 88).size(), 100u);
  EXPECT_EQ(encode_entire(fred("1234567"), 72).size(), 92u);
}

// §3.5: the data starts at word (n+1+3)/4 of rest[]; the final guard at
// (n+1+3)/4 + (d+3)/4; zero padding; pointer fields 0.
TEST(MessageTest, EntireLayoutOffsets) {
  Message m = fred("1234567");
  m.hdr.flags = 0xABCD0008;
  for (std::uint32_t h : {88u, 72u}) {
    std::string b = encode_entire(m, h);
    EXPECT_EQ(get32(b, 0), kStartGuard);
    EXPECT_EQ(get32(b, 48), 0xABCD0008u);
    EXPECT_EQ(get32(b, 52), 6u);
    EXPECT_EQ(get32(b, 56), 7u);
    EXPECT_EQ(get32(b, h - (h == 88 ? 8 : 4)), kEndGuard);
    EXPECT_EQ(b.substr(h, 8), std::string("$.Fred\0\0", 8));
    EXPECT_EQ(b.substr(h + 4 * 2, 8), std::string("1234567\0", 8));
    EXPECT_EQ(get32(b, h + 4 * (2 + 2)), kEndGuard);
    if (h == 88) {
      EXPECT_EQ(b.substr(60, 20), std::string(20, '\0'));  // padding + both pointers
      EXPECT_EQ(b.substr(84, 4), std::string(4, '\0'));    // tail padding
    } else {
      EXPECT_EQ(b.substr(60, 8), std::string(8, '\0'));
    }
  }
}

// §3.2: decode_entire rejects bad guards and inconsistent lengths with EINVAL.
TEST(MessageTest, DecodeRejectsBadGuardsAndLengths) {
  const std::string good = encode_entire(fred("dada"), 88);
  ASSERT_TRUE(decode_entire(good, 88).ok());
  std::string bad = good;
  core::test::put32(bad, 0, 0x12345678);
  EXPECT_EQ(decode_entire(bad, 88).error(), Errc::einval);
  bad = good;
  core::test::put32(bad, 80, 0x12345678);
  EXPECT_EQ(decode_entire(bad, 88).error(), Errc::einval);
  bad = good;
  core::test::put32(bad, bad.size() - 4, 0x12345678);
  EXPECT_EQ(decode_entire(bad, 88).error(), Errc::einval);
  EXPECT_EQ(decode_entire(good.substr(0, good.size() - 4), 88).error(), Errc::einval);
  EXPECT_EQ(decode_entire(good + "abcd", 88).error(), Errc::einval);
  EXPECT_EQ(decode_entire(good.substr(0, 40), 88).error(), Errc::einval);
  // The same bytes read with the wrong ABI do not decode.
  EXPECT_EQ(decode_entire(good, 72).error(), Errc::einval);
}

// --- message values ---------------------------------------------------------

// §1.5-1: textual forms [n:s] and (n,l); ordering is lexicographic (§11.4).
TEST(MessageTest, IdsPrintAndOrder) {
  EXPECT_EQ((MessageId{1, 2}).to_string(), "[1:2]");
  EXPECT_EQ((OrigFrom{1, 2}).to_string(), "(1,2)");
  EXPECT_TRUE((MessageId{0, 0}).is_zero());
  EXPECT_FALSE((MessageId{0, 1}).is_zero());
  EXPECT_FALSE((MessageId{1, 0}).is_zero());
  EXPECT_LT((MessageId{0, 9}), (MessageId{1, 0}));
  EXPECT_LT((MessageId{1, 1}), (MessageId{1, 2}));
  EXPECT_EQ((MessageId{3, 4}), (MessageId{3, 4}));
}

// §1.4: the kinds by their defining properties.
TEST(MessageTest, KindPredicates) {
  Message a = fred("");
  EXPECT_FALSE(a.is_request());
  EXPECT_FALSE(a.is_reply());
  EXPECT_EQ(a.kind(), "Announcement");

  Message r = fred("");
  r.hdr.flags = flag::kWantAReply;
  EXPECT_TRUE(r.is_request());
  EXPECT_FALSE(r.is_stateful_request());
  EXPECT_FALSE(r.wants_us_to_reply());
  EXPECT_EQ(r.kind(), "Request");
  r.hdr.flags |= flag::kWantYouToReply;
  EXPECT_TRUE(r.wants_us_to_reply());
  r.hdr.to = 5;
  EXPECT_TRUE(r.is_stateful_request());

  Message p = fred("");
  p.hdr.in_reply_to = {0, 9};
  EXPECT_TRUE(p.is_reply());
  EXPECT_FALSE(p.is_status());
  EXPECT_EQ(p.kind(), "Reply");

  Message s;
  s.name = "$.KBUS.Replier.GoneAway";
  s.hdr.in_reply_to = {0, 9};
  s.hdr.flags = flag::kSynthetic;
  EXPECT_TRUE(s.is_status());
  EXPECT_TRUE(s.is_synthetic());
  EXPECT_EQ(s.kind(), "Status");

  Message e;
  e.name = "$.KBUS.ReplierBindEvent";
  EXPECT_TRUE(e.is_replier_bind_event());
  EXPECT_EQ(e.kind(), "ReplierBindEvent");
}

// §11.3: the str() examples (Python 3 forms).
TEST(MessageTest, ToStringExamples) {
  Message a;
  a.name = "$.Actor.Speak";
  a.data = "Ahem";
  a.hdr.id = {0, 338};
  a.hdr.from = 113;
  EXPECT_EQ(a.to_string(), "<Announcement '$.Actor.Speak', id=[0:338], from=113, data=b'Ahem'>");

  Message q;
  q.name = "$.Actor.Guildenstern.query";
  q.data = "Were you speaking to me?";
  q.hdr.id = {0, 6};
  q.hdr.from = 1;
  q.hdr.flags = 0x3;
  EXPECT_EQ(q.to_string(),
            "<Request '$.Actor.Guildenstern.query', id=[0:6], from=1, flags=0x3 (REQ,YOU), "
            "data=b'Were you speaking to me?'>");

  Message p;
  p.name = "$.Actor.Guildenstern.query";
  p.data = "Yes, I was";
  p.hdr.to = 1;
  p.hdr.in_reply_to = {0, 6};
  EXPECT_EQ(p.to_string(),
            "<Reply '$.Actor.Guildenstern.query', to=1, in_reply_to=[0:6], data=b'Yes, I was'>");

  Message s;
  s.name = "$.KBUS.Replier.GoneAway";
  s.hdr.id = {0, 12};
  s.hdr.to = 4;
  s.hdr.from = 5;
  s.hdr.in_reply_to = {0, 9};
  s.hdr.flags = 0x4;
  EXPECT_EQ(s.to_string(),
            "<Status '$.KBUS.Replier.GoneAway', id=[0:12], to=4, from=5, in_reply_to=[0:9], "
            "flags=0x4 (SYN)>");

  Message e;
  e.name = "$.KBUS.ReplierBindEvent";
  e.hdr.id = {0, 7};
  e.hdr.flags = 0x204;
  e.data = encode_replier_bind_event({true, 3, "$.Fred"});
  EXPECT_EQ(e.to_string(), "<ReplierBindEvent id=[0:7], flags=0x204 (SYN,aFL), [Bind '$.Fred' for 3]>");
}

// §11.3: the original's (Python 2) str() form, which the talk shows and the
// CLI prints: data='Ahem', the same quoting and escapes, no b prefix.
TEST(MessageTest, ToTextIsTheTalkForm) {
  Message a;
  a.name = "$.Actor.Speak";
  a.data = "Ahem";
  a.hdr.id = {0, 338};
  a.hdr.from = 113;
  EXPECT_EQ(a.to_text(), "<Announcement '$.Actor.Speak', id=[0:338], from=113, data='Ahem'>");
  a.data = std::string("it's\n\x01\xff", 7);
  EXPECT_EQ(a.to_text(),
            "<Announcement '$.Actor.Speak', id=[0:338], from=113, data=\"it's\\n\\x01\\xff\">");
  a.data = "say \"hi\" it's";
  EXPECT_EQ(a.to_text(),
            "<Announcement '$.Actor.Speak', id=[0:338], from=113, data='say \"hi\" it\\'s'>");
  a.data.clear();
  EXPECT_EQ(a.to_text(), "<Announcement '$.Actor.Speak', id=[0:338], from=113>");
  Message e;
  e.name = "$.KBUS.ReplierBindEvent";
  e.hdr.id = {0, 7};
  e.hdr.flags = 0x204;
  e.data = encode_replier_bind_event({true, 3, "$.Fred"});
  EXPECT_EQ(e.to_text(), e.to_string());
}

// §11.5 reply_to: requires WANT_A_REPLY and WANT_YOU_TO_REPLY; to = from,
// in_reply_to = id; the request's data and flags are not copied.
TEST(MessageTest, MakeReply) {
  Message req = guildenstern_request();  // flags 0x3
  auto rep = make_reply(req, "Yes", flag::kUrgent);
  ASSERT_TRUE(rep.ok());
  EXPECT_EQ(rep->name, req.name);
  EXPECT_EQ(rep->data, "Yes");
  EXPECT_EQ(rep->hdr.to, 113u);
  EXPECT_EQ(rep->hdr.in_reply_to, (MessageId{0, 342}));
  EXPECT_EQ(rep->hdr.flags, flag::kUrgent);
  EXPECT_TRUE(rep->hdr.id.is_zero());

  Message listener_copy = req;
  listener_copy.hdr.flags = flag::kWantAReply;
  EXPECT_EQ(make_reply(listener_copy).error(), Errc::ebadmsg);
  EXPECT_EQ(make_reply(fred("x")).error(), Errc::ebadmsg);
}

// §11.5 stateful_request: from a Reply (to = from, final_to = orig_from) or
// from a Stateful Request (copies to and final_to); else EBADMSG.
TEST(MessageTest, MakeStatefulRequest) {
  auto s1 = make_stateful_request(guildenstern_reply(), "$.Next", "d");
  ASSERT_TRUE(s1.ok());
  EXPECT_EQ(s1->name, "$.Next");
  EXPECT_EQ(s1->data, "d");
  EXPECT_EQ(s1->hdr.to, 115u);
  EXPECT_EQ(s1->hdr.final_to, (OrigFrom{7, 9}));
  EXPECT_TRUE(s1->is_stateful_request());
  EXPECT_TRUE(s1->hdr.in_reply_to.is_zero());

  auto s2 = make_stateful_request(*s1, "$.Again");
  ASSERT_TRUE(s2.ok());
  EXPECT_EQ(s2->hdr.to, 115u);
  EXPECT_EQ(s2->hdr.final_to, (OrigFrom{7, 9}));
  EXPECT_TRUE(s2->is_request());

  EXPECT_EQ(make_stateful_request(fred("x"), "$.Next").error(), Errc::ebadmsg);
  EXPECT_EQ(make_stateful_request(guildenstern_request(), "$.Next").error(), Errc::ebadmsg);
}

}  // namespace
}  // namespace kbus
