// daemon/poll_fd.hpp - the Ksock's poll fd (docs/protocol.md §3.1).
//
// What it owns: the socket pair behind one Ksock's poll fd, and the two
// facts it shows. The client gets end `a` (by SCM_RIGHTS) and only polls it;
// the daemon drives both ends so that `a` is
//   readable exactly when the Ksock's queue is non-empty (one byte waits in
//     it, sent from `b`), and
//   writable exactly when the Ksock may write (not while an ALL_OR_WAIT send
//     is pending): the daemon fills a's send buffer (made as small as the
//     kernel allows) while it may not, and drains it from `b` when it may.
// Whether the Ksock is readable or writable is the core's answer; this file
// only turns it into socket state, with as few system calls as it can (none
// when nothing changed). A Ksock without a poll fd costs none at all.
#pragma once

#include "util/fd.hpp"

namespace kbus::daemon {

class PollFd {
 public:
  // Makes the socket pair (if not made yet): false with errno set if the
  // daemon is out of descriptors.
  bool make();
  bool made() const noexcept { return static_cast<bool>(a_); }
  // The end the client gets.
  int client_end() const noexcept { return a_.get(); }
  // Shows `readable` and `writable` on the client's end.
  void update(bool readable, bool writable);
  // Sends one byte with `fds` (SCM_RIGHTS) to the client's end, which it
  // reads before anything the daemon sends later (SHMRING, protocol §8).
  bool send_fds(const int* fds, int count);
  // Shared-memory receive queue (docs/protocol.md §7): readability is then
  // tokens, sent by kbusd and taken back by kbusd and the client: one
  // token, all tokens taken back.
  void send_token() noexcept;
  void drain_tokens() noexcept;
  void reset() noexcept;

 private:
  util::Fd a_, b_;
  bool signalled_readable_ = false;
  bool blocked_writable_ = false;
};

}  // namespace kbus::daemon
