// daemon/process_info.cpp - see process_info.hpp. Linux and glibc only.
#include "daemon/process_info.hpp"

#include <dirent.h>
#include <malloc.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace kbus::daemon {

ProcessInfo process_info() {
  ProcessInfo p;
#if defined(__GLIBC__)
  ::malloc_trim(0);
#if __GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33)
  const struct mallinfo2 mi = ::mallinfo2();
  p.heap_bytes = mi.uordblks + mi.hblkhd;
#endif
#endif
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (dirent* e = ::readdir(d))
      if (e->d_name[0] != '.') ++p.fds;
    ::closedir(d);
    if (p.fds > 0) --p.fds;  // the directory stream's own descriptor
  }
  if (std::FILE* f = std::fopen("/proc/self/status", "re")) {
    char line[256];
    while (std::fgets(line, sizeof line, f))
      if (std::strncmp(line, "VmRSS:", 6) == 0) p.rss_kb = std::strtoull(line + 6, nullptr, 10);
    std::fclose(f);
  }
  return p;
}

}  // namespace kbus::daemon
