// daemon/readiness.hpp - telling whoever started kbusd that it serves
// (DESIGN.md §8 "Readiness is a contract", docs/reliability.md §7).
//
// kbusd is ready once its bus sockets exist and listen and it has dropped
// root (--user): a client that connects then is served. Two signals say
// so, both sent exactly once and never before that moment:
//  * systemd's sd_notify: "READY=1" to the datagram socket named by
//    $NOTIFY_SOCKET (a path, or "@name" for an abstract socket), through
//    libsystemd; "STOPPING=1" when kbusd begins to stop.
//  * --ready-fd N: one byte ('\n') written to file descriptor N, which is
//    then closed (the s6 convention; a shell can wait with `read`).
// A kbusd that cannot start signals nothing: the fd is closed unwritten
// when the process exits, and the exit status is non-zero.
#pragma once

#include <string>

namespace kbus::daemon {

class Readiness {
 public:
  // ready_fd: the --ready-fd descriptor, or -1.
  explicit Readiness(int ready_fd = -1) noexcept : ready_fd_(ready_fd) {}
  Readiness(const Readiness&) = delete;
  Readiness& operator=(const Readiness&) = delete;
  ~Readiness();

  // Checks that --ready-fd names an open descriptor (and marks it
  // close-on-exec). False, with the reason in `why`, if not.
  bool check(std::string& why) const;
  // kbusd serves: READY=1 (with STATUS=status) and the byte on ready_fd.
  // Failures to notify are logged, never fatal.
  void ready(const std::string& status);
  // kbusd begins to stop: STOPPING=1.
  void stopping();

 private:
  int ready_fd_;
  bool notified_ready_ = false;
};

}  // namespace kbus::daemon
