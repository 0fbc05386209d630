// bridge/subjects.hpp - KBUS message names <-> NATS subjects (docs/fleet.md,
// "Names"). Pure functions, no I/O.
//
//   $.A.B      <->  PREFIX.A.B
//   $.A.*      <->  PREFIX.A.>     (one or more further components)
//   $.A.%      <->  PREFIX.A.*     (exactly one further component)
//
// Every component of a KBUS name is made of ASCII letters and digits
// (KBUS-SPEC.md §2.1), all of which NATS allows in a token. Any other byte
// (none today; the escape keeps the mapping total and reversible should the
// name rules ever widen) is written `_XX` with two upper-case hex digits, and
// `_` itself is escaped, so a token has exactly one spelling: subject ->
// name -> subject and name -> subject -> name are both identities, and a
// subject with a non-canonical token (`_2a`, a raw `$`, `_41` for a letter)
// is refused rather than read two ways.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace kbus::bridge {

// Why `prefix` cannot be a subject prefix (empty if it can): one or more
// tokens of letters, digits, '-' and '_' separated by dots.
std::string prefix_problem(std::string_view prefix);

// One component (no dots) escaped as a NATS token, and back. unescape
// returns nullopt for anything escape could not have produced.
std::string escape_token(std::string_view component);
std::optional<std::string> unescape_token(std::string_view token);

// A valid KBUS name or binding (wildcards allowed) as a subject; nullopt if
// `name` is not a valid KBUS name (§2.1).
std::optional<std::string> name_to_subject(std::string_view prefix, std::string_view name);

// A subject (possibly a wildcard subject) as a KBUS name or binding. On
// failure returns nullopt and says why in `why` (if given).
std::optional<std::string> subject_to_name(std::string_view prefix, std::string_view subject,
                                           std::string* why = nullptr);

// The JetStream key-value key for a replier name (wildcards allowed):
// "r." + the escaped components, with a final '*' or '%' escaped as a token
// (`_2A`, `_25`), since KV keys allow no wildcards. key_to_name reverses it.
std::optional<std::string> name_to_key(std::string_view name);
std::optional<std::string> key_to_name(std::string_view key);

// A KV bucket name for a prefix: the prefix with dots turned into '_',
// then "_fleet" (bucket names allow letters, digits, '-', '_').
std::string bucket_for_prefix(std::string_view prefix);

}  // namespace kbus::bridge
