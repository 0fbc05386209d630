// daemon/access.hpp - who may open a bus (docs/reliability.md §5).
//
// The original KBUS left this to the file modes of /dev/kbusN. kbusd does
// the same with its socket files: each bus socket gets a configured owner,
// group and mode, and connect() is then refused by the kernel with EACCES
// for anyone the mode does not admit. A daemon started as root can drop to
// an ordinary user once its sockets exist (it keeps the directory, which it
// hands to that user so that NEWDEVICE can still create sockets).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

namespace kbus::daemon {

// A user by name or number: its uid and primary gid; nullopt if unknown.
struct UserIds {
  uid_t uid;
  gid_t gid;
  std::string name;
};
std::optional<UserIds> lookup_user(const std::string& name_or_id);
// A group by name or number; nullopt if unknown.
std::optional<gid_t> lookup_group(const std::string& name_or_id);
// Whether the user `uid` (primary or supplementary groups) is in group
// `gid` (docs/reliability.md §4, --privileged-group). False if unknown.
bool user_in_group(uid_t uid, gid_t gid);
// "0660" -> 0660; nullopt unless an octal number within 07777.
std::optional<std::uint32_t> parse_mode(const std::string& octal);

struct SocketAccess {
  std::uint32_t mode = 0666;
  uid_t owner = static_cast<uid_t>(-1);  // -1: leave as created
  gid_t group = static_cast<gid_t>(-1);
};

// Everything is set through descriptors, never by path (a path may lead
// elsewhere by the time it is used: docs/reliability.md §9).
// The mode of a socket, before bind(): the socket file takes it (less the
// umask). False (errno set) on failure.
bool set_socket_mode(int sock, const SocketAccess& a);
// The owner and group of the socket DIR/`name`, just bound, through the
// directory's descriptor and without following a link. False (errno set).
bool set_socket_owner(int dir_fd, const std::string& name, const SocketAccess& a);

// The mode kbusd gives a socket directory it creates: 0700, plus search
// permission (never read or write) for the group and for others when the
// sockets' mode admits them (and for others when --owner gives the sockets
// to another user), so that whoever the sockets admit can reach them.
mode_t directory_mode_for(const SocketAccess& a, uid_t daemon_uid);

// Drops root for good: hands the directory `dir_fd` (named `dir` in
// messages) to the user, with the sockets' group `extra_group` if there is
// one (else the user's group), keeps `extra_group` as a supplementary group
// (so later sockets can still be given it), then setgid/setuid. Prints the
// reason and returns false on failure. A daemon already running as that
// user succeeds without changing anything.
bool drop_privileges(const UserIds& user, gid_t extra_group, int dir_fd, const std::string& dir);

}  // namespace kbus::daemon
