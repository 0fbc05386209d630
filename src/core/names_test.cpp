// core/names_test.cpp - message name validity and matching (KBUS-SPEC.md §2).
#include "core/names.hpp"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

namespace kbus::core {
namespace {

using namespace std::string_literals;

// §2.1: the names the original test suite accepts.
TEST(NamesTest, ValidNames) {
  for (std::string_view n :
       {"$.a", "$.*", "$.%", "$.Fred", "$.Fred.Jim", "$.Fred.*", "$.Fred.%", "$.A1.b2.C3",
        "$.KBUS.ReplierBindEvent", "$.9", "$.Sensors.Kitchen.Temperature"}) {
    EXPECT_TRUE(is_valid_name(n)) << n;
  }
}

// §2.1: minimum length 3 and the "$." prefix.
TEST(NamesTest, TooShortOrWrongPrefix) {
  for (std::string_view n : {"", "$", "$.", "$x", "Fred", "$$.Fred", ".$Fred", "$Fred", "x.Fred"}) {
    EXPECT_FALSE(is_valid_name(n)) << n;
  }
}

// §2.1: no trailing dot, no empty component.
TEST(NamesTest, TrailingDotAndEmptyComponent) {
  for (std::string_view n : {"$.Fred.", "$.Fred..Jim", "$..Fred", "$..", "$...", "$..*", "$..%"}) {
    EXPECT_FALSE(is_valid_name(n)) << n;
  }
}

// §2.1: '*' and '%' only as the whole last component.
TEST(NamesTest, WildcardPlacement) {
  for (std::string_view n : {"$.Fred*", "$.Fred%", "$.*.Fred", "$.%.Fred", "$.Fred.**",
                             "$.Fred.%%", "$.Fred.*%", "$.Fr*ed", "$.*Fred", "$.Fred.J*"}) {
    EXPECT_FALSE(is_valid_name(n)) << n;
  }
}

// §2.1: letters and digits only; §14-16 [DEV]: ASCII only.
TEST(NamesTest, OnlyAsciiAlphanumerics) {
  for (std::string n : {"$.Fred_Jim"s, "$.Fred-Jim"s, "$.Fred Jim"s, "$.Fred#"s, "$.Fr'ed"s,
                        "$.Fr\"ed"s, "$.Fre\0d"s, "$.Fred\0"s, "$.\xC0x"s, "$.caf\xE9"s,
                        "$.\xFF"s, "$.Fred/Jim"s}) {
    EXPECT_FALSE(is_valid_name(n)) << n;
  }
}

// §2.1: validity does not depend on length (the 1000 limit is checked
// separately, by length, before validity).
TEST(NamesTest, LongNamesAreValidByTheAlgorithm) {
  std::string n = "$." + std::string(998, 'a');
  ASSERT_EQ(n.size(), 1000u);
  EXPECT_TRUE(is_valid_name(n));
}

// §2.1: wildcard(name) = the last byte is '*' or '%'.
TEST(NamesTest, Wildcard) {
  EXPECT_TRUE(is_wildcard("$.*"));
  EXPECT_TRUE(is_wildcard("$.%"));
  EXPECT_TRUE(is_wildcard("$.Fred.*"));
  EXPECT_TRUE(is_wildcard("$.Fred.%"));
  EXPECT_FALSE(is_wildcard("$.Fred"));
  EXPECT_FALSE(is_wildcard("$.a"));
}

// §2.4-2: the three classes; binding_prefix is P for P* and P%.
TEST(NamesTest, ClassAndPrefix) {
  EXPECT_EQ(name_class("$.Fred"), NameClass::kSpecific);
  EXPECT_EQ(name_class("$.Fred.%"), NameClass::kPercent);
  EXPECT_EQ(name_class("$.Fred.*"), NameClass::kStar);
  EXPECT_EQ(name_class("$.*"), NameClass::kStar);
  EXPECT_EQ(binding_prefix("$.Fred.*"), "$.Fred.");
  EXPECT_EQ(binding_prefix("$.Fred.%"), "$.Fred.");
  EXPECT_EQ(binding_prefix("$.*"), "$.");
  EXPECT_EQ(binding_prefix("$.Fred"), "$.Fred");
}

// §2.3-1: a specific binding matches only the byte-identical name.
TEST(NamesTest, SpecificMatch) {
  EXPECT_TRUE(name_matches("$.Fred", "$.Fred"));
  EXPECT_FALSE(name_matches("$.Fred", "$.Fred.Jim"));
  EXPECT_FALSE(name_matches("$.Fred", "$.Fre"));
  EXPECT_FALSE(name_matches("$.Fred", "$.Freda"));
  EXPECT_FALSE(name_matches("$.Fred.Jim", "$.Fred"));
}

// §2.3-2: P* matches names of at least its length starting with P.
TEST(NamesTest, StarMatch) {
  EXPECT_TRUE(name_matches("$.Fred.*", "$.Fred.Jim"));
  EXPECT_TRUE(name_matches("$.Fred.*", "$.Fred.Jim.Bob"));
  EXPECT_TRUE(name_matches("$.Fred.*", "$.Fred.J"));
  EXPECT_FALSE(name_matches("$.Fred.*", "$.Fred"));
  EXPECT_FALSE(name_matches("$.Fred.*", "$.Freda.Jim"));
  EXPECT_FALSE(name_matches("$.Fred.*", "$.Jim.Fred"));
  EXPECT_TRUE(name_matches("$.*", "$.a"));
  EXPECT_TRUE(name_matches("$.*", "$.Fred.Jim.Bob"));
  EXPECT_TRUE(name_matches("$.*", "$.KBUS.ReplierBindEvent"));
}

// §2.3-3: P% matches exactly one more component.
TEST(NamesTest, PercentMatch) {
  EXPECT_TRUE(name_matches("$.Fred.%", "$.Fred.Jim"));
  EXPECT_TRUE(name_matches("$.Fred.%", "$.Fred.J"));
  EXPECT_FALSE(name_matches("$.Fred.%", "$.Fred"));
  EXPECT_FALSE(name_matches("$.Fred.%", "$.Fred.Jim.Bob"));
  EXPECT_FALSE(name_matches("$.Fred.%", "$.Freda.Jim"));
  EXPECT_TRUE(name_matches("$.%", "$.Fred"));
  EXPECT_FALSE(name_matches("$.%", "$.Fred.Jim"));
  EXPECT_TRUE(name_matches("$.KBUS.%", "$.KBUS.ReplierBindEvent"));
}

// §2.3-4: matching is case-sensitive and purely textual.
TEST(NamesTest, CaseSensitive) {
  EXPECT_FALSE(name_matches("$.fred", "$.Fred"));
  EXPECT_FALSE(name_matches("$.fred.*", "$.Fred.Jim"));
  EXPECT_FALSE(name_matches("$.fred.%", "$.Fred.Jim"));
  EXPECT_FALSE(name_matches("$.Fred.*", "$.FRED.Jim"));
}

}  // namespace
}  // namespace kbus::core
