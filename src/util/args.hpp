// util/args.hpp - reading a command line by hand, for the programs that
// parse their own arguments in the original's style (kbus-limpet's
// runlimpet switches, kbus-bridge): a decimal number in a range, and a
// reader that hands out each argument and the value of the switch before it.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kbus::util {

// `s` as a decimal integer in [lo, hi]: the whole of `s` (no spaces, no
// trailing text), or nullopt.
std::optional<long long> parse_integer(std::string_view s, long long lo, long long hi);

class ArgReader {
 public:
  explicit ArgReader(const std::vector<std::string>& args) : args_(args) {}

  // The next argument (a switch or an operand), or nullptr after the last.
  const std::string* next();
  // The value of the switch next() returned: the argument after it, which
  // is consumed; nullopt if there is none.
  std::optional<std::string> value();
  // The same into `out`; false (out unchanged) if there is none.
  bool value(std::string& out);

  // The value as a number in [lo, hi].
  struct Number {
    enum class Status { kOk, kMissing, kBad };
    Status status = Status::kMissing;
    long long value = 0;  // kOk
    std::string text;     // kBad: what was given
    bool ok() const { return status == Status::kOk; }
  };
  Number number(long long lo, long long hi);

 private:
  const std::vector<std::string>& args_;
  std::size_t next_ = 0;
};

}  // namespace kbus::util
