#include "protocol/frames.hpp"

namespace kbus::protocol {

void append_request(std::string& out, Op op, std::string_view payload) {
  put_u32(out, static_cast<std::uint32_t>(4 + payload.size()));
  put_u32(out, static_cast<std::uint32_t>(op));
  out.append(payload);
}

void append_reply(std::string& out, std::int32_t status, std::string_view payload) {
  put_u32(out, static_cast<std::uint32_t>(4 + payload.size()));
  put_u32(out, static_cast<std::uint32_t>(status));
  out.append(payload);
}

std::size_t begin_frame(std::string& out, std::uint32_t op_or_status) {
  std::size_t at = out.size();
  put_u32(out, 0);
  put_u32(out, op_or_status);
  return at;
}

void end_frame(std::string& out, std::size_t frame_offset) {
  util::put_u32_at(out.data() + frame_offset,
                   static_cast<std::uint32_t>(out.size() - frame_offset - 4));
}

void set_frame_word(std::string& out, std::size_t frame_offset, std::uint32_t op_or_status) {
  util::put_u32_at(out.data() + frame_offset + 4, op_or_status);
}

Parse parse_frame(std::string_view buf, Frame& f, std::size_t& consumed, std::uint32_t max_len) {
  if (buf.size() < 4) return Parse::kIncomplete;
  std::uint32_t len = get_u32(buf.data());
  if (len < 4 || len > max_len) return Parse::kBadLength;
  if (buf.size() - 4 < len) return Parse::kIncomplete;
  f.word = get_u32(buf.data() + 4);
  f.payload = buf.substr(8, len - 4);
  consumed = 4 + std::size_t{len};
  return Parse::kOk;
}

const char* op_name(std::uint32_t op) noexcept {
  switch (static_cast<Op>(op)) {
    case Op::kReset: return "RESET";
    case Op::kBind: return "BIND";
    case Op::kUnbind: return "UNBIND";
    case Op::kKsockId: return "KSOCKID";
    case Op::kReplier: return "REPLIER";
    case Op::kNextMsg: return "NEXTMSG";
    case Op::kLenLeft: return "LENLEFT";
    case Op::kSend: return "SEND";
    case Op::kDiscard: return "DISCARD";
    case Op::kLastSent: return "LASTSENT";
    case Op::kMaxMsgs: return "MAXMSGS";
    case Op::kNumMsgs: return "NUMMSGS";
    case Op::kUnrepliedTo: return "UNREPLIEDTO";
    case Op::kMsgOnlyOnce: return "MSGONLYONCE";
    case Op::kVerbose: return "VERBOSE";
    case Op::kNewDevice: return "NEWDEVICE";
    case Op::kReportReplierBinds: return "REPORTREPLIERBINDS";
    case Op::kMaxMsgSize: return "MAXMSGSIZE";
    case Op::kHello: return "HELLO";
    case Op::kWrite: return "WRITE";
    case Op::kRead: return "READ";
    case Op::kSendMsg: return "SENDMSG";
    case Op::kNextRead: return "NEXTREAD";
    case Op::kWaitRead: return "WAITREAD";
    case Op::kBindings: return "BINDINGS";
    case Op::kStats: return "STATS";
    case Op::kRequest: return "REQUEST";
    case Op::kSendWait: return "SENDWAIT";
    case Op::kSendBatch: return "SENDBATCH";
    case Op::kReadBatch: return "READBATCH";
    case Op::kPollFd: return "POLLFD";
    case Op::kMonitor: return "MONITOR";
    case Op::kBindingsPart: return "BINDINGSPART";
    case Op::kStatsPart: return "STATSPART";
    case Op::kShmRing: return "SHMRING";
  }
  return "unknown";
}

}  // namespace kbus::protocol
