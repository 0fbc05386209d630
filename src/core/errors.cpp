// The errno names and KBUS meanings used by every front end (CLI `kbus
// errno`, error messages, Python-compatible texts).
#include <cstring>

#include "kbus/errors.hpp"

namespace kbus {

namespace {
struct ErrnoEntry {
  int number;
  const char* name;
  bool canonical;
};
constexpr ErrnoEntry kErrnos[] = {
#include "core/errno_table.inc"
};

struct Meaning {
  int number;
  const char* text;
};
// KBUS-SPEC.md §13.5, worded as the original errno.py explained them.
constexpr Meaning kMeanings[] = {
    {EADDRINUSE,
     "On attempting to bind a message name as a Replier, there is already a Replier bound for "
     "that exact name."},
    {EADDRNOTAVAIL,
     "On attempting to send a Request, there is no Replier bound for the message's name. On "
     "attempting to send a Reply, the sender of the original Request (the Ksock in 'to') no "
     "longer exists."},
    {EALREADY,
     "On attempting to write a message, a previous send is still pending (it returned EAGAIN): "
     "the message must be sent or discarded first."},
    {EBADMSG,
     "The message name is not valid (in BIND, UNBIND or a message), a message cannot be sent to "
     "a wildcard name, '$.KBUS.ReplierBindEvent' cannot be bound as a Replier, or a BIND or "
     "UNBIND name has length zero."},
    {EBUSY,
     "On sending: the Replier's queue (or the queue of the Ksock a Reply is for) is full, or the "
     "message is ALL_OR_FAIL and a recipient's queue is full. On asking for Replier bind events: "
     "the caller's queue filled up while reporting the existing bindings."},
    {ECONNREFUSED,
     "On attempting to send a Reply, the intended recipient (the Ksock in 'to') is not waiting "
     "for a Reply with that 'in_reply_to' (wrong id, wrong Ksock, or already answered)."},
    {EINVAL,
     "Something is wrong with the message header or its guards, ALL_OR_WAIT and ALL_OR_FAIL were "
     "both set, SEND found an incomplete message, UNBIND found no such binding, a flag query "
     "value was not 0, 1 or 0xFFFFFFFF, a maximum message size was out of range, or no more "
     "buses can be created."},
    {EMSGSIZE,
     "The message is larger than the bus's maximum message size, or more bytes were written "
     "after a complete message."},
    {ENAMETOOLONG, "The message name is longer than 1000 bytes (or, for REPLIER, has length 0)."},
    {ENOENT, "There is no such KBUS bus (device)."},
    {ENOLCK,
     "On attempting to send a Request, the sender's own queue is full, so there is no room "
     "reserved for the Reply."},
    {ENOMSG, "On attempting to send, there is no message written to send."},
    {EPIPE,
     "On attempting to send 'to' a specific replier, the replier with that id is no longer bound "
     "to the given message's name."},
    {EFAULT, "A bad argument was passed to a KBUS operation (unreadable or malformed)."},
    {ECONNRESET,
     "kbusd went away (it stopped or crashed): the Ksock is closed. Open it again once kbusd is "
     "back (kbus only; the original's device could not go away)."},
    {ENOMEM, "KBUS could not allocate the memory it needed."},
    {EAGAIN,
     "On sending an ALL_OR_WAIT message, a recipient's queue is full: the send is now pending. On "
     "binding or unbinding a Replier while Replier bind events are reported, a listener for the "
     "event has a full queue."},
};
}  // namespace

std::string errno_name(int err) {
  for (const auto& e : kErrnos)
    if (e.number == err && e.canonical) return e.name;
  for (const auto& e : kErrnos)
    if (e.number == err) return e.name;
  return "E" + std::to_string(err);
}

int errno_from_name(std::string_view name) {
  for (const auto& e : kErrnos)
    if (name == e.name) return e.number;
  return 0;
}

std::vector<int> known_errnos() {
  std::vector<int> v;
  for (const auto& e : kErrnos)
    if (e.canonical) v.push_back(e.number);
  return v;
}

std::string kbus_meaning(int err) {
  for (const auto& m : kMeanings)
    if (m.number == err) return m.text;
  return {};
}

}  // namespace kbus
