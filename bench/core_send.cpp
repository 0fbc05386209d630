// Cost of one SEND in the bus core as the number of bindings on the bus
// grows (DESIGN.md §5: matching never scans all bindings). Google Benchmark;
// compare the per-send time at 10, 10 000 and 100 000 bindings.
#include <benchmark/benchmark.h>

#include <string>

#include "core/bus.hpp"
#include "kbus/message.hpp"

namespace {

using kbus::core::Bus;
using kbus::core::KsockId;

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
  for (auto _ : state) {
    (void)bus.write(sender, bytes);
    auto s = bus.send(sender);
    benchmark::DoNotOptimize(s);
    out.clear();
    (void)bus.next_read(listener, out);  // keep the queue from filling
    (void)bus.next_read(listener, out);
  }
  state.counters["bindings"] = static_cast<double>(bindings);
}
BENCHMARK(BM_SendWithBindings)->Arg(10)->Arg(10000)->Arg(100000);

}  // namespace

BENCHMARK_MAIN();
