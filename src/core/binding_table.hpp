// core/binding_table.hpp - all bindings of one bus, indexed so that matching
// never scans the table (DESIGN.md §5): exact names by hash, wildcards by the
// prefix they cover. Table order is newest first (KBUS-SPEC.md §2.4-3, §9.1);
// each binding carries a sequence number that grows with every bind, so
// "newest first" is "highest sequence first".
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "core/names.hpp"

namespace kbus::core {

struct Binding {
  std::uint64_t seq = 0;
  std::uint32_t ksock = 0;
  bool replier = false;
  std::string name;
  NameClass cls = NameClass::kSpecific;
};

class BindingTable {
 public:
  // Adds a binding (the caller has validated the name and checked
  // EADDRINUSE). Returns its sequence number.
  std::uint64_t add(std::uint32_t ksock, bool replier, std::string_view name);
  // O(log n) in the bindings of the name's index and of the Ksock.
  void remove(std::uint64_t seq);
  const Binding* find(std::uint64_t seq) const;

  // By Ksock (O(log n)): the most recent binding of `ksock` identical to
  // (replier, name), or null (UNBIND, §4.6); the sequence numbers of all of
  // `ksock`'s bindings, newest first, appended to out (CLOSE, §7.2-4).
  const Binding* latest_of(std::uint32_t ksock, bool replier, std::string_view name) const;
  void seqs_of(std::uint32_t ksock, std::vector<std::uint64_t>& out) const;

  // The replier binding whose name string is exactly `name`, or null
  // (EADDRINUSE check, REPLIER query §4.6).
  const Binding* replier_by_string(std::string_view name) const;
  // §2.4: the replier selected for a message named `msg_name`, or null.
  const Binding* select_replier(std::string_view msg_name) const;
  // §2.3: every listener binding matching `msg_name`, newest first, appended
  // to out.
  void matching_listeners(std::string_view msg_name, std::vector<const Binding*>& out) const;

  // All bindings, oldest first (iterate in reverse for table order).
  const std::map<std::uint64_t, Binding>& all() const noexcept { return all_; }
  std::size_t size() const noexcept { return all_.size(); }

 private:
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
      return std::hash<std::string_view>{}(s);
    }
  };
  template <class V>
  using NameMap = std::unordered_map<std::string, V, Hash, std::equal_to<>>;

  std::uint64_t next_seq_ = 1;
  std::map<std::uint64_t, Binding> all_;
  // Listener indexes: key = exact name, or wildcard prefix P (ending in '.').
  // Sets, so that removing one of many bindings of a name is O(log n).
  // Each maps the binding's sequence number to the binding (a node of all_:
  // it does not move), so that matching looks nothing up.
  using Seqs = std::map<std::uint64_t, const Binding*>;
  NameMap<Seqs> listen_exact_;
  NameMap<Seqs> listen_percent_;
  NameMap<Seqs> listen_star_;
  // Every binding by (Ksock, replier, name, seq); the name views the
  // Binding's own string in all_ (a map node: it does not move).
  using KsockKey = std::tuple<std::uint32_t, bool, std::string_view, std::uint64_t>;
  std::set<KsockKey> by_ksock_;
  // Replier indexes: at most one replier per exact name string.
  NameMap<std::uint64_t> reply_by_string_;
  NameMap<std::uint64_t> reply_percent_;  // key = prefix
  NameMap<std::uint64_t> reply_star_;     // key = prefix
};

}  // namespace kbus::core
