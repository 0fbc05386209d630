#include "util/dirs.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

namespace kbus::util {

std::string bus_dir_for(int bus, const std::string& system_dir) {
  if (const char* d = std::getenv("KBUS_DIR"); d != nullptr && *d != '\0') return d;
  if (::geteuid() == 0) return system_dir;
  const char* xdg = std::getenv("XDG_RUNTIME_DIR");
  const std::string user = xdg != nullptr && *xdg != '\0'
                               ? std::string(xdg) + "/kbus"
                               : "/tmp/kbus-" + std::to_string(::geteuid());
  if (bus >= 0) {
    const auto is_socket = [&](const std::string& dir) {
      struct stat st {};
      return ::stat((dir + "/kbus" + std::to_string(bus)).c_str(), &st) == 0 &&
             S_ISSOCK(st.st_mode);
    };
    if (!is_socket(user) && is_socket(system_dir)) return system_dir;
  }
  return user;
}

}  // namespace kbus::util
