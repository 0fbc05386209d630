// client/bus_dir.hpp - where a client looks for a bus (docs/protocol.md §1).
// kbus::default_bus_dir(bus) is this with the system directory /run/kbus;
// tests give another system directory.
#pragma once

#include <string>

namespace kbus::client {

inline constexpr const char* kSystemBusDir = "/run/kbus";

// $KBUS_DIR if set; else `system_dir` for root; else the user's directory
// ($XDG_RUNTIME_DIR/kbus, else /tmp/kbus-<uid>) - unless `bus` >= 0, the
// user's directory has no socket kbus<bus> and `system_dir` has one: then
// `system_dir`.
std::string bus_dir_for(int bus, const std::string& system_dir);

}  // namespace kbus::client
