// core/ledger.hpp - bytes held by kbusd on each user's behalf, with a
// budget per user and one for the whole daemon (docs/reliability.md §4,
// docs/decisions.md D28), after dbus-broker's per-user quotas: every
// resource kbusd holds for a client is charged to a uid.
//
// What is charged, and to whom (D28):
//   kQueued    a message in a Ksock's queue: to the uid of the Ksock that
//              holds it unread (the receiver);
//   kSetAside  a set-aside unbind event (§8.4): to the listener's uid;
//   kRequests  an outstanding Request (§4.7): kRequestCost to the requester;
//   kBindings  a binding: kBindingCost + twice its name, to the binder;
//   kWriting   a message being written (§4.2) or waiting to be sent (§5.5):
//              to the writer;
//   kInput     a connection's partial input frame: to the peer's uid;
//   kOutput    a connection's unread replies (report replies among them);
//   kRing      a Ksock's shared-memory receive queue (docs/protocol.md §7),
//              all of its pages: to the uid of its client.
//
// (kWriting: the message's 88 + name + data once its header is written.)
//
// The rules: try_charge() refuses a charge that would take the user past
// its budget, or (for an ordinary user) the daemon past its total, and
// charges nothing then; charge() never refuses (for what the spec says must
// never fail - Status messages, set-aside unbind events - and for replies
// the daemon has already produced), so a user may end up over its budget,
// and then every try_charge of that user fails until it is back under.
// Privileged users (root, or members of kbusd's --privileged-group) have
// their own budget (0 = none) and are never refused for the total: the
// others cannot starve them. 0 = no limit anywhere. Pure: no I/O.
#pragma once

#include <array>
#include <cstdint>
#include <unordered_map>
#include <utility>
#include <vector>

namespace kbus::core {

struct LedgerLimits {
  // Defaults: far above what one well-behaved program of the original holds
  // (50 unread 400 kB messages are 20 MB: tests/integration/fidelity_test).
  std::uint64_t per_user = std::uint64_t{256} << 20;
  std::uint64_t total = std::uint64_t{1} << 30;
  std::uint64_t per_privileged = 0;  // root and --privileged-group
};

enum class Charge : std::uint8_t {
  kQueued,
  kSetAside,
  kRequests,
  kBindings,
  kWriting,
  kInput,
  kOutput,
  kRing
};
constexpr std::size_t kChargeKinds = 8;
const char* charge_name(Charge c);

// The memory each outstanding Request and each binding costs kbusd beyond
// its bytes (tree and index nodes, bookkeeping), rounded up.
constexpr std::uint64_t kRequestCost = 256;
constexpr std::uint64_t kBindingCost = 256;
// A message being written up to this size is taken whatever the budget
// (SEND's rules then decide); a larger one must fit (docs/decisions.md D28).
constexpr std::uint64_t kFreeWriting = 64 * 1024;

class Ledger {
 public:
  explicit Ledger(LedgerLimits limits = {}) : limits_(limits) {}
  Ledger(const Ledger&) = delete;
  Ledger& operator=(const Ledger&) = delete;

  const LedgerLimits& limits() const noexcept { return limits_; }

  // Whether `uid` is privileged (root is, always).
  void set_privileged(std::uint32_t uid, bool privileged);
  bool privileged(std::uint32_t uid) const;
  // The budget of `uid` (0 = none).
  std::uint64_t budget(std::uint32_t uid) const {
    return privileged(uid) ? limits_.per_privileged : limits_.per_user;
  }

  // Whether `bytes` more may be charged to `uid` now.
  bool fits(std::uint32_t uid, std::uint64_t bytes) const;
  // Charges `bytes` to `uid` if fits(); false (nothing charged) if not.
  bool try_charge(std::uint32_t uid, Charge what, std::uint64_t bytes);
  // Charges whatever the budgets say.
  void charge(std::uint32_t uid, Charge what, std::uint64_t bytes);
  // Gives back bytes charged before (never more than was charged).
  void release(std::uint32_t uid, Charge what, std::uint64_t bytes);
  // Moves a charge of `what` from `held` to `now` (charge() or release()).
  void adjust(std::uint32_t uid, Charge what, std::uint64_t& held, std::uint64_t now);
  // The same for a holding that may only grow within the budgets: growth
  // up to `free_below` bytes is always allowed (so that a user over its
  // budget can still send the small requests that drain it), beyond that
  // only if it fits; false (nothing changed) if not.
  bool try_adjust(std::uint32_t uid, Charge what, std::uint64_t& held, std::uint64_t now,
                  std::uint64_t free_below);

  std::uint64_t used(std::uint32_t uid) const;
  std::uint64_t used(std::uint32_t uid, Charge what) const;
  std::uint64_t total() const noexcept { return total_; }
  std::uint64_t total(Charge what) const noexcept { return by_kind_[index(what)]; }
  std::size_t users() const noexcept { return accounts_.size(); }

  // A message or operation refused to `uid` for want of budget (a listener
  // copy missed, a Request refused, ...), counted for the daemon's log:
  // what is refused that way would otherwise go unseen.
  void note_refused(std::uint32_t uid) const { ++refused_[uid]; }
  bool has_refusals() const noexcept { return !refused_.empty(); }
  // The uids refused since the last call, each with its count.
  std::vector<std::pair<std::uint32_t, std::uint64_t>> take_refused();

 private:
  struct Account {
    std::array<std::uint64_t, kChargeKinds> by_kind{};
    std::uint64_t sum = 0;
  };
  static std::size_t index(Charge c) { return static_cast<std::size_t>(c); }

  LedgerLimits limits_;
  std::unordered_map<std::uint32_t, Account> accounts_;  // uids with a charge
  std::unordered_map<std::uint32_t, bool> privileged_;
  mutable std::unordered_map<std::uint32_t, std::uint64_t> refused_;
  std::array<std::uint64_t, kChargeKinds> by_kind_{};
  std::uint64_t total_ = 0;
};

}  // namespace kbus::core
