// core/write_parser.hpp - the byte-stream parser behind write() (KBUS-SPEC.md §4.2).
//
// One WriteParser per Ksock. It consumes bytes of exactly one message, in the
// client's header ABI (H = 88 or 72), checks the header when its last byte
// arrives and the name when its last byte arrives, and reports when the
// message is complete. It knows nothing about sending.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/message_body.hpp"
#include "kbus/errors.hpp"
#include "kbus/message.hpp"

namespace kbus::core {

class WriteParser {
 public:
  // The parts of a message, as the original stats report names them.
  enum class Part { kHdr, kName, kNpad, kData, kDpad, kFinal };

  explicit WriteParser(std::uint32_t header_len) : header_len_(header_len) {}

  // Feeds bytes. `max_msg_size` is the bus's current limit (checked against
  // ENTIRE_LEN with this parser's H). On success all bytes are consumed. On
  // any error the partial message is discarded (the caller deals with
  // EALREADY before calling). A zero-length write starts a message.
  Result<void> write(std::string_view bytes, std::uint32_t max_msg_size);

  bool started() const noexcept { return started_; }
  bool complete() const noexcept { return complete_; }
  bool pointy() const noexcept { return pointy_; }
  // Valid once complete(): the header fields, name_len and data_len, and for
  // the entire form the name and data (before that, the bytes written so far).
  const Header& header() const noexcept { return hdr_; }
  std::uint32_t name_len() const noexcept { return name_len_; }
  std::uint32_t data_len() const noexcept { return data_len_; }
  bool has_data_pointer() const noexcept { return data_ptr_nonzero_; }
  std::string_view name() const noexcept;
  std::string_view data() const noexcept;
  // Once complete() for the entire form: hands over the body that holds the
  // name and data (written straight into it, so they are copied only once).
  // name() and data() are empty afterwards.
  MessageBody take_body() noexcept { return std::move(body_).finish(); }

  // Forget everything: the next write starts a new message.
  void reset() noexcept;

  // For the stats report.
  Part part() const noexcept { return part_; }
  std::uint32_t part_pos() const noexcept { return pos_; }
  static const char* part_name(Part p) noexcept;

 private:
  Result<void> check_header(const char* hdr, std::uint32_t max_msg_size);
  std::uint32_t part_len() const noexcept;

  std::uint32_t header_len_;
  bool started_ = false;
  bool complete_ = false;
  bool pointy_ = false;
  bool data_ptr_nonzero_ = false;
  Part part_ = Part::kHdr;
  std::uint32_t pos_ = 0;  // bytes consumed within part_
  std::string hdr_bytes_;  // a header written in pieces, gathered
  Header hdr_;
  std::uint32_t name_len_ = 0;
  std::uint32_t data_len_ = 0;
  MessageBodyBuilder body_;  // the entire form's name and data, from the header on
  std::string final_;        // an end guard written in pieces, gathered
};

}  // namespace kbus::core
