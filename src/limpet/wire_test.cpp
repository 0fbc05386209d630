// limpet/wire_test.cpp - the limpet wire format, byte for byte (§10.3),
// against vectors written out by hand from KBUS-SPEC.md.
#include "limpet/wire.hpp"

#include <gtest/gtest.h>

#include <string>

namespace kbus::limpet {
namespace {

std::string unhex(std::string_view hex) {
  std::string out;
  int hi = -1;
  for (char c : hex) {
    int v;
    if (c >= '0' && c <= '9') v = c - '0';
    else if (c >= 'a' && c <= 'f') v = c - 'a' + 10;
    else continue;  // spaces and separators
    if (hi < 0) {
      hi = v;
    } else {
      out.push_back(static_cast<char>(hi * 16 + v));
      hi = -1;
    }
  }
  return out;
}

TEST(LimpetWire, HeloIsAsciiHeloAndBigEndianId) {
  EXPECT_EQ(encode_helo(0x01020304), std::string("HELO\x01\x02\x03\x04", 8));
  EXPECT_EQ(*decode_helo(std::string("HELO\x00\x00\x00\x02", 8)), 2u);
  EXPECT_EQ(decode_helo("HELP\0\0\0\2").error(), Errc::eproto);
  EXPECT_EQ(decode_helo("HELO").error(), Errc::eproto);
}

// An announcement "$.Fred" with data "dada", every header field distinct.
TEST(LimpetWire, SerialisedMessageMatchesTheSpecLayout) {
  Message m;
  m.name = "$.Fred";
  m.data = "dada";
  m.hdr.id = {1, 2};
  m.hdr.in_reply_to = {3, 4};
  m.hdr.to = 5;
  m.hdr.from = 6;
  m.hdr.orig_from = {7, 8};
  m.hdr.final_to = {9, 10};
  m.hdr.extra = 0;
  m.hdr.flags = 0x00010203;
  const std::string expected = unhex(
      "7375624b 00000001 00000002 00000003 00000004 00000005 00000006 00000007"
      "00000008 00000009 0000000a 00000000 00010203 00000006 00000004 4b627573"
      "24 2e 46 72 65 64 00 00"  // "$.Fred" + NUL + pad to 8
      "64 61 64 61"              // "dada"
      "4b627573");
  EXPECT_EQ(serialise(m), expected);
  // On the wire the start guard reads "subK" (§10.3-1).
  EXPECT_EQ(serialise(m).substr(0, 4), "subK");

  WireDecoder d;
  d.feed(expected);
  auto got = d.next();
  ASSERT_TRUE(got.ok());
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ(**got, m);
  EXPECT_EQ(d.buffered(), 0u);
}

TEST(LimpetWire, NoDataMeansNoDataBytes) {
  Message m;
  m.name = "$.abc";  // 5 bytes + NUL -> 8
  const std::string w = serialise(m);
  EXPECT_EQ(w.size(), 64u + 8u + 4u);
  EXPECT_EQ(w.substr(64, 8), std::string("$.abc\0\0\0", 8));
}

TEST(LimpetWire, ReplierBindEventDataTravelsBigEndian) {
  Message m;
  m.name = std::string(status_name::kReplierBindEvent);
  m.data = encode_replier_bind_event({true, 3, "$.Fred"});
  const std::string w = serialise(m);
  const std::size_t data_at = 64 + padded_name_len(static_cast<std::uint32_t>(m.name.size()));
  EXPECT_EQ(w.substr(data_at, 12), unhex("00000001 00000003 00000006"));
  EXPECT_EQ(w.substr(data_at + 12, 8), std::string("$.Fred\0\0", 8));
  WireDecoder d;
  d.feed(w);
  auto got = d.next();
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->data, m.data);  // back in host order
  auto ev = decode_replier_bind_event((*got)->data);
  ASSERT_TRUE(ev.ok());
  EXPECT_TRUE(ev->is_bind);
  EXPECT_EQ(ev->binder, 3u);
  EXPECT_EQ(ev->name, "$.Fred");
}

TEST(LimpetWire, DecoderTakesBytesOneAtATime) {
  Message a;
  a.name = "$.A";
  a.data = "1234567";
  Message b;
  b.name = "$.B.C";
  b.hdr.flags = 1;
  const std::string w = serialise(a) + serialise(b);
  WireDecoder d;
  std::vector<Message> got;
  for (char c : w) {
    d.feed(std::string_view(&c, 1));
    auto m = d.next();
    ASSERT_TRUE(m.ok());
    if (m->has_value()) got.push_back(**m);
  }
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0], a);
  EXPECT_EQ(got[1], b);
}

TEST(LimpetWire, CorruptStreamsAreProtocolErrors) {
  Message m;
  m.name = "$.Fred";
  const std::string good = serialise(m);
  for (std::size_t where : {std::size_t{0}, std::size_t{60}, good.size() - 1}) {
    std::string bad = good;
    bad[where] ^= 0x55;
    WireDecoder d;
    d.feed(bad);
    EXPECT_EQ(d.next().error(), Errc::eproto) << "byte " << where;
    EXPECT_EQ(d.next().error(), Errc::eproto) << "stays broken";
  }
  // name_len 0, and a data length no bus could carry.
  std::string zero_name = good;
  zero_name[52] = zero_name[53] = zero_name[54] = zero_name[55] = 0;
  WireDecoder d1;
  d1.feed(zero_name);
  EXPECT_EQ(d1.next().error(), Errc::eproto);
  std::string huge = good;
  huge[56] = 0x7f;
  WireDecoder d2;
  d2.feed(huge);
  EXPECT_EQ(d2.next().error(), Errc::eproto);
}

}  // namespace
}  // namespace kbus::limpet
