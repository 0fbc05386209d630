// core/node_pool.hpp - spare nodes for a node-based container (std::set,
// std::map), so that steady traffic through it allocates nothing.
//
// Erasing through the pool keeps the erased node (C++17 extract); inserting
// through it reuses a kept node instead of allocating one. Node handles move
// between containers of the same type, so one pool serves every container
// of that type on a bus (every Ksock's outstanding-request set, say). At
// most `max_spare` nodes are kept; beyond that, erasing frees as usual.
// The containers keep their own meaning, order and complexity: the pool
// changes only where their nodes come from.
#pragma once

#include <cstddef>
#include <utility>
#include <vector>

namespace kbus::core {

template <class Container>
class NodePool {
 public:
  using key_type = typename Container::key_type;
  using iterator = typename Container::iterator;

  explicit NodePool(std::size_t max_spare) : max_spare_(max_spare) {}

  // For a std::set: inserts `key` if it is not there yet.
  void insert(Container& c, const key_type& key) {
    auto hint = c.lower_bound(key);
    if (hint != c.end() && !c.key_comp()(key, *hint)) return;
    if (spare_.empty()) {
      c.emplace_hint(hint, key);
      return;
    }
    auto node = std::move(spare_.back());
    spare_.pop_back();
    node.value() = key;
    c.insert(hint, std::move(node));
  }

  // For a std::map: c[key] = mapped. (A template only so that NodePool of a
  // std::set, which has no mapped_type, still compiles.)
  template <class Mapped>
  void assign(Container& c, const key_type& key, const Mapped& mapped) {
    auto hint = c.lower_bound(key);
    if (hint != c.end() && !c.key_comp()(key, hint->first)) {
      hint->second = mapped;
      return;
    }
    if (spare_.empty()) {
      c.emplace_hint(hint, key, mapped);
      return;
    }
    auto node = std::move(spare_.back());
    spare_.pop_back();
    node.key() = key;
    node.mapped() = mapped;
    c.insert(hint, std::move(node));
  }

  void erase(Container& c, iterator it) {
    if (spare_.size() < max_spare_)
      spare_.push_back(c.extract(it));
    else
      c.erase(it);
  }
  // Returns the number of elements erased (0 or 1).
  std::size_t erase(Container& c, const key_type& key) {
    auto it = c.find(key);
    if (it == c.end()) return 0;
    erase(c, it);
    return 1;
  }
  void clear(Container& c) {
    while (!c.empty()) erase(c, c.begin());
  }

 private:
  std::size_t max_spare_;
  std::vector<typename Container::node_type> spare_;
};

}  // namespace kbus::core
