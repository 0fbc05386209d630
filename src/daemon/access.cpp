// daemon/access.cpp - socket owners, groups and modes, and dropping root.
// See access.hpp. Nothing here runs after start-up except
// apply_socket_access (for NEWDEVICE).
#include "daemon/access.hpp"

#include <grp.h>
#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace kbus::daemon {

bool user_in_group(uid_t uid, gid_t gid) {
  long size = ::sysconf(_SC_GETPW_R_SIZE_MAX);
  std::vector<char> buf(size > 0 ? static_cast<std::size_t>(size) : 16384);
  passwd pw{};
  passwd* found = nullptr;
  if (::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr)
    return false;
  if (pw.pw_gid == gid) return true;
  int n = 64;
  std::vector<gid_t> groups(static_cast<std::size_t>(n));
  if (::getgrouplist(pw.pw_name, pw.pw_gid, groups.data(), &n) < 0) {
    groups.resize(static_cast<std::size_t>(n));
    if (::getgrouplist(pw.pw_name, pw.pw_gid, groups.data(), &n) < 0) return false;
  }
  groups.resize(static_cast<std::size_t>(n));
  return std::find(groups.begin(), groups.end(), gid) != groups.end();
}

namespace {

std::optional<unsigned long> parse_number(const std::string& s, int base) {
  if (s.empty()) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const unsigned long v = std::strtoul(s.c_str(), &end, base);
  if (errno != 0 || *end != '\0' || s[0] == '-') return std::nullopt;
  return v;
}

}  // namespace

std::optional<UserIds> lookup_user(const std::string& name_or_id) {
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* found = nullptr;
  if (auto n = parse_number(name_or_id, 10)) {
    ::getpwuid_r(static_cast<uid_t>(*n), &pw, buf.data(), buf.size(), &found);
    if (!found) return UserIds{static_cast<uid_t>(*n), static_cast<gid_t>(*n), name_or_id};
  } else {
    ::getpwnam_r(name_or_id.c_str(), &pw, buf.data(), buf.size(), &found);
    if (!found) return std::nullopt;
  }
  return UserIds{found->pw_uid, found->pw_gid, found->pw_name};
}

std::optional<gid_t> lookup_group(const std::string& name_or_id) {
  if (auto n = parse_number(name_or_id, 10)) return static_cast<gid_t>(*n);
  std::vector<char> buf(16384);
  group gr{};
  group* found = nullptr;
  ::getgrnam_r(name_or_id.c_str(), &gr, buf.data(), buf.size(), &found);
  if (!found) return std::nullopt;
  return found->gr_gid;
}

std::optional<std::uint32_t> parse_mode(const std::string& octal) {
  auto v = parse_number(octal, 8);
  if (!v || *v > 07777) return std::nullopt;
  return static_cast<std::uint32_t>(*v);
}

bool set_socket_mode(int sock, const SocketAccess& a) {
  return ::fchmod(sock, static_cast<mode_t>(a.mode)) == 0;
}

bool set_socket_owner(int dir_fd, const std::string& name, const SocketAccess& a) {
  if (a.owner == static_cast<uid_t>(-1) && a.group == static_cast<gid_t>(-1)) return true;
  // After dropping root only the group can still be chosen (the owner is
  // the daemon's user then): ask for what is possible.
  const uid_t owner = ::geteuid() == 0 ? a.owner : static_cast<uid_t>(-1);
  return ::fchownat(dir_fd, name.c_str(), owner, a.group, AT_SYMLINK_NOFOLLOW) == 0;
}

mode_t directory_mode_for(const SocketAccess& a, uid_t daemon_uid) {
  mode_t mode = 0700;
  if ((a.mode & 0070) != 0) mode |= 0010;
  if ((a.mode & 0007) != 0) mode |= 0001;
  if (a.owner != static_cast<uid_t>(-1) && a.owner != daemon_uid) mode |= 0001;
  return mode;
}

bool drop_privileges(const UserIds& user, gid_t extra_group, int dir_fd, const std::string& dir) {
  if (::geteuid() == user.uid && ::getegid() == user.gid) return true;
  if (::geteuid() != 0) {
    std::fprintf(stderr, "kbusd: --user %s needs root\n", user.name.c_str());
    return false;
  }
  const gid_t dir_group = extra_group != static_cast<gid_t>(-1) ? extra_group : user.gid;
  if (::fchown(dir_fd, user.uid, dir_group) != 0) {
    std::fprintf(stderr, "kbusd: cannot give %s to %s: %s\n", dir.c_str(), user.name.c_str(),
                 std::strerror(errno));
    return false;
  }
  std::vector<gid_t> groups = {user.gid};
  if (extra_group != static_cast<gid_t>(-1) && extra_group != user.gid)
    groups.push_back(extra_group);
  if (::setgroups(groups.size(), groups.data()) != 0 || ::setgid(user.gid) != 0 ||
      ::setuid(user.uid) != 0) {
    std::fprintf(stderr, "kbusd: cannot become %s: %s\n", user.name.c_str(), std::strerror(errno));
    return false;
  }
  if (user.uid != 0 && ::setuid(0) == 0) {  // paranoia: it must be for good
    std::fprintf(stderr, "kbusd: could regain root after dropping it\n");
    return false;
  }
  return true;
}

}  // namespace kbus::daemon
