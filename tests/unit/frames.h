// Test helpers: build Ethernet frames.
#pragma once

#include <cstdint>
#include <vector>

#include "dataplane/core/ether.h"

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

namespace dpsw::test {

inline std::vector<uint8_t> arp_request(Mac src, uint32_t sender_ip, uint32_t target_ip) {
  std::vector<uint8_t> f(60, 0);
  mac_to_bytes(kBcast, f.data());
  mac_to_bytes(src, f.data() + 6);
  store_be16(f.data() + 12, kEtherTypeArp);
  uint8_t* a = f.data() + 14;
  store_be16(a, 1), store_be16(a + 2, kEtherTypeIpv4), a[4] = 6, a[5] = 4, store_be16(a + 6, 1);
  mac_to_bytes(src, a + 8);
  for (int i = 0; i < 4; i++) a[14 + i] = uint8_t(sender_ip >> (24 - 8 * i)), a[24 + i] = uint8_t(target_ip >> (24 - 8 * i));
  return f;
}

inline uint16_t inet_csum(const uint8_t* p, size_t n) {
  uint32_t s = 0;
  for (size_t i = 0; i + 1 < n; i += 2) s += uint32_t(p[i] << 8 | p[i + 1]);
  if (n & 1) s += uint32_t(p[n - 1] << 8);
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return uint16_t(~s);
}

// Ethernet + IPv4 + ICMP echo request with `payload` bytes of data (odd lengths allowed).
inline std::vector<uint8_t> icmp_echo(Mac dst, Mac src, uint32_t sip, uint32_t dip, size_t payload, uint16_t id = 0x1234) {
  std::vector<uint8_t> f(14 + 20 + 8 + payload, 0);
  mac_to_bytes(dst, f.data());
  mac_to_bytes(src, f.data() + 6);
  store_be16(f.data() + 12, kEtherTypeIpv4);
  uint8_t* ip = f.data() + 14;
  ip[0] = 0x45, store_be16(ip + 2, uint16_t(20 + 8 + payload)), ip[8] = 17, ip[9] = 1;
  for (int i = 0; i < 4; i++) ip[12 + i] = uint8_t(sip >> (24 - 8 * i)), ip[16 + i] = uint8_t(dip >> (24 - 8 * i));
  store_be16(ip + 10, inet_csum(ip, 20));
  uint8_t* icmp = ip + 20;
  icmp[0] = 8, store_be16(icmp + 4, id), store_be16(icmp + 6, 7);
  for (size_t i = 0; i < payload; i++) icmp[8 + i] = uint8_t(i * 13 + 1);
  store_be16(icmp + 2, inet_csum(icmp, 8 + payload));
  return f;
}

}  // namespace dpsw::test
