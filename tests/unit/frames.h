// Test helpers: build Ethernet frames.
#pragma once

#include <cstdint>
#include <vector>

#include "dataplane/ether.h"

namespace dpsw::test {

inline std::vector<uint8_t> eth_frame(Mac dst, Mac src, uint16_t ethertype = 0x0800, size_t len = 64, uint8_t fill = 0xab) {
  std::vector<uint8_t> f(len < 14 ? 14 : len, fill);
  mac_to_bytes(dst, f.data());
  mac_to_bytes(src, f.data() + 6);
  store_be16(f.data() + 12, ethertype);
  for (size_t i = 14; i < f.size(); i++) f[i] = uint8_t(i * 7 + fill);
  return f;
}

constexpr Mac kBcast = 0xffffffffffffULL;
inline Mac station(uint32_t n) { return 0x020000000000ULL | n; }

}  // namespace dpsw::test
