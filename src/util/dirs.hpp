// util/dirs.hpp - where the bus sockets live (docs/protocol.md §1;
// docs/decisions.md D21, D24).
//
// One rule for kbusd and every client (C++, C, the CLI, limpets; Python's
// kbus.ksock.kbus_dir() says the same):
//   - $KBUS_DIR if set and not empty, used as given;
//   - else the system directory /run/kbus for root (effective uid 0);
//   - else the user's directory: $XDG_RUNTIME_DIR/kbus if XDG_RUNTIME_DIR is
//     set and not empty, else /tmp/kbus-<effective uid>;
//   - a client asking for bus N (bus_dir_for(N)) whose user directory has
//     no socket kbusN while the system directory has one gets the system
//     directory: the system bus (kbusd.service) is found by every user.
// kbusd uses default_bus_dir() (no bus number: no fallback).
#pragma once

#include <string>

namespace kbus::util {

inline constexpr const char* kSystemBusDir = "/run/kbus";

// The directory for bus `bus` (< 0: any bus, no fallback); `system_dir` is
// /run/kbus except in tests.
std::string bus_dir_for(int bus, const std::string& system_dir = kSystemBusDir);

// The directory with no bus in mind: kbusd's default --dir.
inline std::string default_bus_dir() { return bus_dir_for(-1); }

}  // namespace kbus::util
