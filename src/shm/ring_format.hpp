// shm/ring_format.hpp - the shared-memory receive queue of one Ksock: its
// layout, in one place for kbusd (shm/ring_writer.*) and the client
// (shm/ring_reader.*). docs/protocol.md §7 describes it byte by byte.
//
// The model. kbusd's core keeps every Ksock's queue, as always. For a Ksock
// whose client asked for it (SHMRING, docs/protocol.md §7), kbusd also
// copies the head of that queue - at most kSlotCount messages, oldest
// first - into a memfd that both map: the client reads a message by
// copying a slot and advancing the read position with one compare-and-swap,
// no system call. The copies are a *mirror*: a message leaves the core's
// queue (is popped, with every rule of NEXTMSG: Requests become owed,
// MAXMSGS room is freed) only when kbusd has seen the client's read
// position pass it. kbusd looks at that position before every operation on
// the bus ("freeze"), so every rule decides on exact counts.
//
// Words, and who writes them:
//   state   (client and kbusd) bits 0-31: R, messages the client has taken
//           (mod 2^32); bit 63: busy, kbusd is inside an operation and the
//           client may take nothing; bits 32-62: kbusd's generation, bumped
//           at every freeze, so that a client's compare-and-swap prepared
//           before a freeze always fails (no ABA).
//   write   (kbusd) W, messages published (mod 2^32); W - R <= kSlotCount.
//   flags   (kbusd) kNotifyWhenEmpty: the core queue holds more than the
//           ring shows (or set-aside events, §8.4); kNotifyEach: a sender waits for room (ALL_OR_WAIT).
//           The client then tells kbusd (any operation; it uses NUMMSGS).
// kbusd reads only `state` (validated: the generation must be its own, busy
// clear, and R may advance by at most the messages it published). A client
// that scribbles on its memory hurts only itself: kbusd disconnects it.
//
// Readiness (KBUS-SPEC.md §4.4: the Ksock's fd is readable when a message
// is waiting) stays on the Ksock's poll fd, a socket pair: a byte waiting
// in it (a "token") means readable. kbusd sends a token when it publishes
// messages into a ring the client had emptied, and takes the tokens back
// when it empties a ring itself (skip); the client takes them back when it
// takes the last message, and if it then sees a message (a publication
// raced with it) asks kbusd for a token (SHMRING 3). The client never holds
// the sending end, so the poll fd still hangs up when kbusd goes away.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace kbus::shm {

constexpr std::uint32_t kMagic = 0x5253424bu;  // "KBSR"
constexpr std::uint32_t kVersion = 1;
constexpr std::uint32_t kSlotCount = 16;
constexpr std::uint32_t kSlotSize = 1024;  // slot header + entire form
constexpr std::uint32_t kSlotHeader = 16;
constexpr std::uint32_t kMaxInline = kSlotSize - kSlotHeader;

// Slot kinds.
constexpr std::uint32_t kSlotMessage = 1;  // the entire form follows
constexpr std::uint32_t kSlotTooBig = 2;   // longer than kMaxInline: read it with NEXTREAD

// flags bits.
constexpr std::uint32_t kNotifyWhenEmpty = 1;
constexpr std::uint32_t kNotifyEach = 2;

constexpr std::uint64_t kBusy = std::uint64_t{1} << 63;
constexpr std::uint64_t kGenMask = 0x7FFFFFFFull;

constexpr std::uint32_t state_r(std::uint64_t s) { return static_cast<std::uint32_t>(s); }
constexpr std::uint32_t state_gen(std::uint64_t s) {
  return static_cast<std::uint32_t>((s >> 32) & kGenMask);
}
constexpr std::uint64_t make_state(std::uint32_t gen, bool busy, std::uint32_t r) {
  return (busy ? kBusy : 0) | ((std::uint64_t{gen} & kGenMask) << 32) | r;
}

struct SlotHeader {
  std::uint32_t kind;
  std::uint32_t len;  // bytes of the entire form (kSlotTooBig: its length, not present)
  std::uint32_t id_network;
  std::uint32_t id_serial;
};
static_assert(sizeof(SlotHeader) == kSlotHeader);

// The shared header; slots follow at kSlotsOffset. Each group of words
// written by one side has its own cache line.
struct RingHeader {
  std::uint32_t magic;
  std::uint32_t version;
  std::uint32_t slot_size;
  std::uint32_t slot_count;
  char pad0[48];
  std::atomic<std::uint64_t> state;  // offset 64
  char pad1[56];
  std::atomic<std::uint32_t> write;  // offset 128
  std::atomic<std::uint32_t> flags;  // offset 132
  char pad2[120];
};
static_assert(sizeof(RingHeader) == 256);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);

constexpr std::size_t kSlotsOffset = sizeof(RingHeader);
constexpr std::size_t kRingBytes = kSlotsOffset + std::size_t{kSlotCount} * kSlotSize;

inline char* slot_at(void* base, std::uint32_t pos) {
  return static_cast<char*>(base) + kSlotsOffset + std::size_t{pos % kSlotCount} * kSlotSize;
}

}  // namespace kbus::shm
