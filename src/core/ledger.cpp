// core/ledger.cpp - see ledger.hpp.
#include "core/ledger.hpp"

#include <algorithm>

namespace kbus::core {

const char* charge_name(Charge c) {
  switch (c) {
    case Charge::kQueued: return "queued messages";
    case Charge::kSetAside: return "set-aside events";
    case Charge::kRequests: return "outstanding requests";
    case Charge::kBindings: return "bindings";
    case Charge::kWriting: return "messages being written";
    case Charge::kInput: return "partial input frames";
    case Charge::kOutput: return "unread replies";
    case Charge::kRing: return "shared-memory queues";
  }
  return "?";
}

void Ledger::set_privileged(std::uint32_t uid, bool p) {
  if (uid == 0) return;  // root always is
  if (p)
    privileged_[uid] = true;
  else
    privileged_.erase(uid);
}

bool Ledger::privileged(std::uint32_t uid) const {
  return uid == 0 || privileged_.count(uid) != 0;
}

bool Ledger::fits(std::uint32_t uid, std::uint64_t bytes) const {
  const std::uint64_t limit = budget(uid);
  if (limit != 0) {
    const std::uint64_t mine = used(uid);
    if (mine > limit || bytes > limit - mine) return false;
  }
  if (!privileged(uid) && limits_.total != 0)
    if (total_ > limits_.total || bytes > limits_.total - total_) return false;
  return true;
}

bool Ledger::try_charge(std::uint32_t uid, Charge what, std::uint64_t bytes) {
  if (!fits(uid, bytes)) return false;
  charge(uid, what, bytes);
  return true;
}

void Ledger::charge(std::uint32_t uid, Charge what, std::uint64_t bytes) {
  if (bytes == 0) return;
  Account& a = accounts_[uid];
  a.by_kind[index(what)] += bytes;
  a.sum += bytes;
  by_kind_[index(what)] += bytes;
  total_ += bytes;
}

void Ledger::release(std::uint32_t uid, Charge what, std::uint64_t bytes) {
  if (bytes == 0) return;
  auto it = accounts_.find(uid);
  if (it == accounts_.end()) return;
  Account& a = it->second;
  const std::uint64_t n = std::min(bytes, a.by_kind[index(what)]);
  a.by_kind[index(what)] -= n;
  a.sum -= n;
  by_kind_[index(what)] -= n;
  total_ -= n;
  if (a.sum == 0) accounts_.erase(it);
}

void Ledger::adjust(std::uint32_t uid, Charge what, std::uint64_t& held, std::uint64_t now) {
  if (now > held)
    charge(uid, what, now - held);
  else
    release(uid, what, held - now);
  held = now;
}

bool Ledger::try_adjust(std::uint32_t uid, Charge what, std::uint64_t& held, std::uint64_t now,
                        std::uint64_t free_below) {
  if (now > held && now > free_below && !fits(uid, now - held)) return false;
  adjust(uid, what, held, now);
  return true;
}

std::uint64_t Ledger::used(std::uint32_t uid) const {
  auto it = accounts_.find(uid);
  return it == accounts_.end() ? 0 : it->second.sum;
}

std::uint64_t Ledger::used(std::uint32_t uid, Charge what) const {
  auto it = accounts_.find(uid);
  return it == accounts_.end() ? 0 : it->second.by_kind[index(what)];
}

std::vector<std::pair<std::uint32_t, std::uint64_t>> Ledger::take_refused() {
  std::vector<std::pair<std::uint32_t, std::uint64_t>> out(refused_.begin(), refused_.end());
  refused_.clear();
  return out;
}

}  // namespace kbus::core
