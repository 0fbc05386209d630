// core/test_helpers.hpp - helpers shared by the core unit tests (test-only).
//
// Messages go into a Bus exactly as a client's bytes would: the entire form
// written with Bus::write and sent with Bus::send; they come out with
// Bus::next_read and kbus::decode_entire. Headers for the write-parser tests
// (bad guards, pointy form, ...) are built byte by byte here, independently
// of kbus::encode_entire, so that the codec is checked against a second
// implementation of KBUS-SPEC.md §3.1.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/bus.hpp"
#include "kbus/errors.hpp"
#include "kbus/message.hpp"

namespace kbus::core::test {

constexpr std::uint32_t kH = 88;  // every test Ksock uses the 64-bit ABI unless stated

inline void put32(std::string& s, std::size_t off, std::uint32_t v) {
  std::memcpy(s.data() + off, &v, 4);
}
inline std::uint32_t get32(std::string_view s, std::size_t off) {
  std::uint32_t v;
  std::memcpy(&v, s.data() + off, 4);
  return v;
}

// A header as raw fields, including the ones Header leaves out.
struct RawHeader {
  std::uint32_t start_guard = kStartGuard;
  Header hdr;
  std::uint32_t name_len = 0;
  std::uint32_t data_len = 0;
  std::uint64_t name_ptr = 0;
  std::uint64_t data_ptr = 0;
  std::uint32_t end_guard = kEndGuard;
};

// §3.1: the header bytes for a client with header length h (88 or 72).
inline std::string raw_header(const RawHeader& r, std::uint32_t h = kH) {
  std::string s(h, '\0');
  put32(s, 0, r.start_guard);
  put32(s, 4, r.hdr.id.network_id);
  put32(s, 8, r.hdr.id.serial_num);
  put32(s, 12, r.hdr.in_reply_to.network_id);
  put32(s, 16, r.hdr.in_reply_to.serial_num);
  put32(s, 20, r.hdr.to);
  put32(s, 24, r.hdr.from);
  put32(s, 28, r.hdr.orig_from.network_id);
  put32(s, 32, r.hdr.orig_from.local_id);
  put32(s, 36, r.hdr.final_to.network_id);
  put32(s, 40, r.hdr.final_to.local_id);
  put32(s, 44, r.hdr.extra);
  put32(s, 48, r.hdr.flags);
  put32(s, 52, r.name_len);
  put32(s, 56, r.data_len);
  if (h == kHeaderLen64) {
    std::memcpy(s.data() + 64, &r.name_ptr, 8);
    std::memcpy(s.data() + 72, &r.data_ptr, 8);
    put32(s, 80, r.end_guard);
  } else {
    put32(s, 60, static_cast<std::uint32_t>(r.name_ptr));
    put32(s, 64, static_cast<std::uint32_t>(r.data_ptr));
    put32(s, 68, r.end_guard);
  }
  return s;
}

// §3.5: header, name, NUL + padding, data, padding, final guard. `pad` is
// the byte used for padding (KBUS ignores padding content on input).
inline std::string raw_entire(const RawHeader& r, std::string_view name, std::string_view data,
                              std::uint32_t h = kH, std::uint32_t final_guard = kEndGuard,
                              char pad = '\0') {
  std::string s = raw_header(r, h);
  s.append(name);
  s.append(padded_name_len(static_cast<std::uint32_t>(name.size())) - name.size(), pad);
  s.append(data);
  s.append(padded_data_len(static_cast<std::uint32_t>(data.size())) - data.size(), pad);
  std::string g(4, '\0');
  put32(g, 0, final_guard);
  s.append(g);
  return s;
}

// A well-formed entire message for name/data/flags.
inline std::string entire(std::string_view name, std::string_view data = {},
                          std::uint32_t flags = 0, std::uint32_t h = kH) {
  RawHeader r;
  r.hdr.flags = flags;
  r.name_len = static_cast<std::uint32_t>(name.size());
  r.data_len = static_cast<std::uint32_t>(data.size());
  return raw_entire(r, name, data, h);
}

// A pointy header (§3.4): name pointer non-zero, data pointer non-zero iff
// there is data.
inline std::string pointy_header(std::uint32_t name_len, std::uint32_t data_len,
                                 std::uint32_t flags = 0, std::uint32_t h = kH) {
  RawHeader r;
  r.hdr.flags = flags;
  r.name_len = name_len;
  r.data_len = data_len;
  r.name_ptr = 0x1000;
  r.data_ptr = data_len ? 0x2000 : 0;
  return raw_header(r, h);
}

inline Message msg(std::string name, std::string data = {}, std::uint32_t flags = 0) {
  Message m;
  m.name = std::move(name);
  m.data = std::move(data);
  m.hdr.flags = flags;
  return m;
}
inline Message announcement(std::string name, std::string data = {}, std::uint32_t flags = 0) {
  return msg(std::move(name), std::move(data), flags);
}
inline Message request(std::string name, std::string data = {}, std::uint32_t flags = 0) {
  return msg(std::move(name), std::move(data), flags | flag::kWantAReply);
}
// A Reply to `req` as received by its replier (to = requester, in_reply_to = id).
inline Message reply_to(const Message& req, std::string data = {}, std::uint32_t flags = 0) {
  Message m = msg(req.name, std::move(data), flags);
  m.hdr.in_reply_to = req.hdr.id;
  m.hdr.to = req.hdr.from;
  return m;
}

// Writes m in entire form and SENDs it.
inline SendOutcome send(Bus& bus, KsockId k, const Message& m, std::uint32_t h = kH) {
  auto w = bus.write(k, encode_entire(m, h));
  if (!w.ok()) return SendOutcome{w.error(), {}};
  EXPECT_EQ(*w, encode_entire(m, h).size());
  return bus.send(k);
}

// Sends and expects success; returns the id.
inline MessageId send_ok(Bus& bus, KsockId k, const Message& m) {
  SendOutcome o = send(bus, k, m);
  EXPECT_EQ(o.error, Errc::ok) << "sending " << m.name;
  return o.id;
}

// NEXTMSG + read of a whole message; nullopt if the queue was empty.
inline std::optional<Message> receive(Bus& bus, KsockId k, std::uint32_t h = kH) {
  std::string out;
  auto r = bus.next_read(k, out);
  EXPECT_TRUE(r.ok());
  if (!r.ok() || *r == 0) {
    EXPECT_TRUE(out.empty());
    return std::nullopt;
  }
  auto m = decode_entire(out, h);
  EXPECT_TRUE(m.ok()) << "undecodable message of " << out.size() << " bytes";
  if (!m.ok()) return std::nullopt;
  return std::move(m).value();
}

// Receives and expects a message; a failed expectation yields an empty one.
inline Message receive_one(Bus& bus, KsockId k, std::uint32_t h = kH) {
  auto m = receive(bus, k, h);
  EXPECT_TRUE(m.has_value()) << "expected a message on Ksock " << k;
  return m.value_or(Message{});
}

// Pops everything; returns the names in order.
inline std::vector<std::string> drain_names(Bus& bus, KsockId k) {
  std::vector<std::string> names;
  while (auto m = receive(bus, k)) names.push_back(m->name);
  return names;
}

inline OpenOptions rw() { return OpenOptions{}; }
inline OpenOptions read_only() {
  OpenOptions o;
  o.can_write = false;
  return o;
}
inline OpenOptions write_only() {
  OpenOptions o;
  o.can_read = false;
  return o;
}
inline OpenOptions abi32() {
  OpenOptions o;
  o.header_len = kHeaderLen32;
  return o;
}

// A bus whose invariants are checked after every test.
class BusTest : public ::testing::Test {
 protected:
  void TearDown() override { bus.check_invariants(); }
  Bus bus{0};
};

}  // namespace kbus::core::test
