// daemon/runtime_dir.hpp - the socket directory kbusd serves, held open
// (docs/reliability.md §9; docs/decisions.md D27).
//
// kbusd opens its directory once (O_DIRECTORY|O_NOFOLLOW), checks it by the
// rule of util/dirs.hpp (a directory owned by kbusd's user or root, or one
// root handed over; writable by its owner only) and from then on works
// only through that descriptor: the lock file is opened with openat
// (O_NOFOLLOW) and checked with fstat; each bus socket is bound at
// /proc/self/fd/N/kbusK, so that it lands in the directory that was
// checked even if the path DIR were renamed and replaced since; an entry
// kbusK is removed or replaced only if it is a socket; owners and modes are
// set through descriptors (fchmod of the socket before bind, fchownat
// without following a link, fchown of the directory). Without /proc the
// socket is bound at DIR/kbusK after checking that DIR still is the
// directory held.
#pragma once

#include <sys/types.h>

#include <string>

#include "daemon/access.hpp"
#include "util/fd.hpp"

namespace kbus::daemon {

class RuntimeDir {
 public:
  // Creates `dir` if it is missing (missing parents 0755, `dir` itself
  // `create_mode`, and group `group` unless that is -1), opens it and checks
  // it. Logs why and returns false if it cannot be used.
  bool open(const std::string& dir, mode_t create_mode, gid_t group);
  // Takes the directory's lock, DIR/.kbusd.lock: a regular file with one
  // link, owned by kbusd's user, root or the directory's owner. Logs why and
  // returns false if another kbusd holds it or the file is not a lock file.
  bool lock();
  // Makes the unbound AF_UNIX socket `sock` DIR/`name`, with the mode and
  // owner of `access`. A socket already there (a kbusd that died) is
  // replaced; any other entry of that name is left alone and is an error.
  // Logs why and returns false on failure.
  bool bind_socket(int sock, const std::string& name, const SocketAccess& access);
  // Removes DIR/`name` if it is a socket.
  void remove_socket(const std::string& name) const;
  // Removes the lock file if it is still the one locked, then unlocks.
  void unlock();

  int fd() const noexcept { return fd_.get(); }
  const std::string& path() const noexcept { return path_; }

 private:
  bool create(mode_t create_mode, bool& created);
  bool lock_once(bool& replaced);
  std::string address(const std::string& name) const;  // "" (logged) if unusable

  std::string path_;
  util::Fd fd_;
  uid_t owner_ = 0;  // of the directory, when opened
  util::Fd lock_fd_;
  std::string proc_path_;  // "/proc/self/fd/N" if /proc shows fd_ there, else ""
};

}  // namespace kbus::daemon
