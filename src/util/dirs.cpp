#include "util/dirs.hpp"

#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace kbus::util {

std::string bus_dir_for(int bus, const std::string& system_dir) {
  if (const char* d = std::getenv("KBUS_DIR"); d != nullptr && *d != '\0') return d;
  if (::geteuid() == 0) return system_dir;
  const char* xdg = std::getenv("XDG_RUNTIME_DIR");
  const std::string user = xdg != nullptr && *xdg != '\0'
                               ? std::string(xdg) + "/kbus"
                               : "/tmp/kbus-" + std::to_string(::geteuid());
  if (bus >= 0) {
    const auto is_socket = [&](const std::string& dir) {
      struct stat st {};
      return ::stat((dir + "/kbus" + std::to_string(bus)).c_str(), &st) == 0 &&
             S_ISSOCK(st.st_mode);
    };
    if (!is_socket(user) && is_socket(system_dir)) return system_dir;
  }
  return user;
}

std::string strip_slashes(const std::string& dir) {
  std::string d = dir;
  while (d.size() > 1 && d.back() == '/') d.pop_back();
  return d;
}

std::string parent_dir(const std::string& dir) {
  const std::string d = strip_slashes(dir);
  const auto slash = d.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return strip_slashes(d.substr(0, slash));
}

std::string describe_uid(uid_t uid) {
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* found = nullptr;
  std::string s = "uid " + std::to_string(uid);
  if (::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) == 0 && found != nullptr)
    s += std::string(" (") + found->pw_name + ")";
  return s;
}

namespace {

const char* kind_of(mode_t mode) {
  if (S_ISLNK(mode)) return "a symbolic link";
  if (S_ISREG(mode)) return "a regular file";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode) || S_ISBLK(mode)) return "a device";
  return "not a directory";
}

std::string octal(mode_t mode) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0%o", static_cast<unsigned>(mode & 07777));
  return buf;
}

}  // namespace

// Keep the texts in step with python/kbus/ksock.py bus_dir_problem().
std::string judge_bus_dir(const std::string& dir, const struct stat& st,
                          const struct stat* parent, uid_t euid) {
  const std::string head = "unsafe bus directory " + dir + ": ";
  const std::string own = "set KBUS_DIR (kbusd: --dir) to a directory of your own";
  const std::string expected =
      euid == 0 ? "root" : describe_uid(euid) + " or root";
  if (!S_ISDIR(st.st_mode)) {
    return head + "it is " + kind_of(st.st_mode) + " (owner " + describe_uid(st.st_uid) +
           "), expected a directory owned by " + expected + ": remove it, or " + own;
  }
  if (st.st_uid != euid && st.st_uid != 0) {
    const bool given_by_root = parent != nullptr && parent->st_uid == 0 &&
                               (parent->st_mode & (S_IWGRP | S_IWOTH)) == 0;
    if (!given_by_root) {
      return head + "it is owned by " + describe_uid(st.st_uid) + ", expected " + expected +
             " (or a directory that root made for its owner, in a parent only root may "
             "write): remove it, or " + own;
    }
  }
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    return head + "it is writable by " +
           ((st.st_mode & S_IWOTH) != 0 ? std::string("others") : std::string("its group")) +
           " (mode " + octal(st.st_mode) +
           "), so they could replace the bus sockets: chmod go-w " + dir + ", or " + own;
  }
  return "";
}

std::string bus_dir_problem(const std::string& dir_in) {
  const std::string dir = strip_slashes(dir_in);
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) return "";  // missing: ENOENT at open
  const uid_t euid = ::geteuid();
  // The parent matters only for a directory of another owner.
  struct stat parent {};
  const bool have_parent = st.st_uid != euid && st.st_uid != 0 &&
                           ::stat(parent_dir(dir).c_str(), &parent) == 0;
  return judge_bus_dir(dir, st, have_parent ? &parent : nullptr, euid);
}

}  // namespace kbus::util
