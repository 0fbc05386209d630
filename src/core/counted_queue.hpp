// core/counted_queue.hpp - a Ksock's message queue that knows how many bytes
// it holds, for the per-Ksock queued-bytes limit (docs/reliability.md §4).
//
// A ring buffer of entries (a double-ended queue with the few members the
// bus uses). Unlike std::deque, which allocates and frees a block every few
// entries as messages flow through, it keeps its storage while in use, so a
// steady flow of messages allocates nothing; storage beyond
// kKeptCapacity entries is given back when the queue becomes empty.
//
// Each entry's size is stamped into it (Entry::bytes) when it is inserted,
// so the total stays right however the entry is moved out before it is
// erased or popped (`auto e = std::move(q.front()); q.pop_front();` is the
// usual pattern). Every way in or out goes through this class: there is no
// other way to change the queue.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <type_traits>
#include <utility>

namespace kbus::core {

// Entry must be default-constructible and movable, with `std::uint32_t
// bytes` (written here) and `body` with `name()` and `data()` (read to size
// it). Free slots hold default-constructed entries.
template <class Entry>
class CountedQueue {
  template <bool kConst>
  class Iter;

 public:
  using iterator = Iter<false>;
  using const_iterator = Iter<true>;

  // Storage for up to this many entries is kept while the queue is empty.
  static constexpr std::size_t kKeptCapacity = 16;

  CountedQueue() = default;
  CountedQueue(CountedQueue&&) noexcept = default;
  CountedQueue& operator=(CountedQueue&&) noexcept = default;

  // The bytes one entry counts for: its name, its data and a 64-bit header.
  static std::uint32_t size_of(const Entry& e) {
    return e.body ? static_cast<std::uint32_t>(88 + e.body.name().size() + e.body.data().size())
                  : 88u;
  }

  void push_back(Entry e) {
    e.bytes = size_of(e);
    bytes_ += e.bytes;
    if (size_ == capacity_) grow();
    slot(size_) = std::move(e);
    ++size_;
  }
  void push_front(Entry e) {
    e.bytes = size_of(e);
    bytes_ += e.bytes;
    if (size_ == capacity_) grow();
    head_ = (head_ + capacity_ - 1) & (capacity_ - 1);
    slot(0) = std::move(e);
    ++size_;
  }
  void pop_front() {
    bytes_ -= slot(0).bytes;
    slot(0) = Entry{};  // drop its reference to the body now
    head_ = (head_ + 1) & (capacity_ - 1);
    --size_;
    if (size_ == 0) emptied();
  }
  // Removes the entry at `it`; returns the iterator to the entry after it.
  iterator erase(iterator it) {
    const std::size_t i = it.i_;
    bytes_ -= slot(i).bytes;
    // Close the gap from the nearer end (as std::deque does).
    if (i < size_ / 2) {
      for (std::size_t j = i; j > 0; --j) slot(j) = std::move(slot(j - 1));
      slot(0) = Entry{};
      head_ = (head_ + 1) & (capacity_ - 1);
    } else {
      for (std::size_t j = i; j + 1 < size_; ++j) slot(j) = std::move(slot(j + 1));
      slot(size_ - 1) = Entry{};
    }
    --size_;
    if (size_ == 0) emptied();
    return iterator(this, i);
  }
  void clear() {
    for (std::size_t i = 0; i < size_; ++i) slot(i) = Entry{};
    size_ = 0;
    bytes_ = 0;
    emptied();
  }

  Entry& front() { return slot(0); }
  const Entry& front() const { return slot(0); }
  bool empty() const noexcept { return size_ == 0; }
  std::size_t size() const noexcept { return size_; }
  iterator begin() { return iterator(this, 0); }
  iterator end() { return iterator(this, size_); }
  const_iterator begin() const { return const_iterator(this, 0); }
  const_iterator end() const { return const_iterator(this, size_); }

  // Total of the entries' sizes (size_of at insertion).
  std::uint64_t bytes() const noexcept { return bytes_; }

  // The ring's own invariants (Bus::check_invariants): a power-of-two
  // capacity that holds the entries, the byte total, and free slots that
  // hold no body (a message read is not kept alive by the queue).
  bool consistent() const {
    if (capacity_ & (capacity_ - 1)) return false;
    if (size_ > capacity_ || (capacity_ ? head_ >= capacity_ : head_ != 0)) return false;
    std::uint64_t total = 0;
    for (std::size_t i = 0; i < capacity_; ++i) {
      const Entry& e = slot(i);
      if (i < size_)
        total += e.bytes;
      else if (e.body)
        return false;
    }
    return total == bytes_;
  }

 private:
  // A position in the queue, counted from the front.
  template <bool kConst>
  class Iter {
    using Queue = std::conditional_t<kConst, const CountedQueue, CountedQueue>;

   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = Entry;
    using difference_type = std::ptrdiff_t;
    using pointer = std::conditional_t<kConst, const Entry*, Entry*>;
    using reference = std::conditional_t<kConst, const Entry&, Entry&>;

    Iter() = default;
    reference operator*() const { return q_->slot(i_); }
    pointer operator->() const { return &q_->slot(i_); }
    Iter& operator++() {
      ++i_;
      return *this;
    }
    Iter operator++(int) {
      Iter old = *this;
      ++i_;
      return old;
    }
    friend bool operator==(const Iter& a, const Iter& b) noexcept { return a.i_ == b.i_; }

   private:
    friend class CountedQueue;
    Iter(Queue* q, std::size_t i) : q_(q), i_(i) {}
    Queue* q_ = nullptr;
    std::size_t i_ = 0;
  };

  Entry& slot(std::size_t i) { return slots_[(head_ + i) & (capacity_ - 1)]; }
  const Entry& slot(std::size_t i) const { return slots_[(head_ + i) & (capacity_ - 1)]; }

  // Doubles the storage (a power of two, so that positions wrap by masking).
  void grow() {
    const std::size_t capacity = capacity_ ? 2 * capacity_ : 8;
    auto slots = std::make_unique<Entry[]>(capacity);
    for (std::size_t i = 0; i < size_; ++i) slots[i] = std::move(slot(i));
    slots_ = std::move(slots);
    capacity_ = capacity;
    head_ = 0;
  }
  void emptied() {
    head_ = 0;
    if (capacity_ > kKeptCapacity) {
      slots_.reset();
      capacity_ = 0;
    }
  }

  std::unique_ptr<Entry[]> slots_;
  std::size_t capacity_ = 0;  // 0 or a power of two
  std::size_t head_ = 0;      // slot of the front entry
  std::size_t size_ = 0;
  std::uint64_t bytes_ = 0;
};

}  // namespace kbus::core
