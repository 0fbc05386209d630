// preload/real.cpp - see real.hpp.
#include "preload/real.hpp"

#include <dlfcn.h>

namespace kbus::preload {
namespace {

// initial-exec: the library is loaded at start-up (LD_PRELOAD), so its TLS
// is static and reading it never allocates.
__attribute__((tls_model("initial-exec"))) thread_local int t_depth = 0;

template <class F>
F next(const char* name) noexcept {
  return reinterpret_cast<F>(::dlsym(RTLD_NEXT, name));
}

RealFunctions look_up() noexcept {
  RealFunctions r{};
  r.open = next<decltype(r.open)>("open");
  r.open64 = next<decltype(r.open64)>("open64");
  r.openat = next<decltype(r.openat)>("openat");
  r.openat64 = next<decltype(r.openat64)>("openat64");
  r.open_2 = next<decltype(r.open_2)>("__open_2");
  r.open64_2 = next<decltype(r.open64_2)>("__open64_2");
  r.openat_2 = next<decltype(r.openat_2)>("__openat_2");
  r.openat64_2 = next<decltype(r.openat64_2)>("__openat64_2");
  r.fopen = next<decltype(r.fopen)>("fopen");
  r.fopen64 = next<decltype(r.fopen64)>("fopen64");
  r.fileno = next<decltype(r.fileno)>("fileno");
  r.fileno_unlocked = next<decltype(r.fileno_unlocked)>("fileno_unlocked");
  r.read = next<decltype(r.read)>("read");
  r.read_chk = next<decltype(r.read_chk)>("__read_chk");
  r.write = next<decltype(r.write)>("write");
  r.ioctl = next<decltype(r.ioctl)>("ioctl");
  r.close = next<decltype(r.close)>("close");
  r.fcntl = next<decltype(r.fcntl)>("fcntl");
  r.fcntl64 = next<decltype(r.fcntl64)>("fcntl64");
  r.dup = next<decltype(r.dup)>("dup");
  r.dup2 = next<decltype(r.dup2)>("dup2");
  r.dup3 = next<decltype(r.dup3)>("dup3");
  // Equivalents for what an older C library lacks.
  if (!r.open64) r.open64 = r.open;
  if (!r.openat64) r.openat64 = r.openat;
  if (!r.open64_2) r.open64_2 = r.open_2;
  if (!r.openat64_2) r.openat64_2 = r.openat_2;
  if (!r.fopen64) r.fopen64 = r.fopen;
  if (!r.fcntl64) r.fcntl64 = r.fcntl;
  if (!r.fileno_unlocked) r.fileno_unlocked = r.fileno;
  return r;
}

}  // namespace

const RealFunctions& real() noexcept {
  static const RealFunctions r = look_up();
  return r;
}

bool inside() noexcept { return t_depth > 0; }

Inside::Inside() noexcept { ++t_depth; }
Inside::~Inside() { --t_depth; }

}  // namespace kbus::preload
