// VXLAN encap and decap per packet (64-byte and 1500-byte inner frames), no I/O.
#include <benchmark/benchmark.h>

#include <vector>

#include "bench/fixed_iterations.h"
#include "dataplane/core/clock.h"
#include "dataplane/overlay/vxlan.h"
#include "tests/fixtures/frames.h"

namespace dpsw {
namespace {

std::vector<uint8_t> inner_frame(size_t len) {
  return test::ipv4_frame(0x020000000002ULL, 0x020000000001ULL, 0x0a2a0001, 0x0a2a0002, 17, len, 0x5a);
}

void BM_VxlanEncap(benchmark::State& st) {
  auto in = inner_frame(size_t(st.range(0)));
  std::vector<uint8_t> out(in.size() + kVxlanOverhead);
  VxlanEncap e{0x02aa00000001ULL, 0x02bb00000001ULL, 0xc633640a, 0xc633640b, 42, 64, false};
  uint64_t c0 = rdtsc(), items = 0;
  for (auto _ : st) {
    benchmark::DoNotOptimize(vxlan_encap(e, in.data(), uint32_t(in.size()), out.data()));
    benchmark::ClobberMemory();
    items++;
  }
  st.counters["cycles/pkt"] = benchmark::Counter(double(rdtsc() - c0) / double(items));
}
BENCHMARK(BM_VxlanEncap)->Arg(64)->Arg(1500)->Apply(bench::fixed_iterations);

void BM_VxlanDecap(benchmark::State& st) {
  auto in = inner_frame(size_t(st.range(0)));
  std::vector<uint8_t> out(in.size() + kVxlanOverhead);
  VxlanEncap e{0x02aa00000001ULL, 0x02bb00000001ULL, 0xc633640a, 0xc633640b, 42, 64, false};
  vxlan_encap(e, in.data(), uint32_t(in.size()), out.data());
  uint64_t c0 = rdtsc(), items = 0;
  VxlanInfo vi;
  for (auto _ : st) {
    benchmark::DoNotOptimize(vxlan_decap(out.data(), uint32_t(out.size()), &vi));
    items++;
  }
  st.counters["cycles/pkt"] = benchmark::Counter(double(rdtsc() - c0) / double(items));
}
BENCHMARK(BM_VxlanDecap)->Arg(64)->Arg(1500)->Apply(bench::fixed_iterations);

}  // namespace
}  // namespace dpsw

BENCHMARK_MAIN();
