// limpet/wire.hpp - the limpet-to-limpet wire format of the original KBUS
// (KBUS-SPEC.md §10.2-§10.3), byte for byte.
//
// After connecting, each side sends "HELO" and its network id (big-endian
// u32), then reads the peer's 8 bytes. From then on the stream carries whole
// messages, each:
//
//   16 big-endian u32: start_guard, id.network_id, id.serial_num,
//      in_reply_to.network_id, in_reply_to.serial_num, to, from,
//      orig_from.network_id, orig_from.local_id, final_to.network_id,
//      final_to.local_id, extra, flags, name_len, data_len, end_guard
//   name, zero bytes up to PADDED_NAME_LEN(name_len)
//   data, zero bytes up to PADDED_DATA_LEN(data_len)   (nothing if data_len 0)
//   END_GUARD as a big-endian u32
//
// Data is opaque, except that the three leading u32 of a
// $.KBUS.ReplierBindEvent travel big-endian: serialise() converts them from
// host order and WireDecoder converts them back, so a Message on either side
// of this codec always holds host-order bind event data.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "kbus/errors.hpp"
#include "kbus/message.hpp"

namespace kbus::limpet {

constexpr std::size_t kHeloLen = 8;                   // "HELO" + u32
constexpr std::size_t kSerialisedHeaderWords = 16;    // KBUS_SERIALISED_HDR_LEN
constexpr std::size_t kSerialisedHeaderLen = 4 * kSerialisedHeaderWords;
// The largest data a peer may send: the absolute maximum message size of
// KBUS-SPEC.md §4.7. Anything longer is a protocol error (the stream cannot
// be trusted), as is a name longer than 1000 bytes.
constexpr std::uint32_t kMaxWireDataLen = 409600;

// "HELO" followed by the network id, big-endian.
std::string encode_helo(std::uint32_t network_id);
// The peer's network id from exactly kHeloLen bytes; Errc::eproto if they
// do not start with "HELO".
Result<std::uint32_t> decode_helo(std::string_view bytes);

// Appends the wire form of `m` to `out`.
void serialise(std::string& out, const Message& m);
std::string serialise(const Message& m);

// Converts the three leading u32 of bind event data between host order and
// big-endian (the original's kbus_limpet_ReplierBindEvent_hton/_ntoh).
// Data shorter than 12 bytes is returned unchanged.
std::string bind_event_data_to_network(std::string_view host_data);
std::string bind_event_data_from_network(std::string_view net_data);

// Incremental decoder for the message stream after the HELO exchange. Feed
// it bytes as they arrive; take messages out with next().
class WireDecoder {
 public:
  void feed(std::string_view bytes) { buf_.append(bytes); }
  // The next complete message, nullopt if more bytes are needed, or
  // Errc::eproto (bad guard, name_len 0 or > 1000, data_len too large) after
  // which the stream is unusable.
  Result<std::optional<Message>> next();
  std::size_t buffered() const noexcept { return buf_.size() - pos_; }

 private:
  std::string buf_;
  std::size_t pos_ = 0;
  bool broken_ = false;
};

}  // namespace kbus::limpet
