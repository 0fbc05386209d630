// cli/shell_command.hpp - run `/bin/sh -c CMD`, feed it bytes, take its stdout
// (`kbus reply --exec`).
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace kbus::cli {

struct CommandResult {
  std::string out;      // everything the command wrote to stdout
  int exit_status = 0;  // exit code, or 128 + signal number
};

// Runs `/bin/sh -c command` with `input` on its stdin and `env` added to its
// environment; stderr is inherited. Returns false (errno set) if the command
// could not be started.
bool run_shell_command(const std::string& command, const std::string& input,
                       const std::vector<std::pair<std::string, std::string>>& env,
                       CommandResult& result);

}  // namespace kbus::cli
