#include "control/bridge/ipam.h"

#include <algorithm>

namespace dpsw {

Ipam::Ipam(Ipv4Prefix subnet, uint32_t gateway, std::optional<Ipv4Prefix> range)
    : subnet_(subnet), gateway_(gateway) {
  Ipv4Prefix r = range ? *range : subnet;
  lo_ = r.network();
  hi_ = r.broadcast();
  used_.assign(size_t(subnet_.broadcast() - subnet_.network()) + 1, false);
}

Ipam::Reserve Ipam::reserve(uint32_t a) {
  if (!subnet_.contains(a)) return Reserve::kOutsideSubnet;
  if (!usable(a)) return Reserve::kReserved;
  auto i = a - subnet_.network();
  if (used_[i]) return Reserve::kInUse;
  used_[i] = true;
  return Reserve::kOk;
}

std::optional<uint32_t> Ipam::allocate() {
  // Everything below next_ is taken: n allocations cost O(n), not O(n^2).
  for (uint64_t a = std::max<uint64_t>(lo_, next_); a <= hi_; a++) {
    if (!usable(uint32_t(a)) || used_[a - subnet_.network()]) continue;
    used_[a - subnet_.network()] = true;
    next_ = a + 1;
    return uint32_t(a);
  }
  next_ = uint64_t(hi_) + 1;
  return std::nullopt;
}

void Ipam::release(uint32_t a) {
  if (!subnet_.contains(a)) return;
  used_[a - subnet_.network()] = false;
  next_ = std::min<uint64_t>(next_, a);
}

size_t Ipam::free_count() const {
  size_t n = 0;
  for (uint64_t a = lo_; a <= hi_; a++)
    if (usable(uint32_t(a)) && !used_[a - subnet_.network()]) n++;
  return n;
}

}  // namespace dpsw
