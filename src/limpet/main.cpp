// limpet/main.cpp - kbus-limpet: the original runlimpet (KBUS-SPEC.md §13.3)
// over kbusd. The same program is `kbus limpet`.
#include <string>
#include <vector>

#include "limpet/runner.hpp"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  return kbus::limpet::main_with_args("kbus-limpet", args);
}
