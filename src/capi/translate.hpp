// capi/translate.hpp - every translation between the C API (<libkbus/kbus.h>)
// and the C++ client (kbus::Ksock, kbus::Message), in one place (STYLE.md 5,
// after iceoryx's c2cpp/cpp2c files). The entry points in ksock_api.cpp and
// message_api.cpp call only these to cross the boundary; translate_test.cpp
// checks each table exhaustively.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "kbus/errors.hpp"
#include "kbus/ksock.hpp"
#include "kbus/message.hpp"
#include "libkbus/kbus.h"

namespace kbus::capi {

// ---- results ----

// The C result for an Errc: 0 for Errc::ok, else -errno.
int to_c_result(Errc e) noexcept;

// The C result for the exception being handled (call only inside a catch
// block): kbus::Error and std::system_error carry their errno, bad_alloc is
// -ENOMEM, anything else -EFAULT (as the C++ client's try_ calls do).
int current_exception_result() noexcept;

// Runs `f` (which returns an int C result) so that no exception crosses into
// C: the catch-all of every entry point.
template <class F>
int guard(F&& f) noexcept {
  try {
    return f();
  } catch (...) {
    return current_exception_result();
  }
}

// ---- arguments ----

// kbus_ksock_open flags: O_RDONLY / O_WRONLY / O_RDWR (other bits ignored).
// EINVAL for the access mode value that is none of these.
Result<Mode> mode_from_open_flags(int flags) noexcept;

// The `request` of only_once / report_replier_binds / kernel_module_verbose:
// 0, 1 or 0xFFFFFFFF; EINVAL otherwise (checked locally, as the original).
Result<Toggle> toggle_from_request(std::uint32_t request) noexcept;

// A device name: "/dev/kbusN" is bus N in the default directory (dir left
// empty), "DIR/kbusN" is bus N in DIR. nullopt for anything else.
struct DeviceName {
  int bus = 0;
  std::string dir;  // empty: kbus::default_bus_dir()
};
std::optional<DeviceName> parse_device_name(std::string_view name);

// kbus_wait_for_message: KBUS_KSOCK_READABLE/WRITABLE <-> poll() events.
short poll_events_from_wait_for(int wait_for) noexcept;
int ready_from_poll_revents(short revents) noexcept;

// ---- messages ----

kbus_msg_id_t to_c(const MessageId& id) noexcept;
MessageId from_c(const kbus_msg_id_t& id) noexcept;
kbus_orig_from_t to_c(const OrigFrom& o) noexcept;
OrigFrom from_c(const kbus_orig_from_t& o) noexcept;

// The header fields that kbus::Header holds (ids, to, from, orig_from,
// final_to, extra, flags); guards, lengths and pointers are not touched.
Header header_from_c(const kbus_message_t& msg) noexcept;
void header_to_c(const Header& hdr, kbus_message_t& msg) noexcept;

// The C message as a kbus::Message (name and data copied from where
// kbus_msg_name_ptr / kbus_msg_data_ptr say).
Message message_from_c(const kbus_message_t& msg);

// A new malloc'd entire C message holding `m` (nullptr if out of memory),
// written in place: the bytes of encode_entire(m, sizeof(kbus_message_t)).
kbus_message_t* new_c_entire(const Message& m) noexcept;

// A message the caller gives to SEND (kbus_ksock_send_msg and friends), read
// from the caller's memory as a kbus::Message - an entire message whole
// (kbus_msg_sizeof bytes); a pointy one's header and the name and data it
// points at - in one process_vm_readv where the system allows it (see
// copy_from_caller). The verdict:
enum class CallerMessage {
  // `out` holds it, and sending `out` in entire form (SENDMSG) has exactly
  // the outcome that writing the caller's bytes and SEND would have: an
  // entire message with good guards and name_len <= KBUS_MAX_NAME_LEN, or a
  // pointy one whose pointers are consistent (§3.4: a data pointer iff
  // data_len > 0) and readable.
  ok,
  // An entire message of which some bytes are not readable memory (or
  // whose size does not fit an int): kbus_msg_sizeof's bytes cannot be
  // copied, SEND fails with EFAULT before anything is written.
  fault,
  // Anything else (bad guards, inconsistent pointers, a pointy message with
  // a bad pointer, ...): only the daemon's parser can tell its outcome, so
  // the caller's bytes must be written and sent as they are.
  other,
};
CallerMessage message_from_caller(const kbus_message_t* msg, Message& out);
// The same for msgs[0 .. n) (none NULL): verdicts[i] and out[i] as
// message_from_caller(msgs[i], out[i]) gives them, with one process_vm_readv
// for up to 341 messages (IOV_MAX / 3).
void messages_from_caller(const kbus_message_t* const msgs[], std::size_t n,
                          CallerMessage verdicts[], Message out[]);

// The raw header bytes of a C header (sizeof(kbus_message_t) of them).
std::string_view header_bytes(const kbus_message_t& msg) noexcept;
// A C header from H raw bytes (as written by the caller).
kbus_message_t header_from_bytes(std::string_view bytes) noexcept;

// Copies n bytes from the caller's memory at p into out. False if p is not
// readable memory (the kernel's EFAULT) - checked with process_vm_readv
// where the system allows it, so that a bad pointer in a pointy message is
// an error, not a crash.
bool copy_from_caller(std::string& out, const void* p, std::size_t n);
// Whether copy_from_caller can tell bad memory (process_vm_readv allowed).
bool can_check_caller_memory() noexcept;

}  // namespace kbus::capi
