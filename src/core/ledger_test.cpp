// The ledger: bytes charged per uid, a budget per user and a total
// (docs/reliability.md §4, docs/decisions.md D28).
#include "core/ledger.hpp"

#include <gtest/gtest.h>

namespace kbus::core {
namespace {

TEST(Ledger, ChargesAndReleasesPerUserAndKind) {
  Ledger l({1000, 0, 0});
  EXPECT_TRUE(l.try_charge(1, Charge::kQueued, 300));
  EXPECT_TRUE(l.try_charge(1, Charge::kBindings, 200));
  EXPECT_TRUE(l.try_charge(2, Charge::kQueued, 100));
  EXPECT_EQ(l.used(1), 500u);
  EXPECT_EQ(l.used(1, Charge::kQueued), 300u);
  EXPECT_EQ(l.used(1, Charge::kBindings), 200u);
  EXPECT_EQ(l.total(), 600u);
  EXPECT_EQ(l.total(Charge::kQueued), 400u);
  l.release(1, Charge::kQueued, 300);
  l.release(1, Charge::kBindings, 200);
  EXPECT_EQ(l.used(1), 0u);
  EXPECT_EQ(l.users(), 1u);  // a user with nothing charged is forgotten
  EXPECT_EQ(l.total(), 100u);
}

TEST(Ledger, PerUserBudgetRefusesWhatWouldExceedIt) {
  Ledger l({1000, 0, 0});
  EXPECT_TRUE(l.try_charge(7, Charge::kQueued, 1000));  // exactly the budget
  EXPECT_FALSE(l.fits(7, 1));
  EXPECT_FALSE(l.try_charge(7, Charge::kQueued, 1));
  EXPECT_EQ(l.used(7), 1000u);  // a refused charge charges nothing
  EXPECT_TRUE(l.try_charge(8, Charge::kQueued, 1000));  // another user is not affected
  l.release(7, Charge::kQueued, 10);
  EXPECT_TRUE(l.try_charge(7, Charge::kRequests, 10));
}

TEST(Ledger, ForcedChargesMayExceedTheBudgetAndThenEveryTryFails) {
  // What the spec says must never fail (Status messages, §6.1; set-aside
  // events, §8.4) is charged whatever the budget.
  Ledger l({100, 0, 0});
  l.charge(3, Charge::kSetAside, 150);
  EXPECT_EQ(l.used(3), 150u);
  EXPECT_FALSE(l.fits(3, 0 + 1));
  EXPECT_FALSE(l.try_charge(3, Charge::kQueued, 1));
  l.release(3, Charge::kSetAside, 60);
  EXPECT_TRUE(l.try_charge(3, Charge::kQueued, 10));
}

TEST(Ledger, TotalRefusesOrdinaryUsersButNotPrivilegedOnes) {
  Ledger l({0, 1000, 0});
  EXPECT_TRUE(l.try_charge(5, Charge::kQueued, 600));
  EXPECT_FALSE(l.try_charge(6, Charge::kQueued, 500));  // total would be 1100
  EXPECT_TRUE(l.try_charge(6, Charge::kQueued, 400));
  EXPECT_FALSE(l.fits(5, 1));
  // Root is privileged always; it is never refused for the total.
  EXPECT_TRUE(l.privileged(0));
  EXPECT_TRUE(l.try_charge(0, Charge::kQueued, 5000));
  EXPECT_EQ(l.total(), 6000u);
  // A --privileged-group member likewise.
  l.set_privileged(9, true);
  EXPECT_TRUE(l.try_charge(9, Charge::kBindings, 100));
  l.set_privileged(9, false);
  EXPECT_FALSE(l.try_charge(9, Charge::kBindings, 100));
  l.set_privileged(0, false);  // root cannot be made ordinary
  EXPECT_TRUE(l.privileged(0));
}

TEST(Ledger, PrivilegedUsersHaveTheirOwnBudget) {
  Ledger l({100, 1000, 500});
  l.set_privileged(4, true);
  EXPECT_EQ(l.budget(4), 500u);
  EXPECT_EQ(l.budget(5), 100u);
  EXPECT_TRUE(l.try_charge(4, Charge::kQueued, 500));
  EXPECT_FALSE(l.try_charge(4, Charge::kQueued, 1));
}

TEST(Ledger, ZeroMeansNoLimit) {
  Ledger l({0, 0, 0});
  EXPECT_TRUE(l.try_charge(1, Charge::kQueued, std::uint64_t{1} << 40));
  EXPECT_TRUE(l.fits(1, std::uint64_t{1} << 40));
}

TEST(Ledger, DefaultsAreFarAboveOneWellBehavedProgram) {
  // tests/integration/fidelity_test.cpp: 50 queued messages of 400 kB.
  const LedgerLimits d;
  EXPECT_GE(d.per_user, std::uint64_t{50} * 409600 * 4);
  EXPECT_GE(d.total, d.per_user);
  EXPECT_EQ(d.per_privileged, 0u);
}

TEST(Ledger, AdjustFollowsAHolding) {
  Ledger l({1000, 0, 0});
  std::uint64_t held = 0;
  l.adjust(2, Charge::kOutput, held, 700);
  EXPECT_EQ(held, 700u);
  EXPECT_EQ(l.used(2, Charge::kOutput), 700u);
  l.adjust(2, Charge::kOutput, held, 1500);  // owed replies: never refused
  EXPECT_EQ(l.used(2), 1500u);
  l.adjust(2, Charge::kOutput, held, 0);
  EXPECT_EQ(l.used(2), 0u);
  EXPECT_EQ(held, 0u);
}

TEST(Ledger, TryAdjustAllowsSmallHoldingsOverBudgetButNotGrowthBeyond) {
  // A partial input frame: up to free_below bytes are always allowed, so
  // that a user over its budget can still send the requests that drain it.
  Ledger l({1000, 0, 0});
  l.charge(1, Charge::kQueued, 1000);  // at its budget
  std::uint64_t in = 0;
  EXPECT_TRUE(l.try_adjust(1, Charge::kInput, in, 64, 64));
  EXPECT_EQ(in, 64u);
  EXPECT_FALSE(l.try_adjust(1, Charge::kInput, in, 65, 64));
  EXPECT_EQ(in, 64u);  // unchanged
  EXPECT_TRUE(l.try_adjust(1, Charge::kInput, in, 10, 64));  // shrinking always works
  l.release(1, Charge::kQueued, 1000);
  EXPECT_TRUE(l.try_adjust(1, Charge::kInput, in, 900, 64));
  EXPECT_EQ(l.used(1), 900u);
}

TEST(Ledger, ReleaseNeverGoesBelowWhatWasCharged) {
  Ledger l;
  l.charge(1, Charge::kQueued, 10);
  l.release(1, Charge::kQueued, 20);
  l.release(2, Charge::kQueued, 5);  // never charged
  EXPECT_EQ(l.total(), 0u);
  EXPECT_EQ(l.used(1), 0u);
}

}  // namespace
}  // namespace kbus::core
