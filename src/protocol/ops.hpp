// protocol/ops.hpp - one typed codec per operation (docs/protocol.md §3-§4).
//
// frames.hpp cuts the byte stream into frames; this file says what is inside
// each one. Every operation has a request shape and a reply shape (a small
// struct), and every shape has exactly one encoder (`encode(out, x)` appends
// the payload) and one decoder (`decode(payload, x)`: false if the payload
// is too short or too long for the shape, which the daemon answers with
// -EFAULT and a client treats as a broken stream). `Codec<Op>` names the two
// shapes of each operation, so that
//
//     append_request<Op::kBind>(out, BindArgs{1, "$.Fred"});
//     decode_reply<Op::kReplier>(payload, value);
//
// are checked by the compiler: the daemon's handlers, the C++ client and
// (through the client) the C API use only these. Adding an operation means:
// its Op number, its Codec (reusing a shape or adding one here), a handler
// in src/daemon/handlers.cpp and a vector in tests/vectors/protocol.json,
// which src/protocol/ops_test.cpp checks.
//
// The decoders return views into the payload: they copy nothing.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "kbus/message.hpp"
#include "protocol/frames.hpp"

namespace kbus::protocol {

// --- the frame budget (docs/protocol.md §2) --------------------------------
// kbusd keeps --max-frame-size at least kFrameSlack bytes above its absolute
// maximum message size (MAXMSGSIZE 1), so a frame carrying one whole message
// always fits; clients rely on it to split batches and to answer EMSGSIZE.
constexpr std::uint32_t kFrameSlack = 1024;
// The smallest absolute maximum message size a kbusd accepts (§14-26).
constexpr std::uint32_t kMinAbsMaxMsgSize = 100;
// The longest request frame a daemon whose absolute maximum message size is
// `abs_max_msg_size` surely accepts.
constexpr std::size_t frame_budget(std::uint32_t abs_max_msg_size) {
  return std::size_t{abs_max_msg_size} + kFrameSlack;
}
// What every kbusd accepts, whatever its configuration: no question needed.
constexpr std::size_t kMinFrameBudget = frame_budget(kMinAbsMaxMsgSize);
// The largest --abs-max-msg-size a kbusd with --max-frame-size
// `max_frame_len` may use (it refuses to start above it).
constexpr std::uint32_t max_abs_msg_size_for_frame(std::uint32_t max_frame_len) {
  return max_frame_len > kFrameSlack ? max_frame_len - kFrameSlack : 0;
}

// --- request shapes ---------------------------------------------------------
struct NoArgs {};
struct U32Arg {  // MAXMSGS, MSGONLYONCE, VERBOSE, REPORTREPLIERBINDS, MAXMSGSIZE, READ, MONITOR
  std::uint32_t value = 0;
};
struct BindArgs {  // BIND, UNBIND
  std::uint32_t is_replier = 0;
  std::string_view name;
};
struct NameArg {  // REPLIER
  std::string_view name;
};
struct HelloArgs {
  std::uint32_t version = kVersion;
  std::uint32_t mode = 0;
  std::uint32_t header_len = 0;
};
struct RawBytes {  // WRITE, SEND, SENDMSG, REQUEST, SENDWAIT: any length, may be 0
  std::string_view bytes;
};
struct ReadBatchArgs {
  std::uint32_t max_count = 1;  // at least 1 (else the payload is refused)
  std::uint32_t max_bytes = 0;
  std::uint32_t wait = 0;
};
// BINDINGSPART, STATSPART (docs/protocol.md §4.8): the report from bus
// `bus` at position `pos` (kReportFirst: from its start), about max_bytes
// of it (at least one line; the daemon caps it).
struct ReportPartArgs {
  std::uint32_t bus = 0;
  std::uint64_t pos = 0;
  std::uint32_t max_bytes = 0;
};
constexpr std::uint64_t kReportFirst = ~std::uint64_t{0};
constexpr std::uint32_t kReportDone = 0xFFFFFFFF;  // next_bus when complete
// SENDBATCH: (u32 len, len bytes) repeated. Decoding checks the framing of
// every item and counts them; next() then walks them in order.
struct BatchItems {
  std::string_view items;
  std::uint32_t count = 0;
  bool next(std::string_view& message);
};
// Appends one SENDBATCH item.
void append_batch_item(std::string& out, std::string_view message);

// --- reply shapes (the payload; the status travels in the frame word) -------
struct Empty {};
struct U32Value {
  std::uint32_t value = 0;
};
struct IdValue {  // SEND, SENDMSG, LASTSENT, and REQUEST/SENDWAIT failures
  MessageId id;
};
struct HelloValue {
  std::uint32_t ksock_id = 0;
  std::uint32_t bus = 0;
};
struct BytesValue {  // READ, NEXTREAD, WAITREAD, READBATCH, BINDINGS, STATS
  std::string_view bytes;
};
struct IdBytesValue {  // REQUEST, SENDWAIT: the id sent, then the message (if any)
  MessageId id;
  std::string_view bytes;
};
struct ReportPartValue {  // BINDINGSPART, STATSPART: where the next part starts
  std::uint32_t next_bus = kReportDone;
  std::uint64_t next_pos = 0;
  std::string_view bytes;  // this part's text
};
struct BatchIdsValue {  // SENDBATCH: count, then count ids
  std::uint32_t count = 0;
  std::string_view ids;  // count * 8 bytes
  MessageId id(std::uint32_t i) const;
};

// --- one encoder and one decoder per shape ----------------------------------
inline void put_id(std::string& out, MessageId id) {
  put_u32(out, id.network_id);
  put_u32(out, id.serial_num);
}
inline MessageId get_id(const char* p) { return MessageId{get_u32(p), get_u32(p + 4)}; }

inline void encode(std::string&, const NoArgs&) {}
inline void encode(std::string& out, const U32Arg& a) { put_u32(out, a.value); }
void encode(std::string& out, const BindArgs& a);
void encode(std::string& out, const NameArg& a);
void encode(std::string& out, const HelloArgs& a);
inline void encode(std::string& out, const RawBytes& a) { out.append(a.bytes); }
void encode(std::string& out, const ReadBatchArgs& a);
void encode(std::string& out, const ReportPartArgs& a);
void encode(std::string& out, const ReportPartValue& v);
inline void encode(std::string& out, const BatchItems& a) { out.append(a.items); }
inline void encode(std::string&, const Empty&) {}
inline void encode(std::string& out, const U32Value& v) { put_u32(out, v.value); }
inline void encode(std::string& out, const IdValue& v) { put_id(out, v.id); }
void encode(std::string& out, const HelloValue& v);
inline void encode(std::string& out, const BytesValue& v) { out.append(v.bytes); }
void encode(std::string& out, const IdBytesValue& v);
void encode(std::string& out, const BatchIdsValue& v);

[[nodiscard]] bool decode(std::string_view p, NoArgs&);
[[nodiscard]] bool decode(std::string_view p, U32Arg& a);
[[nodiscard]] bool decode(std::string_view p, BindArgs& a);
[[nodiscard]] bool decode(std::string_view p, NameArg& a);
[[nodiscard]] bool decode(std::string_view p, HelloArgs& a);
[[nodiscard]] bool decode(std::string_view p, RawBytes& a);
[[nodiscard]] bool decode(std::string_view p, ReadBatchArgs& a);
[[nodiscard]] bool decode(std::string_view p, ReportPartArgs& a);
[[nodiscard]] bool decode(std::string_view p, ReportPartValue& v);
[[nodiscard]] bool decode(std::string_view p, BatchItems& a);
[[nodiscard]] bool decode(std::string_view p, Empty&);
[[nodiscard]] bool decode(std::string_view p, U32Value& v);
[[nodiscard]] bool decode(std::string_view p, IdValue& v);
[[nodiscard]] bool decode(std::string_view p, HelloValue& v);
[[nodiscard]] bool decode(std::string_view p, BytesValue& v);
[[nodiscard]] bool decode(std::string_view p, IdBytesValue& v);
[[nodiscard]] bool decode(std::string_view p, BatchIdsValue& v);

// --- the codec of each operation --------------------------------------------
template <Op O>
struct Codec;
#define KBUS_CODEC(OP, REQ, REP) \
  template <>                    \
  struct Codec<Op::OP> {         \
    using Request = REQ;         \
    using Reply = REP;           \
  }
KBUS_CODEC(kReset, NoArgs, Empty);
KBUS_CODEC(kBind, BindArgs, Empty);
KBUS_CODEC(kUnbind, BindArgs, Empty);
KBUS_CODEC(kKsockId, NoArgs, U32Value);
KBUS_CODEC(kReplier, NameArg, U32Value);
KBUS_CODEC(kNextMsg, NoArgs, U32Value);
KBUS_CODEC(kLenLeft, NoArgs, U32Value);
KBUS_CODEC(kSend, RawBytes, IdValue);
KBUS_CODEC(kDiscard, NoArgs, Empty);
KBUS_CODEC(kLastSent, NoArgs, IdValue);
KBUS_CODEC(kMaxMsgs, U32Arg, U32Value);
KBUS_CODEC(kNumMsgs, NoArgs, U32Value);
KBUS_CODEC(kUnrepliedTo, NoArgs, U32Value);
KBUS_CODEC(kMsgOnlyOnce, U32Arg, U32Value);
KBUS_CODEC(kVerbose, U32Arg, U32Value);
KBUS_CODEC(kNewDevice, NoArgs, U32Value);
KBUS_CODEC(kReportReplierBinds, U32Arg, U32Value);
KBUS_CODEC(kMaxMsgSize, U32Arg, U32Value);
KBUS_CODEC(kHello, HelloArgs, HelloValue);
KBUS_CODEC(kWrite, RawBytes, Empty);
KBUS_CODEC(kRead, U32Arg, BytesValue);
KBUS_CODEC(kSendMsg, RawBytes, IdValue);
KBUS_CODEC(kNextRead, NoArgs, BytesValue);
KBUS_CODEC(kWaitRead, NoArgs, BytesValue);
KBUS_CODEC(kBindings, NoArgs, BytesValue);
KBUS_CODEC(kStats, NoArgs, BytesValue);
KBUS_CODEC(kBindingsPart, ReportPartArgs, ReportPartValue);
KBUS_CODEC(kStatsPart, ReportPartArgs, ReportPartValue);
KBUS_CODEC(kRequest, RawBytes, IdBytesValue);
KBUS_CODEC(kSendWait, RawBytes, IdBytesValue);
KBUS_CODEC(kSendBatch, BatchItems, BatchIdsValue);
KBUS_CODEC(kReadBatch, ReadBatchArgs, BytesValue);
KBUS_CODEC(kPollFd, NoArgs, Empty);
KBUS_CODEC(kMonitor, U32Arg, U32Value);
KBUS_CODEC(kShmRing, U32Arg, U32Value);
#undef KBUS_CODEC

// Appends a whole request frame for operation O.
template <Op O>
void append_request(std::string& out, const typename Codec<O>::Request& args = {}) {
  const std::size_t at = begin_frame(out, static_cast<std::uint32_t>(O));
  encode(out, args);
  end_frame(out, at);
}
template <Op O>
[[nodiscard]] bool decode_request(std::string_view payload, typename Codec<O>::Request& args) {
  return decode(payload, args);
}
// Appends a whole reply frame of operation O.
template <Op O>
void append_reply(std::string& out, std::int32_t status,
                  const typename Codec<O>::Reply& value = {}) {
  const std::size_t at = begin_frame(out, static_cast<std::uint32_t>(status));
  encode(out, value);
  end_frame(out, at);
}
template <Op O>
[[nodiscard]] bool decode_reply(std::string_view payload, typename Codec<O>::Reply& value) {
  return decode(payload, value);
}

// A failed reply (docs/protocol.md §2): -errno and no payload, whatever op.
inline void append_error(std::string& out, int errno_value) {
  append_reply(out, -errno_value, std::string_view{});
}

}  // namespace kbus::protocol
