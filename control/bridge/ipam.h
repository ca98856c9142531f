// IP address management for one network (Docker's default IPAM semantics):
// addresses come from ip_range (default: the subnet), lowest free first; the
// network address, the broadcast address and the gateway are never handed out.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "control/core/ipv4.h"

namespace dpsw {

class Ipam {
 public:
  Ipam(Ipv4Prefix subnet, uint32_t gateway, std::optional<Ipv4Prefix> range);

  enum class Reserve { kOk, kOutsideSubnet, kReserved, kInUse };
  Reserve reserve(uint32_t addr);          // a static address
  std::optional<uint32_t> allocate();      // next free address in the range
  void release(uint32_t addr);
  size_t free_count() const;

 private:
  bool usable(uint32_t a) const { return a != subnet_.network() && a != subnet_.broadcast() && a != gateway_; }
  Ipv4Prefix subnet_;
  uint32_t gateway_;
  uint32_t lo_, hi_;            // allocation range, inclusive
  std::vector<bool> used_;      // over the whole subnet
  uint64_t next_ = 0;           // no free address in the range below this
};

}  // namespace dpsw
