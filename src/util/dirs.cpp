#include "util/dirs.hpp"

#include <unistd.h>

#include <cstdlib>

namespace kbus::util {

std::string default_bus_dir() {
  if (const char* d = std::getenv("KBUS_DIR"); d != nullptr && *d != '\0') return d;
  if (::geteuid() == 0) return "/run/kbus";
  if (const char* x = std::getenv("XDG_RUNTIME_DIR"); x != nullptr && *x != '\0')
    return std::string(x) + "/kbus";
  return "/tmp/kbus-" + std::to_string(::geteuid());
}

}  // namespace kbus::util
