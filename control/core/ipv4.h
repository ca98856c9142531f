// IPv4 addresses and prefixes as host-order integers.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace dpsw {

struct Ipv4Prefix {
  uint32_t addr = 0;  // host byte order
  uint8_t len = 0;
  uint32_t mask() const { return len ? ~uint32_t(0) << (32 - len) : 0; }
  uint32_t network() const { return addr & mask(); }
  uint32_t broadcast() const { return network() | ~mask(); }
  bool contains(uint32_t a) const { return (a & mask()) == network(); }
  bool overlaps(const Ipv4Prefix& o) const {
    uint8_t l = len < o.len ? len : o.len;
    uint32_t m = l ? ~uint32_t(0) << (32 - l) : 0;
    return (addr & m) == (o.addr & m);
  }
};

std::optional<uint32_t> ipv4_parse(std::string_view s);
std::optional<Ipv4Prefix> prefix_parse(std::string_view s);
std::string ipv4_to_string(uint32_t a);
std::string prefix_to_string(const Ipv4Prefix& p);

}  // namespace dpsw
