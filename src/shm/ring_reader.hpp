// shm/ring_reader.hpp - the client's side of a Ksock's shared-memory receive
// queue (the layout and the model: shm/ring_format.hpp).
//
// take() copies the oldest published message and advances the read
// position with one compare-and-swap: no system call. It fails over to the
// socket (the caller sends NEXTREAD) when kbusd is inside an operation
// (busy) or the message is longer than a slot. Blocking is the caller's:
// it polls the Ksock's poll fd, whose tokens the daemon and this reader keep
// exact (ring_format.hpp): after taking the last message the reader drains
// them, and asks kbusd for one if a message is there again (settle_tokens).
// Safe to use from several threads (one taker at a time).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "shm/ring_format.hpp"
#include "util/fd.hpp"

namespace kbus::shm {

enum class Take {
  message,  // `out` holds the entire form; `flags` the ring's flags then
  empty,    // nothing queued (exact: the core's queue is empty too)
  busy,     // kbusd is inside an operation: ask it over the socket
  too_big,  // the next message is longer than a slot: NEXTREAD it
};

class RingReader {
 public:
  // Maps `memfd` (then closes it) after checking its size and header;
  // nullptr if it is not a kbus ring (errno EPROTO) or mmap fails.
  static std::unique_ptr<RingReader> attach(int memfd);
  // Over memory the caller provides (tests, fuzzing).
  explicit RingReader(void* mem) noexcept : mem_(mem) {}
  ~RingReader();
  RingReader(const RingReader&) = delete;
  RingReader& operator=(const RingReader&) = delete;

  // `last`: the message taken was the last published (then settle_tokens).
  Take take(std::string& out, std::uint32_t& flags, bool& last);
  // A message is published and not taken, and kbusd is not inside an
  // operation.
  bool has_message() const noexcept;
  // kbusd is inside an operation, or nothing is published and not taken.
  bool busy_or_empty() const noexcept { return !has_message(); }
  // After taking the last message: drains the poll fd's tokens, then looks
  // again; true if a message came meanwhile (its token may have been
  // drained too: the caller asks kbusd for one, SHMRING 3).
  bool settle_tokens(int poll_fd) const noexcept;

 private:
  RingHeader* hdr() const noexcept { return static_cast<RingHeader*>(mem_); }
  void* mem_ = nullptr;
  bool owns_mapping_ = false;
  std::mutex mu_;
};

}  // namespace kbus::shm
