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

namespace kbus::core {
namespace {

// §2.1/§2.2: name_problem() says which rule a name breaks, and is empty
// exactly when is_valid_name() holds (and, for sending, the name is not a
// wildcard).
TEST(NamesTest, NameProblemSaysWhichRuleIsBroken) {
  EXPECT_EQ(name_problem("", false), "it is empty");
  EXPECT_EQ(name_problem("Hello", false),
            "it does not start with \"$.\" (names look like $.Sensors.Kitchen)");
  EXPECT_EQ(name_problem("$.", false), "it has nothing after \"$.\"");
  EXPECT_EQ(name_problem("$.Fred.", false), "it ends with a dot");
  EXPECT_EQ(name_problem("$.Fred..Jim", false), "component 2 is empty (\"..\")");
  EXPECT_EQ(name_problem("$.Fre_d", false),
            "'_' at offset 5: a name has only letters, digits and dots");
  EXPECT_EQ(name_problem(std::string("$.A\x01", 4), false),
            "byte 0x01 at offset 3: a name has only letters, digits and dots");
  EXPECT_EQ(name_problem("$.Fred*", false),
            "'*' at offset 6: a wildcard must be the whole last component ($.A.* or $.A.%)");
  EXPECT_EQ(name_problem(std::string(1001, 'a'), false),
            "it is 1001 bytes long; the limit is 1000");
  EXPECT_EQ(name_problem("$.Fred.*", false), "");
  EXPECT_EQ(name_problem("$.Fred.*", true),
            "it is a wildcard: a message is sent to one name, and only bindings may use * or %");
  EXPECT_EQ(name_problem("$.%", true),
            "it is a wildcard: a message is sent to one name, and only bindings may use * or %");
  for (std::string_view ok : {"$.a", "$.*", "$.%", "$.Fred.Jim", "$.A1.b2.%"}) {
    EXPECT_EQ(name_problem(ok, false), "") << ok;
  }
  // Agrees with the kernel algorithm on every short name over a small alphabet.
  const std::string alphabet = "$.a*%_";
  for (int len = 0; len <= 5; ++len) {
    std::string s(static_cast<std::size_t>(len), ' ');
    int combos = 1;
    for (int i = 0; i < len; ++i) combos *= static_cast<int>(alphabet.size());
    for (int k = 0; k < combos; ++k) {
      int v = k;
      for (int i = 0; i < len; ++i) {
        s[static_cast<std::size_t>(i)] = alphabet[static_cast<std::size_t>(v) % alphabet.size()];
        v /= static_cast<int>(alphabet.size());
      }
      EXPECT_EQ(name_problem(s, false).empty(), is_valid_name(s)) << s;
    }
  }
}

}  // namespace
}  // namespace kbus::core
