// core/header_layout.hpp - the message header (struct kbus_message_header)
// as bytes: the one decoder of its fields (KBUS-SPEC.md §3.1;
// docs/protocol.md §5).
//
// The write parser (a header written by a client), decode_entire (a whole
// message) and the clients (the length of a message in a reply) all read
// the header through these functions: the offsets are here only. Pure.
#pragma once

#include <cstdint>
#include <cstring>

#include "kbus/message.hpp"
#include "util/endian.hpp"

namespace kbus::core {

// Offsets of the fields shared by both ABIs (H = 88 and H = 72).
namespace hdr_off {
constexpr std::size_t kStartGuard = 0;
constexpr std::size_t kFlags = 48;
constexpr std::size_t kNameLen = 52;
constexpr std::size_t kDataLen = 56;
constexpr std::size_t kFixedEnd = 60;  // the fields above end here
}  // namespace hdr_off

// Where the fields that differ between the ABIs are.
struct HeaderAbi {
  std::size_t name_ptr, data_ptr, end_guard;
  bool wide_ptrs;  // 8-byte pointers
};
constexpr HeaderAbi header_abi(std::uint32_t header_len) {
  return header_len == kHeaderLen64 ? HeaderAbi{64, 72, 80, true} : HeaderAbi{60, 64, 68, false};
}

// The raw fields of a header of `header_len` bytes at `p` (at least that
// many bytes must be there).
struct RawHeader {
  std::uint32_t start_guard = 0, end_guard = 0;
  Header hdr;
  std::uint32_t name_len = 0, data_len = 0;
  bool name_ptr = false, data_ptr = false;  // non-zero pointer fields
};

inline RawHeader decode_header(const char* p, std::uint32_t header_len) {
  using util::get_u32;
  const HeaderAbi abi = header_abi(header_len);
  RawHeader r;
  r.start_guard = get_u32(p);
  r.hdr.id = {get_u32(p + 4), get_u32(p + 8)};
  r.hdr.in_reply_to = {get_u32(p + 12), get_u32(p + 16)};
  r.hdr.to = get_u32(p + 20);
  r.hdr.from = get_u32(p + 24);
  r.hdr.orig_from = {get_u32(p + 28), get_u32(p + 32)};
  r.hdr.final_to = {get_u32(p + 36), get_u32(p + 40)};
  r.hdr.extra = get_u32(p + 44);
  r.hdr.flags = get_u32(p + hdr_off::kFlags);
  r.name_len = get_u32(p + hdr_off::kNameLen);
  r.data_len = get_u32(p + hdr_off::kDataLen);
  if (abi.wide_ptrs) {
    std::uint64_t a, b;
    std::memcpy(&a, p + abi.name_ptr, 8);
    std::memcpy(&b, p + abi.data_ptr, 8);
    r.name_ptr = a != 0;
    r.data_ptr = b != 0;
  } else {
    r.name_ptr = get_u32(p + abi.name_ptr) != 0;
    r.data_ptr = get_u32(p + abi.data_ptr) != 0;
  }
  r.end_guard = get_u32(p + abi.end_guard);
  return r;
}

// The entire length of the message whose header is at `p` (in the ABI of
// `header_len`), from its name_len and data_len: for splitting a run of
// entire messages (READBATCH replies) without decoding them.
inline std::uint64_t entire_len_at(const char* p, std::uint32_t header_len) {
  return entire_len(header_len, util::get_u32(p + hdr_off::kNameLen),
                    util::get_u32(p + hdr_off::kDataLen));
}

}  // namespace kbus::core
