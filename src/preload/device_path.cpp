// preload/device_path.cpp - see device_path.hpp.
#include "preload/device_path.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "capi/translate.hpp"

namespace kbus::preload {

std::optional<int> device_bus(std::string_view path) {
  if (path.empty() || path.front() != '/') return std::nullopt;
  std::vector<std::string_view> parts;
  std::size_t at = 0;
  while (at < path.size()) {
    std::size_t slash = path.find('/', at);
    if (slash == std::string_view::npos) slash = path.size();
    std::string_view part = path.substr(at, slash - at);
    at = slash + 1;
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (!parts.empty()) parts.pop_back();
      continue;
    }
    parts.push_back(part);
  }
  // A trailing slash ("/dev/kbus0/") asks for a directory: not the device.
  if (path.back() == '/') return std::nullopt;
  if (parts.size() != 2 || parts[0] != "dev") return std::nullopt;
  std::string name = "/dev/";
  name += parts[1];
  auto d = capi::parse_device_name(name);
  if (!d || !d->dir.empty()) return std::nullopt;
  return d->bus;
}

std::optional<int> device_bus_at(int dirfd, const char* path) {
  if (path == nullptr || std::strstr(path, "kbus") == nullptr) return std::nullopt;
  if (path[0] == '/') return device_bus(path);
  std::string base;
  if (dirfd == AT_FDCWD) {
    char buf[4096];
    if (::getcwd(buf, sizeof buf) == nullptr) return std::nullopt;
    base = buf;
  } else {
    char link[64], buf[4096];
    std::snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
    ssize_t n = ::readlink(link, buf, sizeof buf - 1);
    if (n <= 0) return std::nullopt;
    base.assign(buf, static_cast<std::size_t>(n));
  }
  return device_bus(base + "/" + path);
}

}  // namespace kbus::preload
