// Stage: VXLAN encapsulation towards a remote VTEP (a frame forwarded or
// flooded to a tunnel port of an overlay network). Writes the outer frame
// into a buffer of the worker's and sends it on to the uplink port.
// Exits: kOut (`out` is the outer frame for the uplink), kTooBig (the outer
// frame would exceed the underlay MTU: dropped, see frag_needed()), kDrop
// (arp_miss: the next hop is being resolved; no_route: off-segment VTEP and
// no gateway).
//
// Outer headers (documented in README): source = uplink MAC and address,
// destination = the VTEP's MAC (or the uplink gateway's when the VTEP is off
// the segment), TTL 64, DF clear (as the Linux vxlan default: the underlay may
// fragment), identification per worker, UDP source port from the inner flow
// (49152-65535), UDP checksum 0.
#pragma once

#include <algorithm>
#include <cstring>

#include "dataplane/nat/arp_cache.h"
#include "dataplane/core/checksum.h"
#include "dataplane/core/counters.h"
#include "dataplane/core/snapshot.h"
#include "dataplane/overlay/vxlan.h"

namespace dpsw::stage {

enum class VxlanOutNext : uint8_t { kOut, kTooBig, kDrop };

// buf: cap bytes; frames that would not fit are kTooBig like those over the underlay MTU.
inline VxlanOutNext vxlan_output(const Packet& p, const PortEntry& tunnel, const Snapshot& s, ArpCache& arp, uint16_t ip_id,
                                 uint8_t* buf, uint32_t cap, Packet* out, Drop* drop) {
  const L3Conf& l3 = s.l3;
  const PortEntry* up = s.port(l3.uplink_port);
  if (!up) return *drop = Drop::kNoNetwork, VxlanOutNext::kDrop;
  if (p.len + kVxlanOverhead > std::min(up->max_frame, cap)) return *drop = Drop::kTooBig, VxlanOutNext::kTooBig;
  const uint32_t nh = arp.on_segment(tunnel.vtep) ? tunnel.vtep : l3.gateway;
  const Mac dmac = nh ? arp.lookup(nh) : 0;
  if (!dmac) {
    if (nh) arp.want(nh);
    *drop = nh ? Drop::kArpMiss : Drop::kNoRoute;
    return VxlanOutNext::kDrop;
  }
  VxlanEncap e{l3.uplink_mac, dmac, l3.uplink_ip, tunnel.vtep, tunnel.vni, 64, false};
  out->data = buf;
  out->len = vxlan_encap(e, p.data, p.len, buf, ip_id);
  out->in_port = p.in_port;
  out->mbuf = nullptr;
  return VxlanOutNext::kOut;
}

// What Linux does for a bridged frame too big for its tunnel: an ICMP
// "fragmentation needed" (with the tunnel's inner MTU) back to the sender,
// as if from the destination it tried to reach — only for IPv4 with DF set
// (others are dropped: the sender cannot learn from it). Writes the reply
// into buf (at least 14 + 20 + 8 + 548 bytes); returns its length, 0 if none.
inline uint32_t frag_needed(const Packet& p, uint32_t inner_mtu, uint8_t* buf) {
  const uint8_t* f = p.data;
  if (p.len < kEthHdrLen + 20 || load_be16(f + 12) != kEtherTypeIpv4 || mac_is_multicast(mac_from_bytes(f))) return 0;
  const uint8_t* ip = f + kEthHdrLen;
  const uint32_t ihl = uint32_t(ip[0] & 0x0f) * 4;
  if ((ip[0] >> 4) != 4 || ihl < 20 || kEthHdrLen + ihl > p.len || !(csum::load16(ip + 6) & 0x4000)) return 0;
  if (ip[9] == 1 && kEthHdrLen + ihl < p.len && ip[ihl] != 0 && ip[ihl] != 8) return 0;  // never about an ICMP error
  const uint32_t quote = std::min<uint32_t>(p.len - kEthHdrLen, 548);  // RFC 1812: the reply fits in 576 bytes
  mac_to_bytes(mac_from_bytes(f + 6), buf);
  mac_to_bytes(mac_from_bytes(f), buf + 6);
  store_be16(buf + 12, kEtherTypeIpv4);
  uint8_t* o = buf + kEthHdrLen;
  o[0] = 0x45, o[1] = 0;
  csum::store16(o + 2, uint16_t(20 + 8 + quote));
  csum::store16(o + 4, 0);
  csum::store16(o + 6, 0);
  o[8] = 64, o[9] = 1;
  o[10] = o[11] = 0;
  std::memcpy(o + 12, ip + 16, 4);  // from the destination...
  std::memcpy(o + 16, ip + 12, 4);  // ...to the sender
  csum::store16(o + 10, csum::of(o, 20));
  uint8_t* icmp = o + 20;
  icmp[0] = 3, icmp[1] = 4;  // destination unreachable, fragmentation needed
  icmp[2] = icmp[3] = 0;
  csum::store16(icmp + 4, 0);
  csum::store16(icmp + 6, uint16_t(inner_mtu));
  std::memcpy(icmp + 8, ip, quote);
  csum::store16(icmp + 2, csum::of(icmp, 8 + quote));
  return kEthHdrLen + 20 + 8 + quote;
}

}  // namespace dpsw::stage
