// preload/device.hpp - /dev/kbusN descriptors served by kbusd Ksocks.
//
// open() of /dev/kbusN opens a Ksock on bus N (kbus::Ksock) and returns a
// real kernel descriptor: a duplicate of the Ksock's poll fd, which the
// daemon keeps readable iff the queue is non-empty and writable iff the
// Ksock is open for writing with no ALL_OR_WAIT send pending - exactly
// KBUS-SPEC.md §4.4 - so poll/select/epoll work on it untouched. A table
// maps each such descriptor to its Device; read, write, ioctl, close, fcntl
// and dup on it are carried out here with the original's meaning and errno
// values (§4.2, §4.3, §4.5, §4.6). Every other descriptor is left alone.
//
// Each function returns the value the C function returns and sets errno as
// the kernel did, or returns nullopt if `fd` is not a KBUS descriptor (the
// caller then hands the call to the C library).
#pragma once

#include <sys/types.h>

#include <optional>

namespace kbus::preload {

// open()/openat() of bus `bus` (the path named /dev/kbusN) with `flags`.
int device_open(int bus, int flags);

std::optional<ssize_t> device_read(int fd, void* buf, size_t count);
std::optional<ssize_t> device_write(int fd, const void* buf, size_t count);
std::optional<int> device_ioctl(int fd, unsigned long request, void* arg);
std::optional<int> device_close(int fd);
// fcntl: `arg` as the C library passed it on.
std::optional<int> device_fcntl(int fd, int cmd, unsigned long arg, bool is_fcntl64);
std::optional<int> device_dup(int fd);
// dup2 (flags = -1) and dup3. Also when only `newfd` is a KBUS descriptor,
// which the call then closes.
std::optional<int> device_dup3(int oldfd, int newfd, int flags);

}  // namespace kbus::preload
