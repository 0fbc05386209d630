// cppkbus_dev.hpp - a C++ binding over the /dev/kbusN descriptor, written as
// the original cppkbus (KBUS-SPEC.md §12.3) used the device: exception-free
// calls returning 0 / 1 or -errno, each one ioctl(), read(), write() or
// poll() on the Ksock's file descriptor. It stands in for cppkbus in the
// preload tests (tests/preload); only what they use is here.
#pragma once

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "libkbus/kbus_defns.h"

namespace cppkbus {

struct PollFlags {
  enum Enum : uint32_t { Receive = 1, Transmit = 2, Error = 4 };
};

struct MessageFlags {
  enum Enum : uint32_t {
    WantReply = KBUS_BIT_WANT_A_REPLY,
    WantYouToReply = KBUS_BIT_WANT_YOU_TO_REPLY,
    Synthetic = KBUS_BIT_SYNTHETIC,
    Urgent = KBUS_BIT_URGENT,
    AllOrWait = KBUS_BIT_ALL_OR_WAIT,
    AllOrFail = KBUS_BIT_ALL_OR_FAIL,
  };
};

struct MessageId {
  uint32_t mNetworkId = 0;
  uint32_t mSerialNum = 0;
  bool operator==(const MessageId& o) const {
    return mNetworkId == o.mNetworkId && mSerialNum == o.mSerialNum;
  }
};

// A message, held in entire form (the bytes read from or written to the
// device).
class Message {
 public:
  Message() = default;  // empty, for Receive
  Message(const std::string& name, const std::string& data = {}, uint32_t flags = 0,
          bool isRequest = false) {
    Build(name, data, flags | (isRequest ? MessageFlags::WantReply : 0u));
  }
  bool IsEmpty() const { return mBytes.empty(); }
  const kbus_message_header& Header() const {
    return *reinterpret_cast<const kbus_message_header*>(mBytes.data());
  }
  std::string GetName() const {
    if (IsEmpty()) return {};
    return std::string(kbus_msg_name_ptr(&Header()), Header().name_len);
  }
  std::string GetData() const {
    if (IsEmpty()) return {};
    return std::string(static_cast<const char*>(kbus_msg_data_ptr(&Header())), Header().data_len);
  }
  uint32_t GetFlags() const { return IsEmpty() ? 0 : Header().flags; }
  bool IsRequest() const { return GetFlags() & MessageFlags::WantReply; }
  bool WantsUsToReply() const { return GetFlags() & MessageFlags::WantYouToReply; }
  bool IsReply() const {
    return !IsEmpty() && (Header().in_reply_to.network_id || Header().in_reply_to.serial_num);
  }
  MessageId GetMessageId() const {
    return IsEmpty() ? MessageId{} : MessageId{Header().id.network_id, Header().id.serial_num};
  }
  MessageId GetInReplyTo() const {
    return IsEmpty() ? MessageId{}
                     : MessageId{Header().in_reply_to.network_id, Header().in_reply_to.serial_num};
  }
  uint32_t GetFrom() const { return IsEmpty() ? 0 : Header().from; }
  uint32_t GetTo() const { return IsEmpty() ? 0 : Header().to; }

  // Becomes a Reply to `req` (0, or -EBADMSG unless we were asked to reply).
  int BecomesReplyTo(const Message& req) {
    if (!req.IsRequest() || !req.WantsUsToReply()) return -EBADMSG;
    std::string data = GetData();
    uint32_t flags = GetFlags();
    Build(req.GetName(), data, flags);
    auto& h = *reinterpret_cast<kbus_message_header*>(mBytes.data());
    h.to = req.GetFrom();
    h.in_reply_to = req.Header().id;
    return 0;
  }

  std::vector<char>& Bytes() { return mBytes; }
  const std::vector<char>& Bytes() const { return mBytes; }

 private:
  void Build(const std::string& name, const std::string& data, uint32_t flags) {
    const auto nl = static_cast<uint32_t>(name.size());
    const auto dl = static_cast<uint32_t>(data.size());
    mBytes.assign(KBUS_ENTIRE_MSG_LEN(nl, dl), 0);
    auto* e = reinterpret_cast<kbus_entire_message*>(mBytes.data());
    e->header.start_guard = KBUS_MSG_START_GUARD;
    e->header.end_guard = KBUS_MSG_END_GUARD;
    e->header.name_len = nl;
    e->header.data_len = dl;
    e->header.flags = flags;
    std::memcpy(&e->rest[0], name.data(), nl);
    if (dl) std::memcpy(&e->rest[KBUS_ENTIRE_MSG_DATA_INDEX(nl)], data.data(), dl);
    *kbus_msg_end_ptr(e) = KBUS_MSG_END_GUARD;
  }
  std::vector<char> mBytes;
};

class Ksock {
 public:
  Ksock(uint32_t deviceNumber, int mode = O_RDWR) : mDevice(deviceNumber), mMode(mode) {}
  ~Ksock() { Close(); }
  Ksock(const Ksock&) = delete;
  Ksock& operator=(const Ksock&) = delete;

  int Open() {
    std::string name = "/dev/kbus" + std::to_string(mDevice);
    mFd = ::open(name.c_str(), mMode);
    return mFd < 0 ? -errno : 0;
  }
  int Close() {
    if (mFd < 0) return 0;
    int rv = ::close(mFd);
    mFd = -1;
    return rv < 0 ? -errno : 0;
  }
  bool IsOpen() const { return mFd >= 0; }
  int GetFd(int& fd) const {
    fd = mFd;
    return 0;
  }

  int Bind(const std::string& name, bool asReplier = false) {
    return BindOp(KBUS_IOC_BIND, name, asReplier);
  }
  int Unbind(const std::string& name, bool asReplier = false) {
    return BindOp(KBUS_IOC_UNBIND, name, asReplier);
  }
  int GetId(uint32_t& id) { return Ioc(KBUS_IOC_KSOCKID, &id); }
  int GetLastMessageId(MessageId& id) {
    kbus_msg_id k{};
    int rv = Ioc(KBUS_IOC_LASTSENT, &k);
    id = {k.network_id, k.serial_num};
    return rv;
  }
  int HowManyMessagesUnread(uint32_t& n) { return Ioc(KBUS_IOC_NUMMSGS, &n); }
  int HowManyMessagesUnrepliedTo(uint32_t& n) { return Ioc(KBUS_IOC_UNREPLIEDTO, &n); }
  int SetMaxUnreadMessages(uint32_t n) { return Ioc(KBUS_IOC_MAXMSGS, &n); }

  // Writes the message and SENDs it.
  int Send(const Message& msg, MessageId* id = nullptr) {
    const auto& b = msg.Bytes();
    std::size_t done = 0;
    while (done < b.size()) {
      ssize_t n = ::write(mFd, b.data() + done, b.size() - done);
      if (n < 0) return -errno;
      done += static_cast<std::size_t>(n);
    }
    kbus_msg_id k{};
    int rv = Ioc(KBUS_IOC_SEND, &k);
    if (rv < 0) return rv;
    if (id) *id = {k.network_id, k.serial_num};
    return 0;
  }
  int SendReply(Message& msg, const Message& inReplyTo, MessageId* id = nullptr) {
    int rv = msg.BecomesReplyTo(inReplyTo);
    return rv < 0 ? rv : Send(msg, id);
  }

  // 1 and the next message, 0 if there is none; msg must be empty.
  int Receive(Message& msg) {
    if (!msg.IsEmpty()) return -EINVAL;
    uint32_t len = 0;
    int rv = Ioc(KBUS_IOC_NEXTMSG, &len);
    if (rv <= 0) return rv;
    auto& b = msg.Bytes();
    b.resize(len);
    std::size_t done = 0;
    while (done < len) {
      ssize_t n = ::read(mFd, b.data() + done, len - done);
      if (n < 0) return -errno;
      if (n == 0) return -EBADMSG;
      done += static_cast<std::size_t>(n);
    }
    return 1;
  }

  // 1 with outFlags set, 0 on timeout (0 ms: poll; < 0: forever), or -errno.
  int WaitForMessage(uint32_t& outFlags, uint32_t inFlags = PollFlags::Receive,
                     int timeout_ms = -1) {
    pollfd p{mFd, 0, 0};
    if (inFlags & PollFlags::Receive) p.events |= POLLIN;
    if (inFlags & PollFlags::Transmit) p.events |= POLLOUT;
    int rv;
    do {
      rv = ::poll(&p, 1, timeout_ms);
    } while (rv < 0 && errno == EINTR);
    if (rv < 0) return -errno;
    outFlags = 0;
    if (p.revents & POLLIN) outFlags |= PollFlags::Receive;
    if (p.revents & POLLOUT) outFlags |= PollFlags::Transmit;
    if (p.revents & (POLLERR | POLLHUP)) outFlags |= PollFlags::Error;
    return rv > 0 ? 1 : 0;
  }

 private:
  int Ioc(unsigned long cmd, void* arg) {
    int rv = ::ioctl(mFd, cmd, arg);
    return rv < 0 ? -errno : rv;
  }
  int BindOp(unsigned long cmd, const std::string& name, bool asReplier) {
    kbus_bind_request req{};
    req.is_replier = asReplier ? 1 : 0;
    req.name_len = static_cast<uint32_t>(name.size());
    req.name = const_cast<char*>(name.data());
    return Ioc(cmd, &req);
  }

  uint32_t mDevice;
  int mMode;
  int mFd = -1;
};

}  // namespace cppkbus
