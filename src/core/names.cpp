#include "core/names.hpp"

#include <array>
#include <string>

namespace kbus::core {

namespace {
// Bytes allowed in a name component (ASCII letters and digits), as a table:
// names are checked on every message written, byte by byte.
constexpr std::array<bool, 256> kAlnum = [] {
  std::array<bool, 256> t{};
  for (int c = 0; c < 256; ++c)
    t[c] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  return t;
}();
bool is_ascii_alnum(char c) noexcept { return kAlnum[static_cast<unsigned char>(c)]; }
}  // namespace

bool is_valid_name(std::string_view name) noexcept {
  const std::size_t n = name.size();
  if (n < 3) return false;
  if (name[0] != '$' || name[1] != '.') return false;
  std::size_t m = n;
  if (name[m - 2] == '.' && (name[m - 1] == '*' || name[m - 1] == '%')) m -= 2;
  if (name[m - 1] == '.') return false;
  std::size_t last_dot = 1;
  for (std::size_t i = 2; i < m; ++i) {
    if (name[i] == '.') {
      if (last_dot == i - 1) return false;  // empty component
      last_dot = i;
    } else if (!is_ascii_alnum(name[i])) {
      return false;
    }
  }
  return true;
}

std::string name_problem(std::string_view name, bool for_sending) {
  constexpr std::size_t kMaxNameLen = 1000;  // KBUS_MAX_NAME_LEN, §2.1
  const std::size_t n = name.size();
  if (n == 0) return "it is empty";
  if (n > kMaxNameLen) {
    return "it is " + std::to_string(n) + " bytes long; the limit is " +
           std::to_string(kMaxNameLen);
  }
  if (n < 2 || name[0] != '$' || name[1] != '.') {
    return "it does not start with \"$.\" (names look like $.Sensors.Kitchen)";
  }
  if (n == 2) return "it has nothing after \"$.\"";
  std::size_t m = n;
  const bool wildcard = name[m - 2] == '.' && (name[m - 1] == '*' || name[m - 1] == '%');
  if (wildcard) m -= 2;
  if (name[m - 1] == '.') return "it ends with a dot";
  std::size_t last_dot = 1;
  int component = 1;
  for (std::size_t i = 2; i < m; ++i) {
    const char c = name[i];
    if (c == '.') {
      if (last_dot == i - 1) return "component " + std::to_string(component) + " is empty (\"..\")";
      last_dot = i;
      ++component;
    } else if (!is_ascii_alnum(c)) {
      static constexpr char kHex[] = "0123456789abcdef";
      const auto u = static_cast<unsigned char>(c);
      const std::string shown = (u >= 0x21 && u < 0x7f)
                                    ? std::string("'") + c + "'"
                                    : std::string("byte 0x") + kHex[u >> 4] + kHex[u & 15];
      if (c == '*' || c == '%') {
        return shown + " at offset " + std::to_string(i) +
               ": a wildcard must be the whole last component ($.A.* or $.A.%)";
      }
      return shown + " at offset " + std::to_string(i) +
             ": a name has only letters, digits and dots";
    }
  }
  if (wildcard && for_sending) {
    return "it is a wildcard: a message is sent to one name, and only bindings may use * or %";
  }
  return {};
}

bool is_wildcard(std::string_view name) noexcept {
  return !name.empty() && (name.back() == '*' || name.back() == '%');
}

NameClass name_class(std::string_view name) noexcept {
  if (name.empty()) return NameClass::kSpecific;
  if (name.back() == '*') return NameClass::kStar;
  if (name.back() == '%') return NameClass::kPercent;
  return NameClass::kSpecific;
}

std::string_view binding_prefix(std::string_view binding) noexcept {
  if (is_wildcard(binding)) return binding.substr(0, binding.size() - 1);
  return binding;
}

bool name_matches(std::string_view binding, std::string_view name) noexcept {
  switch (name_class(binding)) {
    case NameClass::kSpecific:
      return binding == name;
    case NameClass::kStar: {
      std::string_view p = binding_prefix(binding);
      return name.size() >= binding.size() && name.starts_with(p);
    }
    case NameClass::kPercent: {
      std::string_view p = binding_prefix(binding);
      return name.size() >= binding.size() && name.starts_with(p) &&
             name.substr(p.size()).find('.') == std::string_view::npos;
    }
  }
  return false;
}

}  // namespace kbus::core
