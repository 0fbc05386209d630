// shm/ring_reader.cpp - the client's side of the shared-memory receive queue.
//
// A take is a seqlock-style read: load the state word (acquire), copy the
// slot, then compare-and-swap the state word from what was loaded to R+1.
// kbusd sets busy (and a new generation) before it writes any slot it
// might reuse, so a copy torn by kbusd always fails the compare-and-swap
// and is thrown away.
#include "shm/ring_reader.hpp"

#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

namespace kbus::shm {

std::unique_ptr<RingReader> RingReader::attach(int memfd) {
  util::Fd m(memfd);
  struct stat st {};
  if (::fstat(m.get(), &st) != 0) return nullptr;
  if (static_cast<std::size_t>(st.st_size) != kRingBytes) {
    errno = EPROTO;
    return nullptr;
  }
  void* mem = ::mmap(nullptr, kRingBytes, PROT_READ | PROT_WRITE, MAP_SHARED, m.get(), 0);
  if (mem == MAP_FAILED) return nullptr;
  auto r = std::make_unique<RingReader>(mem);
  r->owns_mapping_ = true;
  const RingHeader* h = r->hdr();
  if (h->magic != kMagic || h->version != kVersion || h->slot_size != kSlotSize ||
      h->slot_count != kSlotCount) {
    errno = EPROTO;
    return nullptr;
  }
  return r;
}

RingReader::~RingReader() {
  if (owns_mapping_) ::munmap(mem_, kRingBytes);
}

Take RingReader::take(std::string& out, std::uint32_t& flags, bool& last) {
  std::lock_guard<std::mutex> lock(mu_);
  RingHeader* h = hdr();
  for (;;) {
    std::uint64_t s = h->state.load(std::memory_order_acquire);
    if (s & kBusy) return Take::busy;
    const std::uint32_t r = state_r(s);
    const std::uint32_t w = h->write.load(std::memory_order_acquire);
    const std::uint32_t avail = w - r;
    if (avail == 0) {
      if (h->state.load(std::memory_order_acquire) == s) return Take::empty;
      continue;
    }
    if (avail > kSlotCount) return Take::busy;  // words read across a publication
    const char* slot = slot_at(mem_, r);
    SlotHeader sh;
    std::memcpy(&sh, slot, sizeof sh);
    if (sh.kind != kSlotMessage || sh.len > kMaxInline) {
      std::atomic_thread_fence(std::memory_order_acquire);
      if (h->state.load(std::memory_order_relaxed) != s) continue;  // torn: again
      return Take::too_big;  // (or a slot this client scribbled on: the socket knows)
    }
    out.assign(slot + kSlotHeader, sh.len);
    const std::uint32_t f = h->flags.load(std::memory_order_acquire);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (h->state.compare_exchange_strong(s, make_state(state_gen(s), false, r + 1),
                                         std::memory_order_acq_rel,
                                         std::memory_order_acquire)) {
      flags = f;
      last = avail == 1;
      return Take::message;
    }
  }
}

bool RingReader::has_message() const noexcept {
  const RingHeader* h = hdr();
  const std::uint64_t s = h->state.load(std::memory_order_seq_cst);
  if (s & kBusy) return false;
  return h->write.load(std::memory_order_acquire) != state_r(s);
}

namespace {
void drain(int fd) noexcept {
  char buf[64];
  while (::recv(fd, buf, sizeof buf, MSG_DONTWAIT) > 0) {
  }
}
}  // namespace

bool RingReader::settle_tokens(int poll_fd) const noexcept {
  drain(poll_fd);
  const RingHeader* h = hdr();
  const std::uint64_t s = h->state.load(std::memory_order_seq_cst);
  // Busy: kbusd froze the ring after the last take, saw it empty, and will
  // send a token with whatever it publishes.
  if (s & kBusy) return false;
  return h->write.load(std::memory_order_acquire) != state_r(s);
}

}  // namespace kbus::shm
