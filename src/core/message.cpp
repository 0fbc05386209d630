// Message values: the entire-form codec (KBUS-SPEC.md §3), the Python str()
// form (§11.3), builders (§12.2) and replier bind event data (§3.6).
#include <cstdio>
#include <cstring>
#include <vector>

#include "kbus/message.hpp"

#include "core/header_layout.hpp"

namespace kbus {

namespace {

using util::get_u32;
void put32(std::string& out, std::uint32_t v) { util::put_u32(out, v); }
std::uint32_t get32(const char* p) { return get_u32(p); }

// Python's repr() of a bytes object (b'...'), or with `bytes_prefix` false
// the Python 2 repr of the same str ('...'), as the original's tools and the
// talk print data: the same quoting and escapes, no "b".
std::string python_bytes_repr(std::string_view b, bool bytes_prefix = true) {
  const bool has_single = b.find('\'') != std::string_view::npos;
  const bool has_double = b.find('"') != std::string_view::npos;
  const char quote = (has_single && !has_double) ? '"' : '\'';
  std::string out = bytes_prefix ? "b" : "";
  out += quote;
  static const char* hex = "0123456789abcdef";
  for (unsigned char c : b) {
    if (c == static_cast<unsigned char>(quote) || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c < 0x20 || c >= 0x7f) {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 0xf];
    } else {
      out += static_cast<char>(c);
    }
  }
  out += quote;
  return out;
}

std::string hex32(std::uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%x", v);
  return buf;
}

}  // namespace

std::string MessageId::to_string() const {
  return "[" + std::to_string(network_id) + ":" + std::to_string(serial_num) + "]";
}

std::string OrigFrom::to_string() const {
  return "(" + std::to_string(network_id) + "," + std::to_string(local_id) + ")";
}

std::string Message::kind() const {
  if (is_replier_bind_event() && !is_reply()) return "ReplierBindEvent";
  if (is_status()) return "Status";
  if (is_reply()) return "Reply";
  if (is_request()) return "Request";
  return "Announcement";
}

std::string Message::to_string() const { return describe(true); }
std::string Message::to_text() const { return describe(false); }

std::string Message::describe(bool bytes_prefix) const {
  const std::string k = kind();
  std::vector<std::string> parts;
  if (k != "ReplierBindEvent") parts.push_back("'" + name + "'");
  if (!hdr.id.is_zero()) parts.push_back("id=" + hdr.id.to_string());
  if (hdr.to) parts.push_back("to=" + std::to_string(hdr.to));
  if (hdr.from) parts.push_back("from=" + std::to_string(hdr.from));
  if (!hdr.orig_from.is_zero()) parts.push_back("orig_from=" + hdr.orig_from.to_string());
  if (!hdr.final_to.is_zero()) parts.push_back("final_to=" + hdr.final_to.to_string());
  if (!hdr.in_reply_to.is_zero()) parts.push_back("in_reply_to=" + hdr.in_reply_to.to_string());
  if (hdr.flags) {
    std::string f = "flags=" + hex32(hdr.flags);
    static const std::pair<std::uint32_t, const char*> kMnemonics[] = {
        {flag::kWantAReply, "REQ"}, {flag::kWantYouToReply, "YOU"}, {flag::kSynthetic, "SYN"},
        {flag::kUrgent, "URG"},     {flag::kAllOrFail, "aFL"},      {flag::kAllOrWait, "aWT"}};
    std::string m;
    for (auto [bit, text] : kMnemonics) {
      if (hdr.flags & bit) {
        if (!m.empty()) m += ",";
        m += text;
      }
    }
    if (!m.empty()) f += " (" + m + ")";
    parts.push_back(f);
  }
  if (k == "ReplierBindEvent") {
    auto ev = decode_replier_bind_event(data);
    if (ev.ok()) {
      parts.push_back(std::string("[") + (ev->is_bind ? "Bind" : "Unbind") + " '" + ev->name +
                      "' for " + std::to_string(ev->binder) + "]");
    } else if (!data.empty()) {
      parts.push_back("data=" + python_bytes_repr(data, bytes_prefix));
    }
  } else if (!data.empty()) {
    parts.push_back("data=" + python_bytes_repr(data, bytes_prefix));
  }
  std::string out = "<" + k;
  for (std::size_t i = 0; i < parts.size(); ++i) out += (i ? ", " : " ") + parts[i];
  out += ">";
  return out;
}

Message make_announcement(std::string name, std::string data, std::uint32_t flags) {
  Message m;
  m.name = std::move(name);
  m.data = std::move(data);
  m.hdr.flags = flags;
  return m;
}

Message make_request(std::string name, std::string data, std::uint32_t flags) {
  Message m = make_announcement(std::move(name), std::move(data), flags);
  m.hdr.flags |= flag::kWantAReply;
  return m;
}

Result<Message> make_reply(const Message& request, std::string data, std::uint32_t flags) {
  if (!request.wants_us_to_reply()) return Errc::ebadmsg;
  Message m;
  m.name = request.name;
  m.data = std::move(data);
  m.hdr.flags = flags;
  m.hdr.in_reply_to = request.hdr.id;
  m.hdr.to = request.hdr.from;
  return m;
}

Result<Message> make_stateful_request(const Message& earlier, std::string name, std::string data,
                                      std::uint32_t flags) {
  Message m = make_request(std::move(name), std::move(data), flags);
  if (earlier.is_reply()) {
    m.hdr.to = earlier.hdr.from;
    m.hdr.final_to = earlier.hdr.orig_from;
  } else if (earlier.is_stateful_request()) {
    m.hdr.to = earlier.hdr.to;
    m.hdr.final_to = earlier.hdr.final_to;
  } else {
    return Errc::ebadmsg;
  }
  return m;
}

std::string encode_replier_bind_event(const ReplierBindEvent& ev) {
  std::string out;
  put32(out, ev.is_bind ? 1 : 0);
  put32(out, ev.binder);
  put32(out, static_cast<std::uint32_t>(ev.name.size()));
  out += ev.name;
  out.append(padded_name_len(static_cast<std::uint32_t>(ev.name.size())) - ev.name.size(), '\0');
  return out;
}

Result<ReplierBindEvent> decode_replier_bind_event(std::string_view data) {
  if (data.size() < 12) return Errc::ebadmsg;
  ReplierBindEvent ev;
  ev.is_bind = get32(data.data()) != 0;
  ev.binder = get32(data.data() + 4);
  const std::uint32_t n = get32(data.data() + 8);
  if (n > data.size() - 12) return Errc::ebadmsg;
  ev.name.assign(data.data() + 12, n);
  return ev;
}

void encode_entire(std::string& out, const Header& h, std::string_view name, std::string_view data,
                   std::uint32_t header_len) {
  const auto n = static_cast<std::uint32_t>(name.size());
  const auto d = static_cast<std::uint32_t>(data.size());
  const std::size_t start = out.size();
  out.reserve(start + entire_len(header_len, n, d));
  const std::uint32_t words[15] = {kStartGuard,
                                   h.id.network_id,
                                   h.id.serial_num,
                                   h.in_reply_to.network_id,
                                   h.in_reply_to.serial_num,
                                   h.to,
                                   h.from,
                                   h.orig_from.network_id,
                                   h.orig_from.local_id,
                                   h.final_to.network_id,
                                   h.final_to.local_id,
                                   h.extra,
                                   h.flags,
                                   n,
                                   d};
  // Header and name in one step: resize zero-fills, which gives the pointer
  // fields, the alignment and tail padding of H=88 and the name padding.
  const std::uint32_t hlen = header_len == kHeaderLen64 ? kHeaderLen64 : kHeaderLen32;
  out.resize(start + hlen + padded_name_len(n));
  char* p = out.data() + start;
  std::memcpy(p, words, sizeof words);
  std::memcpy(p + hlen - (hlen == kHeaderLen64 ? 8 : 4), &kEndGuard, 4);
  if (n) std::memcpy(p + hlen, name.data(), n);
  // The data is appended rather than written over zeros: it may be large.
  out.append(data);
  char tail[8] = {};                          // data padding, then the end guard
  const std::uint32_t pad = (4 - d % 4) % 4;  // padded_data_len(d) - d
  std::memcpy(tail + pad, &kEndGuard, 4);
  out.append(tail, pad + 4);
}

std::string encode_entire(const Message& m, std::uint32_t header_len) {
  std::string out;
  encode_entire(out, m.hdr, m.name, m.data, header_len);
  return out;
}

Result<Message> decode_entire(std::string_view b, std::uint32_t header_len) {
  if (header_len != kHeaderLen64 && header_len != kHeaderLen32) return Errc::einval;
  if (b.size() < header_len) return Errc::einval;
  const char* p = b.data();
  const core::RawHeader raw = core::decode_header(p, header_len);
  if (raw.start_guard != kStartGuard) return Errc::einval;
  if (raw.end_guard != kEndGuard) return Errc::einval;
  Message m;
  m.hdr = raw.hdr;
  const std::uint32_t n = raw.name_len;
  const std::uint32_t d = raw.data_len;
  if (n > kMaxNameLen) return Errc::einval;
  if (entire_len(header_len, n, d) != b.size()) return Errc::einval;
  const char* body = p + header_len;
  m.name.assign(body, n);
  m.data.assign(body + padded_name_len(n), d);
  if (get32(p + b.size() - 4) != kEndGuard) return Errc::einval;
  return m;
}

}  // namespace kbus
