// client/bus_dir.hpp - where a client looks for a bus (docs/protocol.md §1).
// The rule is util/dirs.hpp, shared with kbusd; kbus::default_bus_dir(bus)
// is bus_dir_for(bus) with the system directory /run/kbus; tests give
// another system directory.
#pragma once

#include "util/dirs.hpp"

namespace kbus::client {

using util::bus_dir_for;
using util::kSystemBusDir;

}  // namespace kbus::client
