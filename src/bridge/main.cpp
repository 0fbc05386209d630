// bridge/main.cpp - kbus-bridge: `kbus bridge` as a program of its own.
#include <string>
#include <vector>

#include "bridge/bridge.hpp"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  return kbus::bridge::main_with_args("kbus-bridge", args);
}
