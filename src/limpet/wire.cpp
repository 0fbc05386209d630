// limpet/wire.cpp - see wire.hpp. Pure byte arithmetic; no I/O.
#include "limpet/wire.hpp"

#include <array>
#include <cstring>

namespace kbus::limpet {

namespace {

void put_be32(std::string& out, std::uint32_t v) {
  const char b[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                     static_cast<char>(v >> 8), static_cast<char>(v)};
  out.append(b, 4);
}

std::uint32_t get_be32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return (std::uint32_t{u[0]} << 24) | (std::uint32_t{u[1]} << 16) | (std::uint32_t{u[2]} << 8) |
         std::uint32_t{u[3]};
}

std::uint32_t get_host32(const char* p) {
  std::uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

void put_host32(char* p, std::uint32_t v) { std::memcpy(p, &v, 4); }

}  // namespace

std::string encode_helo(std::uint32_t network_id) {
  std::string s = "HELO";
  put_be32(s, network_id);
  return s;
}

Result<std::uint32_t> decode_helo(std::string_view bytes) {
  if (bytes.size() != kHeloLen || bytes.substr(0, 4) != "HELO") return Errc::eproto;
  return get_be32(bytes.data() + 4);
}

std::string bind_event_data_to_network(std::string_view host_data) {
  std::string d(host_data);
  if (d.size() < 12) return d;
  for (int i = 0; i < 3; ++i) {
    std::string be;
    put_be32(be, get_host32(d.data() + 4 * i));
    std::memcpy(d.data() + 4 * i, be.data(), 4);
  }
  return d;
}

std::string bind_event_data_from_network(std::string_view net_data) {
  std::string d(net_data);
  if (d.size() < 12) return d;
  for (int i = 0; i < 3; ++i) put_host32(d.data() + 4 * i, get_be32(d.data() + 4 * i));
  return d;
}

void serialise(std::string& out, const Message& m) {
  const Header& h = m.hdr;
  const auto name_len = static_cast<std::uint32_t>(m.name.size());
  const auto data_len = static_cast<std::uint32_t>(m.data.size());
  const std::array<std::uint32_t, kSerialisedHeaderWords> words = {
      kStartGuard,          h.id.network_id,       h.id.serial_num,     h.in_reply_to.network_id,
      h.in_reply_to.serial_num, h.to,              h.from,              h.orig_from.network_id,
      h.orig_from.local_id, h.final_to.network_id, h.final_to.local_id, h.extra,
      h.flags,              name_len,              data_len,            kEndGuard};
  out.reserve(out.size() + kSerialisedHeaderLen + padded_name_len(name_len) +
              padded_data_len(data_len) + 4);
  for (std::uint32_t w : words) put_be32(out, w);
  out.append(m.name);
  out.append(padded_name_len(name_len) - name_len, '\0');
  if (data_len > 0) {
    if (m.is_replier_bind_event()) {
      out.append(bind_event_data_to_network(m.data));
    } else {
      out.append(m.data);
    }
    out.append(padded_data_len(data_len) - data_len, '\0');
  }
  put_be32(out, kEndGuard);
}

std::string serialise(const Message& m) {
  std::string s;
  serialise(s, m);
  return s;
}

Result<std::optional<Message>> WireDecoder::next() {
  if (broken_) return Errc::eproto;
  const std::size_t avail = buf_.size() - pos_;
  if (avail < kSerialisedHeaderLen) return std::optional<Message>{};
  const char* p = buf_.data() + pos_;
  std::array<std::uint32_t, kSerialisedHeaderWords> w{};
  for (std::size_t i = 0; i < kSerialisedHeaderWords; ++i) w[i] = get_be32(p + 4 * i);
  const std::uint32_t name_len = w[13];
  const std::uint32_t data_len = w[14];
  if (w[0] != kStartGuard || w[15] != kEndGuard || name_len == 0 || name_len > kMaxNameLen ||
      data_len > kMaxWireDataLen) {
    broken_ = true;
    return Errc::eproto;
  }
  const std::size_t total =
      kSerialisedHeaderLen + padded_name_len(name_len) + padded_data_len(data_len) + 4;
  if (avail < total) return std::optional<Message>{};
  if (get_be32(p + total - 4) != kEndGuard) {
    broken_ = true;
    return Errc::eproto;
  }
  Message m;
  Header& h = m.hdr;
  h.id = {w[1], w[2]};
  h.in_reply_to = {w[3], w[4]};
  h.to = w[5];
  h.from = w[6];
  h.orig_from = {w[7], w[8]};
  h.final_to = {w[9], w[10]};
  h.extra = w[11];
  h.flags = w[12];
  m.name.assign(p + kSerialisedHeaderLen, name_len);
  m.data.assign(p + kSerialisedHeaderLen + padded_name_len(name_len), data_len);
  if (m.is_replier_bind_event()) m.data = bind_event_data_from_network(m.data);
  pos_ += total;
  if (pos_ == buf_.size()) {
    buf_.clear();
    pos_ = 0;
  } else if (pos_ > 65536 && pos_ * 2 > buf_.size()) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  return std::optional<Message>(std::move(m));
}

}  // namespace kbus::limpet
