// capi/message_api.cpp - the kbus_msg_* functions of <libkbus/kbus.h>
// (KBUS-SPEC.md §12.2): building, freeing, measuring, splitting and printing
// C messages. They need no daemon.
//
// Messages are plain malloc'd memory, as in the original, so that programs
// may free() what the library allocated and vice versa: a pointy message is
// one kbus_message_t; an entire one is KBUS_ENTIRE_MSG_LEN bytes (header,
// name, NUL padding, data, padding, final END_GUARD), zero-filled.
//
// Every entry point that runs C++ code that could throw is wrapped in
// guard(); kbus_msg_delete, kbus_msg_delete_all and kbus_msg_sizeof only
// free memory or do arithmetic, and cannot throw.
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "capi/translate.hpp"
#include "libkbus/kbus.h"

using kbus::capi::guard;

namespace {

// ENTIRE_LEN, or 0 if it does not fit in an int (kbus_msg_sizeof's type).
std::size_t entire_size(uint32_t name_len, uint32_t data_len) {
  const std::uint64_t n = kbus::entire_len(sizeof(kbus_message_t), name_len, data_len);
  return n > INT_MAX ? 0 : static_cast<std::size_t>(n);
}

int create_pointy(kbus_message_t** msg, const char* name, uint32_t name_len, const void* data,
                  uint32_t data_len, uint32_t flags) {
  if (msg == nullptr || name == nullptr) return -EFAULT;
  if (data == nullptr && data_len != 0) return -EFAULT;
  auto* m = static_cast<kbus_message_t*>(std::calloc(1, sizeof(kbus_message_t)));
  if (m == nullptr) return -ENOMEM;
  m->start_guard = KBUS_MSG_START_GUARD;
  m->end_guard = KBUS_MSG_END_GUARD;
  m->flags = flags;
  m->name_len = name_len;
  m->data_len = data_len;
  m->name = const_cast<char*>(name);
  // No data means a NULL data pointer (§3.4), whatever the caller passed.
  m->data = data_len == 0 ? nullptr : const_cast<void*>(data);
  *msg = m;
  return 0;
}

int create_entire(kbus_message_t** msg, const char* name, uint32_t name_len, const void* data,
                  uint32_t data_len, uint32_t flags) {
  if (msg == nullptr || name == nullptr) return -EFAULT;
  if (data == nullptr && data_len != 0) return -EFAULT;
  const std::size_t size = entire_size(name_len, data_len);
  if (size == 0) return -EINVAL;
  auto* m = static_cast<kbus_message_t*>(std::calloc(1, size));
  if (m == nullptr) return -ENOMEM;
  m->start_guard = KBUS_MSG_START_GUARD;
  m->end_guard = KBUS_MSG_END_GUARD;
  m->flags = flags;
  m->name_len = name_len;
  m->data_len = data_len;
  std::memcpy(kbus_msg_name_ptr(m), name, name_len);
  if (data_len != 0) std::memcpy(kbus_msg_data_ptr(m), data, data_len);
  *kbus_msg_end_ptr(reinterpret_cast<kbus_entire_message_t*>(m)) = KBUS_MSG_END_GUARD;
  *msg = m;
  return 0;
}

using Creator = int (*)(kbus_message_t**, const char*, uint32_t, const void*, uint32_t, uint32_t);

int create_reply_to(Creator create, kbus_message_t** msg, const kbus_message_t* in_reply_to,
                    const void* data, uint32_t data_len, uint32_t flags) {
  if (msg == nullptr || in_reply_to == nullptr) return -EFAULT;
  if (!kbus_msg_wants_us_to_reply(in_reply_to)) return -EBADMSG;
  kbus_message_t* m = nullptr;
  int rc = create(&m, kbus_msg_name_ptr(in_reply_to), in_reply_to->name_len, data, data_len, flags);
  if (rc < 0) return rc;
  m->to = in_reply_to->from;
  m->in_reply_to = in_reply_to->id;
  *msg = m;
  return 0;
}

int create_stateful_request(Creator create, kbus_message_t** msg, const kbus_message_t* earlier_msg,
                            const char* name, uint32_t name_len, const void* data,
                            uint32_t data_len, uint32_t flags) {
  if (msg == nullptr || earlier_msg == nullptr) return -EFAULT;
  uint32_t to;
  kbus_orig_from_t final_to;
  if (kbus_msg_is_reply(earlier_msg)) {
    to = earlier_msg->from;
    final_to = earlier_msg->orig_from;
  } else if (kbus_msg_is_stateful_request(earlier_msg)) {
    to = earlier_msg->to;
    final_to = earlier_msg->final_to;
  } else {
    return -EBADMSG;
  }
  kbus_message_t* m = nullptr;
  int rc = create(&m, name, name_len, data, data_len, flags);
  if (rc < 0) return rc;
  m->to = to;
  m->final_to = final_to;
  *msg = m;
  return 0;
}

bool is_bind_event_name(const kbus_message_t* msg) {
  constexpr std::string_view kName = KBUS_MSG_NAME_REPLIER_BIND_EVENT;
  return msg->name_len == kName.size() &&
         std::memcmp(kbus_msg_name_ptr(msg), kName.data(), kName.size()) == 0;
}

const char* kind_of(const kbus_message_t* msg) {
  if (kbus_msg_is_reply(msg)) {
    const bool status =
        msg->name_len >= 7 && std::memcmp(kbus_msg_name_ptr(msg), "$.KBUS.", 7) == 0;
    return status ? "Status" : "Reply";
  }
  if (is_bind_event_name(msg)) return "ReplierBindEvent";
  if (kbus_msg_is_request(msg)) return "Request";
  return "Announcement";
}

// Data bytes as text: printable ASCII as is, anything else as \xNN.
void print_bytes(FILE* stream, const unsigned char* p, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    if (p[i] >= 0x20 && p[i] < 0x7F) {
      std::fputc(p[i], stream);
    } else {
      std::fprintf(stream, "\\x%02x", p[i]);
    }
  }
}

void print_message(FILE* stream, const kbus_message_t* msg, uint32_t flags);
void dump_message(const kbus_message_t* msg, int dump_data);

}  // namespace

extern "C" {

int kbus_msg_create(kbus_message_t** msg, const char* name, uint32_t name_len, const void* data,
                    uint32_t data_len, uint32_t flags) {
  return guard([&] { return create_pointy(msg, name, name_len, data, data_len, flags); });
}

int kbus_msg_create_entire(kbus_message_t** msg, const char* name, uint32_t name_len,
                           const void* data, uint32_t data_len, uint32_t flags) {
  return guard([&] { return create_entire(msg, name, name_len, data, data_len, flags); });
}

int kbus_msg_create_request(kbus_message_t** msg, const char* name, uint32_t name_len,
                            const void* data, uint32_t data_len, uint32_t flags) {
  return guard([&] {
    return create_pointy(msg, name, name_len, data, data_len, flags | KBUS_BIT_WANT_A_REPLY);
  });
}

int kbus_msg_create_entire_request(kbus_message_t** msg, const char* name, uint32_t name_len,
                                   const void* data, uint32_t data_len, uint32_t flags) {
  return guard([&] {
    return create_entire(msg, name, name_len, data, data_len, flags | KBUS_BIT_WANT_A_REPLY);
  });
}

int kbus_msg_create_reply_to(kbus_message_t** msg, const kbus_message_t* in_reply_to,
                             const void* data, uint32_t data_len, uint32_t flags) {
  return guard(
      [&] { return create_reply_to(create_pointy, msg, in_reply_to, data, data_len, flags); });
}

int kbus_msg_create_entire_reply_to(kbus_message_t** msg, const kbus_message_t* in_reply_to,
                                    const void* data, uint32_t data_len, uint32_t flags) {
  return guard(
      [&] { return create_reply_to(create_entire, msg, in_reply_to, data, data_len, flags); });
}

int kbus_msg_create_stateful_request(kbus_message_t** msg, const kbus_message_t* earlier_msg,
                                     const char* name, uint32_t name_len, const void* data,
                                     uint32_t data_len, uint32_t flags) {
  return guard([&] {
    return create_stateful_request(create_pointy, msg, earlier_msg, name, name_len, data, data_len,
                                   flags);
  });
}

int kbus_msg_create_entire_stateful_request(kbus_message_t** msg, const kbus_message_t* earlier_msg,
                                            const char* name, uint32_t name_len, const void* data,
                                            uint32_t data_len, uint32_t flags) {
  return guard([&] {
    return create_stateful_request(create_entire, msg, earlier_msg, name, name_len, data, data_len,
                                   flags);
  });
}

void kbus_msg_delete(kbus_message_t** msg_p) {
  if (msg_p == nullptr) return;
  std::free(*msg_p);
  *msg_p = nullptr;
}

void kbus_msg_delete_all(kbus_message_t** msg_p) {
  if (msg_p == nullptr || *msg_p == nullptr) return;
  kbus_message_t* m = *msg_p;
  if (!kbus_msg_is_entire(m)) {
    std::free(m->name);
    std::free(m->data);
  }
  kbus_msg_delete(msg_p);
}

int kbus_msg_sizeof(const kbus_message_t* msg) {
  if (msg == nullptr) return -EFAULT;
  if (!kbus_msg_is_entire(msg)) return static_cast<int>(sizeof(kbus_message_t));
  const std::size_t size = entire_size(msg->name_len, msg->data_len);  // §14-15: not swapped
  return size == 0 ? -EINVAL : static_cast<int>(size);
}

int kbus_msg_split_bind_event(const kbus_message_t* msg, uint32_t* is_bind, uint32_t* binder,
                              char** name) {
  return guard([&]() -> int {
    if (msg == nullptr || is_bind == nullptr || binder == nullptr || name == nullptr) {
      return -EFAULT;
    }
    const auto* data = static_cast<const unsigned char*>(kbus_msg_data_ptr(msg));
    if (data == nullptr || msg->data_len < 12) return -EBADMSG;
    kbus_replier_bind_event_data_t ev;
    std::memcpy(&ev, data, 12);
    if (ev.name_len > msg->data_len - 12) return -EBADMSG;
    char* n = static_cast<char*>(std::malloc(ev.name_len + 1));
    if (n == nullptr) return -ENOMEM;
    std::memcpy(n, data + 12, ev.name_len);
    n[ev.name_len] = '\0';
    *is_bind = ev.is_bind;
    *binder = ev.binder;
    *name = n;
    return 0;
  });
}

void kbus_msg_print(FILE* stream, const kbus_message_t* msg) {
  kbus_msg_print2(stream, msg, KBUS_MSG_PRINT_FLAGS_ABBREVIATE);
}

void kbus_msg_print2(FILE* stream, const kbus_message_t* msg, uint32_t flags) {
  (void)guard([&] {
    print_message(stream, msg, flags);
    return 0;
  });
}

void kbus_msg_dump(const kbus_message_t* msg, int dump_data) {
  (void)guard([&] {
    dump_message(msg, dump_data);
    return 0;
  });
}

}  // extern "C"

namespace {

void print_message(FILE* stream, const kbus_message_t* msg, uint32_t flags) {
  if (stream == nullptr) return;
  if (msg == nullptr) {
    std::fputs("<NULL message>", stream);
    return;
  }
  const char* kind = kind_of(msg);
  const bool bind_event = std::strcmp(kind, "ReplierBindEvent") == 0;
  std::fprintf(stream, "<%s", kind);
  if (!bind_event) {
    std::fprintf(stream, " '%.*s'", static_cast<int>(msg->name_len), kbus_msg_name_ptr(msg));
  }
  if (msg->id.network_id != 0 || msg->id.serial_num != 0) {
    std::fprintf(stream, " id=[%u:%u]", msg->id.network_id, msg->id.serial_num);
  }
  if (msg->to != 0) std::fprintf(stream, " to=%u", msg->to);
  if (msg->from != 0) std::fprintf(stream, " from=%u", msg->from);
  if (msg->orig_from.network_id != 0 || msg->orig_from.local_id != 0) {
    std::fprintf(stream, " orig_from=(%u,%u)", msg->orig_from.network_id, msg->orig_from.local_id);
  }
  if (msg->final_to.network_id != 0 || msg->final_to.local_id != 0) {
    std::fprintf(stream, " final_to=(%u,%u)", msg->final_to.network_id, msg->final_to.local_id);
  }
  if (kbus_msg_is_reply(msg)) {
    std::fprintf(stream, " in_reply_to=[%u:%u]", msg->in_reply_to.network_id,
                 msg->in_reply_to.serial_num);
  }
  if (msg->flags != 0) {
    std::fprintf(stream, " flags=0x%x", msg->flags);
    static const struct {
      uint32_t bit;
      const char* text;
    } kMnemonics[] = {{KBUS_BIT_WANT_A_REPLY, "REQ"}, {KBUS_BIT_WANT_YOU_TO_REPLY, "YOU"},
                      {KBUS_BIT_SYNTHETIC, "SYN"},    {KBUS_BIT_URGENT, "URG"},
                      {KBUS_BIT_ALL_OR_FAIL, "aFL"},  {KBUS_BIT_ALL_OR_WAIT, "aWT"}};
    for (const auto& m : kMnemonics) {
      if (msg->flags & m.bit) std::fprintf(stream, " %s", m.text);
    }
  }
  const auto* data = static_cast<const unsigned char*>(kbus_msg_data_ptr(msg));
  if (msg->data_len > 0 && data != nullptr) {
    std::fputs(" data=", stream);
    uint32_t is_bind = 0, binder = 0;
    char* name = nullptr;
    if (bind_event && kbus_msg_split_bind_event(msg, &is_bind, &binder, &name) == 0) {
      std::fprintf(stream, " [%s '%s' for %u]", is_bind ? "Bind" : "Unbind", name, binder);
      std::free(name);
    } else if ((flags & KBUS_MSG_PRINT_FLAGS_ABBREVIATE) && msg->data_len > 20) {
      print_bytes(stream, data, 20);
      std::fputs("...", stream);
    } else {
      print_bytes(stream, data, msg->data_len);
    }
  }
  std::fputc('>', stream);
}

void dump_message(const kbus_message_t* msg, int dump_data) {
  if (msg == nullptr) {
    std::printf("Message: NULL\n");
    return;
  }
  std::printf("Message: ");
  kbus_msg_print2(stdout, msg, 0);
  std::printf("\n");
  std::printf("  start_guard: %08x\n", msg->start_guard);
  std::printf("  id:          [%u:%u]\n", msg->id.network_id, msg->id.serial_num);
  std::printf("  in_reply_to: [%u:%u]\n", msg->in_reply_to.network_id, msg->in_reply_to.serial_num);
  std::printf("  to:          %u\n", msg->to);
  std::printf("  from:        %u\n", msg->from);
  std::printf("  orig_from:   (%u,%u)\n", msg->orig_from.network_id, msg->orig_from.local_id);
  std::printf("  final_to:    (%u,%u)\n", msg->final_to.network_id, msg->final_to.local_id);
  std::printf("  extra:       %08x\n", msg->extra);
  std::printf("  flags:       %08x\n", msg->flags);
  std::printf("  name_len:    %u\n", msg->name_len);
  std::printf("  data_len:    %u\n", msg->data_len);
  std::printf("  name:        %p\n", static_cast<void*>(msg->name));
  std::printf("  data:        %p\n", msg->data);
  std::printf("  end_guard:   %08x\n", msg->end_guard);
  std::printf("  Message name: '%.*s'\n", static_cast<int>(msg->name_len), kbus_msg_name_ptr(msg));
  const auto* data = static_cast<const unsigned char*>(kbus_msg_data_ptr(msg));
  if (dump_data && msg->data_len > 0 && data != nullptr) {
    std::printf("  Data (%u bytes):\n", msg->data_len);
    for (uint32_t i = 0; i < msg->data_len; i += 16) {
      std::printf("    %04x:", i);
      for (uint32_t j = i; j < i + 16 && j < msg->data_len; ++j) std::printf(" %02x", data[j]);
      std::printf("  ");
      for (uint32_t j = i; j < i + 16 && j < msg->data_len; ++j) {
        std::putchar(std::isprint(data[j]) ? data[j] : '.');
      }
      std::printf("\n");
    }
  }
  if (kbus_msg_is_entire(msg)) {
    std::printf("  final end_guard: %08x\n",
                *kbus_msg_end_ptr(
                    reinterpret_cast<kbus_entire_message_t*>(const_cast<kbus_message_t*>(msg))));
  }
}

}  // namespace
