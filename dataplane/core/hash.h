// Small helpers shared by the lock-free tables (MAC table, conntrack).
#pragma once

#include <cstdint>

namespace dpsw {

inline uint64_t mix64(uint64_t x) {  // murmur3 fmix64
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

// Age of a millisecond timestamp; clocks read by different threads may be a
// hair apart, so a timestamp slightly in the future counts as age 0, not as
// 49 days.
inline uint32_t age_of(uint32_t now, uint32_t ts) {
  int32_t d = int32_t(now - ts);
  return d < 0 ? 0 : uint32_t(d);
}

}  // namespace dpsw
