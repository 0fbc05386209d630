#include "core/binding_table.hpp"

#include <algorithm>
#include <cassert>
#include <limits>

namespace kbus::core {

std::uint64_t BindingTable::add(std::uint32_t ksock, bool replier, std::string_view name) {
  const std::uint64_t seq = next_seq_++;
  Binding b;
  b.seq = seq;
  b.ksock = ksock;
  b.replier = replier;
  b.name = std::string(name);
  b.cls = name_class(name);
  std::string key(binding_prefix(name));
  auto [at, inserted] = all_.emplace(seq, std::move(b));
  assert(inserted);
  const Binding& kept = at->second;
  if (replier) {
    assert(reply_by_string_.find(name) == reply_by_string_.end());
    reply_by_string_.emplace(kept.name, seq);
    if (kept.cls == NameClass::kPercent) reply_percent_[key] = seq;
    if (kept.cls == NameClass::kStar) reply_star_[key] = seq;
  } else {
    switch (kept.cls) {
      case NameClass::kSpecific: listen_exact_[key].emplace(seq, &kept); break;
      case NameClass::kPercent: listen_percent_[key].emplace(seq, &kept); break;
      case NameClass::kStar: listen_star_[key].emplace(seq, &kept); break;
    }
  }
  by_ksock_.emplace(kept.ksock, kept.replier, std::string_view(kept.name), seq);
  return seq;
}

void BindingTable::remove(std::uint64_t seq) {
  auto it = all_.find(seq);
  if (it == all_.end()) return;
  const Binding& b = it->second;
  std::string_view key = binding_prefix(b.name);
  auto drop_from = [&](NameMap<Seqs>& m) {
    auto mi = m.find(key);
    if (mi == m.end()) return;
    mi->second.erase(seq);
    if (mi->second.empty()) m.erase(mi);
  };
  by_ksock_.erase(KsockKey{b.ksock, b.replier, std::string_view(b.name), seq});
  if (b.replier) {
    reply_by_string_.erase(reply_by_string_.find(std::string_view(b.name)));
    if (b.cls == NameClass::kPercent) reply_percent_.erase(reply_percent_.find(key));
    if (b.cls == NameClass::kStar) reply_star_.erase(reply_star_.find(key));
  } else {
    switch (b.cls) {
      case NameClass::kSpecific: drop_from(listen_exact_); break;
      case NameClass::kPercent: drop_from(listen_percent_); break;
      case NameClass::kStar: drop_from(listen_star_); break;
    }
  }
  all_.erase(it);
}

const Binding* BindingTable::find(std::uint64_t seq) const {
  auto it = all_.find(seq);
  return it == all_.end() ? nullptr : &it->second;
}

const Binding* BindingTable::latest_of(std::uint32_t ksock, bool replier,
                                       std::string_view name) const {
  auto it = by_ksock_.upper_bound(
      KsockKey{ksock, replier, name, std::numeric_limits<std::uint64_t>::max()});
  if (it == by_ksock_.begin()) return nullptr;
  --it;
  const auto& [k, r, n, seq] = *it;
  if (k != ksock || r != replier || n != name) return nullptr;
  return find(seq);
}

void BindingTable::seqs_of(std::uint32_t ksock, std::vector<std::uint64_t>& out) const {
  const std::size_t first = out.size();
  for (auto it = by_ksock_.lower_bound(KsockKey{ksock, false, {}, 0});
       it != by_ksock_.end() && std::get<0>(*it) == ksock; ++it)
    out.push_back(std::get<3>(*it));
  std::sort(out.begin() + static_cast<std::ptrdiff_t>(first), out.end(), std::greater<>());
}

const Binding* BindingTable::replier_by_string(std::string_view name) const {
  auto it = reply_by_string_.find(name);
  return it == reply_by_string_.end() ? nullptr : find(it->second);
}

const Binding* BindingTable::select_replier(std::string_view msg_name) const {
  // §2.4: SPECIFIC > '%' > '*'; among '*' the most recent binding wins.
  if (auto it = reply_by_string_.find(msg_name); it != reply_by_string_.end()) {
    const Binding* b = find(it->second);
    if (b->cls == NameClass::kSpecific) return b;
  }
  const std::size_t last_dot = msg_name.rfind('.');
  if (last_dot == std::string_view::npos || last_dot < 1) return nullptr;
  if (!reply_percent_.empty()) {
    if (auto it = reply_percent_.find(msg_name.substr(0, last_dot + 1)); it != reply_percent_.end())
      return find(it->second);
  }
  if (reply_star_.empty()) return nullptr;
  std::uint64_t best = 0;
  for (std::size_t i = 1; i <= last_dot; ++i) {
    if (msg_name[i] != '.') continue;
    if (auto it = reply_star_.find(msg_name.substr(0, i + 1)); it != reply_star_.end())
      best = std::max(best, it->second);
  }
  return best ? find(best) : nullptr;
}

void BindingTable::matching_listeners(std::string_view msg_name,
                                      std::vector<const Binding*>& out) const {
  const std::size_t first = out.size();
  auto add_all = [&](const NameMap<Seqs>& m, std::string_view key) {
    auto it = m.find(key);
    if (it == m.end()) return;
    for (const auto& [seq, b] : it->second) out.push_back(b);
  };
  if (!listen_exact_.empty()) add_all(listen_exact_, msg_name);  // skips hashing the name
  const std::size_t last_dot = msg_name.rfind('.');
  if (last_dot != std::string_view::npos && last_dot >= 1 && last_dot + 1 < msg_name.size()) {
    if (!listen_percent_.empty()) add_all(listen_percent_, msg_name.substr(0, last_dot + 1));
    if (!listen_star_.empty()) {
      for (std::size_t i = 1; i <= last_dot; ++i)
        if (msg_name[i] == '.') add_all(listen_star_, msg_name.substr(0, i + 1));
    }
  }
  std::sort(out.begin() + static_cast<std::ptrdiff_t>(first), out.end(),
            [](const Binding* a, const Binding* b) { return a->seq > b->seq; });
}

}  // namespace kbus::core
