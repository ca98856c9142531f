// Stage: route and masquerade IPv4 that was sent to dpsw's router MAC and is
// not for dpsw itself (stage_l3_local decided that).
//   container network -> outside: SNAT to the uplink address (conntrack),
//     next hop from the uplink ARP cache, out of the uplink port;
//   uplink -> uplink address: reverse the flow's SNAT, out of the
//     container's port with its MAC.
//   a service's VIP (or its published port): DNAT to the backend Maglev
//     picks for the connection, the client's address kept;
//   a service backend's packet from a service port (l3_local sends it even
//     when it is not for the router MAC): a VIP connection's reply, restored.
// A TCP SYN on the tuple of a flow that is over (FIN or RST seen), from the
// port that flow came from, opens a new connection: the old flow goes
// (ConnTrack::reopen), the SYN makes the new one. A backend's SYN+ACK on an
// over VIP flow's reply tuple, from the backend's port, ends that flow too
// and goes on as the answer of a connection made straight to the backend
// on a just-used client port (bridged, or routed to an allowed network).
// Once such a flow's close handshake is complete (time_wait), the backend's
// other segments on its reply tuple but FINs go on unchanged too (stray()):
// its TIME_WAIT's ACK to such a connection's SYN, which the client must see
// as it is.
// Exits: kOut (out_port set, frame rewritten in place), kDrop (reason), kL2
// (a backend's packet that belongs to no VIP connection: bridged).
// Checksums are updated incrementally (IPv4 header; TCP/UDP pseudo-header
// and port; ICMP echo id). TTL is decremented.
// Checked first, as Linux does: the IPv4 header checksum (bad_csum) and
// martian addresses (martian: 0/8, 127/8, 224/4, 240/4 as source or
// destination; never masqueraded onto the uplink).
// Fragments: a first fragment is matched like any packet (it has the L4
// header) and remembered in the worker's FragTable; later fragments follow
// it with an address-only rewrite (frag_table.h). Protocols other than TCP,
// UDP and ICMP are masqueraded by address only (ports 0 in their keys; one
// endpoint per (protocol, remote address) at a time: nat_clash).
#pragma once

#include <algorithm>

#include "dataplane/nat/arp_cache.h"
#include "dataplane/core/checksum.h"
#include "dataplane/nat/conntrack.h"
#include "dataplane/core/counters.h"
#include "dataplane/nat/frag_table.h"
#include "dataplane/core/snapshot.h"
#include "dataplane/nat/stage_l3_local.h"  // martian()

namespace dpsw::stage {

enum class RouteNext : uint8_t { kOut, kDrop, kL2 };

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

// A TCP segment's flags (l4_ports checked the header is there): a SYN that
// opens a connection, and its answer.
inline bool new_syn(const uint8_t* tcp) { return (tcp[13] & 0x17) == 0x02; }  // SYN; no ACK, RST, FIN
inline bool syn_ack(const uint8_t* tcp) { return (tcp[13] & 0x17) == 0x12; }  // SYN+ACK; no RST, FIN
// What a TCP segment matching no flow may do. As netfilter (tcp_loose on):
// a SYN opens a flow, and so does an ACK (a connection picked up
// mid-stream). A FIN or RST from inside picks one up too, but only while its
// worker has room (Origin::kPickup): a connection's close after its flow
// expired (idle past tcp_established, or dpsw restarted) still reaches the
// remote, masqueraded with the kept port. Anything else (a SYN+ACK, SYN with
// FIN or RST, no flags; from outside a FIN or RST as well) is netfilter's
// INVALID: a flow made from it would only fill the table (after a SYN flood, a
// server's SYN+ACK retries for the flows early drop took once used up the
// reserve the containers' own new connections need).
enum class TcpNew : uint8_t { kOpens, kCloses, kInvalid };
inline TcpNew tcp_new(const uint8_t* tcp) {
  const uint8_t f = tcp[13] & 0x17;  // FIN, SYN, RST, ACK (PSH, URG, ECE, CWR do not matter)
  if (f == 0x02 || f == 0x10) return TcpNew::kOpens;
  if (!(f & 0x02) && (f & 0x05)) return TcpNew::kCloses;
  return TcpNew::kInvalid;
}
// A TCP flow whose connection is over: a FIN or a RST seen.
inline bool over(const Flow& f) {
  return f.state.load(std::memory_order_relaxed) >= uint8_t(TcpState::kClosing);  // relaxed: states only move up; a hint is enough
}
// A backend's segment on the reply tuple of a VIP flow whose close
// handshake is complete (both FINs acknowledged) and that kept the client's
// address and port (so a connection straight to the backend can have the
// same tuple), other than a SYN or a FIN (a FIN resent, its ACK lost past
// dpsw, is still the old connection's): not the old connection's.
inline bool stray(const Flow& f, const uint8_t* tcp) {
  return f.state.load(std::memory_order_relaxed) == uint8_t(TcpState::kTimeWait) &&  // relaxed: as over()
         !(tcp[13] & 0x03) && f.xsrc_ip == f.orig.sip && f.xsrc_port == f.orig.sport;
}

// Rewrite the source (off 12) or destination (off 16) address, fixing the IP
// checksum and the TCP/UDP pseudo-header checksum.
inline void rewrite_ip(uint8_t* ip, uint32_t ihl, uint8_t proto, bool src, uint32_t new_ip) {
  uint8_t* a = ip + (src ? 12 : 16);
  uint32_t old_ip = csum::load32(a);
  if (old_ip == new_ip) return;
  csum::store32(a, new_ip);
  csum::store16(ip + 10, csum::update32(csum::load16(ip + 10), old_ip, new_ip));
  if (proto == 6 || proto == 17) {
    uint8_t* ck = ip + ihl + (proto == 6 ? 16 : 6);
    uint16_t c = csum::load16(ck);
    if (proto == 17 && c == 0) return;  // UDP without checksum stays without
    c = csum::update32(c, old_ip, new_ip);
    csum::store16(ck, proto == 17 && c == 0 ? 0xffff : c);
  }
}
// Rewrite the source or destination port (TCP/UDP), or the echo id (ICMP, `src` ignored).
inline void rewrite_port(uint8_t* l4, uint8_t proto, bool src, uint16_t new_port) {
  uint8_t* at = proto == 1 ? l4 + 4 : l4 + (src ? 0 : 2);
  uint16_t old = csum::load16(at);
  if (old == new_port) return;
  csum::store16(at, new_port);
  uint8_t* ck = l4 + (proto == 6 ? 16 : proto == 17 ? 6 : 2);
  uint16_t c = csum::load16(ck);
  if (proto == 17 && c == 0) return;
  c = csum::update16(c, old, new_port);
  csum::store16(ck, proto == 17 && c == 0 ? 0xffff : c);
}
inline void rewrite(uint8_t* ip, uint32_t ihl, uint8_t proto, bool src, uint32_t new_ip, uint16_t new_port) {
  rewrite_ip(ip, ihl, proto, src, new_ip);
  rewrite_port(ip + ihl, proto, src, new_port);
}

inline bool ttl_down(uint8_t* ip) {
  if (ip[8] <= 1) return false;
  uint16_t old = csum::load16(ip + 8);
  ip[8]--;
  csum::store16(ip + 10, csum::update16(csum::load16(ip + 10), old, csum::load16(ip + 8)));
  return true;
}
}  // namespace route_detail

// Send one packet of a flow on its way: rewrite for its direction, choose MACs, port.
// l4: the packet carries the L4 header (false: a fragment after the first,
// only the IP header is rewritten; the first fragment fixed the L4 checksum).
inline RouteNext forward(Packet& p, uint8_t* ip, uint32_t ihl, uint8_t proto, Flow& fl, bool reply, RouteCtx& c,
                         uint16_t* out_port, Drop* drop, bool l4 = true) {
  using namespace route_detail;
  // A flow's packets come from where its other direction goes: a packet
  // with a flow's tuple from any other port (another network's container
  // reusing the tuple, or sending the reply tuple) is not that flow's.
  if (p.in_port != fl.out[!reply].port) return *drop = Drop::kWrongIngress, RouteNext::kDrop;
  const FlowOut& out = fl.out[reply];
  const uint32_t ndip = reply ? fl.orig.sip : fl.xdst_ip;
  Mac dmac = out.dst_mac;
  if (!dmac) {  // towards the uplink: the next hop's MAC
    uint32_t nh = c.arp.on_segment(ndip) ? ndip : c.s.l3.gateway;
    dmac = nh ? c.arp.lookup(nh) : 0;
    if (!dmac) {
      if (nh) c.arp.want(nh);
      *drop = nh ? Drop::kArpMiss : Drop::kNoRoute;
      return RouteNext::kDrop;
    }
  }
  if (!ttl_down(ip)) return *drop = Drop::kTtl, RouteNext::kDrop;
  uint8_t* l4h = ip + ihl;
  const uint8_t csum_proto = l4 ? proto : 0;  // 0: the IP header checksum only
  const bool ports = l4 && has_ports(proto);
  if (!reply) {
    rewrite_ip(ip, ihl, csum_proto, true, fl.xsrc_ip);
    rewrite_ip(ip, ihl, csum_proto, false, fl.xdst_ip);
    if (ports) {
      rewrite_port(l4h, proto, true, fl.xsrc_port);  // ICMP: the echo id
      if (proto != 1) rewrite_port(l4h, proto, false, fl.xdst_port);
    }
  } else {
    rewrite_ip(ip, ihl, csum_proto, true, fl.orig.dip);
    rewrite_ip(ip, ihl, csum_proto, false, fl.orig.sip);
    if (ports) {
      if (proto != 1) rewrite_port(l4h, proto, true, fl.orig.dport);
      rewrite_port(l4h, proto, false, fl.orig.sport);  // ICMP: the echo id back
    }
  }
  if (!l4) {
  } else if (proto == 6) {
    // (the callers checked the total length) Established: the kernel tier may take it.
    if (ConnTrack::tcp_segment(fl, l4h, csum::load16(ip + 2) - ihl, reply)) c.ct.announce(c.worker, fl);
  } else if (reply && !fl.state.load(std::memory_order_relaxed)) {
    fl.state.store(1, std::memory_order_relaxed);  // relaxed: "replied", an ageing hint
  }
  ConnTrack::seen(fl, c.now);
  mac_to_bytes(dmac, p.data);
  mac_to_bytes(out.src_mac, p.data + 6);
  *out_port = out.port;
  return RouteNext::kOut;
}

// ICMP error (destination unreachable, time exceeded, parameter problem)
// about a packet of one of our flows: restore the quoted packet to what the
// endpoint sent, send the error to that endpoint. The quoted packet, reversed,
// is exactly a response tuple, so one lookup finds flow and direction.
inline RouteNext icmp_error(Packet& p, uint8_t* ip, uint32_t ihl, uint32_t tot, RouteCtx& c, uint16_t* out_port, Drop* drop) {
  using namespace route_detail;
  uint8_t* icmp = ip + ihl;
  uint8_t* in = icmp + 8;  // the quoted IP header
  if (tot < ihl + 8 + 20 + 8 || (in[0] >> 4) != 4) return *drop = Drop::kBadIp, RouteNext::kDrop;
  const uint32_t iihl = uint32_t(in[0] & 0x0f) * 4;
  const uint32_t avail = tot - ihl - 8;  // quoted bytes present
  if (iihl < 20 || avail < iihl + 8) return *drop = Drop::kBadIp, RouteNext::kDrop;
  const uint8_t iproto = in[9];
  uint8_t* il4 = in + iihl;
  FlowKey r{csum::load32(in + 16), csum::load32(in + 12), 0, 0, iproto};
  if (iproto == 6 || iproto == 17) r.sport = csum::load16(il4 + 2), r.dport = csum::load16(il4);
  else if (iproto == 1 && il4[0] == 8) r.dport = csum::load16(il4 + 4);  // quoted echo request: its reply carries the id
  else if (iproto == 1) return *drop = Drop::kNoFlow, RouteNext::kDrop;
  // else: a protocol masqueraded by address only, ports 0
  bool reply = false;
  Flow* fl = c.ct.find(r, &reply);
  if (!fl) return *drop = Drop::kNoFlow, RouteNext::kDrop;
  if (p.in_port != fl->out[!reply].port) return *drop = Drop::kWrongIngress, RouteNext::kDrop;  // as in forward()
  // The quoted packet travelled in the other direction than a response would.
  // reply: it was an original-direction packet -> restore orig, error goes the reply way.
  // !reply: it was a reply-direction packet  -> restore (xdst -> xsrc), error goes the original way.
  const uint32_t qsrc = reply ? fl->orig.sip : fl->xdst_ip, qdst = reply ? fl->orig.dip : fl->xsrc_ip;
  const uint16_t qsport = reply ? fl->orig.sport : fl->xdst_port, qdport = reply ? fl->orig.dport : fl->xsrc_port;
  const FlowOut& out = fl->out[reply];
  if (!out.dst_mac) return *drop = Drop::kNoRoute, RouteNext::kDrop;  // errors towards the uplink: not translated (yet)
  if (!ttl_down(ip)) return *drop = Drop::kTtl, RouteNext::kDrop;
  // Quoted header: addresses (its checksum recomputed below), then ports/id with their checksums if quoted.
  const uint32_t osrc = csum::load32(in + 12), odst = csum::load32(in + 16);
  const uint16_t osport = csum::load16(il4), odport = csum::load16(il4 + 2);
  const uint32_t ck_off = iproto == 6 ? 16 : iproto == 17 ? 6 : 0;
  if (ck_off && avail >= iihl + ck_off + 2 && !(iproto == 17 && csum::load16(il4 + ck_off) == 0)) {
    uint16_t ck = csum::load16(il4 + ck_off);
    ck = csum::update32(csum::update32(ck, osrc, qsrc), odst, qdst);
    ck = csum::update16(csum::update16(ck, osport, qsport), odport, qdport);
    csum::store16(il4 + ck_off, ck);
  }
  csum::store32(in + 12, qsrc);
  csum::store32(in + 16, qdst);
  in[10] = in[11] = 0;
  csum::store16(in + 10, csum::of(in, iihl));
  if (iproto == 1) {
    csum::store16(il4 + 4, qsport);  // the endpoint's own echo id (its checksum may lie beyond the quote; ICMP sum below covers all)
  } else if (iproto == 6 || iproto == 17) {
    csum::store16(il4, qsport);
    csum::store16(il4 + 2, qdport);
  }
  // Outer destination: the endpoint.
  rewrite_ip(ip, ihl, 1, false, reply ? fl->orig.sip : fl->xdst_ip);
  // The ICMP checksum covers the whole (changed) quote: recompute it.
  icmp[2] = icmp[3] = 0;
  csum::store16(icmp + 2, csum::of(icmp, tot - ihl));
  mac_to_bytes(out.dst_mac, p.data);
  mac_to_bytes(out.src_mac, p.data + 6);
  *out_port = out.port;
  return RouteNext::kOut;
}

inline const PubRule* published(const L3Conf& l3, uint8_t proto, uint16_t port) {
  const std::vector<uint16_t>& idx = proto == 6 ? l3.pub_tcp : l3.pub_udp;
  if (proto != 6 && proto != 17) return nullptr;
  uint16_t i = idx.empty() ? 0 : idx[port];
  return i ? &l3.pub[i - 1] : nullptr;
}

// Where a new connection to a published port goes: the endpoint, or for a
// service's published port the backend Maglev picks. False: a service without backends.
struct Target {
  uint32_t ip = 0;
  uint16_t port = 0, bd = 0;
  FlowOut out{};
};
inline bool published_target(const Snapshot& s, const PubRule& rule, const FlowKey& key, Target* t) {
  const uint16_t port = uint16_t(rule.ctr_lo + (key.dport - rule.host_lo));  // the endpoint's port, or the VIP's
  if (rule.service < 0) {
    *t = {rule.ip, port, rule.bd, FlowOut{rule.port, rule.mac, rule.router_mac}};
    return true;
  }
  const VipService& v = s.services.vips[size_t(rule.service)];
  const uint16_t tport = v.target(key.proto, port);
  const ServiceBackend* b = tport ? v.pick(key.sip, key.dip, key.sport, key.dport, key.proto) : nullptr;
  if (!b) return false;
  *t = {b->ip, tport, v.bd, FlowOut{b->port, b->mac, v.router_mac}};
  return true;
}

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
  // A service backend's packet to another station of its network (l3_local
  // sent it: from a service port): the reply of a connection to the VIP, or
  // bridged as ever (kL2).
  if (p.in_port != l3.uplink_port && mac_from_bytes(f) != bd.router_mac) {
    if (csum::of(ip, ihl) != 0) return RouteNext::kL2;
    bool r = false;
    const uint16_t fr = csum::load16(ip + 6);
    if (fr & 0x1fff) {  // a later fragment: the flow its first fragment was matched to
      const FlowKey* k = c.ct.frags(c.worker).lookup(sip, dip, csum::load16(ip + 4), proto, c.now);
      Flow* fl = k ? c.ct.find(*k, &r) : nullptr;
      if (!fl || !r) return RouteNext::kL2;
      return forward(p, ip, ihl, proto, *fl, true, c, out_port, drop, false);
    }
    uint16_t bs = 0, bdp = 0;
    if (!l4_ports(proto, ip + ihl, tot - ihl, &bs, &bdp)) return RouteNext::kL2;
    const FlowKey k{sip, dip, bs, bdp, proto};
    Flow* fl = c.ct.find(k, &r);
    if (!fl || !r) return RouteNext::kL2;
    if (proto == 6 && p.in_port == fl->out[0].port && over(*fl)) {
      // A backend's SYN+ACK on the reply tuple of a VIP connection that is
      // over answers a new connection made straight to it (one made through
      // the VIP again would have reopened the flow): the old flow goes, and
      // this connection is bridged from its first packet on.
      if (syn_ack(ip + ihl)) {
        c.ct.reopen(c.worker, *fl);  // once claimed no lookup matches it, unindexed or not
        return RouteNext::kL2;
      }
      // Once the close handshake is complete, the backend's ACK on the
      // tuple is its TIME_WAIT answering a SYN made straight to it (which
      // the client's RST ends, so that the SYN's retry is accepted).
      // Bridged as it is: restored to the VIP, it would meet the client's
      // own TIME_WAIT of the VIP connection, and the backend's would stay.
      if (stray(*fl, ip + ihl)) return RouteNext::kL2;
    }
    if (fr & 0x2000) c.ct.frags(c.worker).remember(sip, dip, csum::load16(ip + 4), proto, k, c.now);  // its later fragments follow it
    return forward(p, ip, ihl, proto, *fl, true, c, out_port, drop);
  }
  if (csum::of(ip, ihl) != 0) return *drop = Drop::kBadCsum, RouteNext::kDrop;
  if (martian(sip) || martian(dip)) return *drop = Drop::kMartian, RouteNext::kDrop;
  uint16_t sport = 0, dport = 0;
  const uint16_t frag = csum::load16(ip + 6);
  const bool first_fragment = (frag & 0x1fff) == 0;
  const bool fragmented = (frag & 0x3fff) != 0;  // MF or an offset
  const bool from_uplink = p.in_port == l3.uplink_port;
  if (from_uplink && dip != l3.uplink_ip) return RouteNext::kDrop;
  // A container routes only from an address of its own network (checked
  // before any flow is looked up: no other network's tuple can be reused).
  if (!from_uplink && bd.mask && (sip & bd.mask) != bd.subnet) return *drop = Drop::kSpoofedSrc, RouteNext::kDrop;
  // A macvlan endpoint sits on the uplink's segment: dpsw serves it what it
  // serves that segment (published ports on the host address), nothing else.
  const bool from_macvlan = !from_uplink && p.bd == l3.uplink_bd;
  if (proto == 1 && first_fragment && tot - ihl >= 8) {
    uint8_t type = ip[ihl];
    if (type == 3 || type == 11 || type == 12) return icmp_error(p, ip, ihl, tot, c, out_port, drop);
  }
  bool reply = false;
  if (!has_ports(proto)) {
    // Address only: every fragment carries the whole key.
  } else if (!first_fragment) {
    // A later fragment: the flow its first fragment was matched to, looked up again by key.
    const FlowKey* k = c.ct.frags(c.worker).lookup(sip, dip, csum::load16(ip + 4), proto, c.now);
    Flow* fl = k ? c.ct.find(*k, &reply) : nullptr;
    if (!fl) return *drop = Drop::kFragNoFlow, RouteNext::kDrop;
    return forward(p, ip, ihl, proto, *fl, reply, c, out_port, drop, false);
  } else if (!l4_ports(proto, ip + ihl, tot - ihl, &sport, &dport)) {
    return RouteNext::kDrop;  // no_route
  }

  const FlowKey key{sip, dip, sport, dport, proto};
  // (Hairpin replies are addressed to the gateway: look flows up first.)
  if (Flow* fl = c.ct.find(key, &reply)) {
    // A SYN on the tuple of a connection that is over, from where that
    // connection came, opens a new one (netfilter's reopen): the old flow
    // goes, this packet makes the new one (a service's new connection gets
    // today's backend; a masquerade keeps the source port, its tuple now
    // free, as the remote's TIME_WAIT expects). A backend's SYN+ACK on
    // an over VIP flow answers a connection made straight to it (from an
    // allowed network): the old flow goes, the packet is routed.
    // After the VIP flow's close handshake, the backend's other segments
    // on its tuple are routed as they are (see the backend branch above).
    const bool syn = proto == 6 && !reply && p.in_port == fl->out[1].port && new_syn(ip + ihl) && over(*fl);
    const bool backend = proto == 6 && reply && p.in_port == fl->out[0].port && over(*fl) && c.s.services.find(fl->orig.dip);
    const bool straight = backend && syn_ack(ip + ihl);
    const bool other = backend && !straight && stray(*fl, ip + ihl);  // routed below, as it is
    if (!syn && !straight && !other) {
      if (fragmented && has_ports(proto)) c.ct.frags(c.worker).remember(sip, dip, csum::load16(ip + 4), proto, key, c.now);
      return forward(p, ip, ihl, proto, *fl, reply, c, out_port, drop);
    }
    // Not yet unindexed (a busy bucket): the SYN's retry makes it. Claimed, unindexed or not, no lookup matches it.
    if (!other && !c.ct.reopen(c.worker, *fl) && syn) return *drop = Drop::kCtBusy, RouteNext::kDrop;
  }

  // A new flow (routed between networks, below, makes none: any segment goes).
  const TcpNew tnew = proto == 6 ? tcp_new(ip + ihl) : TcpNew::kOpens;
  const bool invalid = tnew == TcpNew::kInvalid;
  const ConnTrack::Origin inside = tnew == TcpNew::kCloses ? ConnTrack::Origin::kPickup : ConnTrack::Origin::kInside;
  Flow* fl = nullptr;
  ConnTrack::Create r;
  const PubRule* rule = dip == l3.uplink_ip ? published(l3, proto, dport) : nullptr;
  const Mac router = bd.router_mac;
  // A published port of a service: its backend, chosen for this connection.
  Target to{};
  if (rule && !published_target(c.s, *rule, key, &to)) return RouteNext::kDrop;  // no backend (no_route)
  if (from_uplink || from_macvlan) {
    // Published port (DNAT): the container sees the real client address
    // (an outside host's, or a macvlan endpoint's on the same segment).
    if (!rule) return *drop = from_macvlan ? Drop::kFromMacvlan : Drop::kNoFlow, RouteNext::kDrop;
    if (tnew != TcpNew::kOpens) return *drop = Drop::kCtInvalid, RouteNext::kDrop;
    bool other = false;
    if (rule->service >= 0 && c.ct.find(FlowKey{to.ip, sip, to.port, sport, proto}, &other))  // its reply tuple is another flow's
      return *drop = Drop::kNatClash, RouteNext::kDrop;
    const FlowOut back = from_uplink ? FlowOut{l3.uplink_port, 0, l3.uplink_mac} : FlowOut{p.in_port, mac_from_bytes(f + 6), l3.uplink_mac};
    r = c.ct.create(c.worker, key, sip, sport, to.ip, to.port, to.out, back, to.bd, c.now, &fl, ConnTrack::Origin::kInbound);
  } else if (const VipService* v = c.s.services.find(dip)) {
    // A service's virtual IP: DNAT to the backend Maglev picks for this
    // connection, the client's address kept (its replies come back through
    // dpsw: l3_local sends a backend's packets from service ports here). From
    // its own network, or one allowed to route to it. A backend reaching its
    // own service is masqueraded behind the gateway (its reply would not
    // come back to dpsw otherwise).
    if (p.bd != v->bd) {
      const size_t nbd = c.s.bds.size();
      if (!bd.nat || size_t(p.bd) * nbd + v->bd >= l3.allowed.size() || !l3.allowed[size_t(p.bd) * nbd + v->bd])
        return *drop = Drop::kIsolated, RouteNext::kDrop;
    }
    const uint16_t tport = v->target(proto, dport);
    const ServiceBackend* b = tport ? v->pick(sip, dip, sport, dport, proto) : nullptr;
    if (!b) return RouteNext::kDrop;  // not a service port, or no backend: no_route
    if (invalid) return *drop = Drop::kCtInvalid, RouteNext::kDrop;
    // Masqueraded too when the client's own address and port would make a
    // reply tuple another flow has (the same source port to another VIP of
    // this backend, or straight to it).
    bool other = false;
    const bool self = b->ip == sip || c.ct.find(FlowKey{b->ip, sip, tport, sport, proto}, &other);
    r = c.ct.create(c.worker, key, self ? v->gateway : sip, self ? 0 : sport, b->ip, tport, FlowOut{b->port, b->mac, v->router_mac},
                    FlowOut{p.in_port, mac_from_bytes(f + 6), router}, v->bd, c.now, &fl, inside);
  } else if (dip == bd.local_ip) {
    return RouteNext::kDrop;  // to the gateway itself, not an echo: nothing serves it (no_route)
  } else if (!bd.nat) {
    return *drop = Drop::kInternal, RouteNext::kDrop;
  } else if (dip == l3.uplink_ip) {
    // Hairpin: a container reaches a published port through the host address;
    // masquerade to the target network's gateway so the reply comes back through us.
    if (!rule) return RouteNext::kDrop;
    if (invalid) return *drop = Drop::kCtInvalid, RouteNext::kDrop;
    r = c.ct.create(c.worker, key, rule->gateway, 0, to.ip, to.port, to.out, FlowOut{p.in_port, mac_from_bytes(f + 6), router}, to.bd,
                    c.now, &fl, inside);
  } else {
    for (size_t i = 0; i < l3.isolated.size(); i++) {
      auto [net, mask] = l3.isolated[i];
      if ((dip & mask) != net) continue;
      const uint16_t dbd = l3.isolated_bd[i];
      const size_t nbd = c.s.bds.size();
      if (size_t(p.bd) * nbd + dbd >= l3.allowed.size() || !l3.allowed[size_t(p.bd) * nbd + dbd])
        return *drop = Drop::kIsolated, RouteNext::kDrop;
      // Routed between two networks that allow it: straight to the endpoint, no NAT.
      auto it = std::lower_bound(l3.neighbors.begin(), l3.neighbors.end(), dip,
                                 [](const L3Conf::Neighbor& n, uint32_t ip) { return n.ip < ip; });
      if (it == l3.neighbors.end() || it->ip != dip || it->bd != dbd) return RouteNext::kDrop;  // nobody there: no_route
      if (!ttl_down(ip)) return *drop = Drop::kTtl, RouteNext::kDrop;
      mac_to_bytes(it->mac, f);
      mac_to_bytes(c.s.bds[dbd].router_mac, f + 6);
      *out_port = it->port;
      return RouteNext::kOut;
    }
    if (invalid) return *drop = Drop::kCtInvalid, RouteNext::kDrop;
    // Masquerade behind the host address.
    // (The source port is kept unless the host publishes it: the remote's connections to that port are not ours.)
    r = c.ct.create(c.worker, key, l3.uplink_ip, 0, dip, dport, FlowOut{l3.uplink_port, 0, l3.uplink_mac},
                    FlowOut{p.in_port, mac_from_bytes(f + 6), router}, p.bd, c.now, &fl, inside,
                    !has_ports(proto) || !published(l3, proto, sport));
  }
  if (r != ConnTrack::Create::kOk)
    return *drop = r == ConnTrack::Create::kClash ? Drop::kNatClash : r == ConnTrack::Create::kBusy ? Drop::kCtBusy : Drop::kCtFull,
           RouteNext::kDrop;
  if (fragmented && has_ports(proto)) c.ct.frags(c.worker).remember(sip, dip, csum::load16(ip + 4), proto, key, c.now);
  if (proto == 17) c.ct.announce(c.worker, *fl);  // the kernel tier takes UDP flows from their first packet
  return forward(p, ip, ihl, proto, *fl, false, c, out_port, drop);
}

}  // namespace dpsw::stage
