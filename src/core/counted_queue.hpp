// core/counted_queue.hpp - a Ksock's message queue that knows how many bytes
// it holds, for the per-Ksock queued-bytes limit (docs/reliability.md §4).
//
// A std::deque with the few members the bus uses. Each entry's size is
// stamped into it (Entry::bytes) when it is inserted, so the total stays
// right however the entry is moved out before it is erased or popped
// (`auto e = std::move(q.front()); q.pop_front();` is the usual pattern).
// Every way in or out goes through this class: there is no other way to
// change the deque.
#pragma once

#include <cstdint>
#include <deque>
#include <utility>

namespace kbus::core {

// Entry must have `std::uint32_t bytes` (written here) and `body` with
// `name` and `data` (read to size it).
template <class Entry>
class CountedQueue {
 public:
  using iterator = typename std::deque<Entry>::iterator;
  using const_iterator = typename std::deque<Entry>::const_iterator;

  // The bytes one entry counts for: its name, its data and a 64-bit header.
  static std::uint32_t size_of(const Entry& e) {
    return e.body ? static_cast<std::uint32_t>(88 + e.body->name.size() + e.body->data.size())
                  : 88u;
  }

  void push_back(Entry e) {
    e.bytes = size_of(e);
    bytes_ += e.bytes;
    q_.push_back(std::move(e));
  }
  void push_front(Entry e) {
    e.bytes = size_of(e);
    bytes_ += e.bytes;
    q_.push_front(std::move(e));
  }
  void pop_front() {
    bytes_ -= q_.front().bytes;
    q_.pop_front();
  }
  iterator erase(iterator it) {
    bytes_ -= it->bytes;
    return q_.erase(it);
  }
  void clear() {
    q_.clear();
    bytes_ = 0;
  }

  Entry& front() { return q_.front(); }
  const Entry& front() const { return q_.front(); }
  bool empty() const noexcept { return q_.empty(); }
  std::size_t size() const noexcept { return q_.size(); }
  iterator begin() { return q_.begin(); }
  iterator end() { return q_.end(); }
  const_iterator begin() const { return q_.begin(); }
  const_iterator end() const { return q_.end(); }

  // Total of the entries' sizes (size_of at insertion).
  std::uint64_t bytes() const noexcept { return bytes_; }

 private:
  std::deque<Entry> q_;
  std::uint64_t bytes_ = 0;
};

}  // namespace kbus::core
