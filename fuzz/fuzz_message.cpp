// fuzz/fuzz_message.cpp - the message codec: decode_entire/encode_entire
// (kbus/message.hpp), the write parser behind WRITE (core/write_parser.hpp)
// and the Replier Bind Event data.
//
// Input: byte 0 picks the ABI (bit 0: H = 72, else 88) and the piece size
// for the write parser (bits 1..7); the rest is the message bytes.
// Checked:
//  * decode_entire accepts only what it can give back: re-encoding a decoded
//    message and decoding again yields the same message, of entire_len bytes;
//  * the write parser's outcome does not depend on how the bytes are split
//    (KBUS-SPEC.md §4.2-8): one write, or pieces, give the same error or the
//    same complete message;
//  * a complete entire-form message re-encodes to bytes that the parser
//    accepts again, giving the same header, name and data; its size is
//    within the bus limit it was checked against;
//  * bind event data round-trips.
#include <cstdint>
#include <string>
#include <string_view>

#include "core/names.hpp"
#include "core/write_parser.hpp"
#include "fuzz/fuzz_check.hpp"
#include "kbus/message.hpp"

using namespace kbus;

namespace {

constexpr std::uint32_t kMaxMsgSize = 409600;

struct Parsed {
  Errc error = Errc::ok;
  bool started = false;
  bool complete = false;
  bool pointy = false;
  Header hdr;
  std::string name, data;
  std::uint32_t name_len = 0, data_len = 0;
  bool operator==(const Parsed&) const = default;
};

Parsed parse(std::string_view bytes, std::uint32_t h, std::size_t piece) {
  core::WriteParser p(h);
  Parsed out;
  std::size_t off = 0;
  do {
    const std::size_t n = std::min(piece, bytes.size() - off);
    auto r = p.write(bytes.substr(off, n), kMaxMsgSize);
    off += n;
    if (!r) {
      out.error = r.error();
      FUZZ_CHECK(!p.complete());
      return out;
    }
  } while (off < bytes.size());
  out.started = p.started();
  out.complete = p.complete();
  if (out.complete) {
    out.pointy = p.pointy();
    out.hdr = p.header();
    out.name_len = p.name_len();
    out.data_len = p.data_len();
    if (!out.pointy) {
      out.name = p.name();
      out.data = p.data();
      FUZZ_CHECK(out.name.size() == out.name_len);
      FUZZ_CHECK(out.data.size() == out.data_len);
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::uint32_t h = (data[0] & 1) ? kHeaderLen32 : kHeaderLen64;
  const std::size_t piece = 1 + (data[0] >> 1);
  const std::string_view bytes(reinterpret_cast<const char*>(data + 1), size - 1);

  // decode_entire / encode_entire round trip.
  if (auto m = decode_entire(bytes, h); m) {
    std::string again = encode_entire(*m, h);
    FUZZ_CHECK(again.size() == entire_len(h, static_cast<std::uint32_t>(m->name.size()),
                                          static_cast<std::uint32_t>(m->data.size())));
    auto m2 = decode_entire(again, h);
    FUZZ_CHECK(m2.ok());
    FUZZ_CHECK(*m2 == *m);
    FUZZ_CHECK(encode_entire(*m2, h) == again);
  }

  // The write parser: split-independence, then re-encoding.
  const Parsed whole = parse(bytes, h, bytes.size() + 1);
  const Parsed pieces = parse(bytes, h, piece);
  FUZZ_CHECK(whole == pieces);
  if (whole.complete && !whole.pointy) {
    FUZZ_CHECK(entire_len(h, whole.name_len, whole.data_len) <= kMaxMsgSize);
    FUZZ_CHECK(core::is_valid_name(whole.name) && !core::is_wildcard(whole.name));
    std::string again;
    encode_entire(again, whole.hdr, whole.name, whole.data, h);
    const Parsed re = parse(again, h, again.size());
    FUZZ_CHECK(re.complete && !re.pointy);
    FUZZ_CHECK(re.name == whole.name && re.data == whole.data);
    // The flags and ids are carried, not interpreted, by the parser.
    FUZZ_CHECK(re.hdr == whole.hdr);
    auto m = decode_entire(again, h);
    FUZZ_CHECK(m.ok() && m->name == whole.name && m->data == whole.data);
  }

  // Replier Bind Event data.
  if (auto ev = decode_replier_bind_event(bytes); ev) {
    auto ev2 = decode_replier_bind_event(encode_replier_bind_event(*ev));
    FUZZ_CHECK(ev2.ok());
    FUZZ_CHECK(ev2->is_bind == ev->is_bind && ev2->binder == ev->binder && ev2->name == ev->name);
  }
  return 0;
}
