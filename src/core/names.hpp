// core/names.hpp - message name validity and matching (KBUS-SPEC.md §2).
#pragma once

#include <string>
#include <string_view>

namespace kbus::core {

enum class NameClass {
  kSpecific,  // no wildcard: matches one exact name
  kPercent,   // P + '%': one more component
  kStar,      // P + '*': one or more components
};

// §2.1: the kernel's validity algorithm (ASCII letters and digits only, §14-16).
bool is_valid_name(std::string_view name) noexcept;
// Why `name` is not valid (§2.1, and §2.2's length limit), in words a
// person can act on - "it does not start with \"$.\"", "component 2 is
// empty", ...; empty if it is valid. With `for_sending`, a wildcard is a
// problem too (a message cannot be sent to one, §2.2).
std::string name_problem(std::string_view name, bool for_sending);
// §2.1: wildcard(name) = last byte is '*' or '%'. Meaningful for valid names.
bool is_wildcard(std::string_view name) noexcept;
NameClass name_class(std::string_view name) noexcept;
// For a wildcard binding "P*" or "P%", P (ending in '.'); for a specific
// name, the name itself.
std::string_view binding_prefix(std::string_view binding) noexcept;
// §2.3: does the message name `name` match the binding `binding`?
bool name_matches(std::string_view binding, std::string_view name) noexcept;

}  // namespace kbus::core
