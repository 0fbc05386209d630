// shm/ring_test.cpp - the shared-memory receive queue's writer and reader
// on one piece of memory (docs/protocol.md §7; shm/ring_format.hpp).
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "shm/ring_reader.hpp"
#include "shm/ring_writer.hpp"

namespace kbus::shm {
namespace {

struct Mem {
  alignas(64) std::vector<char> bytes = std::vector<char>(kRingBytes + 64);
  void* base() { return bytes.data() + (64 - reinterpret_cast<std::uintptr_t>(bytes.data()) % 64) % 64; }
};

MessageId id(std::uint32_t n) { return MessageId{0, n}; }

TEST(RingTest, EmptyRingTakesNothing) {
  Mem m;
  RingWriter w(m.base());
  RingReader r(m.base());
  std::string out;
  std::uint32_t flags = 0;
  bool last = false;
  EXPECT_EQ(r.take(out, flags, last), Take::empty);
  EXPECT_FALSE(r.has_message());
}

TEST(RingTest, MessagesAreTakenInOrderOnlyOnce) {
  Mem m;
  RingWriter w(m.base());
  RingReader r(m.base());
  ASSERT_EQ(w.freeze(), 0u);
  w.append(id(1), 0, "first");
  w.append(id(2), 0, "second");
  EXPECT_EQ(w.publish(kNotifyWhenEmpty), 1);  // from empty: a token
  std::string out;
  std::uint32_t flags = 0;
  bool last = true;
  ASSERT_EQ(r.take(out, flags, last), Take::message);
  EXPECT_EQ(out, "first");
  EXPECT_FALSE(last);
  EXPECT_EQ(flags, kNotifyWhenEmpty);
  ASSERT_EQ(r.take(out, flags, last), Take::message);
  EXPECT_EQ(out, "second");
  EXPECT_TRUE(last);
  EXPECT_EQ(r.take(out, flags, last), Take::empty);
  // kbusd sees both taken at its next freeze.
  EXPECT_EQ(w.freeze(), 2u);
  w.drop_taken(2);
  EXPECT_TRUE(w.mirrored().empty());
  EXPECT_EQ(w.publish(0), 0);
}

TEST(RingTest, NothingIsTakenWhileKbusdIsInsideAnOperation) {
  Mem m;
  RingWriter w(m.base());
  RingReader r(m.base());
  ASSERT_EQ(w.freeze(), 0u);
  w.append(id(1), 0, "m");
  (void)w.publish(0);
  ASSERT_EQ(w.freeze(), 0u);  // busy
  std::string out;
  std::uint32_t flags = 0;
  bool last = false;
  EXPECT_EQ(r.take(out, flags, last), Take::busy);
  EXPECT_FALSE(r.has_message());
  EXPECT_EQ(w.publish(0), 0);  // not empty before, not empty now: no token
  EXPECT_EQ(r.take(out, flags, last), Take::message);
}

TEST(RingTest, SkipAllForgetsWhatWasNotTakenAndTakesTokensBack) {
  Mem m;
  RingWriter w(m.base());
  RingReader r(m.base());
  ASSERT_EQ(w.freeze(), 0u);
  w.append(id(1), 0, "a");
  w.append(id(2), 0, "b");
  (void)w.publish(0);
  std::string out;
  std::uint32_t flags = 0;
  bool last = false;
  ASSERT_EQ(r.take(out, flags, last), Take::message);
  ASSERT_EQ(w.freeze(), 1u);
  w.drop_taken(1);
  w.skip_all();
  EXPECT_EQ(w.publish(0), -1);  // kbusd emptied it: tokens back
  EXPECT_EQ(r.take(out, flags, last), Take::empty);
}

TEST(RingTest, LongMessagesAreLeftToTheSocket) {
  Mem m;
  RingWriter w(m.base());
  RingReader r(m.base());
  ASSERT_EQ(w.freeze(), 0u);
  w.append(id(1), 0, std::string(kMaxInline + 1, 'x'));
  (void)w.publish(0);
  std::string out;
  std::uint32_t flags = 0;
  bool last = false;
  EXPECT_EQ(r.take(out, flags, last), Take::too_big);
  EXPECT_TRUE(r.has_message());
  EXPECT_EQ(w.freeze(), 0u);  // not taken
}

TEST(RingTest, TheRingHoldsAtMostSlotCountMessages) {
  Mem m;
  RingWriter w(m.base());
  ASSERT_EQ(w.freeze(), 0u);
  for (std::uint32_t i = 0; i < kSlotCount; ++i) {
    ASSERT_FALSE(w.full());
    w.append(id(i + 1), 0, "m");
  }
  EXPECT_TRUE(w.full());
}

// A client that scribbles on its own state word is found out at the next
// freeze; nothing it wrote is taken for a read position.
TEST(RingTest, ScribbledStateWordsAreRefused) {
  Mem m;
  RingWriter w(m.base());
  ASSERT_EQ(w.freeze(), 0u);
  w.append(id(1), 0, "a");
  (void)w.publish(0);
  auto* h = static_cast<RingHeader*>(m.base());
  const std::uint64_t honest = h->state.load();
  // R beyond what was published.
  h->state.store(make_state(state_gen(honest), false, state_r(honest) + 2));
  EXPECT_EQ(w.freeze(), std::nullopt);
}

TEST(RingTest, ValidateTakenChecksEveryField) {
  // KBUS-SPEC-independent: the only word kbusd reads back.
  EXPECT_EQ(validate_taken(make_state(5, false, 10), 5, 10, 0), 0u);
  EXPECT_EQ(validate_taken(make_state(5, false, 13), 5, 10, 3), 3u);
  EXPECT_EQ(validate_taken(make_state(5, false, 14), 5, 10, 3), std::nullopt);  // too far
  EXPECT_EQ(validate_taken(make_state(5, false, 9), 5, 10, 3), std::nullopt);   // backwards
  EXPECT_EQ(validate_taken(make_state(6, false, 10), 5, 10, 3), std::nullopt);  // generation
  EXPECT_EQ(validate_taken(make_state(5, true, 10), 5, 10, 3), std::nullopt);   // busy
  // Wrapping positions.
  EXPECT_EQ(validate_taken(make_state(1, false, 1), 1, 0xFFFFFFFFu, 2), 2u);
}

// A take prepared before a freeze never succeeds after it, even if R is
// the same (the generation changed): no torn copy is ever accepted.
TEST(RingTest, ATakeRacingAFreezeFails) {
  Mem m;
  RingWriter w(m.base());
  ASSERT_EQ(w.freeze(), 0u);
  w.append(id(1), 0, "a");
  (void)w.publish(0);
  auto* h = static_cast<RingHeader*>(m.base());
  std::uint64_t seen = h->state.load();
  ASSERT_EQ(w.freeze(), 0u);
  (void)w.publish(0);
  EXPECT_FALSE(h->state.compare_exchange_strong(
      seen, make_state(state_gen(seen), false, state_r(seen) + 1)));
}

}  // namespace
}  // namespace kbus::shm
