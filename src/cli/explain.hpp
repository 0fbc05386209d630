// cli/explain.hpp - what went wrong, said so that a person can fix it.
//
// The library reports an errno (KBUS-SPEC.md §13.5); the tool knows what it
// was doing: the bus, the socket path, the name, the message. explain()
// turns the two into one line that names the offending thing, the rule or
// limit broken and how to get past it, e.g.
//
//   EBADMSG: '$.Fred.' is not a valid message name: it ends with a dot
//   ENOENT: no bus 0 at /run/user/1000/kbus/kbus0: is kbusd running? ...
//   EMSGSIZE: the message is 2076 bytes ...; bus 0 takes at most 1024: raise
//             it with `kbus max-size -b 0 SIZE` (up to 409600)
//
// The errno's name stays first, so scripts can still match on it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace kbus::cli {

struct Context {
  enum class Step { kOther, kOpen, kBind, kSend };
  Step step = Step::kOther;
  int bus = 0;
  std::string path;          // DIR/kbusN
  std::string name;          // the message or binding name involved
  bool replier = false;      // binding as replier
  bool request = false;      // sending a Request
  std::uint32_t entire_len = 0;            // of the message being sent
  std::optional<std::uint32_t> limit;      // the bus's MAXMSGSIZE
  std::optional<std::uint32_t> abs_limit;  // its absolute maximum
  std::string holder;        // for EADDRINUSE: who already replies
};

// "ERRNAME: explanation" (no trailing newline).
std::string explain(int err, const Context& c);

}  // namespace kbus::cli
