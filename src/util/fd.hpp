// util/fd.hpp - an owning file descriptor.
//
// Fd holds one descriptor and closes it exactly once: when it is destroyed,
// reset() or assigned over. It can be moved, never copied, so a struct that
// holds one cannot be copied by mistake into two owners. get() lends the
// number; release() hands ownership back to the caller.
#pragma once

#include <unistd.h>

#include <utility>

namespace kbus::util {

class Fd {
 public:
  Fd() noexcept = default;
  explicit Fd(int fd) noexcept : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) reset(o.release());
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }

  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  int release() noexcept { return std::exchange(fd_, -1); }
  // Closes the descriptor held (if any) and holds `fd` instead.
  void reset(int fd = -1) noexcept {
    const int old = std::exchange(fd_, fd);
    if (old >= 0) ::close(old);
  }

 private:
  int fd_ = -1;
};

}  // namespace kbus::util
