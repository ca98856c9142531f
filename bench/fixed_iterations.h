// Fixed iteration counts, for counting instructions (bench/instructions):
// with DPSW_BENCH_ITERATIONS=N in the environment every benchmark that
// applies this runs exactly N iterations instead of as many as fit its
// minimum time. Without it, Google Benchmark's own choice stands.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdlib>

namespace dpsw::bench {

inline void fixed_iterations(benchmark::internal::Benchmark* b) {
  if (const char* n = std::getenv("DPSW_BENCH_ITERATIONS"); n && std::atoll(n) > 0) b->Iterations(std::atoll(n));
}

}  // namespace dpsw::bench
