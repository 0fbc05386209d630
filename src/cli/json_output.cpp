// cli/json_output.cpp - JSON lines for messages. Hand-written because the
// shape is fixed and tiny; strings are escaped per RFC 8259.
#include "cli/json_output.hpp"

#include <cstdint>
#include <cstdio>

namespace kbus::cli {

bool is_valid_utf8(std::string_view s) noexcept {
  std::size_t i = 0;
  const std::size_t n = s.size();
  while (i < n) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len;
    std::uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (std::size_t k = 1; k < len; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // No overlong forms, no surrogates, nothing above U+10FFFF.
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += len;
  }
  return true;
}

std::string base64_encode(std::string_view bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    std::uint32_t v = (std::uint32_t{static_cast<unsigned char>(bytes[i])} << 16) |
                      (std::uint32_t{static_cast<unsigned char>(bytes[i + 1])} << 8) |
                      static_cast<unsigned char>(bytes[i + 2]);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  std::size_t rest = bytes.size() - i;
  if (rest > 0) {
    std::uint32_t v = std::uint32_t{static_cast<unsigned char>(bytes[i])} << 16;
    if (rest == 2) v |= std::uint32_t{static_cast<unsigned char>(bytes[i + 1])} << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += rest == 2 ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string json_string(std::string_view utf8) {
  std::string out = "\"";
  for (char ch : utf8) {
    auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20 || c == 0x7F) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  out += '"';
  return out;
}

namespace {
std::string id_json(const MessageId& id) {
  return "{\"network_id\":" + std::to_string(id.network_id) +
         ",\"serial_num\":" + std::to_string(id.serial_num) + "}";
}
std::string orig_json(const OrigFrom& o) {
  return "{\"network_id\":" + std::to_string(o.network_id) +
         ",\"local_id\":" + std::to_string(o.local_id) + "}";
}
}  // namespace

std::string message_to_json(const Message& m) {
  std::string out = "{\"id\":" + id_json(m.hdr.id);
  out += ",\"in_reply_to\":" + id_json(m.hdr.in_reply_to);
  out += ",\"to\":" + std::to_string(m.hdr.to);
  out += ",\"from\":" + std::to_string(m.hdr.from);
  out += ",\"orig_from\":" + orig_json(m.hdr.orig_from);
  out += ",\"final_to\":" + orig_json(m.hdr.final_to);
  out += ",\"flags\":" + std::to_string(m.hdr.flags);
  // Names are ASCII when valid; anything else is escaped byte-wise.
  out += ",\"name\":" +
         (is_valid_utf8(m.name) ? json_string(m.name) : json_string(base64_encode(m.name)));
  if (is_valid_utf8(m.data)) {
    out += ",\"data\":" + json_string(m.data);
  } else {
    out += ",\"data\":null,\"data_base64\":\"" + base64_encode(m.data) + "\"";
  }
  out += "}";
  return out;
}

}  // namespace kbus::cli
