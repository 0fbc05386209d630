// client/bus_dir.hpp - where a client looks for a bus (docs/protocol.md §1).
// The rule is util/dirs.hpp, shared with kbusd; kbus::default_bus_dir(bus)
// is bus_dir_for(bus) with the system directory /run/kbus; tests give
// another system directory. Before connecting, a client checks the
// directory by the same rule as kbusd (util::bus_dir_problem,
// docs/reliability.md §9) and refuses an unsafe one with EPERM.
#pragma once

#include "util/dirs.hpp"

namespace kbus::client {

using util::bus_dir_for;
using util::bus_dir_problem;
using util::kSystemBusDir;

}  // namespace kbus::client
