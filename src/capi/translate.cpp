// capi/translate.cpp - the C <-> C++ translation tables of the C API.
//
// Model: the C API speaks the original's types (ints, negative errnos,
// struct kbus_message_header, O_* flags, 0/1/0xFFFFFFFF requests); the C++
// client speaks kbus::Errc, kbus::Mode, kbus::Toggle, kbus::Message. Every
// conversion between the two is here and nowhere else, so that one test
// (translate_test.cpp) can check each table completely.
#include "capi/translate.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>
#include <system_error>

namespace kbus::capi {

static_assert(sizeof(kbus_message_t) == kNativeHeaderLen, "header layout (KBUS-SPEC.md §3.1)");
static_assert(sizeof(kbus_entire_message_t) == kNativeHeaderLen);
static_assert(sizeof(kbus_msg_id_t) == 8 && sizeof(kbus_orig_from_t) == 8);
static_assert(offsetof(kbus_message_t, flags) == 48 && offsetof(kbus_message_t, data_len) == 56);
static_assert(offsetof(kbus_message_t, name) == (sizeof(void*) == 8 ? 64 : 60));
static_assert(offsetof(kbus_message_t, end_guard) == (sizeof(void*) == 8 ? 80 : 68));
static_assert(KBUS_MSG_START_GUARD == kStartGuard && KBUS_MSG_END_GUARD == kEndGuard);
static_assert(KBUS_MAX_NAME_LEN == kMaxNameLen);
static_assert(KBUS_BIT_WANT_A_REPLY == flag::kWantAReply &&
              KBUS_BIT_WANT_YOU_TO_REPLY == flag::kWantYouToReply &&
              KBUS_BIT_SYNTHETIC == flag::kSynthetic && KBUS_BIT_URGENT == flag::kUrgent &&
              KBUS_BIT_ALL_OR_WAIT == flag::kAllOrWait && KBUS_BIT_ALL_OR_FAIL == flag::kAllOrFail);
static_assert(KBUS_KSOCK_READABLE == ready::kReadable && KBUS_KSOCK_WRITABLE == ready::kWritable);

int to_c_result(Errc e) noexcept { return -to_errno(e); }

int current_exception_result() noexcept {
  try {
    throw;
  } catch (const kbus::Error& e) {
    return e.error_number() > 0 ? -e.error_number() : -EFAULT;
  } catch (const std::system_error& e) {
    return e.code().value() > 0 ? -e.code().value() : -EFAULT;
  } catch (const std::bad_alloc&) {
    return -ENOMEM;
  } catch (...) {
    return -EFAULT;
  }
}

Result<Mode> mode_from_open_flags(int flags) noexcept {
  switch (flags & O_ACCMODE) {
    case O_RDONLY:
      return Mode::read;
    case O_WRONLY:
      return Mode::write;
    case O_RDWR:
      return Mode::read_write;
    default:
      return Errc::einval;
  }
}

Result<Toggle> toggle_from_request(std::uint32_t request) noexcept {
  switch (request) {
    case 0:
      return Toggle::off;
    case 1:
      return Toggle::on;
    case 0xFFFFFFFFu:
      return Toggle::query;
    default:
      return Errc::einval;
  }
}

std::optional<DeviceName> parse_device_name(std::string_view name) {
  constexpr std::string_view kPrefix = "kbus";
  auto slash = name.rfind('/');
  if (slash == std::string_view::npos) return std::nullopt;  // not a path
  std::string_view dir = name.substr(0, slash);
  std::string_view base = name.substr(slash + 1);
  if (!base.starts_with(kPrefix)) return std::nullopt;
  std::string_view digits = base.substr(kPrefix.size());
  // Buses are 0..255; "kbus01" or "kbus+1" name no device.
  if (digits.empty() || digits.size() > 3) return std::nullopt;
  if (digits.size() > 1 && digits[0] == '0') return std::nullopt;
  DeviceName d;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    d.bus = d.bus * 10 + (c - '0');
  }
  if (dir != "/dev") d.dir = dir.empty() ? "/" : std::string(dir);
  return d;
}

short poll_events_from_wait_for(int wait_for) noexcept {
  short events = 0;
  if (wait_for & KBUS_KSOCK_READABLE) events |= POLLIN;
  if (wait_for & KBUS_KSOCK_WRITABLE) events |= POLLOUT;
  return events;
}

int ready_from_poll_revents(short revents) noexcept {
  int ready = 0;
  if (revents & POLLIN) ready |= KBUS_KSOCK_READABLE;
  if (revents & POLLOUT) ready |= KBUS_KSOCK_WRITABLE;
  return ready;
}

kbus_msg_id_t to_c(const MessageId& id) noexcept { return {id.network_id, id.serial_num}; }
MessageId from_c(const kbus_msg_id_t& id) noexcept { return {id.network_id, id.serial_num}; }
kbus_orig_from_t to_c(const OrigFrom& o) noexcept { return {o.network_id, o.local_id}; }
OrigFrom from_c(const kbus_orig_from_t& o) noexcept { return {o.network_id, o.local_id}; }

Header header_from_c(const kbus_message_t& msg) noexcept {
  Header h;
  h.id = from_c(msg.id);
  h.in_reply_to = from_c(msg.in_reply_to);
  h.to = msg.to;
  h.from = msg.from;
  h.orig_from = from_c(msg.orig_from);
  h.final_to = from_c(msg.final_to);
  h.extra = msg.extra;
  h.flags = msg.flags;
  return h;
}

void header_to_c(const Header& hdr, kbus_message_t& msg) noexcept {
  msg.id = to_c(hdr.id);
  msg.in_reply_to = to_c(hdr.in_reply_to);
  msg.to = hdr.to;
  msg.from = hdr.from;
  msg.orig_from = to_c(hdr.orig_from);
  msg.final_to = to_c(hdr.final_to);
  msg.extra = hdr.extra;
  msg.flags = hdr.flags;
}

Message message_from_c(const kbus_message_t& msg) {
  Message m;
  m.hdr = header_from_c(msg);
  m.name.assign(kbus_msg_name_ptr(&msg), msg.name_len);
  if (msg.data_len > 0) {
    m.data.assign(static_cast<const char*>(kbus_msg_data_ptr(&msg)), msg.data_len);
  }
  return m;
}

kbus_message_t* new_c_entire(const Message& m) noexcept {
  try {
    std::string bytes = encode_entire(m, kNativeHeaderLen);
    void* p = std::malloc(bytes.size());
    if (p == nullptr) return nullptr;
    std::memcpy(p, bytes.data(), bytes.size());
    return static_cast<kbus_message_t*>(p);
  } catch (...) {
    return nullptr;
  }
}

std::string_view header_bytes(const kbus_message_t& msg) noexcept {
  return {reinterpret_cast<const char*>(&msg), sizeof msg};
}

kbus_message_t header_from_bytes(std::string_view bytes) noexcept {
  kbus_message_t h;
  std::memset(&h, 0, sizeof h);
  std::memcpy(&h, bytes.data(), bytes.size() < sizeof h ? bytes.size() : sizeof h);
  return h;
}

bool can_check_caller_memory() noexcept {
  static const bool allowed = [] {
    char from = 'k', to = 0;
    iovec local{&to, 1};
    iovec remote{&from, 1};
    return ::process_vm_readv(::getpid(), &local, 1, &remote, 1, 0) == 1 && to == 'k';
  }();
  return allowed;
}

bool copy_from_caller(std::string& out, const void* p, std::size_t n) {
  out.resize(n);
  if (n == 0) return true;
  if (p == nullptr) return false;
  if (!can_check_caller_memory()) {
    // The system forbids process_vm_readv (seccomp, old kernel): trust the
    // caller, as any C library must.
    std::memcpy(out.data(), p, n);
    return true;
  }
  iovec local{out.data(), n};
  iovec remote{const_cast<void*>(p), n};
  // A short count or EFAULT: (part of) the range is not readable memory.
  return ::process_vm_readv(::getpid(), &local, 1, &remote, 1, 0) == static_cast<ssize_t>(n);
}

}  // namespace kbus::capi
