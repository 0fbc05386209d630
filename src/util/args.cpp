// util/args.cpp - see args.hpp.
#include "util/args.hpp"

#include <charconv>
#include <utility>

namespace kbus::util {

std::optional<long long> parse_integer(std::string_view s, long long lo, long long hi) {
  if (s.empty()) return std::nullopt;
  long long v = 0;
  const char* end = s.data() + s.size();
  // from_chars takes a '-' but no '+' and no spaces: a plain decimal number.
  auto [p, ec] = std::from_chars(s.data(), end, v, 10);
  if (ec != std::errc() || p != end || v < lo || v > hi) return std::nullopt;
  return v;
}

const std::string* ArgReader::next() {
  if (next_ >= args_.size()) return nullptr;
  return &args_[next_++];
}

std::optional<std::string> ArgReader::value() {
  if (next_ >= args_.size()) return std::nullopt;
  return args_[next_++];
}

bool ArgReader::value(std::string& out) {
  auto v = value();
  if (!v) return false;
  out = std::move(*v);
  return true;
}

ArgReader::Number ArgReader::number(long long lo, long long hi) {
  Number n;
  auto v = value();
  if (!v) return n;
  n.text = *v;
  auto parsed = parse_integer(*v, lo, hi);
  if (!parsed) {
    n.status = Number::Status::kBad;
    return n;
  }
  n.status = Number::Status::kOk;
  n.value = *parsed;
  return n;
}

}  // namespace kbus::util
