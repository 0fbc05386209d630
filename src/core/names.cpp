#include "core/names.hpp"

#include <array>

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
