// util/dirs.hpp - where the bus sockets live (docs/protocol.md §1).
//
// One rule for kbusd and every client (C++, C, the CLI, limpets; Python's
// kbus.ksock.kbus_dir() says the same): the directory is $KBUS_DIR if set
// and not empty; otherwise /run/kbus for root (effective uid 0); otherwise
// $XDG_RUNTIME_DIR/kbus if XDG_RUNTIME_DIR is set and not empty; otherwise
// /tmp/kbus-<effective uid>. The effective uid decides both, as it decides
// which directories the process may use.
#pragma once

#include <string>

namespace kbus::util {

std::string default_bus_dir();

}  // namespace kbus::util
