// util/endian.hpp - the u32 of the wire and of the message layout.
//
// docs/protocol.md §1: every integer is an unsigned 32-bit value in host
// byte order, which on every platform kbus is built for is little-endian.
// These are the only readers and writers of such a value in kbus: the
// protocol codecs, the message layout (src/core) and the clients use them.
// They are pure (memcpy, no OS): src/core may include this header.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

namespace kbus::util {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "kbus's wire format is little-endian host order (docs/protocol.md §1)");

inline std::uint32_t get_u32(const char* p) noexcept {
  std::uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline void put_u32_at(char* p, std::uint32_t v) noexcept { std::memcpy(p, &v, 4); }
inline void put_u32(std::string& out, std::uint32_t v) {
  char b[4];
  std::memcpy(b, &v, 4);
  out.append(b, 4);
}

}  // namespace kbus::util
