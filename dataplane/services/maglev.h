// Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable
// Software Network Load Balancer", NSDI 2016, section 3.4): a lookup table
// of a prime size M in which every backend owns about M/N entries. Each
// backend's preference list is a permutation of the entries derived from
// its own key (offset, skip), not from its position, so a table rebuilt
// without one backend moves little more than that backend's 1/N of the
// entries. The table is built on the control thread; workers only index it
// (hash of a connection's tuple % M).
#pragma once

#include <cstdint>
#include <vector>

namespace dpsw {

struct Maglev {
  static constexpr uint32_t kSize = 65537;  // prime, >= 100 x the backends a service is meant to have
  // The table for backends with these stable keys (e.g. a hash of the
  // endpoint's name): entry -> index into `keys`. Empty without backends.
  static std::vector<uint16_t> build(const std::vector<uint64_t>& keys, uint32_t size = kSize);
  // A stable key for a backend from its name.
  static uint64_t key_of(const char* name);
};

}  // namespace dpsw
