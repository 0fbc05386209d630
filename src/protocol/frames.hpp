// protocol/frames.hpp - framing of requests and replies between kbusd and a
// client (docs/protocol.md §2): the frame header (u32 length, u32 op or
// status) is encoded by begin_frame/end_frame/append_* and decoded by
// parse_frame, here and nowhere else. What is inside each frame is the
// business of the per-operation codecs (protocol/ops.hpp). Integers are u32
// in host byte order.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "util/endian.hpp"

namespace kbus::protocol {

constexpr std::uint32_t kVersion = 1;
constexpr std::uint32_t kMaxFrameLen = 1u << 20;  // bytes after the length field

enum class Op : std::uint32_t {
  kReset = 1,
  kBind = 2,
  kUnbind = 3,
  kKsockId = 4,
  kReplier = 5,
  kNextMsg = 6,
  kLenLeft = 7,
  kSend = 8,
  kDiscard = 9,
  kLastSent = 10,
  kMaxMsgs = 11,
  kNumMsgs = 12,
  kUnrepliedTo = 13,
  kMsgOnlyOnce = 14,
  kVerbose = 15,
  kNewDevice = 16,
  kReportReplierBinds = 17,
  kMaxMsgSize = 18,
  kHello = 64,
  kWrite = 65,
  kRead = 66,
  kSendMsg = 67,
  kNextRead = 68,
  kWaitRead = 69,
  kBindings = 70,
  kStats = 71,
  kRequest = 72,
  kSendWait = 73,
  kSendBatch = 74,
  kReadBatch = 75,
  kPollFd = 76,
  kMonitor = 77,  // docs/decisions.md D25
  kBindingsPart = 78,
  kStatsPart = 79,
  kShmRing = 80,  // docs/protocol.md §7: the shared-memory receive queue
};

// The operation's name as docs/protocol.md writes it ("BIND", "READBATCH"),
// for logs; "unknown" for a number that is no operation.
const char* op_name(std::uint32_t op) noexcept;

// HELLO mode bits.
constexpr std::uint32_t kModeRead = 1;
constexpr std::uint32_t kModeWrite = 2;
// No poll fd with the HELLO reply: the client asks for it with POLLFD when
// it first needs it, so an idle Ksock costs the daemon one descriptor.
constexpr std::uint32_t kModeLazyPollFd = 4;

// The u32 of the wire (docs/protocol.md §1): util/endian.hpp.
using util::get_u32;
using util::put_u32;

// Appends a whole request frame.
void append_request(std::string& out, Op op, std::string_view payload = {});
// Appends a whole reply frame.
void append_reply(std::string& out, std::int32_t status, std::string_view payload = {});

// Starts a frame whose payload the caller appends afterwards; end_frame()
// then fills in the length. Returns the offset of the frame.
std::size_t begin_frame(std::string& out, std::uint32_t op_or_status);
void end_frame(std::string& out, std::size_t frame_offset);
void set_frame_word(std::string& out, std::size_t frame_offset, std::uint32_t op_or_status);

struct Frame {
  std::uint32_t word = 0;  // op (request) or status (reply, as u32)
  std::string_view payload;
};

enum class Parse { kIncomplete, kOk, kBadLength };
// Looks for one whole frame at the start of buf. On kOk fills f and consumed.
Parse parse_frame(std::string_view buf, Frame& f, std::size_t& consumed,
                  std::uint32_t max_len = kMaxFrameLen);

// A receive buffer that never zero-fills: recv() writes into prepare(n),
// commit(n) makes the bytes readable, consume(n) drops read bytes. Unread
// bytes stay where they are until the next prepare() needs the room.
class InputBuffer {
 public:
  char* prepare(std::size_t n) {
    if (cap_ - end_ >= n) return buf_.get() + end_;
    if (begin_ > 0) {  // compact first
      std::memmove(buf_.get(), buf_.get() + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
      if (cap_ - end_ >= n) return buf_.get() + end_;
    }
    std::size_t cap = cap_ ? cap_ : 4096;
    while (cap - end_ < n) cap *= 2;
    std::unique_ptr<char[]> nb(new char[cap]);
    if (end_) std::memcpy(nb.get(), buf_.get(), end_);
    buf_ = std::move(nb);
    cap_ = cap;
    return buf_.get() + end_;
  }
  void commit(std::size_t n) { end_ += n; }
  std::string_view data() const { return {buf_.get() + begin_, end_ - begin_}; }
  std::size_t size() const { return end_ - begin_; }
  bool empty() const { return end_ == begin_; }
  void consume(std::size_t n) {
    begin_ += n;
    if (begin_ == end_) begin_ = end_ = 0;
  }
  // Frees the memory if it grew large and is now empty.
  void shrink_if_idle(std::size_t keep) {
    if (empty() && cap_ > keep) {
      buf_.reset();
      cap_ = 0;
    }
  }

 private:
  std::unique_ptr<char[]> buf_;
  std::size_t cap_ = 0, begin_ = 0, end_ = 0;
};

// Reads the fields of a payload in order; any shortfall sets !ok().
class PayloadReader {
 public:
  explicit PayloadReader(std::string_view p) : p_(p) {}
  std::uint32_t u32() {
    if (p_.size() < 4) {
      ok_ = false;
      return 0;
    }
    std::uint32_t v = get_u32(p_.data());
    p_.remove_prefix(4);
    return v;
  }
  std::string_view bytes(std::size_t n) {
    if (p_.size() < n) {
      ok_ = false;
      return {};
    }
    std::string_view v = p_.substr(0, n);
    p_.remove_prefix(n);
    return v;
  }
  // u32 length followed by that many bytes.
  std::string_view name() { return bytes(u32()); }
  std::string_view rest() {
    std::string_view v = p_;
    p_ = {};
    return v;
  }
  bool ok() const { return ok_; }
  // All fields read and nothing left over.
  bool done() const { return ok_ && p_.empty(); }

 private:
  std::string_view p_;
  bool ok_ = true;
};

}  // namespace kbus::protocol
