// capi/write_send.cpp - see write_send.hpp.
#include "capi/write_send.hpp"

#include <cerrno>
#include <string>

#include "capi/translate.hpp"

namespace kbus::capi {

// After a WRITE of `bytes` that the daemon answered with `result`.
void mirror_write(WriteMirror& w, std::string_view bytes, Errc result) {
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
    kbus_message_t h = header_from_bytes(w.header);
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
void mirror_send(WriteMirror& w, Errc result) {
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

// The C result of a send, and its id into *msg_id; the write mirror follows.
int send_result(KsockEntry& e, const Result<MessageId>& r, kbus_msg_id_t* msg_id) {
  mirror_send(e.write, r ? Errc::ok : r.error());
  if (r) {
    if (msg_id) *msg_id = to_c(*r);
    return 0;
  }
  if (r.error() == Errc::eagain && msg_id) {
    // The id was assigned (§5.2-7): it is LASTSENT.
    auto last = e.ksock.try_last_sent();
    if (last) *msg_id = to_c(*last);
  }
  return to_c_result(r.error());
}

// SEND, following the pointers of a pointy header first (§5.2 step 4).
int send_written(KsockEntry& e, kbus_msg_id_t* msg_id) {
  Result<MessageId> r = Errc::enomsg;
  WriteMirror& w = e.write;
  if (w.pointy && !w.pending) {
    std::string name, data;
    if (!copy_from_caller(name, w.name, w.name_len) ||
        !copy_from_caller(data, w.data, w.data_len)) {
      // A bad pointer: the kernel failed SEND with EFAULT and dropped it.
      (void)e.ksock.try_discard();
      w.reset();
      return -EFAULT;
    }
    r = e.ksock.try_send_pointy(name, data);
  } else {
    r = e.ksock.try_send();
  }
  return send_result(e, r, msg_id);
}

}  // namespace kbus::capi
