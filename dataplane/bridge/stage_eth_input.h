// Stage 1: Ethernet input. Validates each received frame and tags it with
// the network (bridge domain) of its input port.
// Exits: kL2 (continue to learning/forwarding), kDrop (reason in `drop`).
#pragma once

#include <algorithm>
#include <cstring>

#include "dataplane/core/checksum.h"
#include "dataplane/core/counters.h"
#include "dataplane/core/ether.h"
#include "dataplane/core/snapshot.h"

namespace dpsw::stage {

enum class EthNext : uint8_t { kL2, kDrop };

struct EthResult {
  EthNext next;
  Drop drop;
  Mac dst, src;
};

// Frames > max_frame (MTU + header, +4 for one VLAN tag) are dropped, and so
// are frames whose source could never be a station's: multicast, zero, or
// dpsw's own MAC on that network (learning it would send every other
// endpoint's gateway traffic to the sender). An endpoint's port may not
// announce dpsw's own address on the network in ARP (a gratuitous ARP for
// the host address from a macvlan endpoint would take the host's traffic);
// nor may a tunnel announce an overlay's gateway, which is this host's.
inline EthResult eth_input(Packet& p, const PortEntry& in, const BdEntry& bd) {
  if (p.len < kEthHdrLen) return {EthNext::kDrop, Drop::kRunt, 0, 0};
  if (p.len > in.max_frame + 4) return {EthNext::kDrop, Drop::kOversize, 0, 0};
  Mac dst = mac_from_bytes(p.data);
  Mac src = mac_from_bytes(p.data + 6);
  if (mac_is_multicast(src) || mac_is_zero(src) || src == bd.router_mac) return {EthNext::kDrop, Drop::kBadSrcMac, dst, src};
  // ARP for IPv4 over Ethernet: sender protocol address at 14 + 14.
  if ((in.endpoint || (in.vtep && bd.local_only)) && (bd.local_ip || !bd.vips.empty()) && p.len >= kEthHdrLen + 28 && load_be16(p.data + 12) == kEtherTypeArp &&
      (csum::load32(p.data + kEthHdrLen + 14) == bd.local_ip ||
       std::find(bd.vips.begin(), bd.vips.end(), csum::load32(p.data + kEthHdrLen + 14)) != bd.vips.end()))  // or a service's VIP
    return {EthNext::kDrop, Drop::kArpSpoof, dst, src};
  p.bd = in.bd;
  return {EthNext::kL2, Drop::kCount, dst, src};
}

}  // namespace dpsw::stage
