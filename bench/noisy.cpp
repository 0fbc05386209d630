// kbus_bench_noisy: what noisy neighbours cost everybody else
// (docs/reliability.md §4, issue 13). In one run, one kbusd:
//   1. quiet: a requester and a replier (each its own process) do round
//      trips (send_msg, the replier's wait_for_msg and reply, the
//      requester's wait_for_msg) on an otherwise idle bus;
//   2. noisy: the same, while on the same bus
//        - a flooder pipelines requests at full speed and reads its replies
//          (two threads, raw frames),
//        - a client sends requests and never reads a reply,
//        - 64 clients have each sent half a frame and say no more,
//        - one process holds 100 000 bindings: 10 Ksocks of 10 000, since
//          kbusd allows a Ksock at most --max-bindings-per-ksock (10 000).
// The two alternate in R rounds (default 5; the noise is started afresh
// each round and stopped after it), so that the machine's other load falls
// on both alike. Prints p50/p99 of both and their ratios (the target: p50 <= 1.5x,
// p99 <= 3x quiet), and RESULT lines (bench_common.hpp).
//
//   kbus_bench_noisy [--iterations N] [--rounds R] [--bindings N] [--pin]
//                    [--noise flood,deaf,halves,bindings] [--kbusd PATH]
// --noise picks some of the four (default: all), to see what each costs,
// or `cpu`: two busy threads that talk to nobody, the flooder's CPU load
// without its traffic (the control: what the machine, not kbusd, costs);
// --kbusd runs another kbusd binary (an older one, to compare).
#include <sched.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "bench_common.hpp"
#include "kbus/ksock.hpp"

namespace {

using bench::now_ns;
using bench::Pipe;

void pin_if(bool pin) {
  if (!pin) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(0, &set);
  sched_setaffinity(0, sizeof set, &set);
}

void put_u32(std::string& s, std::uint32_t v) { s.append(reinterpret_cast<const char*>(&v), 4); }

std::string frame(std::uint32_t op, const std::string& payload = {}) {
  std::string f;
  put_u32(f, static_cast<std::uint32_t>(4 + payload.size()));
  put_u32(f, op);
  return f + payload;
}

// A raw connection that has said HELLO (docs/protocol.md §3; lazy poll fd).
int raw_hello(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    bench::die("connect");
  std::string hello;
  put_u32(hello, 1);   // version
  put_u32(hello, 7);   // read | write | lazy poll fd
  put_u32(hello, 88);  // header length
  const std::string f = frame(64, hello);
  char reply[16];
  if (!bench::write_full(fd, f.data(), f.size()) || !bench::read_full(fd, reply, sizeof reply))
    bench::die("HELLO");
  return fd;
}

std::vector<double> round_trips(kbus::Ksock& requester, int n) {
  std::vector<double> ns;
  ns.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    const std::uint64_t t0 = now_ns();
    const kbus::MessageId id = requester.send_msg(kbus::make_request("$.Noisy.Ping", "ping"));
    for (;;) {
      auto m = requester.wait_for_msg(std::chrono::seconds(30));
      if (!m) bench::die("no answer");
      if (m->hdr.in_reply_to == id) break;
    }
    ns.push_back(static_cast<double>(now_ns() - t0));
  }
  return ns;
}

// Starts the noise (those of flood, deaf, halves, bindings that `with`
// picks); returns once the bindings are made. The children are killed by
// the caller.
template <typename With>
std::vector<pid_t> start_noise(const std::string& bus0, const std::string& dir, With with,
                               int bindings) {
  std::vector<pid_t> pids;
  char byte;
  if (with("bindings")) {
    Pipe bound;
    pids.push_back(bench::spawn([&] {
      // As many Ksocks as kbusd's per-Ksock limit (default 10 000) needs.
      constexpr int kPerKsock = 10000;
      std::vector<kbus::Ksock> ks;
      for (int i = 0; i < bindings; ++i) {
        if (i % kPerKsock == 0) ks.push_back(kbus::Ksock::open(0, kbus::Mode::read_write, dir));
        ks.back().bind("$.Noisy.Hold." + std::to_string(i));
      }
      bench::write_full(bound.w, "b", 1);
      ::pause();
    }));
    if (!bench::read_full(bound.r, &byte, 1)) bench::die("binder");
    ::close(bound.r);
    ::close(bound.w);
  }
  if (with("flood"))
    pids.push_back(bench::spawn([&] {
      const int fd = raw_hello(bus0);
      std::string burst;
      for (int i = 0; i < 4096; ++i) burst += frame(4);  // KSOCKID
      std::thread reader([fd] {
        static char sink[1 << 16];
        while (::read(fd, sink, sizeof sink) > 0) {
        }
      });
      while (bench::write_full(fd, burst.data(), burst.size())) {
      }
      reader.join();
    }));
  if (with("deaf"))
    pids.push_back(bench::spawn([&] {
      const int fd = raw_hello(bus0);
      std::string burst;
      for (int i = 0; i < 4096; ++i) burst += frame(4);
      while (bench::write_full(fd, burst.data(), burst.size())) {
      }  // blocks for good once kbusd stops reading it
      ::pause();
    }));
  if (with("halves"))
    pids.push_back(bench::spawn([&] {
      std::vector<int> fds;
      std::string half = frame(2, std::string(200, 'x')).substr(0, 100);  // BIND, half of it
      for (int i = 0; i < 64; ++i) {
        fds.push_back(raw_hello(bus0));
        bench::write_full(fds.back(), half.data(), half.size());
      }
      ::pause();
    }));
  if (with("cpu"))
    pids.push_back(bench::spawn([&] {
      // The control: as many busy threads as the flooder, talking to nobody.
      static std::atomic<unsigned long> spins{0};
      std::thread other([] {
        for (;;) spins.fetch_add(1, std::memory_order_relaxed);
      });
      for (;;) spins.fetch_add(1, std::memory_order_relaxed);
    }));
  return pids;
}

}  // namespace

int main(int argc, char** argv) {
  bench::Args args(argc, argv);
  const int iterations = static_cast<int>(args.num("iterations", 20000));
  const int bindings = static_cast<int>(args.num("bindings", 100000));
  const int rounds = static_cast<int>(std::max(1L, args.num("rounds", 5)));
  const bool pin = args.has("pin");
  const std::string kbusd = args.str("kbusd", KBUSD_PATH);
  const std::string noise = "," + args.str("noise", "flood,deaf,halves,bindings") + ",";
  auto with = [&](const char* what) {
    return noise.find("," + std::string(what) + ",") != std::string::npos;
  };
  pin_if(pin);
  char tmpl[] = "/tmp/kbus-noisy-XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  const std::string bus0 = dir + "/kbus0";
  Pipe ready;
  const pid_t daemon = bench::spawn([&] {
    ::close(ready.r);
    const std::string fd = std::to_string(ready.w);
    ::execl(kbusd.c_str(), "kbusd", "--dir", dir.c_str(), "--ready-fd", fd.c_str(), nullptr);
    ::_exit(127);
  });
  ::close(ready.w);
  char byte;
  if (!bench::read_full(ready.r, &byte, 1)) bench::die("kbusd did not start");

  Pipe replier_ready;
  const pid_t replier = bench::spawn([&] {
    kbus::Ksock k = kbus::Ksock::open(0, kbus::Mode::read_write, dir);
    k.bind("$.Noisy.Ping", true);
    bench::write_full(replier_ready.w, "r", 1);
    for (;;) {
      auto m = k.wait_for_msg(std::chrono::seconds(60));
      if (!m) return;
      k.send_msg(kbus::make_reply(*m, m->data).value());
    }
  });
  if (!bench::read_full(replier_ready.r, &byte, 1)) bench::die("replier");
  kbus::Ksock requester = kbus::Ksock::open(0, kbus::Mode::read_write, dir);
  round_trips(requester, 1000);  // warm-up
  // Quiet and noisy blocks alternate, so that the machine's other load
  // falls on both alike.
  std::vector<double> quiet_ns, noisy_ns;
  for (int round = 0; round < rounds; ++round) {
    const int n = iterations / rounds;
    const std::vector<double> q = round_trips(requester, n);
    quiet_ns.insert(quiet_ns.end(), q.begin(), q.end());
    const std::vector<pid_t> noise_pids = start_noise(bus0, dir, with, bindings);
    round_trips(requester, 200);  // the noise is under way
    const std::vector<double> x = round_trips(requester, n);
    noisy_ns.insert(noisy_ns.end(), x.begin(), x.end());
    for (pid_t p : noise_pids) bench::stop_child(p);
    round_trips(requester, 200);  // kbusd has seen them go
  }
  const bench::Summary quiet = bench::summarise(quiet_ns);
  const bench::Summary noisy = bench::summarise(noisy_ns);

  bench::stop_child(replier);
  requester.close();
  ::kill(daemon, SIGTERM);
  bench::wait_child(daemon);
  const std::string rm = "rm -rf " + dir;
  if (std::system(rm.c_str()) != 0) std::fprintf(stderr, "could not remove %s\n", dir.c_str());

  std::printf("round trips beside noisy neighbours (%s), %d each in %d rounds, scheduling: %s\n",
              noise.substr(1, noise.size() - 2).c_str(), iterations, rounds,
              pin ? "all on CPU 0" : "default");
  std::printf("%-10s %10s %10s %10s\n", "bus", "p50 us", "p99 us", "mean us");
  std::printf("%-10s %10.2f %10.2f %10.2f\n", "quiet", quiet.p50_us, quiet.p99_us, quiet.mean_us);
  std::printf("%-10s %10.2f %10.2f %10.2f\n", "noisy", noisy.p50_us, noisy.p99_us, noisy.mean_us);
  std::printf("ratio      p50 %.2fx (target <= 1.5x), p99 %.2fx (target <= 3x)\n",
              noisy.p50_us / quiet.p50_us, noisy.p99_us / quiet.p99_us);
  bench::Row q;
  q.system = "kbus C++";
  q.test = "round trip, quiet bus";
  q.payload = 4;
  q.lat = quiet;
  bench::emit(q);
  bench::Row r = q;
  r.test = "round trip beside " + noise.substr(1, noise.size() - 2);
  r.lat = noisy;
  r.note = "p50 x" + std::to_string(noisy.p50_us / quiet.p50_us) + ", p99 x" +
           std::to_string(noisy.p99_us / quiet.p99_us) + " of quiet";
  bench::emit(r);
  return 0;
}
