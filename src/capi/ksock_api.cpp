// capi/ksock_api.cpp - the kbus_ksock_* functions of <libkbus/kbus.h> over
// kbus::Ksock (KBUS-SPEC.md §12.2, with the fixes of §14-15).
//
// Model: every entry point is `guard(...)` (no exception crosses into C),
// finds its Ksock in the KsockTable (-EBADF if there is none), holds the
// entry's mutex for the whole operation, and crosses the C/C++ boundary only
// through capi/translate.hpp. Each function is one operation of the C++
// client (the batch calls: a sequence of them), so its errors are those of
// the daemon (§4-§5) plus the client's own (ECONNRESET, EPIPE, EPROTO when
// the daemon is gone or misbehaves).
//
// Pointy messages (§3.4): the C library writes the caller's own header (its
// pointers included) and follows those pointers when SEND is called, as the
// kernel did. A WriteMirror per Ksock watches the bytes written since the
// last SEND/DISCARD so that this works however the header was written.
//
// Sending a whole message (kbus_ksock_send_msg, kbus_ksock_send_msgs) takes
// one round trip (SENDMSG; SENDBATCH for many) whenever that has the outcome
// WRITE and SEND would have - entire and pointy messages alike, read from
// the caller's memory with the checks of capi/translate.hpp - and falls back
// to WRITE and SEND otherwise. No request frame is ever longer than the
// daemon accepts (see "frame sizes").
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "capi/ksock_table.hpp"
#include "capi/translate.hpp"
#include "capi/write_send.hpp"
#include "libkbus/kbus.h"
#include "protocol/ops.hpp"

using kbus::Errc;
using kbus::Ksock;
using kbus::capi::guard;
using kbus::capi::KsockEntry;
using kbus::capi::KsockTable;
using kbus::capi::mirror_send;
using kbus::capi::send_result;
using kbus::capi::send_written;
using kbus::capi::to_c_result;
using kbus::capi::write_bytes;

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

// The bytes of a message as kbus_ksock_write_msg writes them.
bool message_bytes(const kbus_message_t* msg, std::string& out) {
  const int size = kbus_msg_sizeof(msg);
  if (size < 0) return false;
  return kbus::capi::copy_from_caller(out, msg, static_cast<std::size_t>(size));
}

// ---- frame sizes ----
//
// kbusd disconnects a client whose request frame is longer than its
// --max-frame-size; the rule it keeps (protocol::frame_budget,
// docs/protocol.md §2) says a frame of up to kMinFrameBudget bytes (after
// the length field) is accepted by every kbusd, and one of up to
// frame_budget(abs_max) by this one.
constexpr std::uint64_t kFrameAlwaysAccepted = kbus::protocol::kMinFrameBudget;
constexpr std::uint64_t kOpLen = 4;  // the op word, counted in the frame length

kbus::Result<std::uint32_t> abs_max_msg_size(KsockEntry& e) {
  if (e.abs_max_msg_size == 0) {
    auto r = e.ksock.try_set_max_message_size(1);  // 1: the absolute maximum
    if (!r) return r.error();
    e.abs_max_msg_size = *r;
  }
  return e.abs_max_msg_size;
}

// Whether a message of entire length `len` is longer than any this daemon
// accepts (then WRITE's header check fails it, whatever its other bytes).
kbus::Result<bool> oversize(KsockEntry& e, std::uint64_t len) {
  if (kOpLen + len <= kFrameAlwaysAccepted) return false;
  auto abs_max = abs_max_msg_size(e);
  if (!abs_max) return abs_max.error();
  return len > *abs_max;
}

// The longest request frame this daemon surely accepts.
kbus::Result<std::uint64_t> frame_limit(KsockEntry& e) {
  auto abs_max = abs_max_msg_size(e);
  if (!abs_max) return abs_max.error();
  return std::uint64_t{kbus::protocol::frame_budget(*abs_max)};
}

// ---- sending ----

// SENDMSG of a message read from the caller (CallerMessage::ok).
int send_entire(KsockEntry& e, const kbus::Message& m, kbus_msg_id_t* msg_id) {
  return send_result(e, e.ksock.try_send_msg(m), msg_id);
}

// A message longer than the daemon's absolute maximum, with nothing else
// written: writing all of it would be a frame the daemon refuses by
// disconnecting. Its header alone gets the verdict writing it all would get
// (the header check fails it: EMSGSIZE, or the errno of an earlier check).
int refuse_oversize(KsockEntry& e, const kbus_message_t* msg) {
  std::string header;
  if (!kbus::capi::copy_from_caller(header, msg, sizeof(kbus_message_t))) return -EFAULT;
  const int rc = write_bytes(e, header);
  if (rc < 0) return rc;
  (void)e.ksock.try_discard();  // not reached: the header check fails it
  e.write.reset();
  return -EMSGSIZE;
}

// What becomes of a message sent with nothing else written (nor pending).
enum class Plan {
  send_entire,      // SENDMSG of the message read from the caller
  fault,            // -EFAULT before anything is written
  refuse_oversize,  // longer than the daemon takes: refuse_oversize
  write_as_is,      // write the caller's bytes, then SEND
};

// Reads the message into `m` if it can go as SENDMSG. A pointy message's
// length is judged first: WRITE checks its header before SEND reads what it
// points at.
kbus::Result<Plan> plan_send(KsockEntry& e, const kbus_message_t* msg, kbus::Message& m) {
  using kbus::capi::CallerMessage;
  const bool pointy = msg->name != nullptr;
  const std::uint64_t len = kbus::entire_len(sizeof(kbus_message_t), msg->name_len, msg->data_len);
  auto verdict = CallerMessage::other;
  if (!pointy) {
    verdict = kbus::capi::message_from_caller(msg, m);
    if (verdict == CallerMessage::fault) return Plan::fault;
  }
  auto big = oversize(e, len);
  if (!big) return big.error();
  if (*big) return Plan::refuse_oversize;
  if (pointy) verdict = kbus::capi::message_from_caller(msg, m);
  return verdict == CallerMessage::ok ? Plan::send_entire : Plan::write_as_is;
}

// kbus_ksock_send_msg: kbus_ksock_write_msg then kbus_ksock_send, in one
// round trip (SENDMSG) whenever that has the same outcome.
int send_one(KsockEntry& e, const kbus_message_t* msg, kbus_msg_id_t* msg_id) {
  if (msg == nullptr) return -EFAULT;
  if (!e.write.started) {
    kbus::Message m;
    auto plan = plan_send(e, msg, m);
    if (!plan) return to_c_result(plan.error());
    switch (*plan) {
      case Plan::send_entire:
        return send_entire(e, m, msg_id);
      case Plan::fault:
        return -EFAULT;
      case Plan::refuse_oversize:
        return refuse_oversize(e, msg);
      case Plan::write_as_is:
        break;
    }
  }
  std::string bytes;
  if (!message_bytes(msg, bytes)) return -EFAULT;
  const int rc = write_bytes(e, bytes);
  if (rc < 0) return rc;
  return send_written(e, msg_id);
}

// kbus_ksock_send_msgs: send_one for each message in order, stopping at the
// first failure - but the messages that send_one would send as SENDMSG go in
// SENDBATCH frames (docs/protocol.md §4.6), as many at a time as a frame may
// carry, read from the caller's memory a chunk at a time.
int send_many(KsockEntry& e, kbus_message_t* const msgs[], std::size_t count,
              kbus_msg_id_t* msg_ids, std::size_t& attempted) {
  constexpr std::size_t kChunk = 256;  // messages read at once
  std::vector<kbus::Message> batch;    // msgs[attempted .. attempted + batch.size())
  std::uint64_t batch_frame = kOpLen;
  std::uint64_t limit = 0;  // frame_limit, once asked
  auto flush = [&]() -> int {
    if (batch.empty()) return 0;
    Ksock::SendBatch b = e.ksock.try_send_msgs(batch);
    for (std::size_t i = 0; i < b.ids.size() && attempted + i < count; ++i) {
      if (msg_ids) msg_ids[attempted + i] = kbus::capi::to_c(b.ids[i]);
    }
    attempted += b.ids.size();
    if (!b.ids.empty()) mirror_send(e.write, b.error);  // as after its last SENDMSG
    batch.clear();
    batch_frame = kOpLen;
    return to_c_result(b.error);
  };
  // msgs[i] exactly as kbus_ksock_send_msg sends it, after those before it.
  auto one = [&](std::size_t i) -> int {
    int rc = flush();
    if (rc < 0) return rc;
    kbus_msg_id_t id{0, 0};
    rc = send_one(e, msgs[i], &id);
    if (msg_ids) msg_ids[i] = id;
    attempted = i + 1;
    return rc;
  };
  std::vector<kbus::Message> read;
  std::vector<kbus::capi::CallerMessage> verdicts;
  // A message's entire length, as its header says.
  auto length = [](const kbus_message_t* m) {
    return kbus::entire_len(sizeof(kbus_message_t), m->name_len, m->data_len);
  };
  std::size_t i = 0;
  while (i < count) {
    // A NULL message, one after something written in part or a pending
    // send, or one longer than the daemon takes: send_one deals with it.
    bool alone = msgs[i] == nullptr || e.write.started || count == 1;
    if (!alone && limit == 0) {
      auto l = frame_limit(e);
      if (!l) return to_c_result(l.error());  // the connection failed
      limit = *l;
    }
    if (!alone) alone = length(msgs[i]) > e.abs_max_msg_size;
    if (alone) {
      const int rc = one(i);
      if (rc < 0) return rc;
      ++i;
      continue;
    }
    // A chunk: up to kChunk such messages, about a frame's worth, read in
    // one go.
    std::size_t j = i + 1;
    std::uint64_t bytes = kOpLen + 4 + length(msgs[i]);
    while (j < count && j - i < kChunk && msgs[j] != nullptr &&
           length(msgs[j]) <= e.abs_max_msg_size && bytes + 4 + length(msgs[j]) <= limit) {
      bytes += 4 + length(msgs[j]);
      ++j;
    }
    read.clear();
    read.resize(j - i);
    verdicts.resize(j - i);
    kbus::capi::messages_from_caller(msgs + i, j - i, verdicts.data(), read.data());
    for (std::size_t k = i; k < j; ++k) {
      kbus::Message& m = read[k - i];
      if (verdicts[k - i] == kbus::capi::CallerMessage::ok) {
        const std::uint64_t len =
            kbus::entire_len(sizeof(kbus_message_t), static_cast<std::uint32_t>(m.name.size()),
                             static_cast<std::uint32_t>(m.data.size()));
        if (len <= e.abs_max_msg_size) {  // what send_one sends as SENDMSG
          if (batch_frame + 4 + len > limit) {
            const int rc = flush();
            if (rc < 0) return rc;
          }
          batch.push_back(std::move(m));
          batch_frame += 4 + len;
          continue;
        }
      }
      const int rc = one(k);
      if (rc < 0) return rc;
    }
    i = j;
  }
  return flush();
}

// Stores messages read as new C entire messages: msgs[0 .. *stored).
int deliver(const std::vector<kbus::Message>& read, kbus_message_t* msgs[], std::size_t& stored) {
  for (const kbus::Message& m : read) {
    kbus_message_t* c = kbus::capi::new_c_entire(m);
    if (c == nullptr) return -ENOMEM;  // the rest are lost, as with read_next_msg
    msgs[stored++] = c;
  }
  return 0;
}

int read_many(KsockEntry& e, kbus_message_t* msgs[], std::size_t max_count, std::size_t& got) {
  const auto n = static_cast<std::uint32_t>(std::min<std::size_t>(max_count, 0xFFFFFFFFu));
  auto r = e.ksock.try_read_msgs(n);  // READBATCH, at most 1 MiB beyond the first
  if (!r) return to_c_result(r.error());
  return deliver(*r, msgs, got);
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
    // close) the Ksock meanwhile, as with the original's poll(). Holding
    // the entry keeps its poll fd open until the wait ends; a close from
    // another thread ends it with EBADF.
    auto e = KsockTable::instance().find(ksock);
    if (!e) return -EBADF;
    const short events = kbus::capi::poll_events_from_wait_for(wait_for);
    if (events == 0) return -EINVAL;
    unsigned what = 0;
    if (events & POLLIN) what |= kbus::ready::kReadable;
    if (events & POLLOUT) what |= kbus::ready::kWritable;
    auto r = e->ksock.try_wait_interruptible(what);
    if (!r) return to_c_result(r.error());
    int ready = 0;
    if (*r & kbus::ready::kReadable) ready |= KBUS_KSOCK_READABLE;
    if (*r & kbus::ready::kWritable) ready |= KBUS_KSOCK_WRITABLE;
    return ready;
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
  return with_ksock(ksock, [&](KsockEntry& e) { return send_one(e, msg, msg_id); });
}

// ---- batches (kbus extensions) ----

int kbus_ksock_send_msgs(kbus_ksock_t ksock, kbus_message_t* const msgs[], size_t count,
                         kbus_msg_id_t* msg_ids, size_t* attempted) {
  std::size_t done = 0;  // also when send_many throws (bad_alloc)
  const int rc = with_ksock(ksock, [&](KsockEntry& e) -> int {
    if (msgs == nullptr && count != 0) return -EFAULT;
    return send_many(e, msgs, count, msg_ids, done);
  });
  if (attempted) *attempted = done;
  return rc;
}

int kbus_ksock_read_msgs(kbus_ksock_t ksock, kbus_message_t* msgs[], size_t max_count,
                         size_t* got) {
  if (got) *got = 0;
  return with_ksock(ksock, [&](KsockEntry& e) -> int {
    if (got == nullptr || (msgs == nullptr && max_count != 0)) return -EFAULT;
    if (max_count == 0) return 0;
    return read_many(e, msgs, max_count, *got);
  });
}

int kbus_ksock_wait_for_msgs(kbus_ksock_t ksock, kbus_message_t* msgs[], size_t max_count,
                             size_t* got, int timeout_ms) {
  if (got) *got = 0;
  return guard([&]() -> int {
    using Clock = std::chrono::steady_clock;
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms > 0 ? timeout_ms : 0);
    bool first = true;
    // Held (not locked) while waiting: its poll fd stays open, and a close
    // from another thread ends the wait with EBADF.
    auto e = KsockTable::instance().find(ksock);
    if (!e) return -EBADF;
    for (;;) {
      {
        std::lock_guard<std::mutex> lk(e->mu);
        if (!e->ksock.is_open()) return -EBADF;
        if (got == nullptr || (msgs == nullptr && max_count != 0)) return -EFAULT;
        if (max_count == 0) return 0;
        // Its poll fd never becomes readable: READBATCH says EBADF at once.
        if (e->ksock.mode() == kbus::Mode::write) return read_many(*e, msgs, max_count, *got);
        if (!first) {
          // Readable: take what is queued. Another thread may have taken it
          // first; then wait on.
          const int rc = read_many(*e, msgs, max_count, *got);
          if (rc < 0 || *got > 0) return rc;
        }
      }
      first = false;
      // Wait as kbus_wait_for_message does, without holding the Ksock.
      std::optional<Ksock::Timeout> left;
      if (timeout_ms >= 0) {
        left = std::max(Ksock::Timeout{0},
                        std::chrono::ceil<Ksock::Timeout>(deadline - Clock::now()));
      }
      auto r = e->ksock.try_wait_interruptible(kbus::ready::kReadable, left);
      if (!r) return to_c_result(r.error());
      if (*r == 0) return 0;  // timed out: *got is 0
    }
  });
}

}  // extern "C"
