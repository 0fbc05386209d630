// kbus/message.hpp - KBUS message values: ids, header fields, flags, names.
//
// A Message is a value: header fields plus the name and data bytes. It is
// independent of any ABI; the entire-form byte layout of KBUS-SPEC.md §3 is
// produced and parsed by kbus::encode_entire / kbus::decode_entire.
#pragma once

#include <compare>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kbus/errors.hpp"
#include "kbus/export.hpp"

namespace kbus {

constexpr std::uint32_t kStartGuard = 0x7375624B;  // "Kbus" in LE memory
constexpr std::uint32_t kEndGuard = 0x4B627573;    // "subK" in LE memory
constexpr std::uint32_t kMaxNameLen = 1000;
constexpr std::uint32_t kHeaderLen64 = 88;  // sizeof header, 64-bit client ABI
constexpr std::uint32_t kHeaderLen32 = 72;  // sizeof header, 32-bit client ABI
constexpr std::uint32_t kNativeHeaderLen = sizeof(void*) == 8 ? kHeaderLen64 : kHeaderLen32;

// Flag bits (KBUS-SPEC.md §3.3).
namespace flag {
constexpr std::uint32_t kWantAReply = 0x1;
constexpr std::uint32_t kWantYouToReply = 0x2;
constexpr std::uint32_t kSynthetic = 0x4;
constexpr std::uint32_t kUrgent = 0x8;
constexpr std::uint32_t kAllOrWait = 0x100;
constexpr std::uint32_t kAllOrFail = 0x200;
}  // namespace flag

// Names KBUS itself uses (KBUS-SPEC.md §6.3).
namespace status_name {
constexpr std::string_view kReplierGoneAway = "$.KBUS.Replier.GoneAway";
constexpr std::string_view kReplierIgnored = "$.KBUS.Replier.Ignored";
constexpr std::string_view kReplierUnbound = "$.KBUS.Replier.Unbound";
constexpr std::string_view kReplierDisappeared = "$.KBUS.Replier.Disappeared";
constexpr std::string_view kErrorSending = "$.KBUS.ErrorSending";
constexpr std::string_view kUnbindEventsLost = "$.KBUS.UnbindEventsLost";
constexpr std::string_view kReplierBindEvent = "$.KBUS.ReplierBindEvent";
constexpr std::string_view kReplierNotSameKsock = "$.KBUS.Replier.NotSameKsock";
constexpr std::string_view kRemoteErrorPrefix = "$.KBUS.RemoteError.";
}  // namespace status_name

struct KBUS_EXPORT MessageId {
  std::uint32_t network_id = 0;
  std::uint32_t serial_num = 0;
  bool is_zero() const noexcept { return network_id == 0 && serial_num == 0; }
  friend auto operator<=>(const MessageId&, const MessageId&) = default;
  std::string to_string() const;  // "[n:s]", as the Python str() form
};

struct KBUS_EXPORT OrigFrom {
  std::uint32_t network_id = 0;
  std::uint32_t local_id = 0;
  bool is_zero() const noexcept { return network_id == 0 && local_id == 0; }
  friend auto operator<=>(const OrigFrom&, const OrigFrom&) = default;
  std::string to_string() const;  // "(n,l)", as the Python str() form
};

// The header fields of a message, without guards, lengths and pointers.
struct Header {
  MessageId id;
  MessageId in_reply_to;
  std::uint32_t to = 0;
  std::uint32_t from = 0;
  OrigFrom orig_from;
  OrigFrom final_to;
  std::uint32_t extra = 0;
  std::uint32_t flags = 0;
  friend bool operator==(const Header&, const Header&) = default;
};

struct KBUS_EXPORT Message {
  Header hdr;
  std::string name;
  std::string data;  // bytes; empty means "no data"

  bool is_request() const noexcept { return (hdr.flags & flag::kWantAReply) != 0; }
  bool is_reply() const noexcept { return !hdr.in_reply_to.is_zero(); }
  bool is_stateful_request() const noexcept { return is_request() && hdr.to != 0; }
  bool wants_us_to_reply() const noexcept {
    return (hdr.flags & (flag::kWantAReply | flag::kWantYouToReply)) ==
           (flag::kWantAReply | flag::kWantYouToReply);
  }
  bool is_synthetic() const noexcept { return (hdr.flags & flag::kSynthetic) != 0; }
  bool is_urgent() const noexcept { return (hdr.flags & flag::kUrgent) != 0; }
  bool is_status() const noexcept { return is_reply() && name.starts_with("$.KBUS."); }
  bool is_replier_bind_event() const noexcept { return name == status_name::kReplierBindEvent; }

  // "Status", "Reply", "Request", "ReplierBindEvent" or "Announcement".
  std::string kind() const;
  // The original Python str() form (KBUS-SPEC.md §11.3), Python 3 style
  // data (b'...'), e.g. <Announcement '$.Actor.Speak', id=[0:338], from=113, data=b'Ahem'>
  std::string to_string() const;
  // The same, with data as the original's tools and the talk print it:
  // data='Ahem' (no b prefix), non-printable bytes escaped (\n, \xNN), e.g.
  // <Announcement '$.Actor.Speak', id=[0:338], from=113, data='Ahem'>.
  std::string to_text() const;
  friend bool operator==(const Message&, const Message&) = default;

 private:
  std::string describe(bool bytes_prefix) const;
};

// Builders in the manner of the original libraries.
KBUS_EXPORT Message make_announcement(std::string name, std::string data = {},
                                      std::uint32_t flags = 0);
KBUS_EXPORT Message make_request(std::string name, std::string data = {},
                                 std::uint32_t flags = 0);
// Reply to a request that this Ksock was asked to answer (WANT_A_REPLY and
// WANT_YOU_TO_REPLY set); Errc::ebadmsg otherwise.
KBUS_EXPORT Result<Message> make_reply(const Message& request, std::string data = {},
                                       std::uint32_t flags = 0);
// Stateful request from a Reply (to = from, final_to = orig_from) or from an
// earlier stateful request (copies to and final_to); Errc::ebadmsg otherwise.
KBUS_EXPORT Result<Message> make_stateful_request(const Message& earlier, std::string name,
                                                  std::string data = {},
                                                  std::uint32_t flags = 0);

// Replier bind event data (KBUS-SPEC.md §3.6).
struct ReplierBindEvent {
  bool is_bind = false;
  std::uint32_t binder = 0;
  std::string name;
};
KBUS_EXPORT std::string encode_replier_bind_event(const ReplierBindEvent& ev);
KBUS_EXPORT Result<ReplierBindEvent> decode_replier_bind_event(std::string_view data);

// Layout arithmetic (KBUS-SPEC.md §3.5).
constexpr std::uint32_t padded_name_len(std::uint32_t n) { return 4 * ((n + 1 + 3) / 4); }
constexpr std::uint32_t padded_data_len(std::uint32_t d) { return 4 * ((d + 3) / 4); }
constexpr std::uint64_t entire_len(std::uint32_t header_len, std::uint32_t n, std::uint32_t d) {
  // In 64 bits: padded_data_len(d) wraps for d > 0xFFFFFFFC (found by
  // fuzz/fuzz_message), which made a huge data_len pass the size check.
  return std::uint64_t{header_len} + padded_name_len(n) + 4 * ((std::uint64_t{d} + 3) / 4) + 4;
}

// Appends the entire form of `m` for a client whose header is `header_len`
// (88 or 72) bytes long. Pointer fields are 0, padding is zero.
KBUS_EXPORT void encode_entire(std::string& out, const Header& hdr, std::string_view name,
                               std::string_view data,
                               std::uint32_t header_len = kNativeHeaderLen);
KBUS_EXPORT std::string encode_entire(const Message& m,
                                      std::uint32_t header_len = kNativeHeaderLen);
// Parses one entire-form message of exactly bytes.size() bytes. Errc::einval
// for bad guards or inconsistent lengths.
KBUS_EXPORT Result<Message> decode_entire(std::string_view bytes,
                                          std::uint32_t header_len = kNativeHeaderLen);

}  // namespace kbus
