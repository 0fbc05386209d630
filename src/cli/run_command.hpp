// cli/run_command.hpp - `kbus run PROGRAM ARGS...`: runs a program that uses
// /dev/kbusN directly (open, read, write, ioctl, poll) against kbusd, with
// libkbus-dev.so preloaded (docs/device.md).
#pragma once

#include <string>
#include <vector>

namespace kbus::cli {

// Where libkbus-dev.so is: $KBUS_PRELOAD_LIBRARY if set; the build tree's
// library for the kbus of the build tree; else LIBDIR/libkbus-dev.so beside
// this installation (BINDIR/../LIBDIR).
std::string preload_library_path();

// Execs `args` (PROGRAM and its arguments, looked up in $PATH) with the
// library appended to LD_PRELOAD and, if `dir` is not empty, KBUS_DIR=dir.
// Returns only on failure: 1 if the library is missing, 126/127 if the
// program cannot be run (as a shell does), 2 if no program was given; the
// reason goes to stderr. A program the library cannot reach (statically
// linked, or not 64-bit) is run all the same, after a warning on stderr.
int cmd_run(const std::string& dir, std::vector<std::string> args);

}  // namespace kbus::cli
