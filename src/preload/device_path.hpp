// preload/device_path.hpp - which paths name a KBUS device (/dev/kbusN).
#pragma once

#include <optional>
#include <string_view>

namespace kbus::preload {

// The bus number N if `path`, an absolute path, names /dev/kbusN once "//",
// "/./" and "/../" are resolved lexically (symbolic links are not
// followed); else nullopt. N is written as the C API reads device names:
// 0..999 without leading zeros (so /dev/kbus01 is no device).
std::optional<int> device_bus(std::string_view path);

// The same for open()/openat(): a relative `path` is taken relative to
// `dirfd` (AT_FDCWD: the working directory). Cheap for paths that cannot
// name a device (no "kbus" in them).
std::optional<int> device_bus_at(int dirfd, const char* path);

}  // namespace kbus::preload
