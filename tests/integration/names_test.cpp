// Message names, BIND / UNBIND / REPLIER, matching and replier selection
// (KBUS-SPEC.md §2, §4.6) over a real daemon.
#include "integration/fixture.hpp"

namespace kbus::test {
namespace {

using NamesTest = KbusTest;

const char* const kValid[] = {"$.a", "$.*", "$.%", "$.Fred", "$.Fred.*", "$.Fred.%",
                              "$.Fred.Jim.Bob", "$.A1.b2.C3", "$.KBUS.ReplierBindEvent"};
const char* const kInvalid[] = {"$.",        "$",         "$x",        "Fred",     "$.Fred.",
                                "$.Fred..Jim", "$.Fred*", "$.*.Fred",  "$.Fred.**", "$..*",
                                "$.Fred_Jim", "$.Fred Jim", "$.Fred-Jim", "$$.Fred", "$.Fr\"ed",
                                "$.%.Fred",  ".$Fred",    "$.Fred.*.",  "$.*%"};

TEST_F(NamesTest, ValidNamesBindAndUnbind) {
  Ksock k = open(0);
  for (const char* n : kValid) {
    EXPECT_TRUE(k.try_bind(n).ok()) << n;
    EXPECT_TRUE(k.try_unbind(n).ok()) << n;
  }
  std::string longest = "$." + std::string(998, 'a');
  ASSERT_EQ(longest.size(), 1000u);
  EXPECT_TRUE(k.try_bind(longest).ok());
  EXPECT_TRUE(k.try_bind(longest, true).ok());
}

TEST_F(NamesTest, InvalidNamesAreEBADMSG) {
  Ksock k = open(0);
  for (const char* n : kInvalid) {
    EXPECT_EQ(err(k.try_bind(n)), Errc::ebadmsg) << n;
    EXPECT_EQ(err(k.try_bind(n, true)), Errc::ebadmsg) << n;
    EXPECT_EQ(err(k.try_unbind(n)), Errc::ebadmsg) << n;
  }
  EXPECT_EQ(err(k.try_bind("")), Errc::ebadmsg);
  EXPECT_EQ(err(k.try_unbind("")), Errc::ebadmsg);
  EXPECT_EQ(err(k.try_bind(std::string("$.Fr\0ed", 7))), Errc::ebadmsg);
}

TEST_F(NamesTest, LongNamesAreENAMETOOLONG) {
  Ksock k = open(0);
  std::string n1001 = "$." + std::string(999, 'a');
  EXPECT_EQ(err(k.try_bind(n1001)), Errc::enametoolong);
  EXPECT_EQ(err(k.try_unbind(n1001)), Errc::enametoolong);
  // Length is checked before validity.
  EXPECT_EQ(err(k.try_bind(std::string(1001, '#'))), Errc::enametoolong);
  EXPECT_EQ(err(k.try_bind("$." + std::string(9998, 'x'))), Errc::enametoolong);
  EXPECT_EQ(k.ksock_id(), 1u);  // still usable
}

TEST_F(NamesTest, OneReplierPerExactName) {
  Ksock a = open(0);
  Ksock b = open(0);
  a.bind("$.Fred", true);
  EXPECT_EQ(err(a.try_bind("$.Fred", true)), Errc::eaddrinuse);
  EXPECT_EQ(err(b.try_bind("$.Fred", true)), Errc::eaddrinuse);
  // Different strings, listeners, wildcards: all fine.
  EXPECT_TRUE(b.try_bind("$.Fred").ok());
  EXPECT_TRUE(b.try_bind("$.Fred.*", true).ok());
  EXPECT_TRUE(b.try_bind("$.*", true).ok());
  EXPECT_EQ(err(a.try_bind("$.*", true)), Errc::eaddrinuse);
  a.unbind("$.Fred", true);
  EXPECT_TRUE(b.try_bind("$.Fred", true).ok());
}

TEST_F(NamesTest, ReplierBindEventCannotBeBoundAsReplier) {
  Ksock k = open(0);
  EXPECT_EQ(err(k.try_bind("$.KBUS.ReplierBindEvent", true)), Errc::ebadmsg);
  EXPECT_TRUE(k.try_bind("$.KBUS.ReplierBindEvent").ok());
}

TEST_F(NamesTest, UnbindNeedsTheSameKindAndString) {
  Ksock a = open(0);
  Ksock b = open(0);
  EXPECT_EQ(err(a.try_unbind("$.Fred")), Errc::einval);
  a.bind("$.Fred");
  EXPECT_EQ(err(a.try_unbind("$.Fred", true)), Errc::einval);
  EXPECT_EQ(err(b.try_unbind("$.Fred")), Errc::einval);
  EXPECT_EQ(err(a.try_unbind("$.Fred.*")), Errc::einval);
  EXPECT_TRUE(a.try_unbind("$.Fred").ok());
  EXPECT_EQ(err(a.try_unbind("$.Fred")), Errc::einval);
}

TEST_F(NamesTest, FindReplierIsAnExactStringLookup) {
  Ksock a = open(0);
  Ksock b = open(0);
  EXPECT_EQ(b.find_replier("$.Fred"), std::nullopt);
  a.bind("$.Fred", true);
  EXPECT_EQ(b.find_replier("$.Fred"), std::optional<std::uint32_t>(a.id()));
  a.bind("$.Jim.*", true);
  EXPECT_EQ(b.find_replier("$.Jim.Bob"), std::nullopt);  // no wildcard resolution
  EXPECT_EQ(b.find_replier("$.Jim.*"), std::optional<std::uint32_t>(a.id()));
  a.bind("$.Listen");
  EXPECT_EQ(b.find_replier("$.Listen"), std::nullopt);  // listeners are not repliers
  // Names are not validated, only their length.
  EXPECT_EQ(b.find_replier("Fred"), std::nullopt);
  EXPECT_EQ(err(b.try_find_replier("")), Errc::enametoolong);
  EXPECT_EQ(err(b.try_find_replier(std::string(1001, 'x'))), Errc::enametoolong);
  a.close();
  settle(b);
  EXPECT_EQ(b.find_replier("$.Fred"), std::nullopt);
}

// Who receives the replier's (WANT_YOU_TO_REPLY) copy of a request?
std::uint32_t replier_of(Ksock& sender, std::vector<Ksock*> repliers, const std::string& name) {
  sender.send_msg(make_request(name));
  std::uint32_t who = 0;
  for (Ksock* r : repliers) {
    while (auto m = r->read_next_msg()) {
      if (m->wants_us_to_reply()) {
        EXPECT_EQ(who, 0u) << "two repliers got " << name;
        who = r->id();
        r->send_msg(make_reply(*m).value());
      }
    }
  }
  // Drain the reply.
  while (sender.read_next_msg()) {
  }
  return who;
}

TEST_F(NamesTest, ReplierSelectionPrefersSpecificThenPercentThenStar) {
  Ksock r1 = open(0);
  Ksock r2 = open(0);
  Ksock r3 = open(0);
  Ksock s = open(0);
  r1.bind("$.Sensors.*", true);
  r2.bind("$.Sensors.%", true);
  r3.bind("$.Sensors.Kitchen.Temperature", true);
  std::vector<Ksock*> all = {&r1, &r2, &r3};
  EXPECT_EQ(replier_of(s, all, "$.Sensors.Kitchen.Temperature"), r3.id());
  EXPECT_EQ(replier_of(s, all, "$.Sensors.Kitchen"), r2.id());
  EXPECT_EQ(replier_of(s, all, "$.Sensors.LivingRoom"), r2.id());
  EXPECT_EQ(replier_of(s, all, "$.Sensors.LivingRoom.Temperature"), r1.id());
}

TEST_F(NamesTest, EqualStarRepliersAreDecidedByRecency) {
  Ksock r1 = open(0);
  Ksock r2 = open(0);
  Ksock s = open(0);
  r1.bind("$.Fred.Jim.*", true);
  r2.bind("$.Fred.*", true);  // newer, though shorter
  std::vector<Ksock*> all = {&r1, &r2};
  EXPECT_EQ(replier_of(s, all, "$.Fred.Jim.X"), r2.id());
  r1.unbind("$.Fred.Jim.*", true);
  r1.bind("$.Fred.Jim.*", true);  // now r1's is the newer
  EXPECT_EQ(replier_of(s, all, "$.Fred.Jim.X"), r1.id());
}

TEST_F(NamesTest, WildcardListenersMatchAsSpecified) {
  Ksock star = open(0);
  Ksock pct = open(0);
  Ksock all = open(0);
  Ksock s = open(0);
  star.bind("$.Fred.*");
  pct.bind("$.Fred.%");
  all.bind("$.*");
  for (const char* n : {"$.Fred", "$.Fred.Jim", "$.Fred.Jim.Bob", "$.Fredx.Jim"})
    s.send_msg(make_announcement(n));
  auto names = [](Ksock& k) {
    std::vector<std::string> v;
    while (auto m = k.read_next_msg()) v.push_back(m->name);
    return v;
  };
  EXPECT_EQ(names(star), (std::vector<std::string>{"$.Fred.Jim", "$.Fred.Jim.Bob"}));
  EXPECT_EQ(names(pct), (std::vector<std::string>{"$.Fred.Jim"}));
  EXPECT_EQ(names(all).size(), 4u);
}

TEST_F(NamesTest, MatchingIsCaseSensitive) {
  Ksock l = open(0);
  Ksock s = open(0);
  l.bind("$.Fred");
  s.send_msg(make_announcement("$.fred"));
  s.send_msg(make_announcement("$.FRED"));
  EXPECT_EQ(l.num_messages(), 0u);
}

}  // namespace
}  // namespace kbus::test
