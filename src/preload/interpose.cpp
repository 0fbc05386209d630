// preload/interpose.cpp - the C library functions that libkbus-dev.so
// replaces (exported by cmake's version script preload.map; nothing else is).
//
// Each one hands a call about a KBUS descriptor (or an open() of
// /dev/kbusN) to device.cpp and passes everything else, untouched, to the
// C library function it stands in front of (dlsym RTLD_NEXT). Calls made
// from inside the device layer itself go straight through.
//
// fopen() is here because the C library's own fopen() opens files without
// calling the open() that a preload can replace: a FILE for /dev/kbusN reads
// and writes through the device layer (fopencookie), and fileno() gives its
// KBUS descriptor for ioctl() and poll(). See docs/device.md.
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "preload/device.hpp"
#include "preload/device_path.hpp"
#include "preload/real.hpp"

using kbus::preload::device_bus_at;
using kbus::preload::inside;
using kbus::preload::real;

namespace {

// The mode argument of open(): present only with O_CREAT or O_TMPFILE.
#define KBUS_OPEN_MODE(flags, last)                            \
  mode_t mode = 0;                                             \
  if (((flags)&O_CREAT) || ((flags)&O_TMPFILE) == O_TMPFILE) { \
    va_list ap;                                                \
    va_start(ap, last);                                        \
    mode = static_cast<mode_t>(va_arg(ap, int));               \
    va_end(ap);                                                \
  }

// The bus a path names, unless the call must go to the C library: inside
// the layer, or O_PATH (a path-only descriptor is not an open device).
std::optional<int> bus_of(int dirfd, const char* path, int flags) {
  if (inside() || (flags & O_PATH)) return std::nullopt;
  return device_bus_at(dirfd, path);
}

// ---- FILE streams on /dev/kbusN (fopencookie) ----
//
// The stream's descriptor is known here (fileno() answers it), so a program
// can fopen() the device, ioctl(fileno(f), ...) and fread()/fwrite() it.

std::mutex g_streams_mu;
std::unordered_map<FILE*, int>& streams() {
  static auto* m = new std::unordered_map<FILE*, int>;  // never destroyed
  return *m;
}

int stream_fd(FILE* f) {
  std::lock_guard<std::mutex> lk(g_streams_mu);
  auto it = streams().find(f);
  return it == streams().end() ? -1 : it->second;
}

ssize_t cookie_read(void* c, char* buf, size_t n) {
  const int fd = static_cast<int>(reinterpret_cast<intptr_t>(c));
  auto r = kbus::preload::device_read(fd, buf, n);
  if (!r) {
    errno = EBADF;
    return -1;
  }
  return *r;
}

ssize_t cookie_write(void* c, const char* buf, size_t n) {
  const int fd = static_cast<int>(reinterpret_cast<intptr_t>(c));
  auto r = kbus::preload::device_write(fd, buf, n);
  if (!r) {
    errno = EBADF;
    return 0;  // fopencookie: 0 is the error
  }
  return *r < 0 ? 0 : *r;
}

int cookie_close(void* c) {
  const int fd = static_cast<int>(reinterpret_cast<intptr_t>(c));
  {
    std::lock_guard<std::mutex> lk(g_streams_mu);
    for (auto it = streams().begin(); it != streams().end(); ++it) {
      if (it->second == fd) {
        streams().erase(it);
        break;
      }
    }
  }
  auto r = kbus::preload::device_close(fd);
  return r ? *r : real().close(fd);
}

// fopen modes: "r" reads, "w"/"a" write, "+" both.
int open_flags_of(const char* mode) {
  if (mode == nullptr) return -1;
  int flags;
  switch (mode[0]) {
    case 'r':
      flags = O_RDONLY;
      break;
    case 'w':
    case 'a':
      flags = O_WRONLY;
      break;
    default:
      return -1;
  }
  if (std::strchr(mode, '+')) flags = O_RDWR;
  if (std::strchr(mode, 'e')) flags |= O_CLOEXEC;
  return flags;
}

FILE* device_fopen(int bus, const char* mode) {
  const int flags = open_flags_of(mode);
  if (flags < 0) {
    errno = EINVAL;
    return nullptr;
  }
  const int fd = kbus::preload::device_open(bus, flags);
  if (fd < 0) return nullptr;
  cookie_io_functions_t io{};
  io.read = cookie_read;
  io.write = cookie_write;
  io.close = cookie_close;
  FILE* f = ::fopencookie(reinterpret_cast<void*>(static_cast<intptr_t>(fd)), mode, io);
  if (f == nullptr) {
    const int e = errno;
    cookie_close(reinterpret_cast<void*>(static_cast<intptr_t>(fd)));
    errno = e;
    return nullptr;
  }
  // The original's read() returned a message in pieces as asked: no
  // read-ahead beyond what the program asks for.
  ::setvbuf(f, nullptr, _IONBF, 0);
  {
    std::lock_guard<std::mutex> lk(g_streams_mu);
    streams()[f] = fd;
  }
  return f;
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) int open(const char* path, int flags, ...) {
  KBUS_OPEN_MODE(flags, flags);
  if (auto bus = bus_of(AT_FDCWD, path, flags)) return kbus::preload::device_open(*bus, flags);
  return real().open(path, flags, mode);
}

__attribute__((visibility("default"))) int open64(const char* path, int flags, ...) {
  KBUS_OPEN_MODE(flags, flags);
  if (auto bus = bus_of(AT_FDCWD, path, flags)) return kbus::preload::device_open(*bus, flags);
  return real().open64(path, flags, mode);
}

__attribute__((visibility("default"))) int openat(int dirfd, const char* path, int flags, ...) {
  KBUS_OPEN_MODE(flags, flags);
  if (auto bus = bus_of(dirfd, path, flags)) return kbus::preload::device_open(*bus, flags);
  return real().openat(dirfd, path, flags, mode);
}

__attribute__((visibility("default"))) int openat64(int dirfd, const char* path, int flags, ...) {
  KBUS_OPEN_MODE(flags, flags);
  if (auto bus = bus_of(dirfd, path, flags)) return kbus::preload::device_open(*bus, flags);
  return real().openat64(dirfd, path, flags, mode);
}

// _FORTIFY_SOURCE variants (no mode argument).
__attribute__((visibility("default"))) int __open_2(const char* path, int flags) {
  if (auto bus = bus_of(AT_FDCWD, path, flags)) return kbus::preload::device_open(*bus, flags);
  return real().open_2 ? real().open_2(path, flags) : real().open(path, flags);
}

__attribute__((visibility("default"))) int __open64_2(const char* path, int flags) {
  if (auto bus = bus_of(AT_FDCWD, path, flags)) return kbus::preload::device_open(*bus, flags);
  return real().open64_2 ? real().open64_2(path, flags) : real().open64(path, flags);
}

__attribute__((visibility("default"))) int __openat_2(int dirfd, const char* path, int flags) {
  if (auto bus = bus_of(dirfd, path, flags)) return kbus::preload::device_open(*bus, flags);
  return real().openat_2 ? real().openat_2(dirfd, path, flags) : real().openat(dirfd, path, flags);
}

__attribute__((visibility("default"))) int __openat64_2(int dirfd, const char* path, int flags) {
  if (auto bus = bus_of(dirfd, path, flags)) return kbus::preload::device_open(*bus, flags);
  return real().openat64_2 ? real().openat64_2(dirfd, path, flags)
                           : real().openat64(dirfd, path, flags);
}

__attribute__((visibility("default"))) FILE* fopen(const char* path, const char* mode) {
  if (auto bus = bus_of(AT_FDCWD, path, 0)) return device_fopen(*bus, mode);
  return real().fopen(path, mode);
}

__attribute__((visibility("default"))) FILE* fopen64(const char* path, const char* mode) {
  if (auto bus = bus_of(AT_FDCWD, path, 0)) return device_fopen(*bus, mode);
  return real().fopen64(path, mode);
}

__attribute__((visibility("default"))) int fileno(FILE* f) {
  if (!inside()) {
    const int fd = stream_fd(f);
    if (fd >= 0) return fd;
  }
  return real().fileno(f);
}

__attribute__((visibility("default"))) int fileno_unlocked(FILE* f) {
  if (!inside()) {
    const int fd = stream_fd(f);
    if (fd >= 0) return fd;
  }
  return real().fileno_unlocked(f);
}

__attribute__((visibility("default"))) ssize_t read(int fd, void* buf, size_t count) {
  if (!inside()) {
    if (auto r = kbus::preload::device_read(fd, buf, count)) return *r;
  }
  return real().read(fd, buf, count);
}

__attribute__((visibility("default"))) ssize_t __read_chk(int fd, void* buf, size_t count,
                                                          size_t buflen) {
  if (!inside() && count <= buflen) {
    if (auto r = kbus::preload::device_read(fd, buf, count)) return *r;
  }
  return real().read_chk(fd, buf, count, buflen);
}

__attribute__((visibility("default"))) ssize_t write(int fd, const void* buf, size_t count) {
  if (!inside()) {
    if (auto r = kbus::preload::device_write(fd, buf, count)) return *r;
  }
  return real().write(fd, buf, count);
}

__attribute__((visibility("default"))) int ioctl(int fd, unsigned long request, ...) {
  va_list ap;
  va_start(ap, request);
  void* arg = va_arg(ap, void*);
  va_end(ap);
  if (!inside()) {
    if (auto r = kbus::preload::device_ioctl(fd, request, arg)) return *r;
  }
  return real().ioctl(fd, request, arg);
}

__attribute__((visibility("default"))) int close(int fd) {
  if (!inside()) {
    if (auto r = kbus::preload::device_close(fd)) return *r;
  }
  return real().close(fd);
}

__attribute__((visibility("default"))) int fcntl(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  unsigned long arg = va_arg(ap, unsigned long);
  va_end(ap);
  if (!inside()) {
    if (auto r = kbus::preload::device_fcntl(fd, cmd, arg, false)) return *r;
  }
  return real().fcntl(fd, cmd, arg);
}

__attribute__((visibility("default"))) int fcntl64(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  unsigned long arg = va_arg(ap, unsigned long);
  va_end(ap);
  if (!inside()) {
    if (auto r = kbus::preload::device_fcntl(fd, cmd, arg, true)) return *r;
  }
  return real().fcntl64(fd, cmd, arg);
}

__attribute__((visibility("default"))) int dup(int fd) {
  if (!inside()) {
    if (auto r = kbus::preload::device_dup(fd)) return *r;
  }
  return real().dup(fd);
}

__attribute__((visibility("default"))) int dup2(int oldfd, int newfd) {
  if (!inside()) {
    if (auto r = kbus::preload::device_dup3(oldfd, newfd, -1)) return *r;
  }
  return real().dup2(oldfd, newfd);
}

__attribute__((visibility("default"))) int dup3(int oldfd, int newfd, int flags) {
  if (!inside()) {
    if (auto r = kbus::preload::device_dup3(oldfd, newfd, flags)) return *r;
  }
  return real().dup3(oldfd, newfd, flags);
}

}  // extern "C"
