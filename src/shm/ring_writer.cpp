// shm/ring_writer.cpp - kbusd's side of the shared-memory receive queue.
//
// Invariants (between operations, i.e. not frozen):
//   * the state word holds (gen_, busy clear, R) where r_ <= R <= w_ for an
//     honest client, and w_ - r_ == mirrored_.size() <= kSlotCount;
//   * slots [r_, w_) hold the messages of mirrored_, in order.
// While frozen, the client can change nothing: its compare-and-swap
// expects busy clear and the generation it saw.
#include "shm/ring_writer.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

namespace kbus::shm {

std::optional<std::uint32_t> validate_taken(std::uint64_t seen, std::uint32_t gen,
                                            std::uint32_t r_base,
                                            std::uint32_t published) noexcept {
  if (seen & kBusy) return std::nullopt;
  if (state_gen(seen) != (gen & kGenMask)) return std::nullopt;
  const std::uint32_t taken = state_r(seen) - r_base;  // mod 2^32
  if (taken > published) return std::nullopt;
  return taken;
}

std::unique_ptr<RingWriter> RingWriter::create() {
  util::Fd fd(::memfd_create("kbus-ring", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd) return nullptr;
  if (::ftruncate(fd.get(), static_cast<off_t>(kRingBytes)) != 0) return nullptr;
  // The client cannot shrink it under kbusd (a SIGBUS in kbusd otherwise).
  if (::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0)
    return nullptr;
  void* mem = ::mmap(nullptr, kRingBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (mem == MAP_FAILED) return nullptr;
  auto w = std::make_unique<RingWriter>(mem);
  w->owns_mapping_ = true;
  w->memfd_ = std::move(fd);
  return w;
}

RingWriter::RingWriter(void* mem) noexcept : mem_(mem) {
  RingHeader* h = hdr();
  h->magic = kMagic;
  h->version = kVersion;
  h->slot_size = kSlotSize;
  h->slot_count = kSlotCount;
  h->write.store(0, std::memory_order_relaxed);
  h->flags.store(0, std::memory_order_relaxed);
  h->state.store(make_state(0, false, 0), std::memory_order_release);
}

RingWriter::~RingWriter() {
  if (owns_mapping_) ::munmap(mem_, kRingBytes);
}

std::optional<std::uint32_t> RingWriter::freeze() noexcept {
  const std::uint32_t gen = gen_;
  gen_ = (gen_ + 1) & static_cast<std::uint32_t>(kGenMask);
  frozen_ = true;
  // One read of the word, and busy set in the same step: from here on the
  // client's compare-and-swap fails.
  const std::uint64_t seen =
      hdr()->state.exchange(make_state(gen_, true, r_), std::memory_order_acq_rel);
  skipped_ = false;
  auto taken = validate_taken(seen, gen, r_, static_cast<std::uint32_t>(mirrored_.size()));
  empty_at_freeze_ = taken ? *taken == mirrored_.size() : mirrored_.empty();
  return taken;
}

void RingWriter::drop_taken(std::uint32_t n) noexcept {
  for (std::uint32_t i = 0; i < n && !mirrored_.empty(); ++i) {
    mirrored_.pop_front();
    ++r_;
  }
}

void RingWriter::skip_all() noexcept {
  if (!mirrored_.empty()) skipped_ = true;
  mirrored_.clear();
  r_ = w_;
}

void RingWriter::append(MessageId id, std::uint32_t flags, std::string_view entire) noexcept {
  char* slot = slot_at(mem_, w_);
  SlotHeader sh{};
  sh.len = static_cast<std::uint32_t>(entire.size());
  sh.id_network = id.network_id;
  sh.id_serial = id.serial_num;
  if (entire.size() <= kMaxInline) {
    sh.kind = kSlotMessage;
    std::memcpy(slot + kSlotHeader, entire.data(), entire.size());
  } else {
    sh.kind = kSlotTooBig;
  }
  std::memcpy(slot, &sh, sizeof sh);
  mirrored_.push_back({id, flags});
  ++w_;
}

int RingWriter::publish(std::uint32_t flags) noexcept {
  RingHeader* h = hdr();
  h->write.store(w_, std::memory_order_release);
  h->flags.store(flags, std::memory_order_release);
  h->state.store(make_state(gen_, false, r_), std::memory_order_release);
  frozen_ = false;
  if (w_ != r_) return (empty_at_freeze_ || skipped_) ? 1 : 0;
  return skipped_ ? -1 : 0;
}

}  // namespace kbus::shm
