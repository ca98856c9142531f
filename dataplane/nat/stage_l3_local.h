// Stage: dpsw's own L3 identity on a network. Answers ARP requests and ICMP
// echo requests for the network's local address (a bridge network's gateway,
// or the uplink address on the uplink segment) and its services' virtual
// IPs by rewriting the frame in place and sending it back out of its input port.
// Exits: kNotLocal (continue with L2 forwarding), kReply (tx to in_port),
// kRoute (IPv4 at the router MAC, not an echo to us: stage_l3_route; on an
// overlay, whose gateway routes nothing, kDrop: no_route),
// kDns (UDP or TCP to port 53 of local_ip on a network whose bd.dns is set:
// the DNS responder, dataplane/dns/stage_dns.h; on the uplink's segment with
// bd.dns_relay, UDP from port 53 to a relay port: dns_relay.h),
// kDrop (non-IPv4 at the router MAC: no_route; malformed IPv4: bad_ip; an
// echo to us with a wrong IP header or ICMP checksum: bad_csum; from a
// martian source: martian; as Linux).
//
// In-place rewrite is safe: the frame is ours until release(), and a frame
// that is answered is not forwarded anywhere else.
#pragma once

#include <algorithm>
#include <cstring>

#include "dataplane/core/checksum.h"
#include "dataplane/core/counters.h"
#include "dataplane/core/ether.h"
#include "dataplane/core/snapshot.h"
#include "dataplane/dns/dns_relay.h"

namespace dpsw::stage {

enum class LocalNext : uint8_t { kNotLocal, kReply, kRoute, kDrop, kDns };

// Martian addresses (never routed, never answered, as in Linux): 0.0.0.0/8,
// 127.0.0.0/8, 224.0.0.0/4 (multicast: never unicast-routed here), 240.0.0.0/4
// (with 255.255.255.255).
inline bool martian(uint32_t a) {
  const uint32_t o = a >> 24;
  return o == 0 || o == 127 || o >= 224;
}


// One of dpsw's own addresses on this network: the gateway, or a service's virtual IP.
inline bool own_address(const BdEntry& bd, uint32_t ip) {
  return ip == bd.local_ip || (!bd.vips.empty() && std::find(bd.vips.begin(), bd.vips.end(), ip) != bd.vips.end());
}

// A service backend's packet from one of its service ports (TCP, UDP; the
// first fragment or a whole datagram): maybe a reply to a connection to
// the VIP, which l3_route restores (or hands back to L2 forwarding).
inline bool backend_reply(const Packet& p, const ServiceTable& st) {
  if (p.len < kEthHdrLen + 20 + 8 || load_be16(p.data + 12) != kEtherTypeIpv4) return false;
  const uint8_t* ip = p.data + kEthHdrLen;
  const uint32_t ihl = uint32_t(ip[0] & 0x0f) * 4;
  if ((ip[0] >> 4) != 4 || ihl < 20 || kEthHdrLen + ihl > p.len || (ip[9] != 6 && ip[9] != 17)) return false;
  if (load_be16(ip + 6) & 0x1fff) return ip[9] == 17;  // a later fragment: l3_route finds its first's flow, if any (else bridged)
  return kEthHdrLen + ihl + 8 <= p.len && st.from_backend(p.in_port, ip[9], load_be16(ip + ihl));
}

inline LocalNext l3_local(Packet& p, const BdEntry& bd, Mac dst, Drop* drop) {
  if (!bd.local_ip) return LocalNext::kNotLocal;
  uint8_t* f = p.data;
  const uint16_t type = load_be16(f + 12);
  if (type == kEtherTypeArp) {
    // Ethernet/IPv4 ARP request for our address: answer it.
    if (p.len < kEthHdrLen + 28) return LocalNext::kNotLocal;
    uint8_t* a = f + kEthHdrLen;
    if (load_be16(a) != 1 || load_be16(a + 2) != kEtherTypeIpv4 || a[4] != 6 || a[5] != 4 || load_be16(a + 6) != 1 ||
        !own_address(bd, csum::load32(a + 24)))
      return LocalNext::kNotLocal;
    const uint32_t target = csum::load32(a + 24);
    uint8_t sender_mac[6], sender_ip[4];
    std::memcpy(sender_mac, a + 8, 6);
    std::memcpy(sender_ip, a + 14, 4);
    std::memcpy(f, sender_mac, 6);                // eth dst: the asker
    mac_to_bytes(bd.router_mac, f + 6);           // eth src: us
    store_be16(a + 6, 2);                         // op: reply
    mac_to_bytes(bd.router_mac, a + 8);           // sender hw
    csum::store32(a + 14, target);           // sender ip: the address asked for
    std::memcpy(a + 18, sender_mac, 6);           // target hw
    std::memcpy(a + 24, sender_ip, 4);            // target ip
    return LocalNext::kReply;
  }
  if (dst != bd.router_mac) return LocalNext::kNotLocal;
  // Addressed to us at L2: only ICMP echo to our own address is handled here.
  *drop = Drop::kNoRoute;
  if (type != kEtherTypeIpv4 || p.len < kEthHdrLen + 20) return LocalNext::kDrop;
  uint8_t* ip = f + kEthHdrLen;
  const uint32_t ihl = uint32_t(ip[0] & 0x0f) * 4;
  const uint32_t tot = load_be16(ip + 2);
  if ((ip[0] >> 4) != 4 || ihl < 20 || tot < ihl + 8 || kEthHdrLen + tot > p.len) {
    *drop = Drop::kBadIp;
    return LocalNext::kDrop;
  }
  const bool to_us = csum::load32(ip + 16) == bd.local_ip;
  if (to_us && (load_be16(ip + 6) & 0x3fff) == 0 &&
      ((bd.dns && (ip[9] == 17 || ip[9] == 6) && load_be16(ip + ihl + 2) == 53) ||  // to the network's DNS responder (UDP, TCP)
       (bd.dns_relay && ip[9] == 17 && load_be16(ip + ihl) == 53 &&
        load_be16(ip + ihl + 2) >= DnsRelay::kPortLo)))  // an upstream's answer to its relay
    return LocalNext::kDns;  // (not fragments: a DNS datagram here fits one frame)
  const LocalNext route = bd.local_only ? LocalNext::kDrop : LocalNext::kRoute;  // an overlay's gateway routes nothing (no_route)
  if (ip[9] != 1 /* ICMP */ || !(to_us || own_address(bd, csum::load32(ip + 16)))) return route;  // (the VIPs scanned for ICMP only)
  uint8_t* icmp = ip + ihl;
  if (icmp[0] != 8 /* echo request */ || (load_be16(ip + 6) & 0x3fff) != 0 /* fragment */) return route;
  if (csum::of(ip, ihl) != 0 || csum::of(icmp, tot - ihl) != 0) {  // not answered: Linux drops it too
    *drop = Drop::kBadCsum;
    return LocalNext::kDrop;
  }
  if (martian(csum::load32(ip + 12))) {  // an answer would go to a martian
    *drop = Drop::kMartian;
    return LocalNext::kDrop;
  }
  // Echo reply, in place.
  std::memcpy(f, f + 6, 6);
  mac_to_bytes(bd.router_mac, f + 6);
  uint8_t tmp[4];
  std::memcpy(tmp, ip + 12, 4);
  std::memcpy(ip + 12, ip + 16, 4);
  std::memcpy(ip + 16, tmp, 4);
  ip[8] = 64;  // fresh TTL
  ip[10] = ip[11] = 0;
  store_be16(ip + 10, csum::of(ip, ihl));
  uint16_t old = load_be16(icmp);  // type|code
  icmp[0] = 0;
  store_be16(icmp + 2, csum::update16(load_be16(icmp + 2), old, load_be16(icmp)));
  return LocalNext::kReply;
}

}  // namespace dpsw::stage
