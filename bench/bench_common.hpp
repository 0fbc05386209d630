// bench_common.hpp - what every comparison benchmark of bench/ shares: the
// clock, percentiles, argument parsing, child processes, and the two test
// shapes (round trip; one sender -> N listeners) so that every system is
// measured by the same loop and reported in the same RESULT line.
//
// Each benchmark binary prints one line per measurement:
//   RESULT {"system": ..., "test": ..., "payload": ..., "p50_us": ..., ...}
// bench/run.py collects them, adds the scheduling mode and the ratios, and
// prints the table. A benchmark binary never decides a verdict.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <vector>

#ifdef KBUSD_PATH
#include "kbus/ksock.hpp"
#endif

namespace bench {

inline std::uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000u + static_cast<std::uint64_t>(ts.tv_nsec);
}

// ---------------------------------------------------------------- arguments

class Args {
 public:
  Args(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
      const char* a = argv[i];
      if (std::strncmp(a, "--", 2) != 0) {
        positional_.emplace_back(a);
        continue;
      }
      const std::string key(a + 2);
      if (i + 1 < argc && std::strncmp(argv[i + 1], "--", 2) != 0) kv_[key] = std::string(argv[++i]);
      else kv_[key] = std::string(1, '1');
    }
  }
  std::string str(const std::string& k, const std::string& def = {}) const {
    auto it = kv_.find(k);
    return it == kv_.end() ? def : it->second;
  }
  long num(const std::string& k, long def) const {
    auto it = kv_.find(k);
    return it == kv_.end() ? def : std::strtol(it->second.c_str(), nullptr, 10);
  }
  bool has(const std::string& k) const { return kv_.count(k) != 0; }
  std::string cmd() const { return positional_.empty() ? std::string() : positional_[0]; }

 private:
  std::map<std::string, std::string> kv_;
  std::vector<std::string> positional_;
};

// ---------------------------------------------------------------- results

struct Summary {
  double p50_us = -1, p99_us = -1, mean_us = -1;
  double rate = -1;  // operations per second over the whole timed loop
  std::size_t n = 0;
};

inline Summary summarise(std::vector<double> ns, double elapsed_ns = 0) {
  Summary s;
  if (ns.empty()) return s;
  std::sort(ns.begin(), ns.end());
  s.n = ns.size();
  s.p50_us = ns[ns.size() / 2] / 1000.0;
  s.p99_us = ns[std::min(ns.size() - 1, ns.size() * 99 / 100)] / 1000.0;
  double sum = 0;
  for (double v : ns) sum += v;
  s.mean_us = sum / static_cast<double>(ns.size()) / 1000.0;
  s.rate = elapsed_ns > 0 ? static_cast<double>(ns.size()) * 1e9 / elapsed_ns : 1e6 / s.mean_us;
  return s;
}

struct Row {
  std::string system, test;
  long payload = 0;
  long listeners = 0;  // 0 for round trips
  Summary lat;         // round-trip (or per-call) times
  double rate = -1;    // messages/s per listener (throughput rows)
  long sent = -1, lost = -1;
  double value = -1;  // for rows that measure something else (unit says what)
  std::string unit;
  std::string note;
};

inline std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    if (static_cast<unsigned char>(c) < 0x20) continue;
    o += c;
  }
  return o;
}

inline void emit(const Row& r) {
  std::printf(
      "RESULT {\"system\": \"%s\", \"test\": \"%s\", \"payload\": %ld, \"listeners\": %ld, "
      "\"p50_us\": %.3f, \"p99_us\": %.3f, \"mean_us\": %.3f, \"n\": %zu, \"rate\": %.1f, "
      "\"sent\": %ld, \"lost\": %ld, \"value\": %.3f, \"unit\": \"%s\", \"note\": \"%s\"}\n",
      json_escape(r.system).c_str(), json_escape(r.test).c_str(), r.payload, r.listeners,
      r.lat.p50_us, r.lat.p99_us, r.lat.mean_us, r.lat.n, r.rate >= 0 ? r.rate : r.lat.rate,
      r.sent, r.lost, r.value, json_escape(r.unit).c_str(), json_escape(r.note).c_str());
  std::fflush(stdout);
}

inline void emit_unavailable(const std::string& system, const std::string& test, long payload,
                             long listeners, const std::string& why) {
  Row r;
  r.system = system;
  r.test = test;
  r.payload = payload;
  r.listeners = listeners;
  r.note = "not available: " + why;
  emit(r);
}

[[noreturn]] inline void die(const char* what) {
  std::fprintf(stderr, "bench: %s: %s\n", what, std::strerror(errno));
  std::exit(3);
}

// ---------------------------------------------------------------- processes

inline bool read_full(int fd, void* buf, std::size_t n) {
  auto* p = static_cast<char*>(buf);
  while (n) {
    ssize_t r = ::read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

inline bool write_full(int fd, const void* buf, std::size_t n) {
  auto* p = static_cast<const char*>(buf);
  while (n) {
    ssize_t r = ::write(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

struct Pipe {
  int r = -1, w = -1;
  Pipe() {
    int fds[2];
    if (::pipe(fds) != 0) die("pipe");
    r = fds[0];
    w = fds[1];
  }
};

// Runs fn() in a child process that exits when fn returns. The child dies
// with the parent (PR_SET_PDEATHSIG is not portable enough to rely on, so
// children also stop on EOF of their pipes).
inline pid_t spawn(const std::function<void()>& fn) {
  std::fflush(stdout);
  pid_t p = ::fork();
  if (p < 0) die("fork");
  if (p == 0) {
    fn();
    std::fflush(stdout);
    ::_exit(0);
  }
  return p;
}

inline void stop_child(pid_t p) {
  if (p <= 0) return;
  ::kill(p, SIGKILL);
  ::waitpid(p, nullptr, 0);
}

inline void wait_child(pid_t p) {
  if (p > 0) ::waitpid(p, nullptr, 0);
}

// Raises RLIMIT_NOFILE as far as allowed; returns the soft limit in force.
inline long raise_nofile(long want) {
  rlimit rl{};
  ::getrlimit(RLIMIT_NOFILE, &rl);
  rlimit w = rl;
  if (w.rlim_max < static_cast<rlim_t>(want)) w.rlim_max = static_cast<rlim_t>(want);
  w.rlim_cur = w.rlim_max;
  if (::setrlimit(RLIMIT_NOFILE, &w) != 0) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
  ::getrlimit(RLIMIT_NOFILE, &rl);
  return static_cast<long>(rl.rlim_cur);
}

// ---------------------------------------------------------------- round trip

// Times `iterations` calls of one_round_trip() after iterations/10 untimed
// warm-up calls.
template <class F>
Summary time_round_trips(long iterations, F&& one_round_trip) {
  for (long i = 0; i < iterations / 10; ++i) one_round_trip();
  std::vector<double> ns;
  ns.reserve(static_cast<std::size_t>(iterations));
  const std::uint64_t start = now_ns();
  for (long i = 0; i < iterations; ++i) {
    const std::uint64_t t0 = now_ns();
    one_round_trip();
    ns.push_back(static_cast<double>(now_ns() - t0));
  }
  return summarise(std::move(ns), static_cast<double>(now_ns() - start));
}

// ---------------------------------------------------------------- throughput
//
// One sender, N listeners, M data messages. The first 8 bytes of every
// message's payload are a sequence number: 0..M-1 for data, kWarmup for the
// messages a sender repeats until every listener is known to receive (for
// systems whose subscriptions take effect asynchronously), kEnd for the
// marker after the data. A listener stops after M data messages, at kEnd,
// or after idle_ms without any message (so a lossy system still ends), and
// reports {data messages received, time of the last one}. Per-listener rate
// = received / listeners / (last arrival anywhere - first send).

constexpr std::uint64_t kWarmup = ~std::uint64_t{0};
constexpr std::uint64_t kEnd = ~std::uint64_t{0} - 1;

inline std::uint64_t seq_of(const void* payload, std::size_t len) {
  std::uint64_t s = kWarmup;
  if (len >= 8) std::memcpy(&s, payload, 8);
  return s;
}
inline void set_seq(void* payload, std::uint64_t s) { std::memcpy(payload, &s, 8); }

struct ListenerReport {
  std::uint64_t received = 0;
  std::uint64_t t_last = 0;
  std::uint64_t out_of_order = 0;
};

// The listener side: feed every message's payload to on_msg(); it returns
// false when the listener should stop.
class ListenerCounter {
 public:
  ListenerCounter(std::uint64_t expected, int ack_fd) : expected_(expected), ack_fd_(ack_fd) {}
  bool on_msg(const void* payload, std::size_t len) {
    const std::uint64_t s = seq_of(payload, len);
    if (s == kWarmup) {
      if (!acked_) {
        acked_ = true;
        write_full(ack_fd_, "w", 1);
      }
      return true;
    }
    if (s == kEnd) return false;
    if (s != next_) ++rep_.out_of_order;
    next_ = s + 1;
    ++rep_.received;
    rep_.t_last = now_ns();
    return rep_.received < expected_;
  }
  bool done() const { return rep_.received >= expected_; }
  const ListenerReport& report() const { return rep_; }

 private:
  std::uint64_t expected_;
  int ack_fd_;
  bool acked_ = false;
  std::uint64_t next_ = 0;
  ListenerReport rep_;
};

struct TputSpec {
  std::string system, test;
  long payload = 64;
  int listeners = 1;
  long messages = 100000;
  bool warmup = false;  // repeat kWarmup messages until every listener got one
  int idle_ms = 3000;
};

// Per-test hooks of one system.
struct TputHooks {
  // Runs in a listener child: subscribe, write one byte to ready_fd, then
  // receive, feeding payloads to counter until it says stop.
  std::function<void(int index, int ready_fd, ListenerCounter& counter, int idle_ms)> listen;
  // Runs in the sender (this process): set up before the listeners are
  // ready; then send(seq) for one message; flush() after the last.
  std::function<void()> sender_setup;
  std::function<void(std::uint64_t seq)> send;
  std::function<void()> flush;
  std::function<void()> sender_teardown;
};

inline Row run_throughput(const TputSpec& spec, TputHooks& h) {
  Pipe ready, ack, result;
  std::vector<pid_t> kids;
  if (h.sender_setup) h.sender_setup();
  for (int i = 0; i < spec.listeners; ++i) {
    kids.push_back(spawn([&, i] {
      ::close(ready.r);
      ::close(ack.r);
      ::close(result.r);
      ListenerCounter counter(static_cast<std::uint64_t>(spec.messages), ack.w);
      h.listen(i, ready.w, counter, spec.idle_ms);
      ListenerReport rep = counter.report();
      write_full(result.w, &rep, sizeof rep);
    }));
  }
  ::close(ready.w);
  ::close(result.w);
  for (int i = 0; i < spec.listeners; ++i) {
    char c;
    if (!read_full(ready.r, &c, 1)) {
      std::fprintf(stderr, "bench: a %s listener failed to start\n", spec.system.c_str());
      for (pid_t k : kids) stop_child(k);
      Row r;
      r.system = spec.system;
      r.test = spec.test;
      r.note = "failed: listener did not start";
      return r;
    }
  }
  if (spec.warmup) {
    int acked = 0;
    const std::uint64_t deadline = now_ns() + 10'000'000'000ull;
    while (acked < spec.listeners && now_ns() < deadline) {
      h.send(kWarmup);
      if (h.flush) h.flush();
      pollfd p{ack.r, POLLIN, 0};
      while (::poll(&p, 1, 2) > 0) {
        char c;
        if (::read(ack.r, &c, 1) == 1) ++acked;
        if (acked == spec.listeners) break;
      }
    }
    usleep(20000);  // let the last warm-ups drain
  }
  const std::uint64_t t0 = now_ns();
  for (long i = 0; i < spec.messages; ++i) h.send(static_cast<std::uint64_t>(i));
  h.send(kEnd);
  if (h.flush) h.flush();
  std::uint64_t received = 0, t_last = t0, ooo = 0;
  for (int i = 0; i < spec.listeners; ++i) {
    ListenerReport rep;
    if (read_full(result.r, &rep, sizeof rep)) {
      received += rep.received;
      t_last = std::max(t_last, rep.t_last);
      ooo += rep.out_of_order;
    }
  }
  for (pid_t k : kids) wait_child(k);
  if (h.sender_teardown) h.sender_teardown();
  ::close(ready.r);
  ::close(ack.r);
  ::close(ack.w);
  ::close(result.r);

  Row r;
  r.system = spec.system;
  r.test = spec.test;
  r.payload = spec.payload;
  r.listeners = spec.listeners;
  r.sent = spec.messages;
  const std::uint64_t expected = static_cast<std::uint64_t>(spec.messages) * spec.listeners;
  r.lost = static_cast<long>(expected - std::min(expected, received));
  const double secs = static_cast<double>(t_last - t0) / 1e9;
  r.rate = secs > 0 ? static_cast<double>(received) / spec.listeners / secs : 0;
  if (ooo) r.note = "out of order: " + std::to_string(ooo);
  return r;
}

// ------------------------------------------- kbusd and kbus-limpet processes
// For the benchmarks built against the kbus client with KBUSD_PATH (and
// KBUS_LIMPET_PATH) defined: limpet_bench.cpp and nats_bench.cpp.

// Says what went wrong, naming the benchmark, and exits 2.
[[noreturn]] inline void fatal(const std::string& what) {
  std::fprintf(stderr, "%s: %s\n", program_invocation_short_name, what.c_str());
  std::exit(2);
}

// A fresh directory /tmp/<prefix>-XXXXXX.
inline std::string make_temp_dir(const std::string& prefix) {
  std::string tmpl = "/tmp/" + prefix + "-XXXXXX";
  if (!::mkdtemp(tmpl.data())) fatal("mkdtemp " + tmpl + ": " + std::strerror(errno));
  return tmpl;
}

// Starts args (args[0] the program's path) with its stdout - and its
// stderr too if `with_stderr`, else /dev/null - on a pipe; returns once a
// line contains `ready` ("" : the first line), bounded by the child's exit,
// with that line in *line_out. A drainer process then keeps reading the
// pipe, so the child never blocks on its output.
inline pid_t start_program(const std::vector<std::string>& args, const std::string& ready,
                           std::string* line_out = nullptr, bool with_stderr = true) {
  int out[2];
  if (::pipe(out) != 0) fatal("pipe");
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], 1);
    if (with_stderr) {
      ::dup2(out[1], 2);
    } else {
      int null = ::open("/dev/null", O_WRONLY);
      ::dup2(null, 2);
    }
    ::close(out[0]);
    std::vector<std::string> copy = args;
    std::vector<char*> argv;
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(out[1]);
  std::string line;
  char c;
  for (;;) {
    if (::read(out[0], &c, 1) != 1) fatal(args[0] + " exited before saying '" + ready + "'");
    if (c != '\n') {
      line.push_back(c);
      continue;
    }
    if (line.find(ready) != std::string::npos) break;
    line.clear();
  }
  if (line_out) *line_out = line;
  if (::fork() == 0) {
    char buf[4096];
    while (::read(out[0], buf, sizeof buf) > 0) {
    }
    ::_exit(0);
  }
  ::close(out[0]);
  return pid;
}

// Ends a process started here: SIGTERM, then waits for it.
inline void stop_program(pid_t pid) {
  if (pid <= 0) return;
  ::kill(pid, SIGTERM);
  ::waitpid(pid, nullptr, 0);
}

#ifdef KBUSD_PATH
// A kbusd serving bus 0 in `dir`; returns once a Ksock opens there.
inline pid_t start_kbusd(const std::string& dir) {
  pid_t pid = ::fork();
  if (pid == 0) {
    int null = ::open("/dev/null", O_WRONLY);
    ::dup2(null, 1);
    ::dup2(null, 2);
    ::execl(KBUSD_PATH, "kbusd", "--dir", dir.c_str(), nullptr);
    ::_exit(127);
  }
  // Bounded wait for the socket to accept a Ksock.
  for (int i = 0; i < 1000; ++i) {
    if (kbus::Ksock::try_open(0, kbus::Mode::read, dir).ok()) return pid;
    ::poll(nullptr, 0, 5);
  }
  fatal("kbusd did not start in " + dir);
}
#endif

#ifdef KBUS_LIMPET_PATH
// A kbus-limpet with these arguments; returns once it printed its banner,
// with the port it listens on in *port (TCP with port 0: the one bound).
inline pid_t start_limpet(const std::vector<std::string>& args, int* port = nullptr) {
  std::vector<std::string> argv = {KBUS_LIMPET_PATH};
  argv.insert(argv.end(), args.begin(), args.end());
  std::string banner;
  pid_t pid = start_program(argv, "kbus Limpet:", &banner, /*with_stderr=*/false);
  if (port) {
    auto at = banner.find("port ");
    *port = at == std::string::npos ? 0 : std::atoi(banner.c_str() + at + 5);
  }
  return pid;
}
#endif

}  // namespace bench
