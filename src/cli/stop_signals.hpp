// cli/stop_signals.hpp - SIGINT/SIGTERM as a readable fd (the self-pipe
// trick), so the long-running commands can poll() for a message and for
// "stop" at the same time and end cleanly, closing their Ksock.
#pragma once

namespace kbus::cli {

class StopSignals {
 public:
  StopSignals();  // installs the handlers
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  int fd() const noexcept;    // readable once a stop signal has arrived
  bool stopped() const noexcept;
};

}  // namespace kbus::cli
