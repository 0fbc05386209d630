// core/binding_table_test.cpp - the bindings of one bus (KBUS-SPEC.md §1.3,
// §2.3, §2.4, §4.6 BIND/UNBIND/REPLIER, §9.1 table order).
#include "core/binding_table.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace kbus::core {
namespace {

std::vector<std::uint64_t> listeners(const BindingTable& t, std::string_view name) {
  std::vector<const Binding*> out;
  t.matching_listeners(name, out);
  std::vector<std::uint64_t> seqs;
  for (const Binding* b : out) seqs.push_back(b->seq);
  return seqs;
}

std::uint32_t replier_of(const BindingTable& t, std::string_view name) {
  const Binding* b = t.select_replier(name);
  return b ? b->ksock : 0;
}

// A binding records its Ksock, kind, name and class; sequence numbers grow.
TEST(BindingTableTest, AddFindRemove) {
  BindingTable t;
  EXPECT_EQ(t.size(), 0u);
  std::uint64_t a = t.add(1, false, "$.Fred");
  std::uint64_t b = t.add(2, true, "$.Fred.*");
  EXPECT_GT(b, a);
  EXPECT_EQ(t.size(), 2u);
  const Binding* fb = t.find(b);
  ASSERT_NE(fb, nullptr);
  EXPECT_EQ(fb->seq, b);
  EXPECT_EQ(fb->ksock, 2u);
  EXPECT_TRUE(fb->replier);
  EXPECT_EQ(fb->name, "$.Fred.*");
  EXPECT_EQ(fb->cls, NameClass::kStar);
  EXPECT_EQ(t.find(a)->cls, NameClass::kSpecific);
  t.remove(a);
  EXPECT_EQ(t.find(a), nullptr);
  EXPECT_EQ(t.size(), 1u);
  EXPECT_TRUE(listeners(t, "$.Fred").empty());
  t.remove(b);
  EXPECT_EQ(t.select_replier("$.Fred.Jim"), nullptr);
  EXPECT_EQ(t.replier_by_string("$.Fred.*"), nullptr);
  EXPECT_EQ(t.size(), 0u);
}

// §9.1: all() is oldest first (the report iterates it in reverse).
TEST(BindingTableTest, AllIsOldestFirst) {
  BindingTable t;
  t.add(3, false, "$.c");
  t.add(1, true, "$.a");
  t.add(2, false, "$.b");
  std::vector<std::string> names;
  for (const auto& [seq, b] : t.all()) names.push_back(b.name);
  EXPECT_EQ(names, (std::vector<std::string>{"$.c", "$.a", "$.b"}));
}

// §1.3 / §2.3: one entry per matching listener binding, newest first;
// duplicates each count; replier bindings are never listeners.
TEST(BindingTableTest, MatchingListenersNewestFirst) {
  BindingTable t;
  std::uint64_t b1 = t.add(1, false, "$.Fred");
  std::uint64_t b2 = t.add(2, false, "$.*");
  t.add(3, true, "$.Fred");
  std::uint64_t b4 = t.add(1, false, "$.Fred");
  std::uint64_t b5 = t.add(4, false, "$.%");
  t.add(5, false, "$.Fred.*");  // does not match $.Fred
  t.add(6, false, "$.Jim");
  EXPECT_EQ(listeners(t, "$.Fred"), (std::vector<std::uint64_t>{b5, b4, b2, b1}));
  EXPECT_EQ(listeners(t, "$.Jim").size(), 3u);  // $.Jim, $.%, $.*
  EXPECT_EQ(listeners(t, "$.Nobody.Here").size(), 1u);  // $.* only
}

// §2.3 via the table: star and percent listener prefixes.
TEST(BindingTableTest, WildcardListeners) {
  BindingTable t;
  std::uint64_t s = t.add(1, false, "$.Fred.*");
  std::uint64_t p = t.add(2, false, "$.Fred.%");
  EXPECT_EQ(listeners(t, "$.Fred.Jim"), (std::vector<std::uint64_t>{p, s}));
  EXPECT_EQ(listeners(t, "$.Fred.Jim.Bob"), (std::vector<std::uint64_t>{s}));
  EXPECT_TRUE(listeners(t, "$.Fred").empty());
  EXPECT_TRUE(listeners(t, "$.Freda.Jim").empty());
}

// Appending: matching_listeners does not clear `out`.
TEST(BindingTableTest, MatchingListenersAppends) {
  BindingTable t;
  t.add(1, false, "$.Fred");
  std::vector<const Binding*> out{nullptr};
  t.matching_listeners("$.Fred", out);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0], nullptr);
  EXPECT_EQ(out[1]->ksock, 1u);
}

// §2.4-4: the R1/R2/R3 example.
TEST(BindingTableTest, ReplierSelectionExample) {
  BindingTable t;
  t.add(1, true, "$.Sensors.*");
  t.add(2, true, "$.Sensors.%");
  t.add(3, true, "$.Sensors.Kitchen.Temperature");
  EXPECT_EQ(replier_of(t, "$.Sensors.Kitchen.Temperature"), 3u);
  EXPECT_EQ(replier_of(t, "$.Sensors.Kitchen"), 2u);
  EXPECT_EQ(replier_of(t, "$.Sensors.LivingRoom"), 2u);
  EXPECT_EQ(replier_of(t, "$.Sensors.LivingRoom.Temperature"), 1u);
  EXPECT_EQ(replier_of(t, "$.Sensors"), 0u);
  EXPECT_EQ(replier_of(t, "$.Other"), 0u);
}

// §2.4-2: the class ranking holds whatever the binding order.
TEST(BindingTableTest, ClassBeatsRecency) {
  BindingTable t;
  t.add(3, true, "$.A.B");
  t.add(2, true, "$.A.%");
  t.add(1, true, "$.A.*");
  EXPECT_EQ(replier_of(t, "$.A.B"), 3u);
  EXPECT_EQ(replier_of(t, "$.A.C"), 2u);
  EXPECT_EQ(replier_of(t, "$.A.C.D"), 1u);
}

// §2.4-3 [K]: among '*' repliers, the most recent binding wins, not the
// longest prefix; removing it lets the older one win again.
TEST(BindingTableTest, StarTieMostRecentWins) {
  BindingTable t;
  std::uint64_t longer = t.add(1, true, "$.Fred.Jim.*");
  std::uint64_t shorter = t.add(2, true, "$.Fred.*");
  EXPECT_EQ(replier_of(t, "$.Fred.Jim.X"), 2u);
  t.remove(shorter);
  EXPECT_EQ(replier_of(t, "$.Fred.Jim.X"), 1u);
  t.add(3, true, "$.*");
  EXPECT_EQ(replier_of(t, "$.Fred.Jim.X"), 3u);
  t.remove(longer);
  EXPECT_EQ(replier_of(t, "$.Fred.Jim.X"), 3u);
}

// §1.3: listener bindings are never selected as repliers.
TEST(BindingTableTest, ListenersAreNotRepliers) {
  BindingTable t;
  t.add(1, false, "$.Fred");
  t.add(2, false, "$.*");
  EXPECT_EQ(t.select_replier("$.Fred"), nullptr);
  EXPECT_EQ(t.replier_by_string("$.Fred"), nullptr);
}

// §2.4-6 / §4.6 REPLIER [K]: exact-string lookup, wildcards not resolved.
TEST(BindingTableTest, ReplierByStringIsExact) {
  BindingTable t;
  std::uint64_t s = t.add(7, true, "$.Fred.*");
  EXPECT_EQ(t.replier_by_string("$.Fred.Jim"), nullptr);
  const Binding* b = t.replier_by_string("$.Fred.*");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->seq, s);
  EXPECT_EQ(b->ksock, 7u);
  EXPECT_EQ(t.replier_by_string("$.Fred.%"), nullptr);
}

}  // namespace
}  // namespace kbus::core
