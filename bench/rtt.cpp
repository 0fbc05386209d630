// kbus_bench_rtt: request/reply round-trip time through kbusd, beside the
// floor any broker pays: the same ping-pong through a raw AF_UNIX relay
// process (client -> relay -> server -> relay -> client), in the same run.
//
//   kbus_bench_rtt [--iterations N] [--payload BYTES] [--pin]
//
// --pin runs every process on CPU 0 (cross-CPU wake-ups dominate on small
// machines). Prints p50/p99 and the ratio of kbus to the floor.
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "kbus/ksock.hpp"

namespace {

using Clock = std::chrono::steady_clock;
volatile std::uint32_t benchmark_sink = 0;

using Stats = bench::Summary;
using bench::summarise;

void pin_if(bool pin) {
  if (!pin) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(0, &set);
  sched_setaffinity(0, sizeof set, &set);
}

using bench::read_full;
using bench::write_full;

// The floor: client <-> relay <-> echo server over AF_UNIX stream sockets.
Stats raw_relay(int iterations, std::size_t payload, bool pin) {
  int a[2], b[2];
  socketpair(AF_UNIX, SOCK_STREAM, 0, a);  // client <-> relay
  socketpair(AF_UNIX, SOCK_STREAM, 0, b);  // relay <-> server
  pid_t relay = fork();
  if (relay == 0) {
    pin_if(pin);
    std::vector<char> buf(payload);
    for (;;) {
      if (!read_full(a[1], buf.data(), payload) || !write_full(b[0], buf.data(), payload)) _exit(0);
      if (!read_full(b[0], buf.data(), payload) || !write_full(a[1], buf.data(), payload)) _exit(0);
    }
  }
  pid_t server = fork();
  if (server == 0) {
    pin_if(pin);
    std::vector<char> buf(payload);
    for (;;) {
      if (!read_full(b[1], buf.data(), payload) || !write_full(b[1], buf.data(), payload)) _exit(0);
    }
  }
  std::vector<char> buf(payload, 'x');
  std::vector<double> ns;
  ns.reserve(static_cast<std::size_t>(iterations));
  for (int i = 0; i < iterations + iterations / 10; ++i) {
    auto t0 = Clock::now();
    write_full(a[0], buf.data(), payload);
    read_full(a[0], buf.data(), payload);
    auto t1 = Clock::now();
    if (i >= iterations / 10) ns.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count());
  }
  ::close(a[0]);
  ::close(b[1]);
  ::close(a[1]);
  ::close(b[0]);
  kill(relay, SIGKILL);
  kill(server, SIGKILL);
  waitpid(relay, nullptr, 0);
  waitpid(server, nullptr, 0);
  return summarise(ns);
}

// fast = Ksock::request() against a replier looping on send_and_wait();
// otherwise the generic calls: send_msg + wait_for_msg on both sides.
Stats kbus_rtt(const std::string& dir, int iterations, std::size_t payload, bool pin, bool fast) {
  int ready[2];
  if (pipe(ready) != 0) std::exit(2);
  pid_t replier = fork();
  if (replier == 0) {
    pin_if(pin);
    auto k = kbus::Ksock::open(0, kbus::Mode::read_write, dir);
    k.bind("$.Bench.Echo", true);
    (void)!write(ready[1], "r", 1);
    if (fast) {
      auto m = k.wait_for_msg();
      for (;;) {
        auto rep = kbus::make_reply(*m, m->data);
        auto r = k.send_and_wait(*rep);
        m = std::move(r.received);
      }
    }
    for (;;) {
      auto m = k.wait_for_msg();
      if (!m) continue;
      auto rep = kbus::make_reply(*m, m->data);
      if (rep.ok()) k.send_msg(*rep);
    }
  }
  char c;
  if (read(ready[0], &c, 1) != 1) std::exit(2);
  auto k = kbus::Ksock::open(0, kbus::Mode::read_write, dir);
  const kbus::Message req = kbus::make_request("$.Bench.Echo", std::string(payload, 'x'));
  std::vector<double> ns;
  ns.reserve(static_cast<std::size_t>(iterations));
  for (int i = 0; i < iterations + iterations / 10; ++i) {
    auto t0 = Clock::now();
    if (fast) {
      benchmark_sink = k.request(req).hdr.id.serial_num;
    } else {
      const kbus::MessageId id = k.send_msg(req);
      for (;;) {
        auto m = k.wait_for_msg();
        if (m && m->hdr.in_reply_to == id) break;
      }
    }
    auto t1 = Clock::now();
    if (i >= iterations / 10) ns.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count());
  }
  kill(replier, SIGKILL);
  waitpid(replier, nullptr, 0);
  return summarise(ns);
}

}  // namespace

int main(int argc, char** argv) {
  int iterations = 20000;
  std::size_t payload = 64;
  bool pin = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--iterations" && i + 1 < argc) iterations = std::atoi(argv[++i]);
    else if (a == "--payload" && i + 1 < argc) payload = std::strtoul(argv[++i], nullptr, 10);
    else if (a == "--pin") pin = true;
    else {
      std::fprintf(stderr, "usage: kbus_bench_rtt [--iterations N] [--payload BYTES] [--pin]\n");
      return 2;
    }
  }
  pin_if(pin);
  char tmpl[] = "/tmp/kbus-bench-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  pid_t daemon = fork();
  if (daemon == 0) {
    pin_if(pin);
    execl(KBUSD_PATH, "kbusd", "--dir", dir.c_str(), "--max-msg-size", "409600", nullptr);
    _exit(127);
  }
  struct stat st{};
  for (int i = 0; i < 500 && stat((dir + "/kbus0").c_str(), &st) != 0; ++i) usleep(10000);

  const Stats floor = raw_relay(iterations, payload, pin);
  const Stats kb = kbus_rtt(dir, iterations, payload, pin, false);
  const Stats fast = kbus_rtt(dir, iterations, payload, pin, true);
  kill(daemon, SIGTERM);
  waitpid(daemon, nullptr, 0);
  rmdir(dir.c_str());

  std::printf("request/reply round trip, payload %zu B, %d iterations, scheduling: %s\n", payload,
              iterations, pin ? "all on CPU 0" : "default");
  std::printf("%-28s %10s %10s %10s %8s\n", "system", "p50 us", "p99 us", "mean us", "p50 x");
  std::printf("%-28s %10.2f %10.2f %10.2f %8.2f\n", "AF_UNIX relay (floor)", floor.p50_us,
              floor.p99_us, floor.mean_us, 1.0);
  std::printf("%-28s %10.2f %10.2f %10.2f %8.2f\n", "kbus C++ send_msg+wait", kb.p50_us, kb.p99_us,
              kb.mean_us, kb.p50_us / floor.p50_us);
  std::printf("%-28s %10.2f %10.2f %10.2f %8.2f\n", "kbus C++ request()", fast.p50_us,
              fast.p99_us, fast.mean_us, fast.p50_us / floor.p50_us);
  return 0;
}
