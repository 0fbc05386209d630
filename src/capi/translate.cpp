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

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <system_error>
#include <vector>

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
  // encode_entire's bytes, written straight into the malloc'd block.
  const auto n = static_cast<std::uint32_t>(m.name.size());
  const auto d = static_cast<std::uint32_t>(m.data.size());
  const std::uint64_t size = entire_len(kNativeHeaderLen, n, d);
  if (n != m.name.size() || d != m.data.size() || size > SIZE_MAX) return nullptr;
  char* p = static_cast<char*>(std::malloc(static_cast<std::size_t>(size)));
  if (p == nullptr) return nullptr;
  std::memset(p, 0, sizeof(kbus_message_t));  // pointers and padding included
  auto* c = reinterpret_cast<kbus_message_t*>(p);
  c->start_guard = KBUS_MSG_START_GUARD;
  header_to_c(m.hdr, *c);
  c->name_len = n;
  c->data_len = d;
  c->end_guard = KBUS_MSG_END_GUARD;
  char* name = p + sizeof(kbus_message_t);
  const std::uint32_t padded_name = padded_name_len(n);
  if (n != 0) std::memcpy(name, m.name.data(), n);
  std::memset(name + n, 0, padded_name - n);
  char* data = name + padded_name;
  if (d != 0) std::memcpy(data, m.data.data(), d);
  const std::size_t data_pad = (4 - d % 4) % 4;
  std::memset(data + d, 0, data_pad);
  std::memcpy(data + d + data_pad, &kEndGuard, 4);
  return c;
}

namespace {

// One range of the caller's memory to copy.
struct Piece {
  void* to;
  const void* from;
  std::size_t n;
  // It lies a little after the piece before it, in the caller's memory and
  // in `to` alike: one iovec can read both and what lies between.
  bool joins = false;
};

// How message_from_caller reads one message, and what it read. An entire
// message is read whole, in one piece (each piece costs process_vm_readv a
// page lookup), into a scratch buffer; a pointy one's header, name and data
// straight into place.
struct CallerRead {
  CallerMessage verdict = CallerMessage::ok;  // until decided otherwise
  bool decided = false;                       // without reading (or read)
  bool pointy = false;
  const char* name_ptr = nullptr;
  const void* data_ptr = nullptr;
  std::uint32_t n = 0, d = 0;
  std::size_t size = 0;        // of an entire message, read into scratch
  const char* read = nullptr;  // where it was read to
  kbus_message_t h;
  Piece pieces[3];
  std::size_t count = 0;  // of pieces
};

void decide(CallerRead& r, CallerMessage v) {
  r.verdict = v;
  r.decided = true;
}

// What to read of msg into out (or the verdict, if no reading is needed);
// an entire message's one piece is added by place_entire. The fields that
// say where the rest is are read directly, as kbus_msg_sizeof reads them;
// the header is then copied and checked again.
void plan_read(const kbus_message_t* msg, Message& out, CallerRead& r) {
  r.name_ptr = msg->name;
  r.data_ptr = msg->data;
  r.n = msg->name_len;
  r.d = msg->data_len;
  r.pointy = r.name_ptr != nullptr;
  r.count = 0;
  if (!r.pointy) {  // entire
    if (r.data_ptr != nullptr) return decide(r, CallerMessage::other);
    const std::uint64_t size = entire_len(sizeof(kbus_message_t), r.n, r.d);
    if (size > INT_MAX) return decide(r, CallerMessage::fault);  // kbus_msg_sizeof fails
    if (r.n > kMaxNameLen) return decide(r, CallerMessage::other);
    r.size = static_cast<std::size_t>(size);
    return;
  }
  if ((r.data_ptr != nullptr) != (r.d != 0)) return decide(r, CallerMessage::other);  // §3.4
  if (r.n == 0 || r.n > kMaxNameLen) return decide(r, CallerMessage::other);
  out.name.resize(r.n);
  out.data.resize(r.d);
  r.pieces[r.count++] = {&r.h, msg, sizeof r.h};
  r.pieces[r.count++] = {out.name.data(), r.name_ptr, r.n};
  if (r.d != 0) r.pieces[r.count++] = {out.data.data(), r.data_ptr, r.d};
}

// Bytes of scratch an entire message needs.
std::size_t scratch_size(const CallerRead& r) { return r.decided || r.pointy ? 0 : r.size; }

// Entire messages less than this apart in the caller's memory are read
// together with what lies between them: all of it is on the pages of one or
// the other (pages are at least this big), so it is readable if they are.
constexpr std::uintptr_t kJoinGap = 4096;

// Places the entire messages of reads[0..n) in scratch, in order, each with
// the bytes before it that join it to the one before (see Piece::joins).
// Returns the bytes of scratch needed; places nothing if scratch is null.
std::size_t place_entire(const kbus_message_t* const msgs[], CallerRead* reads, std::size_t n,
                         char* scratch) {
  std::size_t at = 0;
  std::uintptr_t prev_end = 0;  // of the last piece, if an entire message's
  for (std::size_t i = 0; i < n; ++i) {
    CallerRead& r = reads[i];
    if (scratch_size(r) == 0) {
      if (r.count != 0) prev_end = 0;  // a pointy message's pieces come between
      continue;
    }
    const auto from = reinterpret_cast<std::uintptr_t>(msgs[i]);
    const bool joins = prev_end != 0 && from >= prev_end && from - prev_end < kJoinGap;
    if (joins) at += from - prev_end;
    if (scratch != nullptr) {
      r.read = scratch + at;
      r.pieces[r.count++] = {scratch + at, msgs[i], r.size, joins};
    }
    at += r.size;
    prev_end = from + r.size;
  }
  return at;
}

// After its pieces were read (or not: a bad address).
void finish_read(CallerRead& r, bool read, Message& out) {
  if (r.decided) return;
  r.decided = true;
  if (!read) {
    // An entire message's bytes cannot be copied: EFAULT. A pointy one's
    // pointers are followed by SEND, after WRITE checked its header.
    r.verdict = r.pointy ? CallerMessage::other : CallerMessage::fault;
    return;
  }
  std::uint32_t final_guard = KBUS_MSG_END_GUARD;
  if (!r.pointy) {
    std::memcpy(&r.h, r.read, sizeof r.h);
    std::memcpy(&final_guard, r.read + r.size - 4, 4);
  }
  const kbus_message_t& h = r.h;
  const bool good = h.start_guard == KBUS_MSG_START_GUARD && h.end_guard == KBUS_MSG_END_GUARD &&
                    final_guard == KBUS_MSG_END_GUARD && h.name == r.name_ptr &&
                    h.data == r.data_ptr && h.name_len == r.n && h.data_len == r.d;
  if (!good) {
    r.verdict = CallerMessage::other;
    return;
  }
  if (!r.pointy) {
    const char* body = r.read + sizeof h;
    out.name.assign(body, r.n);
    out.data.assign(body + padded_name_len(r.n), r.d);
  }
  out.hdr = header_from_c(h);
  r.verdict = CallerMessage::ok;
}

constexpr std::size_t kMaxIov = 1024;  // IOV_MAX on Linux

// The iovecs for the pieces of reads[0..n): one per piece, or (join) one
// per run of joined pieces. Returns their count; total = their bytes.
std::size_t make_iovecs(const CallerRead* reads, std::size_t n, bool join, iovec* local,
                        iovec* remote, std::size_t& total) {
  std::size_t iovs = 0;
  total = 0;
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = 0; j < reads[i].count; ++j) {
      const Piece& p = reads[i].pieces[j];
      if (join && p.joins && iovs != 0) {
        const auto start = reinterpret_cast<std::uintptr_t>(remote[iovs - 1].iov_base);
        const std::size_t len = reinterpret_cast<std::uintptr_t>(p.from) + p.n - start;
        total += len - remote[iovs - 1].iov_len;
        remote[iovs - 1].iov_len = local[iovs - 1].iov_len = len;
        continue;
      }
      local[iovs] = {p.to, p.n};
      remote[iovs] = {const_cast<void*>(p.from), p.n};
      total += p.n;
      ++iovs;
    }
  }
  return iovs;
}

// Reads the pieces of reads[0..n) (local and remote: room for 3 * n
// iovecs, n * 3 <= kMaxIov), and finishes each; returns how many were
// finished (all, or up to and including the first with a bad address). One
// process_vm_readv, joined pieces together; after a bad address, a second
// one piece by piece finds it.
std::size_t read_group(CallerRead* reads, Message* out, std::size_t n, iovec* local,
                       iovec* remote) {
  if (!can_check_caller_memory()) {
    // The system forbids process_vm_readv (seccomp, old kernel): trust the
    // caller, as any C library must.
    for (std::size_t i = 0; i < n; ++i) {
      for (std::size_t j = 0; j < reads[i].count; ++j) {
        const Piece& p = reads[i].pieces[j];
        std::memcpy(p.to, p.from, p.n);
      }
      finish_read(reads[i], true, out[i]);
    }
    return n;
  }
  const pid_t self = ::getpid();
  std::size_t total = 0;
  std::size_t iovs = make_iovecs(reads, n, true, local, remote, total);
  ssize_t got = 0;
  if (iovs != 0) got = ::process_vm_readv(self, local, iovs, remote, iovs, 0);
  if (got != static_cast<ssize_t>(total)) {
    iovs = make_iovecs(reads, n, false, local, remote, total);
    got = ::process_vm_readv(self, local, iovs, remote, iovs, 0);
  }
  if (got == static_cast<ssize_t>(total)) {
    for (std::size_t i = 0; i < n; ++i) finish_read(reads[i], true, out[i]);
    return n;
  }
  // A bad address: the transfer stopped at the first piece not readable
  // (whole pieces only). The messages before it were read; the one it
  // belongs to has a bad address; those after it were not read.
  std::size_t left = got < 0 ? 0 : static_cast<std::size_t>(got);
  for (std::size_t i = 0; i < n; ++i) {
    bool whole = true;
    for (std::size_t j = 0; j < reads[i].count && whole; ++j) {
      if (left >= reads[i].pieces[j].n) {
        left -= reads[i].pieces[j].n;
      } else {
        whole = false;
      }
    }
    finish_read(reads[i], whole, out[i]);
    if (!whole) return i + 1;
  }
  return n;  // not reached: some piece was short
}

}  // namespace

void messages_from_caller(const kbus_message_t* const msgs[], std::size_t n,
                          CallerMessage verdicts[], Message out[]) {
  constexpr std::size_t kGroup = kMaxIov / 3;
  std::vector<CallerRead> reads(std::min(n, kGroup));
  std::vector<iovec> local(3 * reads.size()), remote(3 * reads.size());
  std::string scratch;
  std::size_t done = 0;
  while (done < n) {
    const std::size_t group = std::min(n - done, kGroup);
    for (std::size_t i = 0; i < group; ++i) {
      reads[i] = CallerRead();
      plan_read(msgs[done + i], out[done + i], reads[i]);
    }
    const std::size_t need = place_entire(msgs + done, reads.data(), group, nullptr);
    if (scratch.size() < need) scratch.resize(need);
    place_entire(msgs + done, reads.data(), group, scratch.data());
    const std::size_t finished =
        read_group(reads.data(), out + done, group, local.data(), remote.data());
    for (std::size_t i = 0; i < finished; ++i) verdicts[done + i] = reads[i].verdict;
    done += finished;  // after a bad address, those after it again
  }
}

CallerMessage message_from_caller(const kbus_message_t* msg, Message& out) {
  CallerRead r;
  iovec local[3], remote[3];
  std::string scratch;
  plan_read(msg, out, r);
  scratch.resize(scratch_size(r));
  place_entire(&msg, &r, 1, scratch.data());
  read_group(&r, &out, 1, local, remote);
  return r.verdict;
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
