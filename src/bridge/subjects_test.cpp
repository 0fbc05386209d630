// bridge/subjects_test.cpp - the name <-> subject mapping, both ways
// (docs/fleet.md, "Names"; KBUS-SPEC.md §2.1 for what a name may be).
#include "bridge/subjects.hpp"

#include <gtest/gtest.h>

#include "bridge/bridge.hpp"

namespace kbus::bridge {
namespace {

TEST(BridgeSubjects, NamesMapToSubjects) {
  EXPECT_EQ(name_to_subject("kbus", "$.A.B"), "kbus.A.B");
  EXPECT_EQ(name_to_subject("kbus", "$.Sensors.Kitchen.Temp2"), "kbus.Sensors.Kitchen.Temp2");
  EXPECT_EQ(name_to_subject("site.one", "$.A"), "site.one.A");
}

TEST(BridgeSubjects, WildcardsMapToNatsWildcards) {
  // §2.3: '*' = one or more components (NATS '>'), '%' = exactly one (NATS '*').
  EXPECT_EQ(name_to_subject("kbus", "$.A.*"), "kbus.A.>");
  EXPECT_EQ(name_to_subject("kbus", "$.A.%"), "kbus.A.*");
  EXPECT_EQ(name_to_subject("kbus", "$.*"), "kbus.>");
  EXPECT_EQ(name_to_subject("kbus", "$.%"), "kbus.*");
}

TEST(BridgeSubjects, SubjectsMapBackToNames) {
  EXPECT_EQ(subject_to_name("kbus", "kbus.A.B"), "$.A.B");
  EXPECT_EQ(subject_to_name("kbus", "kbus.A.>"), "$.A.*");
  EXPECT_EQ(subject_to_name("kbus", "kbus.A.*"), "$.A.%");
  EXPECT_EQ(subject_to_name("site.one", "site.one.X.Y"), "$.X.Y");
}

TEST(BridgeSubjects, RoundTripsBothWays) {
  for (const char* n : {"$.A", "$.A.B", "$.a1.B2.c3", "$.A.*", "$.A.%", "$.*", "$.x.y.z.%"}) {
    auto s = name_to_subject("kbus", n);
    ASSERT_TRUE(s) << n;
    EXPECT_EQ(subject_to_name("kbus", *s), n) << *s;
  }
  for (const char* s : {"kbus.A", "kbus.A.B9", "kbus.A.>", "kbus.A.*", "kbus.Q._2D"}) {
    auto n = subject_to_name("kbus", s);
    if (std::string(s) == "kbus.Q._2D") {
      // '-' is not a KBUS name character (§2.1): the escape decodes, the name is refused.
      EXPECT_FALSE(n) << s;
      continue;
    }
    ASSERT_TRUE(n) << s;
    EXPECT_EQ(name_to_subject("kbus", *n), s) << *n;
  }
}

TEST(BridgeSubjects, TokensEscapeEverythingButLettersAndDigits) {
  EXPECT_EQ(escape_token("Abc9"), "Abc9");
  EXPECT_EQ(escape_token("a b"), "a_20b");
  EXPECT_EQ(escape_token("_"), "_5F");
  EXPECT_EQ(escape_token("*"), "_2A");
  EXPECT_EQ(escape_token(">"), "_3E");
  EXPECT_EQ(escape_token("$"), "_24");
  for (std::string t : {"a b", "_", "x*y>z", "$", "\x01\xff", "plain"}) {
    EXPECT_EQ(unescape_token(escape_token(t)), t);
  }
}

TEST(BridgeSubjects, NonCanonicalTokensAreRefused) {
  EXPECT_FALSE(unescape_token("_2a"));   // lower-case hex
  EXPECT_FALSE(unescape_token("_41"));   // 'A' is never escaped
  EXPECT_FALSE(unescape_token("_4"));    // truncated
  EXPECT_FALSE(unescape_token("a$b"));   // a raw byte that needs escaping
  EXPECT_FALSE(unescape_token("a-b"));
}

TEST(BridgeSubjects, BadSubjectsAreRefusedWithAReason) {
  std::string why;
  EXPECT_FALSE(subject_to_name("kbus", "other.A", &why));
  EXPECT_NE(why.find("prefix"), std::string::npos) << why;
  EXPECT_FALSE(subject_to_name("kbus", "kbus", &why));
  EXPECT_FALSE(subject_to_name("kbus", "kbusX.A", &why));
  EXPECT_FALSE(subject_to_name("kbus", "kbus.>.A", &why));
  EXPECT_NE(why.find("not last"), std::string::npos) << why;
  EXPECT_FALSE(subject_to_name("kbus", "kbus.A$", &why));
  EXPECT_NE(why.find("A$"), std::string::npos) << why;
  EXPECT_FALSE(subject_to_name("kbus", "kbus.A..B", &why));  // empty component (§2.1)
  EXPECT_NE(why.find("not a KBUS name"), std::string::npos) << why;
}

TEST(BridgeSubjects, InvalidNamesHaveNoSubject) {
  EXPECT_FALSE(name_to_subject("kbus", "A.B"));     // §2.1: must start "$."
  EXPECT_FALSE(name_to_subject("kbus", "$.A."));    // empty last component
  EXPECT_FALSE(name_to_subject("kbus", "$.A-B"));   // not a letter or digit
  EXPECT_FALSE(name_to_subject("kbus", "$.A.*.B")); // wildcard not last
}

TEST(BridgeSubjects, ClaimKeysRoundTrip) {
  EXPECT_EQ(name_to_key("$.A.B"), "r.A.B");
  EXPECT_EQ(name_to_key("$.A.*"), "r.A._2A");
  EXPECT_EQ(name_to_key("$.A.%"), "r.A._25");
  for (const char* n : {"$.A.B", "$.A.*", "$.A.%", "$.*", "$.Z9"}) {
    auto k = name_to_key(n);
    ASSERT_TRUE(k);
    EXPECT_EQ(key_to_name(*k), n);
  }
  EXPECT_FALSE(key_to_name("b.12"));
  EXPECT_FALSE(key_to_name("r."));
  EXPECT_FALSE(key_to_name("r.A._2A.B"));  // wildcard not last
  EXPECT_FALSE(key_to_name("r.A..B"));
}

TEST(BridgeSubjects, Prefixes) {
  EXPECT_EQ(prefix_problem("kbus"), "");
  EXPECT_EQ(prefix_problem("site-1.kbus_x"), "");
  EXPECT_NE(prefix_problem(""), "");
  EXPECT_NE(prefix_problem("a..b"), "");
  EXPECT_NE(prefix_problem("a.>"), "");
  EXPECT_NE(prefix_problem("a b"), "");
  EXPECT_NE(prefix_problem("_KBUS"), "");
  EXPECT_EQ(bucket_for_prefix("site.one"), "site_one_fleet");
}

TEST(BridgeArgs, ParsesTheIssueCommandLine) {
  auto p = parse_args({"-b", "2", "--prefix", "plant", "-m", "$.A.*", "-m", "$.B",
                       "nats://127.0.0.1:4222,nats://127.0.0.1:4223"});
  ASSERT_EQ(p.outcome, ParsedArgs::Outcome::kRun) << p.error;
  EXPECT_EQ(p.options.bus, 2);
  EXPECT_EQ(p.options.prefix, "plant");
  EXPECT_EQ(p.options.names, (std::vector<std::string>{"$.A.*", "$.B"}));
  EXPECT_EQ(p.options.urls.size(), 2u);
}

TEST(BridgeArgs, BadArgumentsSayWhatIsWrong) {
  auto p = parse_args({});
  EXPECT_EQ(p.outcome, ParsedArgs::Outcome::kError);
  EXPECT_NE(p.error.find("URL"), std::string::npos);
  p = parse_args({"-m", "A.B", "nats://x:1"});
  EXPECT_EQ(p.outcome, ParsedArgs::Outcome::kError);
  EXPECT_NE(p.error.find("A.B"), std::string::npos);
  p = parse_args({"--prefix", "a.>", "nats://x:1"});
  EXPECT_EQ(p.outcome, ParsedArgs::Outcome::kError);
  p = parse_args({"-b", "300", "nats://x:1"});
  EXPECT_EQ(p.outcome, ParsedArgs::Outcome::kError);
  EXPECT_NE(p.error.find("0..255"), std::string::npos) << p.error;
  p = parse_args({"--tls-cert", "c.pem", "nats://x:1"});
  EXPECT_EQ(p.outcome, ParsedArgs::Outcome::kError);
  p = parse_args({"--frobnicate", "nats://x:1"});
  EXPECT_EQ(p.outcome, ParsedArgs::Outcome::kError);
  EXPECT_NE(p.error.find("--frobnicate"), std::string::npos);
}

}  // namespace
}  // namespace kbus::bridge
