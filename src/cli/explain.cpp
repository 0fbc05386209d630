// cli/explain.cpp - see explain.hpp.
#include "cli/explain.hpp"

#include <cerrno>
#include <cstring>

#include "core/names.hpp"
#include "kbus/errors.hpp"

namespace kbus::cli {
namespace {

std::string quoted(const std::string& name) {
  constexpr std::size_t kShow = 60;
  if (name.size() <= kShow) return "'" + name + "'";
  return "'" + name.substr(0, kShow) + "...'";
}

std::string bus_text(int bus) { return "bus " + std::to_string(bus); }

std::string generic(int err) {
  std::string meaning = kbus_meaning(err);
  if (meaning.empty()) meaning = std::strerror(err);
  return meaning;
}

std::string body(int err, const Context& c) {
  using Step = Context::Step;
  switch (err) {
    case ENOENT:
      if (c.step == Step::kOpen) {
        return "no " + bus_text(c.bus) + " at " + c.path +
               ": is kbusd running? Start it (kbusd --dir DIR, --devices N for buses 0..N-1), "
               "or point --dir or $KBUS_DIR at the directory it serves";
      }
      break;
    case ECONNREFUSED:
      if (c.step == Step::kOpen) {
        return c.path + " exists but nobody serves it (a kbusd that died?): restart kbusd";
      }
      return "the Ksock this Reply is for is not waiting for it (already answered, or not sent "
             "to this Ksock)";
    case EPERM:
      if (c.step == Step::kOpen) {
        return "refused to use " + c.path +
               ": its directory is not safe (the line above says why and how to fix it; "
               "docs/reliability.md)";
      }
      break;
    case EACCES:
      if (c.step == Step::kOpen) {
        return "not allowed to open " + c.path +
               ": kbusd's --mode/--group decide who may use a bus (docs/reliability.md)";
      }
      break;
    case EBADMSG:
      if (c.step == Step::kBind || c.step == Step::kSend) {
        std::string problem = core::name_problem(c.name, c.step == Step::kSend);
        if (!problem.empty()) return quoted(c.name) + " is not a valid message name: " + problem;
        if (c.step == Step::kBind && c.replier && c.name == "$.KBUS.ReplierBindEvent") {
          return "$.KBUS.ReplierBindEvent is sent by KBUS itself: bind it as a listener, not a "
                 "replier";
        }
      }
      break;
    case ENAMETOOLONG:
      return quoted(c.name) + " is " + std::to_string(c.name.size()) +
             " bytes long; a name may have at most 1000";
    case EMSGSIZE:
      if (c.step == Step::kSend && c.limit) {
        std::string s = "the message is " + std::to_string(c.entire_len) +
                        " bytes (header, name and data); " + bus_text(c.bus) + " takes at most " +
                        std::to_string(*c.limit);
        if (c.abs_limit && c.entire_len <= *c.abs_limit) {
          s += ": raise the limit with `kbus max-size -b " + std::to_string(c.bus) + " " +
               std::to_string(c.entire_len) + "` (up to " + std::to_string(*c.abs_limit) + ")";
        } else if (c.abs_limit) {
          s += ", and no bus of this kbusd takes more than " + std::to_string(*c.abs_limit) +
               " (kbusd --abs-max-msg-size)";
        }
        return s;
      }
      break;
    case EADDRNOTAVAIL:
      if (c.step == Step::kSend && c.request) {
        return "nobody is bound as replier for " + quoted(c.name) + " on " + bus_text(c.bus) +
               " (see `kbus bindings -b " + std::to_string(c.bus) + "`)";
      }
      break;
    case EADDRINUSE:
      if (c.step == Step::kBind) {
        std::string s = "another Ksock already replies to " + quoted(c.name) + " on " +
                        bus_text(c.bus) + " (one replier per name)";
        if (!c.holder.empty()) s += ": " + c.holder;
        return s;
      }
      break;
    case EBUSY:
      if (c.step == Step::kSend) {
        return "a recipient's queue is full (for a Request: the replier's); try again once it "
               "has read, or send with --all-or-wait";
      }
      break;
    case EAGAIN:
      if (c.step == Step::kBind) {
        return "a listener of $.KBUS.ReplierBindEvent has a full queue, so this bind cannot be "
               "reported; try again once it has read";
      }
      break;
    case ECONNRESET:
      return "kbusd went away (the bus socket " + c.path + " closed): it stopped or crashed";
    default:
      break;
  }
  return generic(err);
}

}  // namespace

std::string explain(int err, const Context& c) { return errno_name(err) + ": " + body(err, c); }

}  // namespace kbus::cli
