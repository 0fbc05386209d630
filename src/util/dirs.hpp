// util/dirs.hpp - where the bus sockets live (docs/protocol.md §1;
// docs/decisions.md D21, D24), and whether that directory is safe to use
// (docs/reliability.md §9; docs/decisions.md D27).
//
// One rule for kbusd and every client (C++, C, the CLI, limpets; Python's
// kbus.ksock.kbus_dir() says the same):
//   - $KBUS_DIR if set and not empty, used as given;
//   - else the system directory /run/kbus for root (effective uid 0);
//   - else the user's directory: $XDG_RUNTIME_DIR/kbus if XDG_RUNTIME_DIR is
//     set and not empty, else /tmp/kbus-<effective uid>;
//   - a client asking for bus N (bus_dir_for(N)) whose user directory has
//     no socket kbusN while the system directory has one gets the system
//     directory: the system bus (kbusd.service) is found by every user.
// kbusd uses default_bus_dir() (no bus number: no fallback).
//
// Whoever can create entries in the directory can put a daemon of their
// own behind DIR/kbusN, or keep kbusd from starting there. So kbusd and
// every client (Python's kbus.ksock.bus_dir_problem() states the same rule)
// use a directory only if (lstat, never following a symbolic link):
//   - it is a directory, not a symbolic link or anything else;
//   - nobody but its owner may write to it (no group or other write bit);
//   - its owner is the effective uid or root, or else its parent directory
//     is owned by root and writable by nobody else - then only root can
//     have made it or handed it over (/run/kbus given to the service user
//     by systemd's RuntimeDirectory= or by kbusd --user).
// A directory that does not exist is no problem here (kbusd creates it, a
// client's open fails with ENOENT).
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <string>

namespace kbus::util {

inline constexpr const char* kSystemBusDir = "/run/kbus";

// The directory for bus `bus` (< 0: any bus, no fallback); `system_dir` is
// /run/kbus except in tests.
std::string bus_dir_for(int bus, const std::string& system_dir = kSystemBusDir);

// The directory with no bus in mind: kbusd's default --dir.
inline std::string default_bus_dir() { return bus_dir_for(-1); }

// `dir` without trailing slashes ("/" stays "/"): "dir/" would make lstat
// and O_NOFOLLOW follow a symbolic link named dir.
std::string strip_slashes(const std::string& dir);
// The directory holding `dir` ("." for a bare name).
std::string parent_dir(const std::string& dir);

// The rule above, judged on what lstat (or fstat of an open descriptor)
// said of `dir` and stat of its parent (nullptr: unknown, then a directory
// of another owner is refused), for a process of effective uid `euid`.
// "" if safe; else one line that names the path, what was found, what was
// expected and the fix.
std::string judge_bus_dir(const std::string& dir, const struct stat& st,
                          const struct stat* parent, uid_t euid);

// lstat(dir) and stat of its parent, judged for this process: "" if `dir`
// is safe or does not exist, else the problem (as judge_bus_dir).
std::string bus_dir_problem(const std::string& dir);

// "uid 1001 (alice)", or "uid 1001" for a uid with no name.
std::string describe_uid(uid_t uid);

}  // namespace kbus::util
