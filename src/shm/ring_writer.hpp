// shm/ring_writer.hpp - kbusd's side of a Ksock's shared-memory receive
// queue (the layout and the model: shm/ring_format.hpp).
//
// What it owns: the memfd (until handed to the client), its mapping, and
// kbusd's private record of what it published: the ids
// and flags of the messages mirrored and not yet seen taken. It never
// trusts the shared memory: freeze() reads the state word once and checks
// it against that record. It knows nothing of the bus; the daemon
// (daemon/shm_transport.cpp) pops what the client took and mirrors the
// core's queue through append().
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "kbus/message.hpp"
#include "shm/ring_format.hpp"
#include "util/fd.hpp"

namespace kbus::shm {

// The number of messages an honest client can have taken, given the state
// word kbusd read (`seen`), the generation kbusd last stored, the R it last
// stored and the messages it had published beyond that R; nullopt if the
// word cannot be an honest client's (another generation, busy set, R moved
// backwards or beyond what was published).
std::optional<std::uint32_t> validate_taken(std::uint64_t seen, std::uint32_t gen,
                                            std::uint32_t r_base, std::uint32_t published) noexcept;

class RingWriter {
 public:
  struct Mirrored {
    MessageId id;
    std::uint32_t flags = 0;
  };

  // A new ring: memfd (sealed against resizing), mapped.
  // nullptr with errno set if the system refuses.
  static std::unique_ptr<RingWriter> create();
  // Over memory the caller provides (kRingBytes, zeroed): tests and fuzzing.
  explicit RingWriter(void* mem) noexcept;
  ~RingWriter();
  RingWriter(const RingWriter&) = delete;
  RingWriter& operator=(const RingWriter&) = delete;

  int memfd() const noexcept { return memfd_.get(); }
  void drop_memfd() noexcept { memfd_.reset(); }  // once the client has it

  // Enters an operation: sets busy (the client can take nothing until
  // publish()) and reads what the client took since the last publish: the
  // count (the oldest `count` of mirrored() were taken), or nullopt if the
  // state word was tampered with (then nothing counts as taken).
  std::optional<std::uint32_t> freeze() noexcept;
  bool frozen() const noexcept { return frozen_; }
  // The messages published and not seen taken, oldest first (after a
  // freeze: the taken ones are still at the front until drop_taken()).
  const std::deque<Mirrored>& mirrored() const noexcept { return mirrored_; }
  void drop_taken(std::uint32_t n) noexcept;
  // While frozen: forget every message not taken (R := W); the client will
  // never take them. Used when the core's queue no longer begins with them.
  void skip_all() noexcept;
  bool full() const noexcept { return mirrored_.size() >= kSlotCount; }
  // While frozen and not full: one more message (kSlotTooBig if its entire
  // form is longer than kMaxInline).
  void append(MessageId id, std::uint32_t flags, std::string_view entire) noexcept;
  // Leaves the operation: publishes W, the flags and the state word (busy
  // clear). Returns what the poll fd must now show: +1 send a token (the
  // ring went from empty, as the client last saw it, to holding messages),
  // -1 take the tokens back (kbusd emptied it by skip_all), 0 nothing.
  int publish(std::uint32_t flags) noexcept;

 private:
  RingHeader* hdr() const noexcept { return static_cast<RingHeader*>(mem_); }

  void* mem_ = nullptr;
  bool owns_mapping_ = false;
  util::Fd memfd_;
  bool frozen_ = false;
  bool empty_at_freeze_ = true;
  bool skipped_ = false;
  std::uint32_t gen_ = 0;
  std::uint32_t r_ = 0;  // R as kbusd last stored it
  std::uint32_t w_ = 0;  // W
  std::deque<Mirrored> mirrored_;
};

}  // namespace kbus::shm
