// Connection tracking and NAT rewrite, per packet, no I/O.
#include <benchmark/benchmark.h>

#include <vector>

#include "bench/fixed_iterations.h"
#include "dataplane/core/clock.h"
#include "dataplane/nat/conntrack.h"
#include "dataplane/nat/stage_l3_route.h"
#include "tests/fixtures/frames.h"

namespace dpsw {
namespace {

FlowKey key(uint32_t i) { return FlowKey{0x0a000000 | (i & 0xffff), 0xc6336401, uint16_t(10000 + (i >> 16)), 443, 6}; }

ConnTrack::Options opts(uint32_t size) {
  ConnTrack::Options o;
  o.size = size;
  return o;
}

void fill(ConnTrack& ct, uint32_t n) {
  for (uint32_t i = 0; i < n; i++) {
    Flow* f;
    FlowKey k = key(i);
    ct.create(0, k, 0xc633640a, 0, k.dip, k.dport, FlowOut{}, FlowOut{}, 0, 0, &f);
  }
}

void report(benchmark::State& st, uint64_t c0, uint64_t items) {
  st.counters["cycles/pkt"] = benchmark::Counter(double(rdtsc() - c0) / double(items));
  st.SetItemsProcessed(int64_t(items));
}

void BM_ConntrackLookup(benchmark::State& st) {
  const uint32_t n = uint32_t(st.range(0));
  ConnTrack ct(opts(n * 2));
  fill(ct, n);
  uint32_t i = 0;
  bool reply;
  uint64_t c0 = rdtsc(), items = 0;
  for (auto _ : st) {
    benchmark::DoNotOptimize(ct.find(key(i), &reply));
    i = i + 1 == n ? 0 : i + 1;
    items++;
  }
  report(st, c0, items);
}
BENCHMARK(BM_ConntrackLookup)->Arg(1024)->Arg(65536)->Arg(200000)->Apply(bench::fixed_iterations);

// New flows per second: create (index alloc, NAT port, two inserts).
void BM_ConntrackNewFlow(benchmark::State& st) {
  ConnTrack ct(opts(1 << 20));
  uint32_t i = 0;
  uint64_t c0 = rdtsc(), items = 0;
  for (auto _ : st) {
    Flow* f;
    FlowKey k = key(i++);
    if (ct.create(0, k, 0xc633640a, 0, k.dip, k.dport, FlowOut{}, FlowOut{}, 0, 0, &f) != ConnTrack::Create::kOk) {
      st.SkipWithError("table full");
      break;
    }
    items++;
    if (i == 60000) {  // stay within the NAT port space
      st.PauseTiming();
      ct.expire(1u << 30, [](std::function<void()> fn) { fn(); });
      i = 0;
      st.ResumeTiming();
    }
  }
  report(st, c0, items);
}
BENCHMARK(BM_ConntrackNewFlow)->Apply(bench::fixed_iterations);

// New flows into a full table of half-open flows (a SYN flood's): each
// create evicts one (early drop: scan, claim, unindex); the control thread's
// expire() recycles the victims every 256 flows (paused), like its 250 ms tick.
void BM_ConntrackNewFlowEarlyDrop(benchmark::State& st) {
  const uint32_t n = 65536;
  ConnTrack ct(opts(n));
  for (uint32_t i = 0; i < n; i++) {
    Flow* f;
    FlowKey k = key(i);
    if (ct.create(0, k, k.sip, k.sport, 0x0a000002, 80, FlowOut{}, FlowOut{}, 0, 0, &f) == ConnTrack::Create::kOk)  // DNAT: no port
      ConnTrack::tcp_flags(*f, 0x02, false);
  }
  uint32_t i = n;
  uint64_t c0 = rdtsc(), items = 0, refused = 0;
  for (auto _ : st) {
    Flow* f;
    FlowKey k = key(i++);
    if (ct.create(0, k, k.sip, k.sport, 0x0a000002, 80, FlowOut{}, FlowOut{}, 0, 0, &f) == ConnTrack::Create::kOk)
      ConnTrack::tcp_flags(*f, 0x02, false);
    else
      refused++;
    items++;
    if ((i & 255) == 0) {
      st.PauseTiming();
      ct.expire(0, [](std::function<void()> fn) { fn(); });
      st.ResumeTiming();
    }
  }
  report(st, c0, items);
  st.counters["early_drops"] = benchmark::Counter(double(ct.early_drops()));
  st.counters["refused"] = benchmark::Counter(double(refused));
}
BENCHMARK(BM_ConntrackNewFlowEarlyDrop)->Apply(bench::fixed_iterations);

// SNAT rewrite of a TCP packet: two addresses, one port, incremental checksums, TTL.
void BM_NatRewriteTcp(benchmark::State& st) {
  std::vector<uint8_t> f = test::ipv4_frame(0x020000000002ULL, 0x020000000001ULL, 0x0a000002, 0xc6336401, 6, 14 + 20 + 20 + 64);
  uint8_t* ip = f.data() + 14;
  uint64_t c0 = rdtsc(), items = 0;
  uint32_t a = 0x0a000002;
  for (auto _ : st) {
    stage::route_detail::rewrite(ip, 20, 6, true, a ^= 1, 1025);
    ip[8] = 64;
    benchmark::DoNotOptimize(stage::route_detail::ttl_down(ip));
    benchmark::ClobberMemory();
    items++;
  }
  report(st, c0, items);
}
BENCHMARK(BM_NatRewriteTcp)->Apply(bench::fixed_iterations);

}  // namespace
}  // namespace dpsw

BENCHMARK_MAIN();
