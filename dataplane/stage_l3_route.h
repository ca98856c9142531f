// Stage: route and masquerade IPv4 that was sent to dpsw's router MAC and is
// not for dpsw itself (stage_l3_local decided that).
//   container network -> outside: SNAT to the uplink address (conntrack),
//     next hop from the uplink ARP cache, out of the uplink port;
//   uplink -> uplink address: reverse the flow's SNAT, out of the
//     container's port with its MAC.
// Exits: kOut (out_port set, frame rewritten in place), kDrop (reason).
// Checksums are updated incrementally (IPv4 header; TCP/UDP pseudo-header
// and port; ICMP echo id). TTL is decremented.
#pragma once

#include "dataplane/arp_cache.h"
#include "dataplane/checksum.h"
#include "dataplane/conntrack.h"
#include "dataplane/counters.h"
#include "dataplane/snapshot.h"

namespace dpsw::stage {

enum class RouteNext : uint8_t { kOut, kDrop };

struct RouteCtx {
  const Snapshot& s;
  ConnTrack& ct;
  ArpCache& arp;
  unsigned worker;
  uint32_t now;
};

namespace route_detail {
// L4 "ports" of a packet in the key's sense; false if not trackable.
// ICMP: only echo is tracked; request carries the id as sport, reply as dport.
inline bool l4_ports(uint8_t proto, const uint8_t* l4, uint32_t l4len, uint16_t* sport, uint16_t* dport) {
  if (proto == 6 || proto == 17) {
    if (l4len < (proto == 6 ? 20u : 8u)) return false;
    *sport = csum::load16(l4);
    *dport = csum::load16(l4 + 2);
    return true;
  }
  if (proto == 1 && l4len >= 8) {
    if (l4[0] == 8) return *sport = csum::load16(l4 + 4), *dport = 0, true;
    if (l4[0] == 0) return *sport = 0, *dport = csum::load16(l4 + 4), true;
  }
  return false;
}

// Rewrite one address (src: off 12, dst: off 16) and one port/id, fixing checksums.
inline void rewrite(uint8_t* ip, uint32_t ihl, uint8_t proto, bool src, uint32_t new_ip, uint16_t new_port) {
  uint8_t* l4 = ip + ihl;
  uint8_t* a = ip + (src ? 12 : 16);
  uint32_t old_ip = csum::load32(a);
  csum::store32(a, new_ip);
  csum::store16(ip + 10, csum::update32(csum::load16(ip + 10), old_ip, new_ip));
  if (proto == 6 || proto == 17) {
    uint8_t* port = l4 + (src ? 0 : 2);
    uint16_t old_port = csum::load16(port);
    csum::store16(port, new_port);
    uint8_t* ck = l4 + (proto == 6 ? 16 : 6);
    uint16_t c = csum::load16(ck);
    if (proto == 17 && c == 0) return;  // UDP without checksum stays without
    c = csum::update32(c, old_ip, new_ip);
    c = csum::update16(c, old_port, new_port);
    if (proto == 17 && c == 0) c = 0xffff;
    csum::store16(ck, c);
  } else if (proto == 1) {  // echo id; ICMP has no pseudo-header
    uint16_t old_id = csum::load16(l4 + 4);
    csum::store16(l4 + 4, new_port);
    csum::store16(l4 + 2, csum::update16(csum::load16(l4 + 2), old_id, new_port));
  }
}

inline bool ttl_down(uint8_t* ip) {
  if (ip[8] <= 1) return false;
  uint16_t old = csum::load16(ip + 8);
  ip[8]--;
  csum::store16(ip + 10, csum::update16(csum::load16(ip + 10), old, csum::load16(ip + 8)));
  return true;
}
}  // namespace route_detail

inline RouteNext l3_route(Packet& p, const BdEntry& bd, RouteCtx& c, uint16_t* out_port, Drop* drop) {
  using namespace route_detail;
  const L3Conf& l3 = c.s.l3;
  *drop = Drop::kNoRoute;
  if (!l3.enabled) return RouteNext::kDrop;
  uint8_t* f = p.data;
  uint8_t* ip = f + kEthHdrLen;
  const uint32_t ihl = uint32_t(ip[0] & 0x0f) * 4;
  const uint32_t tot = csum::load16(ip + 2);
  if (p.len < kEthHdrLen + 20 || (ip[0] >> 4) != 4 || ihl < 20 || tot < ihl || kEthHdrLen + tot > p.len) {
    *drop = Drop::kBadIp;
    return RouteNext::kDrop;
  }
  const uint8_t proto = ip[9];
  const uint32_t sip = csum::load32(ip + 12), dip = csum::load32(ip + 16);
  uint8_t* l4 = ip + ihl;
  uint16_t sport, dport;
  const bool first_fragment = (csum::load16(ip + 6) & 0x1fff) == 0;
  if (!first_fragment || !l4_ports(proto, l4, tot - ihl, &sport, &dport)) return RouteNext::kDrop;  // no_route

  if (p.in_port == l3.uplink_port) {
    // From outside, to the host address: only replies of our flows (published ports come later).
    if (dip != l3.uplink_ip) return RouteNext::kDrop;
    bool reply = false;
    Flow* fl = c.ct.find(FlowKey{sip, dip, sport, dport, proto}, &reply);
    if (!fl || !reply) {
      *drop = Drop::kNoFlow;
      return RouteNext::kDrop;
    }
    if (!ttl_down(ip)) return *drop = Drop::kTtl, RouteNext::kDrop;
    rewrite(ip, ihl, proto, false, fl->orig.sip, proto == 1 ? fl->orig.sport : fl->orig.sport);
    if (proto == 6) ConnTrack::tcp_flags(*fl, l4[13], true);
    else if (!fl->state.load(std::memory_order_relaxed)) fl->state.store(1, std::memory_order_relaxed);  // relaxed: "replied", an ageing hint
    ConnTrack::seen(*fl, c.now);
    mac_to_bytes(fl->int_mac, f);
    mac_to_bytes(fl->bd < c.s.bds.size() ? c.s.bds[fl->bd].router_mac : l3.uplink_mac, f + 6);
    *out_port = fl->int_port;
    return RouteNext::kOut;
  }

  // From a container network.
  if (dip == bd.local_ip) return RouteNext::kDrop;  // to the gateway itself, not an echo: nothing serves it
  for (auto [net, mask] : l3.isolated)
    if ((dip & mask) == net) return *drop = Drop::kIsolated, RouteNext::kDrop;
  if (!bd.nat) return *drop = Drop::kInternal, RouteNext::kDrop;
  if (dip == l3.uplink_ip) return RouteNext::kDrop;  // hairpin to published ports: not yet
  bool reply = false;
  FlowKey key{sip, dip, sport, dport, proto};
  Flow* fl = c.ct.find(key, &reply);
  if (fl && reply) return RouteNext::kDrop;  // a reply tuple from inside cannot happen: refuse
  if (!fl) {
    switch (c.ct.create(c.worker, key, l3.uplink_ip, p.in_port, p.bd, mac_from_bytes(f + 6), c.now, &fl)) {
      case ConnTrack::Create::kOk: break;
      default: return *drop = Drop::kCtFull, RouteNext::kDrop;
    }
  }
  // Next hop on the uplink's segment.
  uint32_t nh = c.arp.on_segment(dip) ? dip : l3.gateway;
  Mac nh_mac = nh ? c.arp.lookup(nh) : 0;
  if (!nh_mac) {
    if (nh) c.arp.want(nh);
    *drop = nh ? Drop::kArpMiss : Drop::kNoRoute;
    return RouteNext::kDrop;
  }
  if (!ttl_down(ip)) return *drop = Drop::kTtl, RouteNext::kDrop;
  rewrite(ip, ihl, proto, true, l3.uplink_ip, fl->nat_port);
  if (proto == 6) ConnTrack::tcp_flags(*fl, l4[13], false);
  ConnTrack::seen(*fl, c.now);
  mac_to_bytes(nh_mac, f);
  mac_to_bytes(l3.uplink_mac, f + 6);
  *out_port = l3.uplink_port;
  return RouteNext::kOut;
}

}  // namespace dpsw::stage
