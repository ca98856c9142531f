// Coarse millisecond clock for ageing (one vDSO call per burst, not per packet).
#pragma once

#include <cstdint>
#include <ctime>

namespace dpsw {

inline uint32_t now_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return uint32_t(uint64_t(ts.tv_sec) * 1000 + uint64_t(ts.tv_nsec) / 1000000);
}

inline uint64_t rdtsc() { return __builtin_ia32_rdtsc(); }

}  // namespace dpsw
