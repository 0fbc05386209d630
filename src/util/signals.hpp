// util/signals.hpp - signals as a readable descriptor (the self-pipe trick).
//
// kbusd, the CLI's long-running commands and kbus-limpet all wait in one
// poll()/epoll loop for their sockets and for "stop": a SignalPipe installs
// a handler for the signals it is given that writes the signal's number, as
// one byte, into a non-blocking pipe; fd() is the pipe's reading end, and
// take() returns the next signal that arrived (0 if none is left). The
// handler only writes to the pipe and sets a flag: it is async-signal-safe.
// The old dispositions are put back when the SignalPipe is destroyed.
// With `ignore_sigpipe`, SIGPIPE is ignored while it exists (a write to a
// vanished peer is then an error, not death): kbusd and kbus-limpet ask for
// it; the CLI does not (`kbus listen | head` ends as pipelines expect).
//
// Only one SignalPipe may exist at a time (the handler finds its pipe
// through a global): a second one aborts with a message.
#pragma once

#include <csignal>
#include <initializer_list>
#include <vector>

#include "util/fd.hpp"

namespace kbus::util {

class SignalPipe {
 public:
  // SIGINT and SIGTERM: the stop signals of every kbus program.
  SignalPipe();
  explicit SignalPipe(std::initializer_list<int> signals, bool ignore_sigpipe = false);
  ~SignalPipe();
  SignalPipe(const SignalPipe&) = delete;
  SignalPipe& operator=(const SignalPipe&) = delete;

  int fd() const noexcept { return read_.get(); }  // readable once a signal arrived
  // The next signal that arrived, or 0 if none is waiting.
  int take() noexcept;
  // Whether any of the signals has arrived (since construction).
  bool stopped() const noexcept;

 private:
  Fd read_, write_;
  struct Saved {
    int signo;
    struct sigaction old;
  };
  std::vector<Saved> saved_;
};

}  // namespace kbus::util
