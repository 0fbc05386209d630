// capi/write_send.hpp - writing and sending through a KsockEntry with the
// original's pointy-message meaning (KBUS-SPEC.md §3.4, §4.2), shared by the
// C API (ksock_api.cpp) and the /dev/kbusN preload library (src/preload),
// which both write the caller's own header bytes and follow its pointers at
// SEND. The caller holds the entry's mutex.
#pragma once

#include <string_view>

#include "capi/ksock_table.hpp"
#include "kbus/errors.hpp"
#include "kbus/message.hpp"
#include "libkbus/kbus.h"

namespace kbus::capi {

// The write mirror (see ksock_table.hpp): after a WRITE of `bytes` that the
// daemon answered with `result`, and after a SEND (or SENDMSG) that ended
// with `result`.
void mirror_write(WriteMirror& w, std::string_view bytes, Errc result);
void mirror_send(WriteMirror& w, Errc result);

// WRITE of `bytes` (one request frame); 0 or -errno. The mirror follows.
int write_bytes(KsockEntry& e, std::string_view bytes);

// The C result of a send, its id into *msg_id (if not null; on EAGAIN the
// id assigned, LASTSENT); the write mirror follows.
int send_result(KsockEntry& e, const Result<MessageId>& r, kbus_msg_id_t* msg_id);

// SEND of what was written, following the pointers of a pointy header first
// (§5.2 step 4): a pointer to unreadable memory fails with -EFAULT and the
// message is dropped, as the kernel did.
int send_written(KsockEntry& e, kbus_msg_id_t* msg_id);

}  // namespace kbus::capi
