// Internet checksum helpers (RFC 1071 / RFC 1624) and big-endian access.
#pragma once

#include <cstddef>
#include <cstdint>

namespace dpsw::csum {

inline uint32_t load32(const uint8_t* p) { return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3]; }
inline uint16_t load16(const uint8_t* p) { return uint16_t(p[0] << 8 | p[1]); }
inline void store32(uint8_t* p, uint32_t v) {
  p[0] = uint8_t(v >> 24), p[1] = uint8_t(v >> 16), p[2] = uint8_t(v >> 8), p[3] = uint8_t(v);
}
inline void store16(uint8_t* p, uint16_t v) { p[0] = uint8_t(v >> 8), p[1] = uint8_t(v); }

inline uint16_t fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return uint16_t(sum);
}
// Checksum of a buffer (complemented), e.g. an IPv4 header with its checksum field zeroed.
inline uint16_t of(const uint8_t* p, size_t n, uint32_t sum = 0) {
  for (size_t i = 0; i + 1 < n; i += 2) sum += uint32_t(p[i] << 8 | p[i + 1]);
  if (n & 1) sum += uint32_t(p[n - 1] << 8);
  return uint16_t(~fold(sum));
}
// RFC 1624 eqn. 3: checksum hc after a 16-bit word m became m2.
inline uint16_t update16(uint16_t hc, uint16_t m, uint16_t m2) {
  return uint16_t(~fold(uint32_t(uint16_t(~hc)) + uint16_t(~m) + m2));
}
inline uint16_t update32(uint16_t hc, uint32_t m, uint32_t m2) {
  return update16(update16(hc, uint16_t(m >> 16), uint16_t(m2 >> 16)), uint16_t(m), uint16_t(m2));
}

}  // namespace dpsw::csum
