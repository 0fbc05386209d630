// core/write_parser_test.cpp - the write() byte-stream parser (KBUS-SPEC.md
// §3.4, §4.2).
#include "core/write_parser.hpp"

#include <gtest/gtest.h>

#include <string>

#include "core/test_helpers.hpp"

namespace kbus::core {
namespace {

using test::entire;
using test::kH;
using test::pointy_header;
using test::raw_entire;
using test::raw_header;
using test::RawHeader;

constexpr std::uint32_t kMax = 1024;

RawHeader fred_header(std::uint32_t data_len = 0) {
  RawHeader r;
  r.name_len = 6;
  r.data_len = data_len;
  return r;
}

// Writes all bytes but the last (which must succeed) then the last; returns
// the result of the last byte, so that a check is seen to fire exactly there.
Result<void> write_then_last(WriteParser& p, const std::string& bytes) {
  EXPECT_TRUE(p.write(bytes.substr(0, bytes.size() - 1), kMax).ok());
  EXPECT_FALSE(p.complete());
  return p.write(bytes.substr(bytes.size() - 1), kMax);
}

// §4.2-3/-5: an entire message is complete after its final guard; the
// header fields, name and data are captured as written.
TEST(WriteParserTest, EntireMessage) {
  RawHeader r = fred_header(4);
  r.hdr.id = {0, 7};
  r.hdr.in_reply_to = {1, 2};
  r.hdr.to = 3;
  r.hdr.from = 4;
  r.hdr.orig_from = {5, 6};
  r.hdr.final_to = {7, 8};
  r.hdr.extra = 9;
  r.hdr.flags = 0xFFFF0009;
  WriteParser p(kH);
  EXPECT_FALSE(p.started());
  ASSERT_TRUE(write_then_last(p, raw_entire(r, "$.Fred", "dada")).ok());
  EXPECT_TRUE(p.started());
  EXPECT_TRUE(p.complete());
  EXPECT_FALSE(p.pointy());
  EXPECT_EQ(p.header(), r.hdr);
  EXPECT_EQ(p.name_len(), 6u);
  EXPECT_EQ(p.data_len(), 4u);
  EXPECT_EQ(p.name(), "$.Fred");
  EXPECT_EQ(p.data(), "dada");
  EXPECT_FALSE(p.has_data_pointer());
}

// §4.2-8: writes may be split down to one byte; §3.5 no data at all when d=0.
TEST(WriteParserTest, OneByteAtATime) {
  for (std::string data : {"", "1234567", "dada", "x"}) {
    const std::string bytes = entire("$.Fred.Jim", data);
    WriteParser p(kH);
    for (std::size_t i = 0; i < bytes.size(); ++i) {
      EXPECT_FALSE(p.complete()) << i;
      ASSERT_TRUE(p.write(bytes.substr(i, 1), kMax).ok()) << "byte " << i;
    }
    EXPECT_TRUE(p.complete());
    EXPECT_EQ(p.name(), "$.Fred.Jim");
    EXPECT_EQ(p.data(), data);
  }
}

// §3.1: the 32-bit ABI header (H=72).
TEST(WriteParserTest, Abi32) {
  WriteParser p(72);
  ASSERT_TRUE(p.write(entire("$.Fred", "1234567", 0, 72), kMax).ok());
  EXPECT_TRUE(p.complete());
  EXPECT_EQ(p.name(), "$.Fred");
  EXPECT_EQ(p.data(), "1234567");
  WriteParser q(72);
  ASSERT_TRUE(q.write(pointy_header(6, 4, 0, 72), kMax).ok());
  EXPECT_TRUE(q.complete());
  EXPECT_TRUE(q.pointy());
  EXPECT_TRUE(q.has_data_pointer());
}

// §3.5: KBUS ignores the content of padding bytes (including the NUL).
TEST(WriteParserTest, PaddingContentIgnored) {
  WriteParser p(kH);
  ASSERT_TRUE(p.write(raw_entire(fred_header(5), "$.Fred", "abcde", kH, kEndGuard, '\xFF'), kMax).ok());
  EXPECT_TRUE(p.complete());
  EXPECT_EQ(p.name(), "$.Fred");
  EXPECT_EQ(p.data(), "abcde");
}

// §4.2-4: the start guard is checked when the last header byte arrives.
TEST(WriteParserTest, BadStartGuard) {
  RawHeader r = fred_header();
  r.start_guard = kEndGuard;
  WriteParser p(kH);
  EXPECT_EQ(write_then_last(p, raw_header(r)).error(), Errc::einval);
}

// §4.2-4: end guard of the header.
TEST(WriteParserTest, BadEndGuard) {
  RawHeader r = fred_header();
  r.end_guard = kStartGuard;
  WriteParser p(kH);
  EXPECT_EQ(write_then_last(p, raw_header(r)).error(), Errc::einval);
}

// §4.2-4 / §2.2: name_len 0 → EINVAL.
TEST(WriteParserTest, ZeroNameLen) {
  RawHeader r = fred_header();
  r.name_len = 0;
  WriteParser p(kH);
  EXPECT_EQ(write_then_last(p, raw_header(r)).error(), Errc::einval);
}

// §4.2-4 / §2.2: name_len > 1000 → ENAMETOOLONG; 1000 passes this check.
TEST(WriteParserTest, NameTooLong) {
  RawHeader r = fred_header();
  r.name_len = 1001;
  WriteParser p(kH);
  EXPECT_EQ(write_then_last(p, raw_header(r)).error(), Errc::enametoolong);
  r.name_len = 1000;
  WriteParser q(kH);
  EXPECT_TRUE(q.write(raw_header(r), 409600).ok());
}

// §3.4: the three pointer-consistency rules → EINVAL.
TEST(WriteParserTest, PointerConsistency) {
  {
    RawHeader r = fred_header(4);  // name NULL, data non-NULL
    r.data_ptr = 0x2000;
    WriteParser p(kH);
    EXPECT_EQ(write_then_last(p, raw_header(r)).error(), Errc::einval);
  }
  {
    RawHeader r = fred_header(4);  // name non-NULL, data NULL, data_len != 0
    r.name_ptr = 0x1000;
    WriteParser p(kH);
    EXPECT_EQ(write_then_last(p, raw_header(r)).error(), Errc::einval);
  }
  {
    RawHeader r = fred_header(0);  // data_len == 0, data non-NULL
    r.name_ptr = 0x1000;
    r.data_ptr = 0x2000;
    WriteParser p(kH);
    EXPECT_EQ(write_then_last(p, raw_header(r)).error(), Errc::einval);
  }
  {
    RawHeader r = fred_header(0);  // pointy without data: fine
    r.name_ptr = 0x1000;
    WriteParser p(kH);
    EXPECT_TRUE(p.write(raw_header(r), kMax).ok());
    EXPECT_TRUE(p.complete());
    EXPECT_FALSE(p.has_data_pointer());
  }
}

// §3.3 / §4.2-4: ALL_OR_WAIT together with ALL_OR_FAIL → EINVAL.
TEST(WriteParserTest, BothAllOrFlags) {
  RawHeader r = fred_header();
  r.hdr.flags = flag::kAllOrWait | flag::kAllOrFail;
  WriteParser p(kH);
  EXPECT_EQ(write_then_last(p, raw_header(r)).error(), Errc::einval);
  r.hdr.flags = flag::kAllOrWait;
  WriteParser q(kH);
  EXPECT_TRUE(q.write(raw_header(r), kMax).ok());
}

// §4.2-4 / §3.5: ENTIRE_LEN > limit → EMSGSIZE, compared with this parser's
// H; a message of exactly the limit is accepted.
TEST(WriteParserTest, MaxMessageSize) {
  WriteParser p(kH);
  EXPECT_EQ(p.write(raw_header(fred_header(4)), 103).error(), Errc::emsgsize);  // 104 > 103
  WriteParser q(kH);
  EXPECT_TRUE(q.write(entire("$.Fred", "dada"), 104).ok());
  EXPECT_TRUE(q.complete());
  WriteParser r72(72);
  EXPECT_TRUE(r72.write(entire("$.Fred", "dada", 0, 72), 88).ok());
  WriteParser s72(72);
  EXPECT_EQ(s72.write(raw_header(fred_header(4), 72), 87).error(), Errc::emsgsize);
  // The pointy form is measured as if entire.
  WriteParser t(kH);
  EXPECT_EQ(t.write(pointy_header(6, 4), 103).error(), Errc::emsgsize);
}

// §14-12: with H=88 a 1000-byte name cannot be sent under a 1024 limit.
TEST(WriteParserTest, ThousandByteNameExceeds1024) {
  RawHeader r;
  r.name_len = 1000;
  WriteParser p(kH);
  EXPECT_EQ(p.write(raw_header(r), 1024).error(), Errc::emsgsize);
}

// §4.2-4: the order of the header checks.
TEST(WriteParserTest, HeaderCheckOrder) {
  {  // end guard before name_len
    RawHeader r = fred_header();
    r.end_guard = 0;
    r.name_len = 1001;
    WriteParser p(kH);
    EXPECT_EQ(p.write(raw_header(r), kMax).error(), Errc::einval);
  }
  {  // name_len > 1000 before pointer consistency, ALL_OR flags and size
    RawHeader r = fred_header(4);
    r.name_len = 1001;
    r.data_ptr = 0x2000;
    r.hdr.flags = flag::kAllOrWait | flag::kAllOrFail;
    WriteParser p(kH);
    EXPECT_EQ(p.write(raw_header(r), kMax).error(), Errc::enametoolong);
  }
  {  // pointer consistency before size
    RawHeader r = fred_header(2000);
    r.data_ptr = 0x2000;
    WriteParser p(kH);
    EXPECT_EQ(p.write(raw_header(r), kMax).error(), Errc::einval);
  }
  {  // both ALL_OR flags before size
    RawHeader r = fred_header(2000);
    r.hdr.flags = flag::kAllOrWait | flag::kAllOrFail;
    WriteParser p(kH);
    EXPECT_EQ(p.write(raw_header(r), kMax).error(), Errc::einval);
  }
}

// §4.2-4: a pointy header is complete once its H bytes are written.
TEST(WriteParserTest, PointyCompleteAfterHeader) {
  WriteParser p(kH);
  ASSERT_TRUE(write_then_last(p, pointy_header(6, 4, flag::kUrgent)).ok());
  EXPECT_TRUE(p.complete());
  EXPECT_TRUE(p.pointy());
  EXPECT_TRUE(p.has_data_pointer());
  EXPECT_EQ(p.name_len(), 6u);
  EXPECT_EQ(p.data_len(), 4u);
  EXPECT_EQ(p.header().flags, flag::kUrgent);
}

// §4.2-5: an invalid name fails with EBADMSG when its last byte arrives.
TEST(WriteParserTest, InvalidNameAtLastNameByte) {
  for (std::string bad : {"$.Fr-d", "Fred.x", "$.Fre.", "$..Fre"}) {
    RawHeader r = fred_header();
    std::string bytes = raw_header(r) + bad;
    WriteParser p(kH);
    EXPECT_EQ(write_then_last(p, bytes).error(), Errc::ebadmsg) << bad;
  }
}

// §4.2-5 / §2.2: cannot send to a wildcard name.
TEST(WriteParserTest, WildcardNameIsEbadmsg) {
  for (std::string bad : {"$.Fred.*", "$.Fred.%"}) {
    RawHeader r;
    r.name_len = 8;
    WriteParser p(kH);
    EXPECT_EQ(write_then_last(p, raw_header(r) + bad).error(), Errc::ebadmsg) << bad;
  }
}

// §4.2-5: the final guard must be END_GUARD, checked when its last byte arrives.
TEST(WriteParserTest, BadFinalGuard) {
  WriteParser p(kH);
  EXPECT_EQ(write_then_last(p, raw_entire(fred_header(4), "$.Fred", "dada", kH, kStartGuard)).error(),
            Errc::einval);
  WriteParser q(kH);
  EXPECT_EQ(write_then_last(q, raw_entire(fred_header(0), "$.Fred", "", kH, 0)).error(), Errc::einval);
}

// §4.2-6: any byte after the message is complete → EMSGSIZE.
TEST(WriteParserTest, BytesAfterCompleteMessage) {
  WriteParser p(kH);
  ASSERT_TRUE(p.write(entire("$.Fred"), kMax).ok());
  EXPECT_EQ(p.write("x", kMax).error(), Errc::emsgsize);

  WriteParser q(kH);  // two messages in one write
  EXPECT_EQ(q.write(entire("$.Fred") + entire("$.Fred"), kMax).error(), Errc::emsgsize);
  EXPECT_FALSE(q.complete());

  WriteParser r(kH);  // a pointy header followed by anything
  ASSERT_TRUE(r.write(pointy_header(6, 0), kMax).ok());
  EXPECT_EQ(r.write("$.Fred", kMax).error(), Errc::emsgsize);
}

// §4.2-7: on an error the partial message is discarded and the next write
// starts afresh.
TEST(WriteParserTest, ErrorDiscardsPartialMessage) {
  WriteParser p(kH);
  RawHeader r = fred_header();
  r.start_guard = 0;
  ASSERT_EQ(p.write(raw_header(r), kMax).error(), Errc::einval);
  EXPECT_FALSE(p.complete());
  EXPECT_FALSE(p.started());
  ASSERT_TRUE(p.write(entire("$.Jim", "ok"), kMax).ok());
  EXPECT_TRUE(p.complete());
  EXPECT_EQ(p.name(), "$.Jim");
  EXPECT_EQ(p.data(), "ok");

  WriteParser q(kH);  // an error after a complete message discards it too
  ASSERT_TRUE(q.write(entire("$.Fred"), kMax).ok());
  ASSERT_EQ(q.write("x", kMax).error(), Errc::emsgsize);
  EXPECT_FALSE(q.complete());
  EXPECT_FALSE(q.started());
}

// §4.2-2 / §14-19: a zero-length write starts an (empty) message.
TEST(WriteParserTest, ZeroLengthWriteStartsMessage) {
  WriteParser p(kH);
  ASSERT_TRUE(p.write("", kMax).ok());
  EXPECT_TRUE(p.started());
  EXPECT_FALSE(p.complete());
  p.reset();
  EXPECT_FALSE(p.started());
  EXPECT_FALSE(p.complete());
}

// §9.2: the part names and positions reported by stats.
TEST(WriteParserTest, PartsAndPositions) {
  EXPECT_STREQ(WriteParser::part_name(WriteParser::Part::kHdr), "HDR");
  EXPECT_STREQ(WriteParser::part_name(WriteParser::Part::kName), "NAME");
  EXPECT_STREQ(WriteParser::part_name(WriteParser::Part::kNpad), "NPAD");
  EXPECT_STREQ(WriteParser::part_name(WriteParser::Part::kData), "DATA");
  EXPECT_STREQ(WriteParser::part_name(WriteParser::Part::kDpad), "DPAD");
  EXPECT_STREQ(WriteParser::part_name(WriteParser::Part::kFinal), "FINAL");

  // '$.Fred' (6, NPAD 2), data 'abcde' (5, DPAD 3).
  const std::string bytes = entire("$.Fred", "abcde");
  ASSERT_EQ(bytes.size(), 88u + 8 + 8 + 4);
  struct Step {
    std::size_t upto;
    WriteParser::Part part;
    std::uint32_t pos;
  };
  const Step steps[] = {
      {10, WriteParser::Part::kHdr, 10},   {88 + 3, WriteParser::Part::kName, 3},
      {88 + 7, WriteParser::Part::kNpad, 1}, {96 + 2, WriteParser::Part::kData, 2},
      {96 + 6, WriteParser::Part::kDpad, 1}, {104 + 2, WriteParser::Part::kFinal, 2},
  };
  WriteParser p(kH);
  EXPECT_EQ(p.part(), WriteParser::Part::kHdr);
  EXPECT_EQ(p.part_pos(), 0u);
  std::size_t done = 0;
  for (const Step& s : steps) {
    ASSERT_TRUE(p.write(bytes.substr(done, s.upto - done), kMax).ok());
    done = s.upto;
    EXPECT_EQ(p.part(), s.part) << "after " << done << " bytes";
    EXPECT_EQ(p.part_pos(), s.pos) << "after " << done << " bytes";
  }
  ASSERT_TRUE(p.write(bytes.substr(done), kMax).ok());
  EXPECT_TRUE(p.complete());
}

}  // namespace
}  // namespace kbus::core
