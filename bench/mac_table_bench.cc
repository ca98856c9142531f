// MAC table micro-benchmarks: lookup (single and bulk) and learn.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "bench/fixed_iterations.h"
#include "dataplane/core/clock.h"
#include "dataplane/bridge/mac_table.h"
#include "dataplane/core/packet.h"

namespace dpsw {
namespace {

Mac station(uint32_t n) { return 0x020000000000ULL | (uint64_t(n) * 0x9e3779b1u & 0xffffffffffULL); }

// Populated table with `n` stations in network 0.
std::unique_ptr<MacTable> table_with(uint32_t n) {
  MacTable::Options o;
  o.size = std::max<uint32_t>(n * 2, 1024);
  auto t = std::make_unique<MacTable>(o);
  for (uint32_t i = 0; i < n; i++) t->learn(0, station(i), uint16_t(i % 512), 0);
  return t;
}

void report_cycles(benchmark::State& st, uint64_t c0, uint64_t items) {
  st.counters["cycles/pkt"] = benchmark::Counter(double(rdtsc() - c0) / double(items));
  st.SetItemsProcessed(int64_t(items));
}

void BM_LookupSingle(benchmark::State& st) {
  uint32_t n = uint32_t(st.range(0));
  auto t = table_with(n);
  uint32_t i = 0;
  uint64_t c0 = rdtsc(), items = 0;
  for (auto _ : st) {
    benchmark::DoNotOptimize(t->lookup(0, station(i)));
    i = i + 1 == n ? 0 : i + 1;
    items++;
  }
  report_cycles(st, c0, items);
}
BENCHMARK(BM_LookupSingle)->Arg(64)->Arg(4096)->Arg(65536)->Arg(1 << 20)->Apply(bench::fixed_iterations);

void BM_LookupBulk32(benchmark::State& st) {
  uint32_t n = uint32_t(st.range(0));
  auto t = table_with(n);
  std::vector<uint64_t> keys(n);
  std::mt19937 rng(1);
  for (uint32_t i = 0; i < n; i++) keys[i] = MacTable::make_key(0, station(rng() % n));
  uint16_t ports[kBurst];
  uint32_t off = 0;
  uint64_t c0 = rdtsc(), items = 0;
  for (auto _ : st) {
    if (off + kBurst > n) off = 0;
    t->lookup_bulk(&keys[off], kBurst, ports);
    benchmark::DoNotOptimize(ports);
    off += kBurst;
    items += kBurst;
  }
  report_cycles(st, c0, items);
}
BENCHMARK(BM_LookupBulk32)->Arg(64)->Arg(4096)->Arg(65536)->Arg(1 << 20)->Apply(bench::fixed_iterations);

// Steady state: stations already known (the common case on the fast path).
void BM_LearnKnown(benchmark::State& st) {
  uint32_t n = uint32_t(st.range(0));
  auto t = table_with(n);
  uint32_t i = 0;
  uint64_t c0 = rdtsc(), items = 0;
  for (auto _ : st) {
    benchmark::DoNotOptimize(t->learn(0, station(i), uint16_t(i % 512), 10));
    i = i + 1 == n ? 0 : i + 1;
    items++;
  }
  report_cycles(st, c0, items);
}
BENCHMARK(BM_LearnKnown)->Arg(4096)->Arg(65536)->Apply(bench::fixed_iterations);

// Worst case: every frame brings a new source MAC into a full table (a flood).
void BM_LearnFlood(benchmark::State& st) {
  MacTable::Options o;
  o.size = 65536;
  MacTable t(o);
  uint32_t i = 0;
  uint64_t c0 = rdtsc(), items = 0;
  for (auto _ : st) {
    benchmark::DoNotOptimize(t.learn(0, station(i), 1, i >> 10));
    i++;
    items++;
  }
  report_cycles(st, c0, items);
}
BENCHMARK(BM_LearnFlood)->Apply(bench::fixed_iterations);

}  // namespace
}  // namespace dpsw

BENCHMARK_MAIN();
