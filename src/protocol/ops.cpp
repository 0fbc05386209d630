#include "protocol/ops.hpp"

namespace kbus::protocol {

bool BatchItems::next(std::string_view& message) {
  if (items.size() < 4) return false;
  const std::uint32_t len = get_u32(items.data());
  if (items.size() - 4 < len) return false;
  message = items.substr(4, len);
  items.remove_prefix(4 + std::size_t{len});
  return true;
}

void append_batch_item(std::string& out, std::string_view message) {
  put_u32(out, static_cast<std::uint32_t>(message.size()));
  out.append(message);
}

MessageId BatchIdsValue::id(std::uint32_t i) const { return get_id(ids.data() + 8 * std::size_t{i}); }

void encode(std::string& out, const BindArgs& a) {
  put_u32(out, a.is_replier);
  put_u32(out, static_cast<std::uint32_t>(a.name.size()));
  out.append(a.name);
}

void encode(std::string& out, const NameArg& a) {
  put_u32(out, static_cast<std::uint32_t>(a.name.size()));
  out.append(a.name);
}

void encode(std::string& out, const HelloArgs& a) {
  put_u32(out, a.version);
  put_u32(out, a.mode);
  put_u32(out, a.header_len);
}

void encode(std::string& out, const ReadBatchArgs& a) {
  put_u32(out, a.max_count);
  put_u32(out, a.max_bytes);
  put_u32(out, a.wait);
}

void encode(std::string& out, const HelloValue& v) {
  put_u32(out, v.ksock_id);
  put_u32(out, v.bus);
}

void encode(std::string& out, const IdBytesValue& v) {
  put_id(out, v.id);
  out.append(v.bytes);
}

void encode(std::string& out, const BatchIdsValue& v) {
  put_u32(out, v.count);
  out.append(v.ids);
}

bool decode(std::string_view p, NoArgs&) { return p.empty(); }

bool decode(std::string_view p, U32Arg& a) {
  PayloadReader in(p);
  a.value = in.u32();
  return in.done();
}

bool decode(std::string_view p, BindArgs& a) {
  PayloadReader in(p);
  a.is_replier = in.u32();
  a.name = in.name();
  return in.done();
}

bool decode(std::string_view p, NameArg& a) {
  PayloadReader in(p);
  a.name = in.name();
  return in.done();
}

bool decode(std::string_view p, HelloArgs& a) {
  PayloadReader in(p);
  a.version = in.u32();
  a.mode = in.u32();
  a.header_len = in.u32();
  return in.done();
}

bool decode(std::string_view p, RawBytes& a) {
  a.bytes = p;
  return true;
}

// docs/protocol.md §4.6: max_count must be at least 1.
bool decode(std::string_view p, ReadBatchArgs& a) {
  PayloadReader in(p);
  a.max_count = in.u32();
  a.max_bytes = in.u32();
  a.wait = in.u32();
  return in.done() && a.max_count != 0;
}

// docs/protocol.md §4.6: the framing of every item is checked first.
bool decode(std::string_view p, BatchItems& a) {
  a.items = p;
  a.count = 0;
  BatchItems scan{p, 0};
  std::string_view m;
  while (!scan.items.empty()) {
    if (!scan.next(m)) return false;
    ++a.count;
  }
  return true;
}

// docs/protocol.md §4.8: the position travels as two u32, low word first.
void encode(std::string& out, const ReportPartArgs& a) {
  put_u32(out, a.bus);
  put_u32(out, static_cast<std::uint32_t>(a.pos));
  put_u32(out, static_cast<std::uint32_t>(a.pos >> 32));
  put_u32(out, a.max_bytes);
}

void encode(std::string& out, const ReportPartValue& v) {
  put_u32(out, v.next_bus);
  put_u32(out, static_cast<std::uint32_t>(v.next_pos));
  put_u32(out, static_cast<std::uint32_t>(v.next_pos >> 32));
  out.append(v.bytes);
}

bool decode(std::string_view p, ReportPartArgs& a) {
  PayloadReader in(p);
  a.bus = in.u32();
  const std::uint64_t lo = in.u32();
  const std::uint64_t hi = in.u32();
  a.pos = lo | (hi << 32);
  a.max_bytes = in.u32();
  return in.done();
}

bool decode(std::string_view p, ReportPartValue& v) {
  if (p.size() < 12) return false;
  v.next_bus = get_u32(p.data());
  v.next_pos = get_u32(p.data() + 4) | (std::uint64_t{get_u32(p.data() + 8)} << 32);
  v.bytes = p.substr(12);
  return true;
}

bool decode(std::string_view p, Empty&) { return p.empty(); }

bool decode(std::string_view p, U32Value& v) {
  if (p.size() != 4) return false;
  v.value = get_u32(p.data());
  return true;
}

bool decode(std::string_view p, IdValue& v) {
  if (p.size() != 8) return false;
  v.id = get_id(p.data());
  return true;
}

bool decode(std::string_view p, HelloValue& v) {
  if (p.size() != 8) return false;
  v.ksock_id = get_u32(p.data());
  v.bus = get_u32(p.data() + 4);
  return true;
}

bool decode(std::string_view p, BytesValue& v) {
  v.bytes = p;
  return true;
}

bool decode(std::string_view p, IdBytesValue& v) {
  if (p.size() < 8) return false;
  v.id = get_id(p.data());
  v.bytes = p.substr(8);
  return true;
}

bool decode(std::string_view p, BatchIdsValue& v) {
  if (p.size() < 4) return false;
  v.count = get_u32(p.data());
  v.ids = p.substr(4);
  return v.ids.size() == 8 * std::size_t{v.count};
}

}  // namespace kbus::protocol
