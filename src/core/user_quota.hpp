// core/user_quota.hpp - Ksocks per user, over all the buses of a daemon
// (docs/reliability.md §4, --max-ksocks-per-user; docs/decisions.md D14).
//
// A rule of the bus service, so it is decided here and not in the daemon:
// the daemon says who connected (the peer's uid) and who left, and asks
// whether a newcomer is admitted. A connection counts from connect(), so
// that connections which never say HELLO count too; a refused one is not
// counted (its HELLO is answered with EMFILE). 0 = no limit. Pure: no I/O.
#pragma once

#include <cstdint>
#include <map>

namespace kbus::core {

class UserQuota {
 public:
  explicit UserQuota(std::uint32_t max_per_user = 0) : max_(max_per_user) {}

  std::uint32_t max_per_user() const noexcept { return max_; }
  // Counts one more connection for `uid` and returns true, or returns false
  // (and counts nothing) if `uid` already has its maximum.
  bool admit(std::uint32_t uid) {
    std::uint32_t& n = per_user_[uid];
    if (max_ != 0 && n >= max_) {
      if (n == 0) per_user_.erase(uid);
      return false;
    }
    ++n;
    return true;
  }
  // A connection admitted for `uid` is gone.
  void release(std::uint32_t uid) {
    auto it = per_user_.find(uid);
    if (it != per_user_.end() && --it->second == 0) per_user_.erase(it);
  }
  std::uint32_t count(std::uint32_t uid) const {
    auto it = per_user_.find(uid);
    return it == per_user_.end() ? 0 : it->second;
  }

 private:
  std::uint32_t max_;
  std::map<std::uint32_t, std::uint32_t> per_user_;
};

}  // namespace kbus::core
