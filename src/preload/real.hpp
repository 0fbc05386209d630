// preload/real.hpp - the C library's own functions behind the ones that
// libkbus-dev.so interposes, and the guard that sends the library's own
// calls straight to them.
//
// Each pointer is looked up with dlsym(RTLD_NEXT) on first use. While a
// thread is inside the device layer (Inside), every interposed function it
// calls - the C++ client closing its poll fd, say - goes straight to the
// C library, so the layer never re-enters itself.
#pragma once

#include <sys/types.h>

#include <cstdio>

namespace kbus::preload {

struct RealFunctions {
  int (*open)(const char*, int, ...);
  int (*open64)(const char*, int, ...);
  int (*openat)(int, const char*, int, ...);
  int (*openat64)(int, const char*, int, ...);
  int (*open_2)(const char*, int);
  int (*open64_2)(const char*, int);
  int (*openat_2)(int, const char*, int);
  int (*openat64_2)(int, const char*, int);
  FILE* (*fopen)(const char*, const char*);
  FILE* (*fopen64)(const char*, const char*);
  int (*fileno)(FILE*);
  int (*fileno_unlocked)(FILE*);
  ssize_t (*read)(int, void*, size_t);
  ssize_t (*read_chk)(int, void*, size_t, size_t);
  ssize_t (*write)(int, const void*, size_t);
  int (*ioctl)(int, unsigned long, ...);
  int (*close)(int);
  int (*fcntl)(int, int, ...);
  int (*fcntl64)(int, int, ...);
  int (*dup)(int);
  int (*dup2)(int, int);
  int (*dup3)(int, int, int);
};

// The C library's functions (looked up once; never null: a symbol the C
// library lacks - an old one without fcntl64, say - falls back to its
// nearest equivalent).
const RealFunctions& real() noexcept;

// True while this thread is inside the device layer.
bool inside() noexcept;

// Marks this thread as inside the device layer for its lifetime.
class Inside {
 public:
  Inside() noexcept;
  ~Inside();
  Inside(const Inside&) = delete;
  Inside& operator=(const Inside&) = delete;
};

}  // namespace kbus::preload
