// Stage: VXLAN termination on the uplink (overlay networks). Runs on frames
// received from the uplink port before anything else looks at them.
// A frame to our uplink MAC and address, UDP port 4789, is decapsulated and
// re-enters the pipeline as a frame received on the tunnel port of its
// (VNI, outer source address); every other frame continues unchanged.
// Exits: kNotVxlan (ordinary uplink traffic), kTunnel (inner frame and tunnel
// port set), kDrop (vxlan_bad, vxlan_fragment, vxlan_vni, vxlan_peer).
//
// The inner Packet points into the outer frame's buffer (no copy); it is
// valid as long as the outer frame, i.e. until the uplink's release().
#pragma once

#include <algorithm>

#include "dataplane/core/counters.h"
#include "dataplane/core/snapshot.h"
#include "dataplane/overlay/vxlan.h"

namespace dpsw::stage {

enum class VxlanInNext : uint8_t { kNotVxlan, kTunnel, kDrop };

// The tunnel port for (vni, vtep); kInvalidPort with *why = kVxlanVni (no
// network has the VNI) or kVxlanPeer (the VNI's network does not list vtep).
inline uint16_t find_tunnel(const Snapshot& s, uint32_t vni, uint32_t vtep, Drop* why) {
  auto below = [](const TunnelKey& t, uint64_t v) { return t.key < v; };
  auto first = std::lower_bound(s.tunnels.begin(), s.tunnels.end(), TunnelKey::make(vni, 0), below);
  if (first == s.tunnels.end() || first->key >> 32 != vni) return *why = Drop::kVxlanVni, kInvalidPort;
  const uint64_t k = TunnelKey::make(vni, vtep);
  auto it = std::lower_bound(first, s.tunnels.end(), k, below);
  if (it != s.tunnels.end() && it->key == k) return it->port;
  return *why = Drop::kVxlanPeer, kInvalidPort;
}

inline VxlanInNext vxlan_input(const Packet& p, const Snapshot& s, Packet* inner, uint16_t* tport, Drop* drop) {
  const uint8_t* f = p.data;
  // Cheap filter first: our MAC, IPv4, UDP, our address, port 4789.
  if (p.len < kEthHdrLen + 20 + 8 || load_be16(f + 12) != kEtherTypeIpv4) return VxlanInNext::kNotVxlan;
  const uint8_t* ip = f + kEthHdrLen;
  const uint32_t ihl = uint32_t(ip[0] & 0x0f) * 4;
  if (ip[9] != 17 || csum::load32(ip + 16) != s.l3.uplink_ip || mac_from_bytes(f) != s.l3.uplink_mac ||
      kEthHdrLen + ihl + 8 > p.len || csum::load16(ip + ihl + 2) != kVxlanPort)
    return VxlanInNext::kNotVxlan;
  VxlanInfo info;
  switch (vxlan_decap(f, p.len, &info)) {
    case VxlanDecap::kOk:
      break;
    case VxlanDecap::kNotVxlan:
      return VxlanInNext::kNotVxlan;
    case VxlanDecap::kFragment:  // a peer fragmented the outer packet: not reassembled (README "Overlay networks")
      *drop = Drop::kVxlanFragment;
      return VxlanInNext::kDrop;
    default:  // truncated, bad outer IPv4, I flag clear
      *drop = Drop::kVxlanBad;
      return VxlanInNext::kDrop;
  }
  *tport = find_tunnel(s, info.vni, info.src_ip, drop);
  if (*tport == kInvalidPort) return VxlanInNext::kDrop;
  inner->data = const_cast<uint8_t*>(info.inner);
  inner->len = info.inner_len;
  inner->in_port = *tport;
  inner->handle = p.handle;
  inner->mbuf = nullptr;  // not the start of the mbuf's data: destinations copy
  return VxlanInNext::kTunnel;
}

}  // namespace dpsw::stage
