// capi/limpet_api.cpp - the functions of <libkbus/limpet.h> (KBUS-SPEC.md
// §10.7), over the limpet core of src/limpet.
//
// Model: a kbus_limpet_context is a kbus::limpet::LimpetRules - the very
// object kbus's own limpet (Limpet, kbus-limpet) decides with - plus the
// kbus_ksock_t it works on and the verbosity. Each amend function turns
// the C message into a kbus::Message (capi/translate.hpp), asks the rules,
// and writes the amended header fields back; name and data are never
// touched. Where the rules act on the bus (proxy BIND/UNBIND, REPLIER,
// answering a Request they refuse) they do it through KsockOps, a BusOps
// over the C API's own Ksock, with the Ksock's entry held as every other
// C call does. As everywhere in the C API, `guard` keeps exceptions out of
// C, and NULL pointers are -EFAULT.
//
// Proxy BIND/UNBIND that met EAGAIN (a full bind-event listener) are kept
// by the rules and retried at the start of each later amend call on the
// context, in order (the runner of kbus's own limpet retries them from its
// loop; a C program has only these calls).
#include <arpa/inet.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>
#include <string>

#include "capi/ksock_table.hpp"
#include "capi/translate.hpp"
#include "libkbus/limpet.h"
#include "limpet/limpet.hpp"

using kbus::Errc;
using kbus::Message;
using kbus::capi::guard;
using kbus::capi::KsockEntry;
using kbus::capi::KsockTable;
using kbus::capi::to_c_result;
using kbus::limpet::LimpetRules;
using kbus::limpet::LogLevel;

namespace {

// The rules' view of the C API's Ksock (its entry is held by the caller).
class KsockOps final : public kbus::limpet::BusOps {
 public:
  KsockOps(kbus::Ksock& k, std::uint32_t id) : k_(k), id_(id) {}
  std::uint32_t ksock_id() const override { return id_; }
  kbus::Result<void> bind(std::string_view name, bool replier) override {
    return k_.try_bind(name, replier);
  }
  kbus::Result<void> unbind(std::string_view name, bool replier) override {
    return k_.try_unbind(name, replier);
  }
  kbus::Result<std::optional<std::uint32_t>> find_replier(std::string_view name) override {
    return k_.try_find_replier(name);
  }
  kbus::Result<kbus::MessageId> send(const Message& m) override { return k_.try_send_msg(m); }
  kbus::Result<bool> only_once(bool on) override {
    return k_.try_only_once(on ? kbus::Toggle::on : kbus::Toggle::off);
  }
  kbus::Result<bool> report_replier_binds() override {
    return k_.try_report_replier_binds(kbus::Toggle::on);
  }
  kbus::Result<std::uint32_t> set_max_messages(std::uint32_t n) override {
    return k_.try_set_max_messages(n);
  }

 private:
  kbus::Ksock& k_;
  std::uint32_t id_;
};

// Runs f(ops) with the entry of `ksock` locked; -EBADF if it is not open.
template <class F>
int with_ops(kbus_ksock_t ksock, std::uint32_t ksock_id, F&& f) {
  auto e = KsockTable::instance().find(ksock);
  if (!e) return -EBADF;
  std::lock_guard<std::mutex> lk(e->mu);
  if (!e->ksock.is_open()) return -EBADF;
  KsockOps ops(e->ksock, ksock_id);
  return f(ops);
}

bool is_bind_event(const kbus_message_t* msg) {
  if (!msg || msg->name_len != sizeof(KBUS_MSG_NAME_REPLIER_BIND_EVENT) - 1) return false;
  const char* name = kbus_msg_name_ptr(msg);
  return name && std::memcmp(name, KBUS_MSG_NAME_REPLIER_BIND_EVENT, msg->name_len) == 0;
}

// The three leading u32 of bind event data through `conv`, in place.
void convert_bind_event(kbus_message_t* msg, std::uint32_t (*conv)(std::uint32_t)) {
  if (!is_bind_event(msg) || msg->data_len < 12) return;
  auto* data = static_cast<unsigned char*>(kbus_msg_data_ptr(msg));
  if (!data) return;
  for (int i = 0; i < 3; ++i) {
    std::uint32_t w;
    std::memcpy(&w, data + 4 * i, 4);
    w = conv(w);
    std::memcpy(data + 4 * i, &w, 4);
  }
}

std::uint32_t to_net(std::uint32_t v) { return htonl(v); }
std::uint32_t from_net(std::uint32_t v) { return ntohl(v); }

}  // namespace

struct kbus_limpet_context {
  kbus_limpet_context(kbus_ksock_t k, std::uint32_t id, std::uint32_t net, std::uint32_t v)
      : ksock(k), ksock_id(id), verbosity(v),
        rules(net, [this](LogLevel level, const std::string& text) { log(level, text); }) {}

  void log(LogLevel level, const std::string& text) const {
    if (verbosity < static_cast<std::uint32_t>(level) || verbosity == 0) return;
    std::FILE* out = level == LogLevel::kError ? stderr : stdout;
    std::fprintf(out, "limpet %u: %s\n", rules.network_id(), text.c_str());
    std::fflush(out);
  }

  kbus_ksock_t ksock;
  std::uint32_t ksock_id;
  std::uint32_t verbosity;
  LimpetRules rules;
};

extern "C" {

void kbus_serialise_message_header(const kbus_message_t* msg,
                                   uint32_t serial_buf[KBUS_SERIALISED_HDR_LEN]) {
  if (!msg || !serial_buf) return;
  const std::uint32_t words[KBUS_SERIALISED_HDR_LEN] = {
      msg->start_guard,        msg->id.network_id,        msg->id.serial_num,
      msg->in_reply_to.network_id, msg->in_reply_to.serial_num, msg->to,
      msg->from,               msg->orig_from.network_id, msg->orig_from.local_id,
      msg->final_to.network_id, msg->final_to.local_id,   msg->extra,
      msg->flags,              msg->name_len,             msg->data_len,
      msg->end_guard};
  for (int i = 0; i < KBUS_SERIALISED_HDR_LEN; ++i) serial_buf[i] = htonl(words[i]);
}

int kbus_unserialise_message_header(const uint32_t serial_buf[KBUS_SERIALISED_HDR_LEN],
                                    kbus_message_t* msg) {
  if (!msg || !serial_buf) return -EFAULT;
  std::uint32_t w[KBUS_SERIALISED_HDR_LEN];
  for (int i = 0; i < KBUS_SERIALISED_HDR_LEN; ++i) w[i] = ntohl(serial_buf[i]);
  std::memset(msg, 0, sizeof *msg);
  msg->start_guard = w[0];
  msg->id.network_id = w[1];
  msg->id.serial_num = w[2];
  msg->in_reply_to.network_id = w[3];
  msg->in_reply_to.serial_num = w[4];
  msg->to = w[5];
  msg->from = w[6];
  msg->orig_from.network_id = w[7];
  msg->orig_from.local_id = w[8];
  msg->final_to.network_id = w[9];
  msg->final_to.local_id = w[10];
  msg->extra = w[11];
  msg->flags = w[12];
  msg->name_len = w[13];
  msg->data_len = w[14];
  msg->end_guard = w[15];
  msg->name = nullptr;
  msg->data = nullptr;
  if (msg->start_guard != KBUS_MSG_START_GUARD || msg->end_guard != KBUS_MSG_END_GUARD) {
    return -EINVAL;
  }
  return 0;
}

void kbus_limpet_ReplierBindEvent_hton(kbus_message_t* msg) { convert_bind_event(msg, to_net); }

void kbus_limpet_ReplierBindEvent_ntoh(kbus_message_t* msg) { convert_bind_event(msg, from_net); }

int kbus_limpet_new_context(kbus_ksock_t ksock, uint32_t network_id, uint32_t other_network_id,
                            const char* message_name, uint32_t verbosity,
                            kbus_limpet_context_t** context) {
  return guard([&]() -> int {
    if (!context) return -EFAULT;
    *context = nullptr;
    if (!message_name || std::strlen(message_name) < 3) return -EBADMSG;
    if (network_id == 0 || other_network_id == 0 || network_id == other_network_id) {
      return -EINVAL;
    }
    auto e = KsockTable::instance().find(ksock);
    if (!e) return -EBADF;
    std::lock_guard<std::mutex> lk(e->mu);
    if (!e->ksock.is_open()) return -EBADF;
    auto* ctx = new (std::nothrow)
        kbus_limpet_context(ksock, e->ksock.id(), network_id, verbosity);
    if (!ctx) return -ENOMEM;
    KsockOps ops(e->ksock, ctx->ksock_id);
    ctx->rules.link_up(other_network_id);
    const kbus::limpet::Logger logger = [ctx](LogLevel level, const std::string& text) {
      ctx->log(level, text);
    };
    // (a message_name KBUS refuses fails at its BIND, with -EBADMSG)
    if (auto err = kbus::limpet::set_up_ksock(ops, message_name, std::nullopt, logger)) {
      // Undo what was done before the failing step (§10.2-2 order:
      // MSGONLYONCE, BIND name, BIND $.KBUS.ReplierBindEvent), so that no
      // binding is left behind.
      if (err->operation != "MSGONLYONCE") {
        if (err->operation == "BIND $.KBUS.ReplierBindEvent") {
          (void)e->ksock.try_unbind(message_name, false);
        }
        (void)e->ksock.try_only_once(kbus::Toggle::off);
      }
      ctx->log(LogLevel::kError, err->operation + ": " + kbus::errno_name(to_errno(err->error)));
      delete ctx;
      return to_c_result(err->error);
    }
    *context = ctx;
    return 0;
  });
}

void kbus_limpet_set_verbosity(kbus_limpet_context_t* context, uint32_t verbosity) {
  if (context) context->verbosity = verbosity;
}

void kbus_limpet_free_context(kbus_limpet_context_t** context) {
  if (!context || !*context) return;
  delete *context;
  *context = nullptr;
}

int kbus_limpet_amend_msg_from_kbus(kbus_limpet_context_t* context, kbus_message_t* msg) {
  return guard([&]() -> int {
    if (!context || !msg) return -EFAULT;
    return with_ops(context->ksock, context->ksock_id, [&](KsockOps& ops) -> int {
      context->rules.retry(ops);
      Message m = kbus::capi::message_from_c(*msg);
      if (context->rules.from_bus(m, ops) != LimpetRules::FromBus::kForward) return 1;
      kbus::capi::header_to_c(m.hdr, *msg);
      return 0;
    });
  });
}

int kbus_limpet_amend_msg_to_kbus(kbus_limpet_context_t* context, kbus_message_t* msg,
                                  kbus_message_t** error) {
  return guard([&]() -> int {
    if (!context || !msg || !error) return -EFAULT;
    *error = nullptr;
    return with_ops(context->ksock, context->ksock_id, [&](KsockOps& ops) -> int {
      context->rules.retry(ops);
      Message m = kbus::capi::message_from_c(*msg);
      Message err;
      switch (context->rules.from_peer(m, ops, err)) {
        case LimpetRules::FromPeer::kSend:
          kbus::capi::header_to_c(m.hdr, *msg);
          return 0;
        case LimpetRules::FromPeer::kIgnore:
          return 1;
        case LimpetRules::FromPeer::kErrorToPeer:
          *error = kbus::capi::new_c_entire(err);
          return *error ? 2 : -ENOMEM;
      }
      return -EINVAL;  // not reached: every verdict is handled above
    });
  });
}

int kbus_limpet_could_not_send_to_kbus_msg(kbus_limpet_context_t* context, kbus_message_t* msg,
                                           int errnum, kbus_message_t** error) {
  return guard([&]() -> int {
    if (!context || !msg || !error) return -EFAULT;
    *error = nullptr;
    if (errnum == 0) return -EINVAL;
    const Errc e = static_cast<Errc>(errnum < 0 ? -errnum : errnum);
    return with_ops(context->ksock, context->ksock_id, [&](KsockOps& ops) -> int {
      Message m = kbus::capi::message_from_c(*msg);
      Message err;
      if (context->rules.send_failed(m, e, ops, err) != LimpetRules::FromPeer::kErrorToPeer) {
        return 1;
      }
      *error = kbus::capi::new_c_entire(err);
      return *error ? 0 : -ENOMEM;
    });
  });
}

}  // extern "C"
