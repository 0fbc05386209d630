// daemon/process_info.hpp - what kbusd costs the system right now: open
// file descriptors, resident memory and heap in use. Logged on SIGUSR1
// (docs/reliability.md §1), so that tests and operators can check that
// closed Ksocks leave nothing behind.
#pragma once

#include <cstdint>
#include <string>

namespace kbus::daemon {

struct ProcessInfo {
  std::uint64_t fds = 0;         // entries of /proc/self/fd
  std::uint64_t rss_kb = 0;      // VmRSS of /proc/self/status
  std::uint64_t heap_bytes = 0;  // malloc'd bytes in use (0 if unknown)
};

// Returns unused heap to the system first (malloc_trim), so that rss_kb
// says what is really held.
ProcessInfo process_info();

}  // namespace kbus::daemon
