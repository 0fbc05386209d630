// The cost of the bus core's hot paths, in process (no daemon, no sockets):
//
//  - BM_RequestReply: one Ksock::request round trip exactly as kbusd drives
//    the core for it (src/daemon/daemon.cpp, Op::kRequest / kNextRead /
//    kSendMsg and apply_effects): the requester writes and sends a Request,
//    the replier reads it, writes and sends the Reply, the requester takes
//    its answer; take_touched() after each operation.
//  - BM_Announcement: one announcement to one listener, and its read.
//  - BM_SendWithBindings: one send as the number of unrelated bindings on
//    the bus grows (DESIGN.md §5: matching never scans all bindings);
//    compare the per-send time at 10, 10 000 and 100 000 bindings.
//
// Each benchmark reports "allocs": heap allocations per iteration, counted by
// the global operator new below, after a warm-up so that reused buffers have
// reached their steady size.
//
// For instruction counts, `kbus_bench_core_send --cycles=N NAME` (NAME one
// of request_reply, announcement) runs N iterations of one scenario inside
// measured_cycles() and prints allocations per cycle; run it as
//   valgrind --tool=callgrind --toggle-collect='*measured_cycles*'
//            kbus_bench_core_send --cycles=100000 request_reply
// and divide the reported Ir by N.
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <string_view>
#include <vector>

#include "core/bus.hpp"
#include "kbus/message.hpp"

// ---------------------------------------------------------------- counting

namespace {
std::atomic<std::uint64_t> g_allocs{0};

void* counted_alloc(std::size_t n) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* counted_alloc(std::size_t n, std::align_val_t a) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  const auto al = static_cast<std::size_t>(a);
  if (void* p = std::aligned_alloc(al, (n + al - 1) / al * al)) return p;
  throw std::bad_alloc();
}
}  // namespace

void* operator new(std::size_t n) { return counted_alloc(n); }
void* operator new[](std::size_t n) { return counted_alloc(n); }
void* operator new(std::size_t n, std::align_val_t a) { return counted_alloc(n, a); }
void* operator new[](std::size_t n, std::align_val_t a) { return counted_alloc(n, a); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(n ? n : 1);
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(n ? n : 1);
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

// ---------------------------------------------------------------- scenarios

namespace {

using kbus::core::Bus;
using kbus::core::KsockId;

void put32(std::string& s, std::size_t at, std::uint32_t v) { std::memcpy(s.data() + at, &v, 4); }
std::uint32_t get32(const std::string& s, std::size_t at) {
  std::uint32_t v;
  std::memcpy(&v, s.data() + at, 4);
  return v;
}

// What the daemon's apply_effects does first after every operation, with
// the take_touched(out) form (the returning form allocates a vector per
// call that finds touched Ksocks).
void effects(Bus& bus, std::vector<KsockId>& touched) {
  bus.take_touched(touched);
  benchmark::DoNotOptimize(touched.data());
}

template <class T>
bool gave(const kbus::Result<T>& r, T v) {
  return r.ok() && *r == v;
}

void check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "core_send: %s\n", what);
  std::abort();
}

struct RequestReply {
  Bus bus{0};
  KsockId requester = bus.open({});
  KsockId replier = bus.open({});
  std::string request = kbus::encode_entire(
      kbus::make_request("$.Service.Echo", "ping ping ping 0"), kbus::kHeaderLen64);
  // The Reply, made once; in_reply_to and to are filled in per cycle.
  std::string reply = kbus::encode_entire(
      kbus::make_announcement("$.Service.Echo", "pong pong pong 0"), kbus::kHeaderLen64);
  std::string replier_in;    // the replier's receive buffer, reused
  std::string requester_in;  // the requester's receive buffer, reused
  std::vector<KsockId> touched;

  RequestReply() { check(bus.bind(replier, 1, "$.Service.Echo").ok(), "bind"); }

  void cycle() {
    // Requester: Op::kRequest = write + send, then wait for the answer.
    check(bus.write(requester, request).ok(), "write request");
    const auto sent = bus.send(requester);
    check(sent.error == kbus::Errc::ok, "send request");
    effects(bus, touched);
    // Replier: Op::kNextRead into its (cleared) output buffer.
    replier_in.clear();
    check(gave(bus.next_read(replier, replier_in), 1u), "read request");
    effects(bus, touched);
    // Replier: Op::kSendMsg with the Reply to what it read.
    put32(reply, 12, get32(replier_in, 4));  // in_reply_to = request id
    put32(reply, 16, get32(replier_in, 8));
    put32(reply, 20, get32(replier_in, 24));  // to = request from
    check(bus.write(replier, reply).ok(), "write reply");
    check(bus.send(replier).error == kbus::Errc::ok, "send reply");
    effects(bus, touched);
    // apply_effects completes the requester's wait.
    requester_in.clear();
    check(gave(bus.take_answer(requester, sent.id, requester_in), true), "take answer");
    effects(bus, touched);
  }
};

struct Announcement {
  Bus bus{0};
  KsockId sender = bus.open({});
  KsockId listener = bus.open({});
  std::string message = kbus::encode_entire(
      kbus::make_announcement("$.Sensors.Kitchen.Temperature", "21.5"), kbus::kHeaderLen64);
  std::string in;
  std::vector<KsockId> touched;

  Announcement() { check(bus.bind(listener, 0, "$.Sensors.Kitchen.Temperature").ok(), "bind"); }

  void cycle() {
    check(bus.write(sender, message).ok(), "write");
    check(bus.send(sender).error == kbus::Errc::ok, "send");
    effects(bus, touched);
    in.clear();
    check(gave(bus.next_read(listener, in), 1u), "read");
    effects(bus, touched);
  }
};

constexpr int kWarmUp = 1000;

template <class Scenario>
void BM_Cycle(benchmark::State& state) {
  Scenario s;
  for (int i = 0; i < kWarmUp; ++i) s.cycle();
  const std::uint64_t before = g_allocs.load(std::memory_order_relaxed);
  for (auto _ : state) s.cycle();
  state.counters["allocs"] =
      benchmark::Counter(static_cast<double>(g_allocs.load(std::memory_order_relaxed) - before),
                         benchmark::Counter::kAvgIterations);
}
BENCHMARK_TEMPLATE(BM_Cycle, RequestReply)->Name("BM_RequestReply");
BENCHMARK_TEMPLATE(BM_Cycle, Announcement)->Name("BM_Announcement");

void BM_SendWithBindings(benchmark::State& state) {
  const auto bindings = static_cast<int>(state.range(0));
  Bus bus(0);
  const KsockId sender = bus.open({});
  const KsockId listener = bus.open({});
  const KsockId others = bus.open({});
  // Unrelated bindings: exact names, '%' and '*' wildcards on other subtrees.
  for (int i = 0; i < bindings; ++i) {
    const std::string n = "$.Other" + std::to_string(i % 997) + ".N" + std::to_string(i);
    const std::string name = (i % 10 == 0) ? n + ".*" : (i % 10 == 1) ? n + ".%" : n;
    (void)bus.bind(others, i % 3 == 0, name);
  }
  (void)bus.bind(listener, 0, "$.Sensors.Kitchen.Temperature");
  (void)bus.bind(listener, 0, "$.Sensors.*");
  const std::string bytes = kbus::encode_entire(
      kbus::make_announcement("$.Sensors.Kitchen.Temperature", "21.5"), kbus::kHeaderLen64);
  std::string out;
  std::vector<KsockId> touched;
  auto one_send = [&] {
    (void)bus.write(sender, bytes);
    auto s = bus.send(sender);
    benchmark::DoNotOptimize(s);
    out.clear();
    (void)bus.next_read(listener, out);  // keep the queue from filling
    (void)bus.next_read(listener, out);
    effects(bus, touched);
  };
  for (int i = 0; i < kWarmUp; ++i) one_send();
  const std::uint64_t before = g_allocs.load(std::memory_order_relaxed);
  for (auto _ : state) one_send();
  state.counters["bindings"] = static_cast<double>(bindings);
  state.counters["allocs"] =
      benchmark::Counter(static_cast<double>(g_allocs.load(std::memory_order_relaxed) - before),
                         benchmark::Counter::kAvgIterations);
}
BENCHMARK(BM_SendWithBindings)->Arg(10)->Arg(10000)->Arg(100000);

// ---------------------------------------------------------------- --cycles

template <class Scenario>
[[gnu::noinline]] void measured_cycles(Scenario& s, long n) {
  for (long i = 0; i < n; ++i) s.cycle();
}

template <class Scenario>
int run_cycles(long n) {
  Scenario s;
  for (int i = 0; i < kWarmUp; ++i) s.cycle();
  const std::uint64_t before = g_allocs.load(std::memory_order_relaxed);
  measured_cycles(s, n);
  const std::uint64_t allocs = g_allocs.load(std::memory_order_relaxed) - before;
  std::printf("%ld cycles, %.3f allocations per cycle\n", n,
              static_cast<double>(allocs) / static_cast<double>(n));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::strncmp(argv[1], "--cycles=", 9) == 0) {
    const long n = std::atol(argv[1] + 9);
    const std::string_view which = argv[2];
    if (n > 0 && which == "request_reply") return run_cycles<RequestReply>(n);
    if (n > 0 && which == "announcement") return run_cycles<Announcement>(n);
    std::fprintf(stderr, "usage: %s --cycles=N request_reply|announcement\n", argv[0]);
    return 2;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
