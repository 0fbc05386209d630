#include "core/write_parser.hpp"

#include <algorithm>
#include <cstring>

#include "core/header_layout.hpp"
#include "core/names.hpp"

namespace kbus::core {

namespace {
using util::get_u32;
std::uint32_t get32(const char* p) { return get_u32(p); }
}  // namespace

const char* WriteParser::part_name(Part p) noexcept {
  switch (p) {
    case Part::kHdr: return "HDR";
    case Part::kName: return "NAME";
    case Part::kNpad: return "NPAD";
    case Part::kData: return "DATA";
    case Part::kDpad: return "DPAD";
    case Part::kFinal: return "FINAL";
  }
  return "?";
}

void WriteParser::reset() noexcept {
  started_ = false;
  complete_ = false;
  pointy_ = false;
  data_ptr_nonzero_ = false;
  part_ = Part::kHdr;
  pos_ = 0;
  hdr_bytes_.clear();
  hdr_ = Header{};
  name_len_ = 0;
  data_len_ = 0;
  body_ = {};
  final_.clear();
}

std::string_view WriteParser::name() const noexcept {
  if (!body_) return {};
  const std::uint32_t n = part_ == Part::kName ? pos_ : name_len_;  // body_ exists from kName on
  return {body_.name(), n};
}

std::string_view WriteParser::data() const noexcept {
  if (!body_ || part_ < Part::kData) return {};
  const std::uint32_t n = part_ == Part::kData ? pos_ : data_len_;
  return {body_.data(), n};
}

std::uint32_t WriteParser::part_len() const noexcept {
  switch (part_) {
    case Part::kHdr: return header_len_;
    case Part::kName: return name_len_;
    case Part::kNpad: return padded_name_len(name_len_) - name_len_;
    case Part::kData: return data_len_;
    case Part::kDpad: return padded_data_len(data_len_) - data_len_;
    case Part::kFinal: return 4;
  }
  return 0;
}

Result<void> WriteParser::check_header(const char* p, std::uint32_t max_msg_size) {
  // §4.2-4, in this order.
  const RawHeader raw = decode_header(p, header_len_);
  if (raw.start_guard != kStartGuard) return Errc::einval;
  if (raw.end_guard != kEndGuard) return Errc::einval;
  hdr_ = raw.hdr;
  name_len_ = raw.name_len;
  data_len_ = raw.data_len;
  const bool name_ptr = raw.name_ptr;
  const bool data_ptr = raw.data_ptr;
  if (name_len_ == 0) return Errc::einval;
  if (name_len_ > kMaxNameLen) return Errc::enametoolong;
  // §3.4 pointer consistency.
  if (!name_ptr && data_ptr) return Errc::einval;
  if (name_ptr && !data_ptr && data_len_ != 0) return Errc::einval;
  if (data_len_ == 0 && data_ptr) return Errc::einval;
  if ((hdr_.flags & flag::kAllOrWait) && (hdr_.flags & flag::kAllOrFail)) return Errc::einval;
  if (entire_len(header_len_, name_len_, data_len_) > max_msg_size) return Errc::emsgsize;
  pointy_ = name_ptr;
  data_ptr_nonzero_ = data_ptr;
  return {};
}

Result<void> WriteParser::write(std::string_view bytes, std::uint32_t max_msg_size) {
  if (!started_) {
    reset();
    started_ = true;
  }
  while (!bytes.empty()) {
    if (complete_) {  // §4.2-6
      reset();
      return Errc::emsgsize;
    }
    const std::uint32_t len = part_len();
    const auto take = static_cast<std::uint32_t>(std::min<std::size_t>(len - pos_, bytes.size()));
    const std::string_view chunk = bytes.substr(0, take);
    bytes.remove_prefix(take);
    // A header or end guard that comes whole in one write is read where it
    // is; one that comes in pieces is gathered first.
    const bool whole = pos_ == 0 && take == len;
    switch (part_) {
      case Part::kHdr:
        if (!whole) hdr_bytes_.append(chunk);
        break;
      case Part::kName:
        std::memcpy(body_.name() + pos_, chunk.data(), take);
        break;
      case Part::kData:
        std::memcpy(body_.data() + pos_, chunk.data(), take);
        break;
      case Part::kFinal:
        if (!whole) final_.append(chunk);
        break;
      case Part::kNpad:
      case Part::kDpad: break;  // padding content is ignored
    }
    pos_ += take;
    if (pos_ < len) continue;
    // The part is complete: check it and move on.
    switch (part_) {
      case Part::kHdr:
        if (auto r = check_header(whole ? chunk.data() : hdr_bytes_.data(), max_msg_size); !r) {
          reset();
          return r.error();
        }
        if (pointy_) {
          complete_ = true;
        } else {
          body_ = MessageBodyBuilder(name_len_, data_len_);
          part_ = Part::kName;
          pos_ = 0;
        }
        break;
      case Part::kName:
        if (!is_valid_name(name()) || is_wildcard(name())) {  // §4.2-5
          reset();
          return Errc::ebadmsg;
        }
        part_ = Part::kNpad;
        pos_ = 0;
        break;
      case Part::kNpad:
        part_ = data_len_ ? Part::kData : Part::kFinal;
        pos_ = 0;
        break;
      case Part::kData:
        part_ = padded_data_len(data_len_) > data_len_ ? Part::kDpad : Part::kFinal;
        pos_ = 0;
        break;
      case Part::kDpad:
        part_ = Part::kFinal;
        pos_ = 0;
        break;
      case Part::kFinal:
        if (get32(whole ? chunk.data() : final_.data()) != kEndGuard) {
          reset();
          return Errc::einval;
        }
        complete_ = true;
        break;
    }
  }
  return {};
}

}  // namespace kbus::core
