// core::UserQuota: Ksocks per user (docs/reliability.md §4).
#include "core/user_quota.hpp"

#include <gtest/gtest.h>

namespace kbus::core {
namespace {

TEST(UserQuota, RefusesTheUserAtItsMaximumOnly) {
  UserQuota q(2);
  EXPECT_TRUE(q.admit(1000));
  EXPECT_TRUE(q.admit(1000));
  EXPECT_FALSE(q.admit(1000));  // the third of uid 1000
  EXPECT_EQ(q.count(1000), 2u);
  EXPECT_TRUE(q.admit(1001));  // another user is not affected
  q.release(1000);
  EXPECT_TRUE(q.admit(1000));  // room again after one left
}

TEST(UserQuota, ZeroMeansNoLimit) {
  UserQuota q(0);
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(q.admit(7));
  EXPECT_EQ(q.count(7), 1000u);
}

TEST(UserQuota, ReleaseForgetsAUserWithNoneLeft) {
  UserQuota q(1);
  EXPECT_TRUE(q.admit(5));
  q.release(5);
  EXPECT_EQ(q.count(5), 0u);
  q.release(5);  // not admitted: nothing to release, no underflow
  EXPECT_EQ(q.count(5), 0u);
  EXPECT_TRUE(q.admit(5));
}

}  // namespace
}  // namespace kbus::core
