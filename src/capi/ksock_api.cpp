// capi/ksock_api.cpp - the kbus_ksock_* functions of <libkbus/kbus.h> over
// kbus::Ksock (KBUS-SPEC.md §12.2, with the fixes of §14-15).
//
// Model: every entry point is `guard(...)` (no exception crosses into C),
// finds its Ksock in the KsockTable (-EBADF if there is none), holds the
// entry's mutex for the whole operation, and crosses the C/C++ boundary only
// through capi/translate.hpp. Each function is one operation of the C++
// client, so its errors are those of the daemon (§4-§5) plus the client's
// own (ECONNRESET, EPIPE, EPROTO when the daemon is gone or misbehaves).
//
// Pointy messages (§3.4): the C library writes the caller's own header (its
// pointers included) and follows those pointers when SEND is called, as the
// kernel did. A WriteMirror per Ksock watches the bytes written since the
// last SEND/DISCARD so that this works however the header was written.
#include <poll.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

#include "capi/ksock_table.hpp"
#include "capi/translate.hpp"
#include "libkbus/kbus.h"

using kbus::Errc;
using kbus::Ksock;
using kbus::capi::guard;
using kbus::capi::KsockEntry;
using kbus::capi::KsockTable;
using kbus::capi::to_c_result;

namespace {

// Runs f(entry) with the entry of `ksock` locked; -EBADF if there is none.
template <class F>
int with_ksock(kbus_ksock_t ksock, F&& f) noexcept {
  return guard([&]() -> int {
    auto e = KsockTable::instance().find(ksock);
    if (!e) return -EBADF;
    std::lock_guard<std::mutex> lk(e->mu);
    if (!e->ksock.is_open()) return -EBADF;
    return f(*e);
  });
}

// A u32 query: *out = value.
template <class R>
int u32_result(const R& r, uint32_t* out) {
  if (!r) return to_c_result(r.error());
  *out = *r;
  return 0;
}

kbus_ksock_t open_ksock(int bus, int flags, const std::string& dir) {
  auto mode = kbus::capi::mode_from_open_flags(flags);
  if (!mode) return to_c_result(mode.error());
  auto k = Ksock::try_open(bus, *mode, dir);
  if (!k) return to_c_result(k.error());
  return KsockTable::instance().add(std::move(k.value()));
}

int toggle(kbus_ksock_t ksock, uint32_t request,
           kbus::Result<bool> (Ksock::*op)(kbus::Toggle) noexcept) {
  return with_ksock(ksock, [&](KsockEntry& e) -> int {
    auto t = kbus::capi::toggle_from_request(request);
    if (!t) return to_c_result(t.error());
    auto r = (e.ksock.*op)(*t);
    if (!r) return to_c_result(r.error());
    return *r ? 1 : 0;  // the previous state (§14-15)
  });
}

// ---- the write mirror (see ksock_table.hpp) ----

// After a WRITE of `bytes` that the daemon answered with `result`.
void mirror_write(kbus::capi::WriteMirror& w, std::string_view bytes, Errc result) {
  if (result == Errc::ealready) return;  // the pending message is untouched (§14-2)
  if (result != Errc::ok) {
    w.reset();  // §4.2-7: the partial message is discarded
    return;
  }
  if (!w.started || w.pending) {
    // A new message. (A write accepted while we thought a send was pending
    // means the daemon completed that send meanwhile, docs/decisions.md D1.)
    w.reset();
    w.started = true;
  }
  constexpr std::size_t kH = sizeof(kbus_message_t);
  if (w.header.size() >= kH) return;
  const std::size_t was = w.header.size();
  w.header.append(bytes.substr(0, kH - was));
  if (w.header.size() == kH) {
    kbus_message_t h = kbus::capi::header_from_bytes(w.header);
    if (h.name != nullptr) {  // pointy: complete now, followed at SEND
      w.pointy = true;
      w.name = h.name;
      w.name_len = h.name_len;
      w.data = h.data;
      w.data_len = h.data_len;
    }
  }
}

// After a SEND (or SENDMSG) that ended with `result`.
void mirror_send(kbus::capi::WriteMirror& w, Errc result) {
  if (result == Errc::eagain) {
    // Pending: the daemon has the name and data now; further writes EALREADY.
    w.pointy = false;
    w.pending = true;
    w.started = true;
    return;
  }
  if (result == Errc::ealready) return;
  w.reset();
}

int write_bytes(KsockEntry& e, std::string_view bytes) {
  auto r = e.ksock.try_write_data(bytes);
  mirror_write(e.write, bytes, r ? Errc::ok : r.error());
  return r ? 0 : to_c_result(r.error());
}

// SEND, following the pointers of a pointy header first (§5.2 step 4).
int send_written(KsockEntry& e, kbus_msg_id_t* msg_id) {
  kbus::Result<kbus::MessageId> r = Errc::enomsg;
  kbus::capi::WriteMirror& w = e.write;
  if (w.pointy && !w.pending) {
    std::string name, data;
    if (!kbus::capi::copy_from_caller(name, w.name, w.name_len) ||
        !kbus::capi::copy_from_caller(data, w.data, w.data_len)) {
      // A bad pointer: the kernel failed SEND with EFAULT and dropped it.
      (void)e.ksock.try_discard();
      w.reset();
      return -EFAULT;
    }
    r = e.ksock.try_send_pointy(name, data);
  } else {
    r = e.ksock.try_send();
  }
  mirror_send(w, r ? Errc::ok : r.error());
  if (r) {
    if (msg_id) *msg_id = kbus::capi::to_c(*r);
    return 0;
  }
  if (r.error() == Errc::eagain && msg_id) {
    // The id was assigned (§5.2-7): it is LASTSENT.
    auto last = e.ksock.try_last_sent();
    if (last) *msg_id = kbus::capi::to_c(*last);
  }
  return to_c_result(r.error());
}

// The bytes of a message as kbus_ksock_write_msg writes them.
bool message_bytes(const kbus_message_t* msg, std::string& out) {
  const int size = kbus_msg_sizeof(msg);
  if (size < 0) return false;
  return kbus::capi::copy_from_caller(out, msg, static_cast<std::size_t>(size));
}

}  // namespace

extern "C" {

kbus_ksock_t kbus_ksock_open(uint32_t device_number, int flags) {
  return guard([&] {
    // Bus numbers above INT_MAX are no bus (ENOENT), as negative ones.
    int bus = device_number > 0x7FFFFFFFu ? -1 : static_cast<int>(device_number);
    return open_ksock(bus, flags, {});
  });
}

kbus_ksock_t kbus_ksock_open_by_name(const char* device_name, int flags) {
  return guard([&]() -> int {
    if (device_name == nullptr) return -EFAULT;
    auto d = kbus::capi::parse_device_name(device_name);
    if (!d) return -ENOENT;
    return open_ksock(d->bus, flags, d->dir);
  });
}

int kbus_ksock_close(kbus_ksock_t ksock) {
  return guard([&]() -> int {
    auto e = KsockTable::instance().remove(ksock);
    if (!e) return -EBADF;
    std::lock_guard<std::mutex> lk(e->mu);
    e->ksock.close();
    return 0;
  });
}

int kbus_ksock_bind(kbus_ksock_t ksock, const char* name, uint32_t is_replier) {
  return with_ksock(ksock, [&](KsockEntry& e) -> int {
    if (name == nullptr) return -EFAULT;
    auto r = e.ksock.try_bind(name, is_replier != 0);
    return r ? 0 : to_c_result(r.error());
  });
}

int kbus_ksock_unbind(kbus_ksock_t ksock, const char* name, uint32_t is_replier) {
  return with_ksock(ksock, [&](KsockEntry& e) -> int {
    if (name == nullptr) return -EFAULT;
    auto r = e.ksock.try_unbind(name, is_replier != 0);
    return r ? 0 : to_c_result(r.error());
  });
}

int kbus_ksock_id(kbus_ksock_t ksock, uint32_t* ksock_id) {
  return with_ksock(ksock, [&](KsockEntry& e) -> int {
    if (ksock_id == nullptr) return -EFAULT;
    return u32_result(e.ksock.try_ksock_id(), ksock_id);
  });
}

int kbus_ksock_next_msg(kbus_ksock_t ksock, uint32_t* message_length) {
  return with_ksock(ksock, [&](KsockEntry& e) -> int {
    if (message_length == nullptr) return -EFAULT;
    auto r = e.ksock.try_next_msg();
    if (!r) return to_c_result(r.error());
    *message_length = *r;
    return *r > 0 ? 1 : 0;  // the original's raw result (§12.2, §14-4)
  });
}

int kbus_ksock_len_left(kbus_ksock_t ksock, uint32_t* len_left) {
  return with_ksock(ksock, [&](KsockEntry& e) -> int {
    if (len_left == nullptr) return -EFAULT;
    return u32_result(e.ksock.try_len_left(), len_left);
  });
}

int kbus_ksock_last_msg_id(kbus_ksock_t ksock, kbus_msg_id_t* msg_id) {
  return with_ksock(ksock, [&](KsockEntry& e) -> int {
    if (msg_id == nullptr) return -EFAULT;
    auto r = e.ksock.try_last_sent();
    if (!r) return to_c_result(r.error());
    *msg_id = kbus::capi::to_c(*r);
    return 0;
  });
}

int kbus_ksock_find_replier(kbus_ksock_t ksock, const char* name, uint32_t* replier_ksock_id) {
  return with_ksock(ksock, [&](KsockEntry& e) -> int {
    if (name == nullptr || replier_ksock_id == nullptr) return -EFAULT;
    auto r = e.ksock.try_find_replier(name);
    if (!r) return to_c_result(r.error());
    *replier_ksock_id = r->value_or(0);
    return 0;
  });
}

int kbus_ksock_max_messages(kbus_ksock_t ksock, uint32_t* max_messages) {
  return with_ksock(ksock, [&](KsockEntry& e) -> int {
    if (max_messages == nullptr) return -EFAULT;
    return u32_result(e.ksock.try_set_max_messages(*max_messages), max_messages);
  });
}

int kbus_ksock_num_messages(kbus_ksock_t ksock, uint32_t* num_messages) {
  return with_ksock(ksock, [&](KsockEntry& e) -> int {
    if (num_messages == nullptr) return -EFAULT;
    return u32_result(e.ksock.try_num_messages(), num_messages);
  });
}

int kbus_ksock_num_unreplied_to(kbus_ksock_t ksock, uint32_t* num_messages) {
  return with_ksock(ksock, [&](KsockEntry& e) -> int {
    if (num_messages == nullptr) return -EFAULT;
    return u32_result(e.ksock.try_num_unreplied_to(), num_messages);
  });
}

int kbus_ksock_send(kbus_ksock_t ksock, kbus_msg_id_t* msg_id) {
  return with_ksock(ksock, [&](KsockEntry& e) { return send_written(e, msg_id); });
}

int kbus_ksock_discard(kbus_ksock_t ksock) {
  return with_ksock(ksock, [&](KsockEntry& e) -> int {
    auto r = e.ksock.try_discard();
    e.write.reset();
    return r ? 0 : to_c_result(r.error());
  });
}

int kbus_ksock_only_once(kbus_ksock_t ksock, uint32_t request) {
  return toggle(ksock, request, &Ksock::try_only_once);
}

int kbus_ksock_report_replier_binds(kbus_ksock_t ksock, uint32_t request) {
  return toggle(ksock, request, &Ksock::try_report_replier_binds);
}

int kbus_ksock_kernel_module_verbose(kbus_ksock_t ksock, uint32_t request) {
  return toggle(ksock, request, &Ksock::try_verbose);
}

int kbus_ksock_max_message_size(kbus_ksock_t ksock, uint32_t* max_message_size) {
  return with_ksock(ksock, [&](KsockEntry& e) -> int {
    if (max_message_size == nullptr) return -EFAULT;
    return u32_result(e.ksock.try_set_max_message_size(*max_message_size), max_message_size);
  });
}

int kbus_ksock_new_device(kbus_ksock_t ksock, uint32_t* device_number) {
  return with_ksock(ksock, [&](KsockEntry& e) -> int {
    if (device_number == nullptr) return -EFAULT;
    return u32_result(e.ksock.try_new_device(), device_number);
  });
}

int kbus_wait_for_message(kbus_ksock_t ksock, int wait_for) {
  return guard([&]() -> int {
    // The entry is not locked while waiting: another thread may use (or
    // close) the Ksock meanwhile, as with the original's poll().
    if (!KsockTable::instance().find(ksock)) return -EBADF;
    const short events = kbus::capi::poll_events_from_wait_for(wait_for);
    if (events == 0) return -EINVAL;
    pollfd p{ksock, events, 0};
    if (::poll(&p, 1, -1) < 0) return -errno;
    if (p.revents & POLLNVAL) return -EBADF;
    // The daemon has closed its end of the poll fd: it has gone away.
    if (p.revents & (POLLHUP | POLLERR)) return -ECONNRESET;
    return kbus::capi::ready_from_poll_revents(p.revents);
  });
}

int kbus_ksock_read_msg(kbus_ksock_t ksock, kbus_message_t** msg, size_t msg_len) {
  return with_ksock(ksock, [&](KsockEntry& e) -> int {
    if (msg == nullptr) return -EFAULT;
    if (msg_len < sizeof(kbus_message_t) || msg_len > 0xFFFFFFFFu) return -EINVAL;
    std::string bytes;
    bytes.reserve(msg_len);
    while (bytes.size() < msg_len) {
      auto r = e.ksock.try_read_data(static_cast<uint32_t>(msg_len - bytes.size()));
      if (!r) return to_c_result(r.error());
      if (r->empty()) return -EBADMSG;  // read() returned 0: no (more) message
      bytes += *r;
    }
    void* p = std::malloc(msg_len);
    if (p == nullptr) return -ENOMEM;
    std::memcpy(p, bytes.data(), msg_len);
    *msg = static_cast<kbus_message_t*>(p);
    return 0;
  });
}

int kbus_ksock_read_next_msg(kbus_ksock_t ksock, kbus_message_t** msg) {
  return with_ksock(ksock, [&](KsockEntry& e) -> int {
    if (msg == nullptr) return -EFAULT;
    auto r = e.ksock.try_read_next_msg();  // NEXTMSG + read, one round trip
    if (!r) return to_c_result(r.error());
    if (!r->has_value()) {
      *msg = nullptr;
      return 0;
    }
    kbus_message_t* m = kbus::capi::new_c_entire(**r);
    if (m == nullptr) return -ENOMEM;
    *msg = m;
    return 0;
  });
}

int kbus_ksock_write_msg(kbus_ksock_t ksock, const kbus_message_t* msg) {
  return with_ksock(ksock, [&](KsockEntry& e) -> int {
    if (msg == nullptr) return -EFAULT;
    std::string bytes;
    if (!message_bytes(msg, bytes)) return -EFAULT;
    return write_bytes(e, bytes);
  });
}

int kbus_ksock_write_data(kbus_ksock_t ksock, const uint8_t* data, size_t data_len) {
  return with_ksock(ksock, [&](KsockEntry& e) -> int {
    if (data == nullptr && data_len != 0) return -EFAULT;
    std::string bytes;
    if (!kbus::capi::copy_from_caller(bytes, data, data_len)) return -EFAULT;
    return write_bytes(e, bytes);
  });
}

int kbus_ksock_send_msg(kbus_ksock_t ksock, const kbus_message_t* msg, kbus_msg_id_t* msg_id) {
  return with_ksock(ksock, [&](KsockEntry& e) -> int {
    if (msg == nullptr) return -EFAULT;
    std::string bytes;
    if (!message_bytes(msg, bytes)) return -EFAULT;
    if (msg->name == nullptr && msg->data == nullptr && !e.write.started) {
      // An entire message and nothing else written: WRITE and SEND in one
      // round trip (SENDMSG), with the same outcome as the two calls.
      kbus_message_t hdr = kbus::capi::header_from_bytes(bytes);
      if (hdr.start_guard == KBUS_MSG_START_GUARD && hdr.end_guard == KBUS_MSG_END_GUARD) {
        auto m = kbus::decode_entire(bytes, sizeof(kbus_message_t));
        if (m) {
          auto r = e.ksock.try_send_msg(*m);
          mirror_send(e.write, r ? Errc::ok : r.error());
          if (r) {
            if (msg_id) *msg_id = kbus::capi::to_c(*r);
            return 0;
          }
          if (r.error() == Errc::eagain && msg_id) {
            auto last = e.ksock.try_last_sent();
            if (last) *msg_id = kbus::capi::to_c(*last);
          }
          return to_c_result(r.error());
        }
      }
    }
    int rc = write_bytes(e, bytes);
    if (rc < 0) return rc;
    return send_written(e, msg_id);
  });
}

}  // extern "C"
