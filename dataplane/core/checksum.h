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

// A TCP or UDP checksum left to offload (CHECKSUM_PARTIAL) holds only the
// folded pseudo-header sum. A Linux peer sends that by default through a veth
// (tx checksum offload on) and AF_XDP hands the frame over as it is; the
// container it is forwarded to would drop it. complete_partial() finishes
// such a checksum in place (true if it did): the field already holds the
// pseudo-header sum, so the checksum of the L4 segment as it stands is the
// full one. A complete checksum that happens to equal that sum comes out
// unchanged, so the test needs no metadata. `f`: an Ethernet frame.
inline bool complete_partial(uint8_t* f, uint32_t len) {
  if (len < 14 + 20 || load16(f + 12) != 0x0800) return false;
  uint8_t* ip = f + 14;
  const uint32_t ihl = (ip[0] & 15u) * 4, tot = load16(ip + 2);
  if ((ip[0] >> 4) != 4 || ihl < 20 || tot < ihl || 14 + tot > len || (load16(ip + 6) & 0x3fff)) return false;  // fragments: no
  const uint8_t proto = ip[9];
  const uint32_t l4len = tot - ihl;
  const uint32_t off = proto == 6 ? 16 : proto == 17 ? 6 : 0;
  if (!off || l4len < off + 2u + (proto == 6 ? 2u : 0u)) return false;
  uint8_t* l4 = ip + ihl;
  const uint32_t pseudo = uint32_t(load16(ip + 12)) + load16(ip + 14) + load16(ip + 16) + load16(ip + 18) + proto + l4len;
  if (load16(l4 + off) != fold(pseudo)) return false;
  uint16_t c = of(l4, l4len);
  if (proto == 17 && c == 0) c = 0xffff;  // UDP: 0 means "no checksum"
  store16(l4 + off, c);
  return true;
}

}  // namespace dpsw::csum
