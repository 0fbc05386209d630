// daemon/runtime_dir.cpp - see runtime_dir.hpp.
#include "daemon/runtime_dir.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "daemon/daemon.hpp"
#include "util/dirs.hpp"

namespace kbus::daemon {

namespace {

constexpr const char* kLockName = ".kbusd.lock";

const char* kind_of(mode_t mode) {
  if (S_ISLNK(mode)) return "a symbolic link";
  if (S_ISREG(mode)) return "a regular file";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  return "a device";
}

bool same_file(const struct stat& a, const struct stat& b) {
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

}  // namespace

// Missing parents are made 0755 (as mkdir -p would); `path_` itself with
// `create_mode`. An existing directory is left as it is: open() judges it.
bool RuntimeDir::create(mode_t create_mode, bool& created) {
  for (std::size_t i = 1; i < path_.size(); ++i) {
    if (path_[i] != '/') continue;
    const std::string part = path_.substr(0, i);
    if (::mkdir(part.c_str(), 0755) != 0 && errno != EEXIST) {
      log_line("cannot create directory %s: %s", part.c_str(), std::strerror(errno));
      return false;
    }
  }
  created = ::mkdir(path_.c_str(), create_mode) == 0;
  if (!created && errno != EEXIST) {
    log_line("cannot create directory %s: %s", path_.c_str(), std::strerror(errno));
    return false;
  }
  return true;
}

bool RuntimeDir::open(const std::string& dir, mode_t create_mode, gid_t group) {
  path_ = util::strip_slashes(dir);
  bool created = false;
  if (!create(create_mode, created)) return false;
  fd_.reset(::open(path_.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd_) {
    const int err = errno;
    const std::string problem = util::bus_dir_problem(path_);  // a link, a file ...
    if (!problem.empty())
      log_line("%s", problem.c_str());
    else
      log_line("cannot open directory %s: %s", path_.c_str(), std::strerror(err));
    return false;
  }
  // Made by us: exactly the mode asked for (whatever the umask) and the
  // sockets' group, so that those the sockets admit can reach them.
  if (created && (::fchmod(fd_.get(), create_mode) != 0 ||
                  (group != static_cast<gid_t>(-1) && ::fchown(fd_.get(), -1, group) != 0))) {
    log_line("cannot set the mode and group of %s: %s", path_.c_str(), std::strerror(errno));
    return false;
  }
  struct stat st {};
  struct stat parent {};
  if (::fstat(fd_.get(), &st) != 0) {
    log_line("cannot stat %s: %s", path_.c_str(), std::strerror(errno));
    return false;
  }
  const bool have_parent = ::stat(util::parent_dir(path_).c_str(), &parent) == 0;
  if (const std::string problem =
          util::judge_bus_dir(path_, st, have_parent ? &parent : nullptr, ::geteuid());
      !problem.empty()) {
    log_line("%s", problem.c_str());
    return false;
  }
  owner_ = st.st_uid;
  // Bind through /proc/self/fd/N when /proc shows the directory held there.
  const std::string proc = "/proc/self/fd/" + std::to_string(fd_.get());
  struct stat via {};
  if (::stat(proc.c_str(), &via) == 0 && same_file(via, st)) proc_path_ = proc;
  return true;
}

// Opens, checks and locks DIR/.kbusd.lock; lock_fd_ is set only on success,
// so that unlock() never removes a file this kbusd did not lock.
bool RuntimeDir::lock_once(bool& replaced) {
  const std::string lock_path = path_ + "/" + kLockName;
  replaced = false;
  util::Fd fd(::openat(fd_.get(), kLockName,
                       O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0644));
  if (!fd) {
    if (errno == ELOOP) {
      log_line("%s is a symbolic link, not kbusd's lock file: kbusd does not follow it; remove it "
               "(rm %s), or give kbusd another --dir",
               lock_path.c_str(), lock_path.c_str());
    } else {
      log_line("cannot open %s: %s", lock_path.c_str(), std::strerror(errno));
    }
    return false;
  }
  struct stat held {};
  if (::fstat(fd.get(), &held) != 0) {
    log_line("cannot stat %s: %s", lock_path.c_str(), std::strerror(errno));
    return false;
  }
  const uid_t me = ::geteuid();
  std::string problem;
  if (!S_ISREG(held.st_mode))
    problem = std::string("it is ") + kind_of(held.st_mode) + ", not kbusd's lock file";
  else if (held.st_uid != me && held.st_uid != 0 && held.st_uid != owner_)
    problem = "it is owned by " + util::describe_uid(held.st_uid) + ", not by kbusd's user or root";
  else if (held.st_nlink != 1)
    problem = "it has " + std::to_string(held.st_nlink) + " hard links, a lock file has one";
  if (!problem.empty()) {
    log_line("%s: %s: remove it (rm %s), or give kbusd another --dir", lock_path.c_str(),
             problem.c_str(), lock_path.c_str());
    return false;
  }
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    log_line(
        "another kbusd already serves %s (it holds %s): stop it first, or give this one "
        "another --dir",
        path_.c_str(), lock_path.c_str());
    return false;
  }
  // A kbusd that stopped just now removed the file we opened: lock the new one.
  struct stat now {};
  if (::fstatat(fd_.get(), kLockName, &now, AT_SYMLINK_NOFOLLOW) == 0 && same_file(held, now)) {
    lock_fd_ = std::move(fd);
    return true;
  }
  replaced = true;
  return false;
}

// The lock file is removed at a clean stop, so the file locked may have
// been unlinked (by the kbusd that just stopped) between our open and our
// flock: then lock the new one. Bounded: each retry needs another kbusd to
// have stopped in that moment.
bool RuntimeDir::lock() {
  for (int attempt = 0; attempt <= 100; ++attempt) {
    bool replaced = false;
    if (lock_once(replaced)) return true;
    if (!replaced) return false;
  }
  log_line("cannot lock %s/%s: it keeps being replaced", path_.c_str(), kLockName);
  return false;
}

std::string RuntimeDir::address(const std::string& name) const {
  if (!proc_path_.empty()) return proc_path_ + "/" + name;
  // No /proc: the path must still lead to the directory held.
  struct stat held {};
  struct stat now {};
  if (::fstat(fd_.get(), &held) != 0 || ::lstat(path_.c_str(), &now) != 0 ||
      !same_file(held, now)) {
    log_line("%s is no longer the directory kbusd started in (renamed or replaced): restart kbusd",
             path_.c_str());
    return "";
  }
  return path_ + "/" + name;
}

bool RuntimeDir::bind_socket(int sock, const std::string& name, const SocketAccess& access) {
  const std::string shown = path_ + "/" + name;
  struct stat st {};
  if (::fstatat(fd_.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      log_line("%s is %s, not a bus socket: kbusd leaves it alone; remove it yourself, or give "
               "kbusd another --dir",
               shown.c_str(), kind_of(st.st_mode));
      return false;
    }
    // A socket left by a kbusd that died: we hold the lock, nobody serves it.
    if (::unlinkat(fd_.get(), name.c_str(), 0) != 0 && errno != ENOENT) {
      log_line("cannot remove the stale socket %s: %s", shown.c_str(), std::strerror(errno));
      return false;
    }
  } else if (errno != ENOENT) {
    log_line("cannot stat %s: %s", shown.c_str(), std::strerror(errno));
    return false;
  }
  const std::string where = address(name);
  if (where.empty()) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (where.size() >= sizeof addr.sun_path) {
    log_line("socket path too long: %s", where.c_str());
    return false;
  }
  std::memcpy(addr.sun_path, where.c_str(), where.size() + 1);
  // The socket file takes the socket's mode, less the umask: set both so
  // that it never exists with more access than --mode gives.
  if (!set_socket_mode(sock, access)) {
    log_line("cannot set the mode of %s: %s", shown.c_str(), std::strerror(errno));
    return false;
  }
  const mode_t old_umask = ::umask(0);
  const int rc = ::bind(sock, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  const int err = errno;
  ::umask(old_umask);
  if (rc != 0) {
    if (err == EADDRINUSE)  // bind never follows or replaces what appeared there
      log_line("%s appeared while kbusd was making its socket: remove it, or give kbusd another "
               "--dir",
               shown.c_str());
    else
      log_line("cannot bind %s: %s", shown.c_str(), std::strerror(err));
    return false;
  }
  if (!set_socket_owner(fd_.get(), name, access)) {
    log_line("cannot set the owner of %s: %s", shown.c_str(), std::strerror(errno));
    ::unlinkat(fd_.get(), name.c_str(), 0);
    return false;
  }
  return true;
}

void RuntimeDir::remove_socket(const std::string& name) const {
  if (!fd_) return;
  struct stat st {};
  if (::fstatat(fd_.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISSOCK(st.st_mode))
    ::unlinkat(fd_.get(), name.c_str(), 0);
}

void RuntimeDir::unlock() {
  if (!lock_fd_) return;
  struct stat held {};
  struct stat now {};
  if (::fstat(lock_fd_.get(), &held) == 0 &&
      ::fstatat(fd_.get(), kLockName, &now, AT_SYMLINK_NOFOLLOW) == 0 && same_file(held, now))
    ::unlinkat(fd_.get(), kLockName, 0);
  lock_fd_.reset();
}

}  // namespace kbus::daemon
