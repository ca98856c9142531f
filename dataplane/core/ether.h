// Ethernet addresses and header helpers shared by stages, control and tests.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace dpsw {

constexpr uint32_t kEthHdrLen = 14;
constexpr uint16_t kEtherTypeIpv4 = 0x0800;
constexpr uint16_t kEtherTypeArp = 0x0806;
constexpr uint16_t kEtherTypeVlan = 0x8100;

// A MAC address held in the low 48 bits of a u64, first octet most
// significant (so 01:.. multicast is bit 40).
using Mac = uint64_t;

inline Mac mac_from_bytes(const uint8_t* p) {
  return (uint64_t(p[0]) << 40) | (uint64_t(p[1]) << 32) | (uint64_t(p[2]) << 24) |
         (uint64_t(p[3]) << 16) | (uint64_t(p[4]) << 8) | uint64_t(p[5]);
}
inline void mac_to_bytes(Mac m, uint8_t* p) {
  for (int i = 0; i < 6; i++) p[i] = uint8_t(m >> (40 - 8 * i));
}
inline bool mac_is_multicast(Mac m) { return (m >> 40) & 1; }  // includes broadcast
inline bool mac_is_broadcast(Mac m) { return m == 0xffffffffffffULL; }
inline bool mac_is_zero(Mac m) { return m == 0; }

std::string mac_to_string(Mac m);
std::optional<Mac> mac_parse(std::string_view s);

inline uint16_t load_be16(const uint8_t* p) { return uint16_t(p[0] << 8 | p[1]); }
inline void store_be16(uint8_t* p, uint16_t v) {
  p[0] = uint8_t(v >> 8);
  p[1] = uint8_t(v);
}

}  // namespace dpsw
