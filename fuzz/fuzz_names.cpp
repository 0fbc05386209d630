// fuzz/fuzz_names.cpp - the message name parser and matcher
// (core/names.hpp) against a plain transcription of KBUS-SPEC.md §2.1-§2.4,
// and the binding table (core/binding_table.hpp) against a brute-force scan.
//
// Checked: is_valid_name and is_wildcard agree with the spec's algorithm on
// every token; name_class and binding_prefix are consistent with them;
// name_matches agrees with the spec's rules; the table's indexed lookups
// (matching_listeners, select_replier) give exactly what scanning every
// binding with the spec's rules gives, in the spec's order.
#include <cstdint>
#include <string_view>
#include <vector>

#include "core/binding_table.hpp"
#include "core/names.hpp"
#include "fuzz/fuzz_check.hpp"

using namespace kbus::core;

namespace {

bool alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

// §2.1, with the ASCII-only choice of §14-16, and the 1000-byte maximum.
bool spec_valid(std::string_view name) {
  const std::size_t n = name.size();
  if (n < 3) return false;  // the 1000-byte maximum is checked by the callers
  if (name[0] != '$' || name[1] != '.') return false;
  std::size_t m = n;
  if (name[m - 2] == '.' && (name[m - 1] == '*' || name[m - 1] == '%')) m -= 2;
  if (name[m - 1] == '.') return false;
  std::size_t last_dot = 1;
  for (std::size_t i = 2; i < m; ++i) {
    if (name[i] == '.') {
      if (last_dot == i - 1) return false;
      last_dot = i;
    } else if (!alnum(name[i])) {
      return false;
    }
  }
  return true;
}

bool spec_wildcard(std::string_view name) {
  return !name.empty() && (name.back() == '*' || name.back() == '%');
}

// §2.3.
bool spec_matches(std::string_view b, std::string_view n) {
  if (!spec_wildcard(b)) return b == n;
  const std::string_view prefix = b.substr(0, b.size() - 1);
  if (n.size() < b.size() || n.substr(0, prefix.size()) != prefix) return false;
  if (b.back() == '*') return true;
  return n.substr(prefix.size()).find('.') == std::string_view::npos;
}

void check_one(std::string_view name) {
  const bool valid = is_valid_name(name);
  FUZZ_CHECK(valid == spec_valid(name));
  if (!valid) return;
  FUZZ_CHECK(is_wildcard(name) == spec_wildcard(name));
  const NameClass c = name_class(name);
  if (!spec_wildcard(name)) {
    FUZZ_CHECK(c == NameClass::kSpecific);
    FUZZ_CHECK(binding_prefix(name) == name);
    FUZZ_CHECK(name_matches(name, name));
  } else {
    FUZZ_CHECK(c == (name.back() == '*' ? NameClass::kStar : NameClass::kPercent));
    FUZZ_CHECK(binding_prefix(name) == name.substr(0, name.size() - 1));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // Tokens separated by NUL bytes: the first is a message name, each later
  // one a binding (listener at even positions, replier at odd ones); an
  // empty token removes the oldest binding.
  const std::string_view all(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> tokens;
  for (std::size_t at = 0;;) {
    const std::size_t nul = all.find('\0', at);
    tokens.push_back(all.substr(at, nul == std::string_view::npos ? nul : nul - at));
    if (nul == std::string_view::npos || tokens.size() > 64) break;
    at = nul + 1;
  }
  for (std::string_view t : tokens) check_one(t);
  const std::string_view name = tokens[0];
  const bool sendable = spec_valid(name) && !spec_wildcard(name);

  BindingTable table;
  for (std::size_t i = 1; i < tokens.size(); ++i) {
    const std::string_view b = tokens[i];
    if (b.empty()) {
      if (!table.all().empty()) table.remove(table.all().begin()->first);
      continue;
    }
    if (!spec_valid(b)) continue;
    const bool replier = i % 2 == 1;
    if (replier && table.replier_by_string(b)) continue;  // EADDRINUSE
    table.add(static_cast<std::uint32_t>(i), replier, b);
    if (sendable) FUZZ_CHECK(name_matches(b, name) == spec_matches(b, name));
  }
  if (!sendable) return 0;
  FUZZ_CHECK(name_matches("$.*", name));

  // §2.3: every matching listener binding, newest first.
  std::vector<const Binding*> want;
  for (auto it = table.all().rbegin(); it != table.all().rend(); ++it)
    if (!it->second.replier && spec_matches(it->second.name, name)) want.push_back(&it->second);
  std::vector<const Binding*> got;
  table.matching_listeners(name, got);
  FUZZ_CHECK(got == want);

  // §2.4: exact > '%' > '*', the newest binding within a class.
  const Binding* best = nullptr;
  auto rank = [](const Binding& b) {
    return b.name.back() == '*' ? 0 : b.name.back() == '%' ? 1 : 2;
  };
  for (auto it = table.all().rbegin(); it != table.all().rend(); ++it) {
    const Binding& b = it->second;
    if (!b.replier || !spec_matches(b.name, name)) continue;
    if (!best || rank(b) > rank(*best)) best = &b;
  }
  FUZZ_CHECK(table.select_replier(name) == best);
  return 0;
}
