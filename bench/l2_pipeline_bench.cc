// The whole L2 pipeline (input checks, learning, bulk lookup, output
// staging, tx) on synthetic bursts over in-memory ports, no I/O: the cost a
// worker adds per packet on top of the port's own rx/tx.
#include <benchmark/benchmark.h>

#include "bench/fixed_iterations.h"
#include "dataplane/core/clock.h"
#include "dataplane/core/dataplane.h"
#include "dataplane/ports/mem_port.h"
#include "tests/fixtures/frames.h"

namespace dpsw {
namespace {

using test::eth_frame;

// args: frame size, number of destination ports, flood (1) or known unicast (0)
void BM_L2Pipeline(benchmark::State& st) {
  const size_t len = size_t(st.range(0));
  const uint16_t nports = uint16_t(st.range(1));
  const bool flood = st.range(2) != 0;
  Dataplane::Options o;
  o.cores = {-1};
  Dataplane dp(o);
  std::vector<std::unique_ptr<MemPort>> ports;
  auto s = std::make_unique<Snapshot>();
  s->bds.resize(1);
  s->rx_ports.resize(1);
  for (uint16_t i = 0; i <= nports; i++) {
    ports.push_back(std::make_unique<MemPort>("p" + std::to_string(i), MemPort::Options{1024, false}));
    s->ports.push_back({ports.back().get(), 0, 0, 1514});
    s->bds[0].ports.push_back(i);
  }
  s->rx_ports[0] = {0};
  dp.publish(std::move(s));
  // Teach the destinations, then replay bursts from port 0 to them.
  const Snapshot& snap = dp.snapshot();
  std::vector<std::vector<uint8_t>> frames;
  for (uint16_t i = 1; i <= nports; i++) dp.macs().learn(0, 0x020000000100ULL + i, i, now_ms());
  for (int i = 0; i < kBurst; i++) {
    Mac dst = flood ? 0xffffffffffffULL : 0x020000000100ULL + 1 + uint16_t(i % nports);
    frames.push_back(eth_frame(dst, 0x020000000001ULL + uint64_t(i % 4), 0x0800, len, 0));
  }
  ports[0]->set_replay(frames);
  Worker& w = dp.worker(0);
  Burst& pkts = w.rx_burst();
  uint64_t c0 = rdtsc(), items = 0;
  uint32_t now = now_ms();
  for (auto _ : st) {
    uint16_t n = ports[0]->rx_burst(pkts.data(), kBurst);
    pkts.resize(n);
    w.process(snap, 0, pkts, now);
    items += n;
  }
  st.counters["cycles/pkt"] = benchmark::Counter(double(rdtsc() - c0) / double(items));
  st.SetItemsProcessed(int64_t(items));
  st.SetBytesProcessed(int64_t(items * len));
}
BENCHMARK(BM_L2Pipeline)
    ->ArgNames({"bytes", "ports", "flood"})
    ->Args({64, 1, 0})
    ->Args({64, 8, 0})
    ->Args({1500, 8, 0})
    ->Args({64, 8, 1})->Apply(bench::fixed_iterations);

}  // namespace
}  // namespace dpsw

BENCHMARK_MAIN();
