// util/deadline.hpp - a point in time to wait until, as poll() wants it.
//
// A Deadline is made from a timeout in milliseconds (negative: never) on the
// monotonic clock; remaining_ms() is the poll() timeout that is left (-1
// for never, 0 once it has passed), so a loop that is woken early (EINTR, a
// byte that was not the one it waits for) waits only for what is left.
#pragma once

#include <chrono>
#include <cstdint>

namespace kbus::util {

// Milliseconds on the monotonic clock (for timestamps and intervals).
inline std::int64_t now_ms() noexcept {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

class Deadline {
 public:
  // Never expires.
  Deadline() noexcept = default;
  // `timeout_ms` from now; negative: never.
  explicit Deadline(std::int64_t timeout_ms) noexcept
      : never_(timeout_ms < 0), at_(never_ ? 0 : now_ms() + timeout_ms) {}
  static Deadline never() noexcept { return Deadline(); }

  bool is_never() const noexcept { return never_; }
  bool expired() const noexcept { return !never_ && now_ms() >= at_; }
  // The timeout for poll(): -1 for never, else what is left (at least 0).
  int remaining_ms() const noexcept {
    if (never_) return -1;
    const std::int64_t left = at_ - now_ms();
    if (left <= 0) return 0;
    return left > 0x7fffffff ? 0x7fffffff : static_cast<int>(left);
  }

 private:
  bool never_ = true;
  std::int64_t at_ = 0;
};

}  // namespace kbus::util
