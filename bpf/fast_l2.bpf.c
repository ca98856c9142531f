// SPDX-License-Identifier: GPL-2.0
// dpsw fast tier: L2 forwarding between local container endpoints inside the
// kernel, at TC (skb) level so GSO/TSO frames cross whole.
//
// dpsw_fast_ingress runs on the ingress of every fast-tier endpoint's host
// veth (frames the container sends). A unicast frame whose (network, dst MAC)
// is in dpsw_fast_fdb goes straight into the destination container with
// bpf_redirect_peer(). Everything else is punted to the poll-mode dataplane:
// the ingress port id is pushed as an 802.1Q tag (VID = port + 1) and the
// frame redirected out of a punt veth (one per dpsw worker: the one of the
// worker that owns the port), whose far end dpsw drives with AF_XDP.
//
// dpsw_fast_punt_rx runs on the ingress of the punt veth's near end: frames
// dpsw transmits to a fast-tier endpoint arrive tagged with the destination
// port (the kernel has moved the tag to skb metadata); the tag is popped and
// the frame redirected into that endpoint's container.
//
// A veth uplink is served the same way (no XDP on it: XDP on a veth turns
// GSO off on its peer): dpsw_fast_ingress on its ingress forwards the
// established routed flows dpsw installed and punts the rest with the
// uplink's tag; dpsw_fast_punt_rx sends what dpsw transmits to it out of it
// (out_of_uplink: into its peer, or bpf_redirect). A NIC uplink keeps
// its XDP program, which passes the routed flows up to dpsw_fast_uplink_in.
//
// Steering: redirect_peer delivers in the sender's softirq, so one container
// flooding small frames keeps the whole receive path on the sending core (as
// the bridge does). While a port sends more non-GSO, non-TCP frames per
// millisecond on one CPU than dpsw_fast_conf.steer_per_ms, those take a detour
// instead: tagged with the destination port and redirected to the INGRESS of
// its punt veth's near end, whose RPS mask (set by dpsw: the steering cores)
// moves the rest of the work - dpsw_fast_punt_rx, the destination's stack - to
// another core. The decision is per (port, CPU) and per 1 ms window, taken
// from the previous window, so light, latency-sensitive traffic never leaves
// the direct path and a flow changes path at most once per window. TCP always
// takes the direct path: its segments are GSO-sized and moving its ACKs to
// another core costs more than it spreads (measured: 4 streams fell by half).
//
// Fair punting: every worker's punt veth feeds one AF_XDP ring, so a
// container flooding frames the tier must punt could fill it and crowd out
// every other port's punted frames (ARP, routed and published traffic). The
// worker watches its ring (dataplane/fast/punt_share.h); while it is congested it
// sets a per-port share (frames per ~1 ms window) in dpsw_fast_punt_share,
// and a port's punted frames beyond it are dropped here, counted per port
// (punt_share_drops) - before they reach the ring the others need.
//
// The userspace switch stays the authority: it fills every map (MACs come
// from the plan and from its MAC table) and sums the per-CPU counters into
// its own. Isolation is in the key: an fdb lookup carries the ingress port's
// network, exactly as the userspace MAC table does.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#ifndef offsetof
#define offsetof(t, m) __builtin_offsetof(t, m)
#endif

#include "dpsw_abi.h"
#include "nat_close.h"

// Host veth ifindex -> its port.
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, DPSW_MAX_PORTS);
  __type(key, __u32);
  __type(value, struct dpsw_fast_port);
} dpsw_fast_ports SEC(".maps");

// Host veths whose container interface has an XDP program (value unused).
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, DPSW_MAX_PORTS);
  __type(key, __u32);
  __type(value, __u8);
} dpsw_fast_xdp_peers SEC(".maps");

// Port id -> host veth ifindex (0: not a fast-tier port): where frames dpsw
// transmits through the punt veth go.
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, DPSW_MAX_PORTS);
  __type(key, __u32);
  __type(value, __u32);
} dpsw_fast_peer SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, DPSW_FAST_FDB_DEFAULT);  // resized by dpsw before loading
  __type(key, struct dpsw_fdb_key);
  __type(value, struct dpsw_fdb_val);
} dpsw_fast_fdb SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, DPSW_MAX_PORTS);
  __type(key, __u32);
  __type(value, struct dpsw_fast_stats);
} dpsw_fast_stats SEC(".maps");

// Routing between allowed networks (see dpsw_abi.h).
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, DPSW_MAX_PORTS);
  __type(key, __u32);
  __type(value, struct dpsw_route_val);
} dpsw_fast_route SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, DPSW_MAX_PORTS);
  __type(key, struct dpsw_allow_key);
  __type(value, struct dpsw_allow_val);
} dpsw_fast_allow SEC(".maps");

// Overlay networks through a veth uplink (see dpsw_abi.h).
struct {
  __uint(type, BPF_MAP_TYPE_HASH);  // an update replaces the entry whole: no torn read of a changed next hop
  __uint(max_entries, DPSW_MAX_PORTS);
  __type(key, __u32);
  __type(value, struct dpsw_tunnel);
} dpsw_fast_tunnels SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, DPSW_MAX_PORTS);
  __type(key, struct dpsw_vni_key);
  __type(value, struct dpsw_vni_val);
} dpsw_fast_vni SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct dpsw_fast_conf);
} dpsw_fast_conf SEC(".maps");

// Per (port, CPU): the current ~1 ms window's count of steerable frames, and
// whether this window steers (decided from the previous one).
struct fast_rate {
  __u64 window;  // bpf_ktime_get_ns() >> 20 (~1 ms) of the current window
  __u32 count;
  __u32 steer;
};
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, DPSW_MAX_PORTS);
  __type(key, __u32);
  __type(value, struct fast_rate);
} dpsw_fast_rate SEC(".maps");

// Fair punting (see top): per worker, the share its punt port grants each
// port while congested; written by that worker through a memory mapping.
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(map_flags, BPF_F_MMAPABLE);
  __uint(max_entries, DPSW_MAX_WORKERS);
  __type(key, __u32);
  __type(value, struct dpsw_punt_share);
} dpsw_fast_punt_share SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, DPSW_MAX_PORTS);
  __type(key, __u32);
  __type(value, struct dpsw_punt_rate);
} dpsw_fast_punt_rate SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, DPSW_EV_COUNT);
  __type(key, __u32);
  __type(value, __u64);
} dpsw_fast_events SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(map_flags, BPF_F_NO_PREALLOC);  // memory as flows come (sized to conntrack.size), freed after RCU
  __uint(max_entries, DPSW_FAST_NAT_DEFAULT);  // resized by dpsw before load
  __type(key, struct dpsw_nat_key);
  __type(value, struct dpsw_nat_val);
} dpsw_fast_nat SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(map_flags, BPF_F_NO_PREALLOC);  // memory as names come, not 64 Ki entries up front
  __uint(max_entries, DPSW_FAST_DNS_ENTRIES);
  __type(key, struct dpsw_dns_key);
  __type(value, struct dpsw_dns_val);
} dpsw_fast_dns SEC(".maps");

static __always_inline void event(__u32 which) {
  __u64 *c = bpf_map_lookup_elem(&dpsw_fast_events, &which);
  if (c) *c += 1;
}

// True when this punted frame of `in` is over its port's share of a
// congested punt port (and is to be dropped).
static __always_inline int over_share(struct dpsw_fast_port *in) {
  __u32 w = in->worker, port = in->port;
  struct dpsw_punt_share *sh = bpf_map_lookup_elem(&dpsw_fast_punt_share, &w);
  if (!sh) return 0;
  __u32 limit = *(volatile __u32 *)&sh->per_ms;  // written by dpsw's worker at any time
  if (!limit) return 0;
  struct dpsw_punt_rate *r = bpf_map_lookup_elem(&dpsw_fast_punt_rate, &port);
  if (!r) return 0;
  __u64 now = bpf_ktime_get_ns() >> 20;
  if (r->window != now) {  // a racy reset (another CPU may add meanwhile): the count is approximate
    r->window = now;
    r->count = 0;
  }
  __sync_fetch_and_add(&r->count, 1);
  return r->count > limit;
}

// A frame the kernel tier forwarded itself: received on port `in`, sent on
// port `out` (GSO frames count their segments, as dpsw counts frames).
// Frames the kernel tier forwarded itself: received on port `in`, sent on
// port `out` (GSO frames count their segments, as dpsw counts frames).
static __always_inline void count_frames(__u32 in, __u32 out, __u64 segs, __u64 len) {
  struct dpsw_fast_stats *si = bpf_map_lookup_elem(&dpsw_fast_stats, &in);
  struct dpsw_fast_stats *so = bpf_map_lookup_elem(&dpsw_fast_stats, &out);
  if (si) {
    si->rx_packets += segs;
    si->rx_bytes += len;
  }
  if (so) {
    so->tx_packets += segs;
    so->tx_bytes += len;
  }
}

static __always_inline void count_forwarded(struct __sk_buff *skb, __u32 in, __u32 out) {
  count_frames(in, out, skb->gso_segs ? skb->gso_segs : 1, skb->len);
}

// True when this frame of port `port` should be steered (see top).
static __always_inline int steer(struct dpsw_fast_conf *c, __u32 port) {
  if (!c->steer_per_ms) return 0;
  struct fast_rate *r = bpf_map_lookup_elem(&dpsw_fast_rate, &port);
  if (!r) return 0;
  __u64 now = bpf_ktime_get_ns() >> 20;
  if (now != r->window) {  // per-CPU value: no other writer
    r->steer = now == r->window + 1 && r->count >= c->steer_per_ms;
    r->window = now;
    r->count = 0;
  }
  r->count++;
  return r->steer;
}

// A steered frame's hash, set before it enters the punt veth: RPS there
// picks the steering core from skb->hash, and without one it dissects the
// frame to make it (a flow dissection and a siphash per frame, on the
// flooding sender's core). This one mixes the ports' ids, the IP protocol
// and addresses (IPv4, IPv6) and, for an unfragmented TCP, UDP, UDP-Lite or
// SCTP packet with a plain header, its ports - never bytes that change
// within a flow (an ICMP checksum, a later fragment's payload): one flow
// keeps one core, as with RPS's own hash (which leaves fragments' ports out
// too). The kernel keeps it as the frame's L4 hash from there on.
static __always_inline int has_ports_proto(__u8 p) {
  return p == IPPROTO_TCP || p == IPPROTO_UDP || p == IPPROTO_UDPLITE || p == IPPROTO_SCTP;
}
static __always_inline __u32 flow_hash(struct __sk_buff *skb, __u32 in_port, __u32 out_port) {
  void *data = (void *)(long)skb->data;
  void *data_end = (void *)(long)skb->data_end;
  struct ethhdr *eth = data;
  __u32 h = in_port * 0x9e3779b1u ^ out_port;
  if ((void *)(eth + 1) > data_end) goto mix;
  if (eth->h_proto == bpf_htons(ETH_P_IP)) {
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > data_end) goto mix;
    h ^= ip->saddr * 0x85ebca6bu ^ ip->daddr * 0xc2b2ae35u ^ (__u32)ip->protocol << 24;
    if (ip->ihl == 5 && !(ip->frag_off & bpf_htons(0x3fff)) && has_ports_proto(ip->protocol) && (void *)(ip + 1) + 4 <= data_end)
      h ^= *(__u32 *)(ip + 1);
  } else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
    struct ipv6hdr *ip6 = (void *)(eth + 1);
    if ((void *)(ip6 + 1) > data_end) goto mix;
    for (int i = 0; i < 4; i++)
      h ^= ip6->saddr.in6_u.u6_addr32[i] * 0x85ebca6bu ^ ip6->daddr.in6_u.u6_addr32[i] * 0xc2b2ae35u;
    h ^= (__u32)ip6->nexthdr << 24;
    if (has_ports_proto(ip6->nexthdr) && (void *)(ip6 + 1) + 4 <= data_end) h ^= *(__u32 *)(ip6 + 1);
  }
mix:
  h ^= h >> 16;
  h *= 0x7feb352du;
  h ^= h >> 15;
  return h | 1;  // (0 reads as "no hash")
}

// The steering detour for a frame steer() picked, unless RPS would choose
// the very core it is being handled on (a frame another switch steered
// here, decapsulated or reverse-NATed at the uplink; a sender on a steering
// core): the detour would only queue it there again. RPS picks
// cpus[hash * n >> 32] of the punt veth's mask in ascending order
// (get_rps_cpu). 1: tagged for out_port with its flow hash set (the caller
// redirects it to its punt veth's ingress); 0: the direct path.
static __always_inline int steer_to_punt(struct __sk_buff *skb, struct dpsw_fast_conf *c, __u32 in_port, __u32 out_port) {
  const __u32 h = flow_hash(skb, in_port, out_port);
  const __u32 n = c->steer_ncpus;
  if (n && n <= DPSW_STEER_MAX_CPUS) {
    const __u32 i = (__u32)(((__u64)h * n) >> 32);
    if (i < DPSW_STEER_MAX_CPUS && c->steer_cpu[i] == bpf_get_smp_processor_id()) return 0;
  }
  if (bpf_skb_vlan_push(skb, bpf_htons(ETH_P_8021Q), DPSW_PUNT_VID(out_port))) return 0;
  bpf_set_hash(skb, h);
  event(DPSW_EV_STEERED);
  return 1;
}

static __always_inline int mac_is(const __u8 *a, const __u8 *b) {
  return ((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) | (a[4] ^ b[4]) | (a[5] ^ b[5])) == 0;
}

// Into the container behind host veth `ifindex`: straight into its interface
// (bpf_redirect_peer: no veth transmit, no second backlog pass), unless that
// interface has an XDP program - only the veth's transmit runs it (an AF_XDP
// application in the container would see nothing): then through the veth.
// dpsw looks at every container's interface in turn (FastControl).
static __always_inline int into_container(struct dpsw_fast_conf *conf, __u32 ifindex) {
  if (conf && conf->xdp_peers && bpf_map_lookup_elem(&dpsw_fast_xdp_peers, &ifindex)) return bpf_redirect(ifindex, 0);
  return bpf_redirect_peer(ifindex, 0);
}

// Out of the uplink: into its peer directly where dpsw allows it (see
// dpsw_fast_conf: a peer in another namespace, without XDP; a frame unicast
// to the peer's MAC - the peer sees it as PACKET_HOST, as the veth would
// classify it - within the peer's MTU); else the veth's own transmit (a
// peer in our namespace, where bpf_redirect_peer cannot deliver; broadcast,
// frames to a bridge behind the peer; a GSO frame we encapsulated (`encap`):
// adjust_room left it SKB_GSO_DODGY with no segment count, which only the
// veth's transmit segments - the peer's stack and a dpsw there would take
// it for one oversized frame). Only from a TC ingress program
// (bpf_redirect_peer's rule).
static __always_inline int out_of_uplink(struct __sk_buff *skb, struct dpsw_fast_conf *conf, __u32 ifindex, int encap) {
  if (conf && conf->uplink_redirect_peer && ifindex == conf->uplink_ifindex &&
      (skb->gso_size ? !encap : skb->len <= (__u32)conf->uplink_peer_mtu + ETH_HLEN + 4)) {
    void *data = (void *)(long)skb->data;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) <= (void *)(long)skb->data_end && mac_is(eth->h_dest, conf->uplink_peer_mac))
      return bpf_redirect_peer(ifindex, 0);
  }
  return bpf_redirect(ifindex, 0);
}

// A rewrite that failed half way (never expected: the offsets were checked): dropped, counted.
static __always_inline int nat_error(void) {
  event(DPSW_EV_NAT_ERROR);
  return TC_ACT_SHOT;
}

// A routed packet (to dpsw's router MAC) of an established flow in
// dpsw_fast_nat: rewritten (addresses, ports, TTL, Ethernet header; the
// checksum helpers keep a partial checksum partial, so GSO and TSO stay) and
// sent out of the flow's device (or, a reply at the uplink, delivered into
// the container with bpf_redirect_peer). Anything the entry cannot decide alone is
// dpsw's: IP options, fragments, TTL running out, TCP SYN/FIN/RST (dpsw
// follows the connection's state; a FIN or RST closes the entries, see
// nat_close.h), unknown flows. -1: punt.
// Sends a frame the kernel tier rewrote on its way: into a container
// (bpf_redirect_peer) or out of a device. Steering, as for known unicast
// (see top): while port `in_port` floods small non-TCP frames on this CPU,
// they are tagged with the destination port and delivered through the
// ingress of its punt veth (`punt`: 0 = never), whose RPS mask moves the
// rest of the work to the steering cores; dpsw_fast_punt_rx sends them on.
static __always_inline int deliver(struct __sk_buff *skb, struct dpsw_fast_conf *conf, __u32 in_port, __u32 punt, __u32 out_port,
                                   __u32 ifindex, int peer, int tcp, int encap) {
  // gso_size, not gso_segs: adjust_room zeroes the latter (and a DODGY frame may come with 0).
  if (punt && conf && !tcp && skb->gso_size == 0 && (peer || (conf->uplink_punted && ifindex == conf->uplink_ifindex)) &&
      steer(conf, in_port) && steer_to_punt(skb, conf, in_port, out_port))
    return bpf_redirect(punt, BPF_F_INGRESS);
  return peer ? into_container(conf, ifindex) : out_of_uplink(skb, conf, ifindex, encap);
}

static __always_inline int nat_forward(struct __sk_buff *skb, __u32 in_port, struct dpsw_fast_conf *conf, __u32 punt) {
  void *data = (void *)(long)skb->data;
  void *data_end = (void *)(long)skb->data_end;
  struct ethhdr *eth = data;
  struct iphdr *ip = (void *)(eth + 1);
  if ((void *)(ip + 1) > data_end || ip->version != 4 || ip->ihl != 5 || ip->ttl <= 1 || (ip->frag_off & bpf_htons(0x3fff)))
    return -1;
  struct dpsw_nat_key k = {.saddr = ip->saddr, .daddr = ip->daddr, .proto = ip->protocol};
  __u32 l4 = ETH_HLEN + sizeof(struct iphdr), csum_off, mangled = 0;
  if (ip->protocol == IPPROTO_TCP) {
    struct tcphdr *th = (void *)(ip + 1);
    if ((void *)(th + 1) > data_end || th->syn) return -1;
    k.sport = th->source;
    k.dport = th->dest;
    if (th->fin || th->rst) {
      if (ipv4_header_ok(ip, (__u32)((long)data_end - (long)ip))) nat_close(&dpsw_fast_nat, &k, in_port);
      return -1;
    }
    csum_off = l4 + offsetof(struct tcphdr, check);
  } else if (ip->protocol == IPPROTO_UDP) {
    struct udphdr *uh = (void *)(ip + 1);
    if ((void *)(uh + 1) > data_end) return -1;
    k.sport = uh->source;
    k.dport = uh->dest;
    csum_off = l4 + offsetof(struct udphdr, check);
    mangled = BPF_F_MARK_MANGLED_0;  // a zero (absent) UDP checksum stays zero
  } else {
    return -1;
  }
  struct dpsw_nat_val *v = bpf_map_lookup_elem(&dpsw_fast_nat, &k);
  if (!v || v->in_port != in_port || (v->flags & DPSW_NAT_CLOSED)) return -1;  // another port's packet with the tuple is not the flow's
  // From here on the packet is being rewritten: a helper failing (never
  // expected: the offsets were checked) drops it rather than punt it half done.
  // Addresses: the IP header checksum, and the L4 one through the pseudo-header.
  __u32 old_ttl = bpf_htons((__u16)ip->ttl << 8 | ip->protocol);
  __u32 new_ttl = bpf_htons((__u16)(ip->ttl - 1) << 8 | ip->protocol);
  __u8 ttl = ip->ttl - 1;
  if (k.saddr != v->xsaddr) {
    if (bpf_l4_csum_replace(skb, csum_off, k.saddr, v->xsaddr, BPF_F_PSEUDO_HDR | mangled | 4) ||
        bpf_l3_csum_replace(skb, ETH_HLEN + offsetof(struct iphdr, check), k.saddr, v->xsaddr, 4) ||
        bpf_skb_store_bytes(skb, ETH_HLEN + offsetof(struct iphdr, saddr), &v->xsaddr, 4, 0))
      return nat_error();
  }
  if (k.daddr != v->xdaddr) {
    if (bpf_l4_csum_replace(skb, csum_off, k.daddr, v->xdaddr, BPF_F_PSEUDO_HDR | mangled | 4) ||
        bpf_l3_csum_replace(skb, ETH_HLEN + offsetof(struct iphdr, check), k.daddr, v->xdaddr, 4) ||
        bpf_skb_store_bytes(skb, ETH_HLEN + offsetof(struct iphdr, daddr), &v->xdaddr, 4, 0))
      return nat_error();
  }
  // Ports: in the L4 checksum only (not the pseudo-header).
  if (k.sport != v->xsport) {
    if (bpf_l4_csum_replace(skb, csum_off, k.sport, v->xsport, mangled | 2) || bpf_skb_store_bytes(skb, l4, &v->xsport, 2, 0))
      return nat_error();
  }
  if (k.dport != v->xdport) {
    if (bpf_l4_csum_replace(skb, csum_off, k.dport, v->xdport, mangled | 2) || bpf_skb_store_bytes(skb, l4 + 2, &v->xdport, 2, 0))
      return nat_error();
  }
  // TTL (the 16-bit word it shares with the protocol), then the MACs.
  if (bpf_l3_csum_replace(skb, ETH_HLEN + offsetof(struct iphdr, check), old_ttl, new_ttl, 2) ||
      bpf_skb_store_bytes(skb, ETH_HLEN + offsetof(struct iphdr, ttl), &ttl, 1, 0) ||
      bpf_skb_store_bytes(skb, 0, v->dmac, 6, 0) || bpf_skb_store_bytes(skb, 6, v->smac, 6, 0))
    return nat_error();
  // The stamp dpsw reads (at most once a second): written every ~100 ms,
  // not every packet (the line is shared by every CPU the flow runs on).
  __u64 now = bpf_ktime_get_ns();
  if (now - v->last_seen > 100000000ULL) v->last_seen = now;
  count_forwarded(skb, in_port, v->out_port);
  event(DPSW_EV_NAT_FORWARDED);
  return deliver(skb, conf, in_port, punt, v->out_port, v->ifindex, v->flags & DPSW_NAT_PEER, k.proto == IPPROTO_TCP, 0);
}

// A DNS query to the gateway of the sender's own network that dpsw_fast_dns
// answers (see dpsw_abi.h for which): the frame becomes the answer (the
// question kept as asked, one A record appended, addresses, ports and MACs
// swapped; the UDP checksum updated for what changed, so a full one stays
// right and a partial one (TX offload) stays partial) and goes straight back
// into the container. What the worker would drop (a bad or martian IPv4
// header) is left to it. -1: dpsw's (punted). A global function: the
// verifier checks it once on its own, not once per path of the ingress program.
__attribute__((noinline)) int dns_answer(struct __sk_buff *skb, __u32 bd, __u32 port) {
  __u32 zero = 0;
  struct dpsw_fast_conf *conf = bpf_map_lookup_elem(&dpsw_fast_conf, &zero);
  if (!conf) return -1;
  void *data = (void *)(long)skb->data;
  void *data_end = (void *)(long)skb->data_end;
  struct ethhdr *eth = data;
  struct iphdr *ip = (void *)(eth + 1);
  struct udphdr *uh = (void *)(ip + 1);
  __u8 *dns = (void *)(uh + 1);
  if ((void *)(dns + 12) > data_end || ip->version != 4 || ip->ihl != 5 || ip->protocol != IPPROTO_UDP ||
      (ip->frag_off & bpf_htons(0x3fff)) || uh->dest != bpf_htons(53) || bpf_ntohs(ip->tot_len) != skb->len - ETH_HLEN ||
      !ipv4_header_ok(ip, skb->len - ETH_HLEN))
    return -1;
  // Martian sources (0/8, 127/8, 224/4, 240/4: the worker's martian()) are the worker's to drop.
  const __u8 s0 = ((__u8 *)&ip->saddr)[0];
  if (s0 == 0 || s0 == 127 || s0 >= 224) return -1;
  // A query (QR 0, opcode 0, not truncated), one question, nothing else.
  if ((dns[2] & 0xfa) || dns[4] || dns[5] != 1 || dns[6] | dns[7] | dns[8] | dns[9] | dns[10] | dns[11]) return -1;
  struct dpsw_dns_key k = {.bd = bd};
  // The name's bytes up to the first zero, letters lowered (label lengths,
  // below 64, never are). The labels are not parsed here: the map holds
  // only well-formed names, so a match is one; anything else (a pointer, a
  // zero inside a label) matches nothing and is dpsw's to judge.
  __u8 *q = dns + 12;
  __u32 len = 0;
  for (__u32 i = 0; i < DPSW_DNS_NAME_MAX; i++) {
    if ((void *)(q + i + 1) > data_end) return -1;
    const __u8 c = q[i];
    if (!c) {
      len = i + 1;
      break;
    }
    k.name[i] = c + ((__u8)(c - 'A') < 26 ? 32 : 0);
  }
  if (!len) return -1;  // longer than the map's names
  k.len = len;
  // QTYPE A, QCLASS IN, and nothing after them.
  __u8 *t = q + len;
  if ((void *)(t + 4) > data_end || t[0] || t[1] != 1 || t[2] || t[3] != 1) return -1;
  if ((long)(t + 4 - (__u8 *)data) != (long)skb->len || bpf_ntohs(uh->len) != 8 + 12 + len + 4) return -1;
  struct dpsw_dns_val *v = bpf_map_lookup_elem(&dpsw_fast_dns, &k);
  if (!v || v->gateway != ip->daddr) return -1;
  const __u32 addr = v->addr, ttl = bpf_htonl(v->ttl);
  const __u32 end = skb->len;  // where the answer goes
  // Headers first (the frame grows after): QR, AA, RD as asked, RA; one answer.
  __u8 flags[2] = {0x84 | (dns[2] & 0x01), 0x80};
  __u8 one[2] = {0, 1};
  __u16 old_flags, new_flags, new_an;
  __builtin_memcpy(&old_flags, dns + 2, 2);
  __builtin_memcpy(&new_flags, flags, 2);
  __builtin_memcpy(&new_an, one, 2);
  __u32 saddr = ip->saddr, daddr = ip->daddr;
  __be16 sport = uh->source, dport = uh->dest, check = uh->check, old_len = uh->len;
  __u8 smac[6], dmac[6];
  __builtin_memcpy(smac, eth->h_source, 6);
  __builtin_memcpy(dmac, conf->router_mac, 6);
  if (bpf_skb_change_tail(skb, end + 16, 0)) return -1;
  // The answer: a pointer to the question's name, A, IN, TTL, 4 bytes of address.
  __u8 rr[16] = {0xc0, 0x0c, 0, 1, 0, 1};
  __builtin_memcpy(rr + 6, &ttl, 4);
  rr[11] = 4;
  __builtin_memcpy(rr + 12, &addr, 4);
  // IPv4 header rebuilt whole (20 bytes, no options): addresses swapped, the new length, TTL 64, its checksum.
  struct iphdr nip = {.version = 4, .ihl = 5, .tot_len = bpf_htons(end + 16 - ETH_HLEN), .frag_off = bpf_htons(0x4000), .ttl = 64,
                      .protocol = IPPROTO_UDP, .saddr = daddr, .daddr = saddr};
  __u16 *w = (__u16 *)&nip;
  __u32 sum = 0;
#pragma unroll
  for (int i = 0; i < 10; i++) sum += w[i];
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  nip.check = (__u16)~sum;
  struct udphdr nuh = {.source = dport, .dest = sport, .len = bpf_htons(8 + 12 + len + 4 + 16), .check = check};
  const __u32 d = ETH_HLEN + sizeof(struct iphdr) + sizeof(struct udphdr);
  // The UDP checksum: swapped addresses and ports change no sum; the length
  // (in the pseudo-header and the header), the DNS flags and answer count,
  // and the appended record do. The record's sum is byte-swapped when it
  // starts at an odd offset of the datagram. A zero (absent) checksum stays
  // zero (BPF_F_MARK_MANGLED_0); a partial one gets the pseudo-header part only.
  const __u32 csum_off = ETH_HLEN + sizeof(struct iphdr) + offsetof(struct udphdr, check);
  __u32 rs = 0;
  const __u16 *rw = (const __u16 *)rr;
#pragma unroll
  for (int i = 0; i < 8; i++) rs += rw[i];
  rs = (rs & 0xffff) + (rs >> 16);
  rs = (rs & 0xffff) + (rs >> 16);
  if ((end - ETH_HLEN - sizeof(struct iphdr)) & 1) rs = ((rs & 0xff) << 8) | (rs >> 8);
  if (bpf_skb_store_bytes(skb, end, rr, 16, 0) || bpf_skb_store_bytes(skb, 0, smac, 6, 0) || bpf_skb_store_bytes(skb, 6, dmac, 6, 0) ||
      bpf_skb_store_bytes(skb, ETH_HLEN, &nip, sizeof nip, 0) || bpf_skb_store_bytes(skb, ETH_HLEN + sizeof nip, &nuh, sizeof nuh, 0) ||
      bpf_skb_store_bytes(skb, d + 2, flags, 2, 0) || bpf_skb_store_bytes(skb, d + 6, one, 2, 0) ||
      bpf_l4_csum_replace(skb, csum_off, old_len, nuh.len, BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0 | 2) ||
      bpf_l4_csum_replace(skb, csum_off, old_len, nuh.len, BPF_F_MARK_MANGLED_0 | 2) ||
      bpf_l4_csum_replace(skb, csum_off, old_flags, new_flags, BPF_F_MARK_MANGLED_0 | 2) ||
      bpf_l4_csum_replace(skb, csum_off, 0, new_an, BPF_F_MARK_MANGLED_0 | 2) ||
      bpf_l4_csum_replace(skb, csum_off, 0, rs, BPF_F_MARK_MANGLED_0 | 2))
    return TC_ACT_SHOT;  // half rewritten (never expected: the offsets were checked): dropped, the asker retries
  count_forwarded(skb, port, port);
  event(DPSW_EV_DNS_ANSWERED);
  return into_container(conf, skb->ifindex);
}

// The headers a VXLAN frame starts with, up to the inner Ethernet header.
struct vxlan_outer {
  struct ethhdr eth;
  struct iphdr ip;
  struct udphdr udp;
  __be32 vx_flags, vx_vni;
  struct ethhdr inner;
} __attribute__((packed));
#define VXLAN_ROOM (sizeof(struct vxlan_outer) - ETH_HLEN)  // 50: what encapsulation adds
#define VXLAN_PORT 4789

static __always_inline __u16 ipv4_csum(struct iphdr *ip) {
  __u16 *w = (void *)ip;
  __u32 sum = 0;
#pragma unroll
  for (int i = 0; i < 10; i++) sum += w[i];
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return ~sum;
}

static __always_inline int vxlan_error(void) {
  event(DPSW_EV_VXLAN_ERROR);
  return TC_ACT_SHOT;
}

// A frame for a MAC dpsw learned behind a VXLAN tunnel (fdb entry with
// DPSW_FDB_TUNNEL): encapsulated as dpsw's own path does (outer headers from
// dpsw_fast_tunnels, UDP source port from the inner flow's hash, checksum 0,
// TTL 64, DF clear) and sent out of the uplink. bpf_skb_adjust_room marks a
// GSO frame as UDP-tunnel GSO, so it crosses whole and is segmented (if at
// all) by the last device; FIXED_GSO keeps its segment size (the container's
// MTU is the overlay's, already 50 below the underlay's). IPv4 only (others,
// and what is longer than the tunnel allows, are dpsw's). -1: punt.
static __always_inline int vxlan_encap(struct __sk_buff *skb, struct dpsw_fast_conf *conf, __u32 in_port, __u32 punt, __u32 tport) {
  struct dpsw_tunnel *t = bpf_map_lookup_elem(&dpsw_fast_tunnels, &tport);
  if (!t || !t->vtep || skb->protocol != bpf_htons(ETH_P_IP)) return -1;
  if (skb->gso_segs <= 1 && skb->len > t->mtu + ETH_HLEN) return -1;  // dpsw answers "fragmentation needed"
  if (skb->len > 0xffff - 36) return -1;  // the outer length would not fit (BIG TCP)
  struct vxlan_outer h = {};
  if (bpf_skb_load_bytes(skb, 0, &h.inner, sizeof(h.inner))) return -1;
  const __u32 hash = bpf_get_hash_recalc(skb), inner_len = skb->len;
  const __u64 segs = skb->gso_segs ? skb->gso_segs : 1;  // adjust_room resets it
  __u8 proto = 0;
  if (bpf_skb_load_bytes(skb, ETH_HLEN + offsetof(struct iphdr, protocol), &proto, 1)) return -1;
  const __u64 flags = BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_ENCAP_L4_UDP | BPF_F_ADJ_ROOM_ENCAP_L2(ETH_HLEN) |
                      BPF_F_ADJ_ROOM_ENCAP_L2_ETH | BPF_F_ADJ_ROOM_FIXED_GSO;
  if (bpf_skb_adjust_room(skb, VXLAN_ROOM, BPF_ADJ_ROOM_MAC, flags)) return -1;  // refused: the frame is unchanged
  __builtin_memcpy(h.eth.h_dest, t->dmac, 6);
  __builtin_memcpy(h.eth.h_source, t->smac, 6);
  h.eth.h_proto = bpf_htons(ETH_P_IP);
  // DF clear: the identification must differ between datagrams (RFC 6864); a GSO frame's segments count up from it.
  struct iphdr ip = {.version = 4, .ihl = 5, .ttl = 64, .protocol = IPPROTO_UDP, .id = (__u16)bpf_get_prandom_u32()};
  ip.tot_len = bpf_htons(inner_len + 36);  // IPv4 20 + UDP 8 + VXLAN 8 + the inner frame
  ip.saddr = t->local_ip;
  ip.daddr = t->vtep;
  ip.check = ipv4_csum(&ip);
  h.ip = ip;
  h.udp.source = bpf_htons(49152 | (hash & 0x3fff));
  h.udp.dest = bpf_htons(VXLAN_PORT);
  h.udp.len = bpf_htons(inner_len + 16);
  h.vx_flags = bpf_htonl(0x08000000);  // I: the VNI is valid
  h.vx_vni = bpf_htonl(t->vni << 8);
  if (bpf_skb_store_bytes(skb, 0, &h, sizeof(h), 0)) return vxlan_error();
  count_frames(in_port, tport, segs, inner_len);  // as dpsw counts a tunnel port: the inner frame
  event(DPSW_EV_VXLAN_ENCAP);
  return deliver(skb, conf, in_port, punt, t->uplink_port, t->uplink_ifindex, 0, proto == IPPROTO_TCP, 1);
}

// VXLAN to the host address on a punted veth uplink, from a VTEP that is a
// peer of the VNI's network (dpsw_fast_vni), carrying IPv4 from a MAC dpsw
// learned behind that very tunnel to a local fast-tier endpoint: the outer
// headers go (FIXED_GSO: a GRO'd frame keeps its segment size) and the frame
// is delivered into the container. Anything else (an unknown source, which
// dpsw must learn; broadcast; ARP) is punted. -1: punt.
static __always_inline int vxlan_decap(struct __sk_buff *skb, struct dpsw_fast_conf *conf, __u32 punt) {
  void *data = (void *)(long)skb->data;
  void *data_end = (void *)(long)skb->data_end;
  if (data + sizeof(struct vxlan_outer) > data_end) {
    if (bpf_skb_pull_data(skb, sizeof(struct vxlan_outer))) return -1;
    data = (void *)(long)skb->data;
    data_end = (void *)(long)skb->data_end;
  }
  struct vxlan_outer *h = data;
  if ((void *)(h + 1) > data_end) return -1;
  if (h->ip.version != 4 || h->ip.ihl != 5 || (h->ip.frag_off & bpf_htons(0x3fff)) || h->ip.protocol != IPPROTO_UDP ||
      h->ip.daddr != conf->uplink_ip || h->udp.dest != bpf_htons(VXLAN_PORT) || !(h->vx_flags & bpf_htonl(0x08000000)) ||
      h->inner.h_proto != bpf_htons(ETH_P_IP) || (h->inner.h_dest[0] & 1))
    return -1;
  struct dpsw_vni_key vk = {.vni = bpf_ntohl(h->vx_vni) >> 8, .vtep = h->ip.saddr};
  struct dpsw_vni_val *vv = bpf_map_lookup_elem(&dpsw_fast_vni, &vk);
  if (!vv) return -1;
  struct dpsw_fdb_key k = {.bd = vv->bd};
  __builtin_memcpy(k.mac, h->inner.h_source, 6);
  struct dpsw_fdb_val *src = bpf_map_lookup_elem(&dpsw_fast_fdb, &k);
  if (!src || !(src->flags & DPSW_FDB_TUNNEL) || src->port != vv->port) return -1;
  __builtin_memcpy(k.mac, h->inner.h_dest, 6);
  struct dpsw_fdb_val *dst = bpf_map_lookup_elem(&dpsw_fast_fdb, &k);
  if (!dst || (dst->flags & DPSW_FDB_TUNNEL)) return -1;
  struct ethhdr inner;
  __builtin_memcpy(&inner, &h->inner, sizeof(inner));  // before the data moves
  const __u32 tport = vv->port, oport = dst->port, ifindex = dst->ifindex;
  // Longer than the endpoint's network carries (redirect_peer skips the
  // veth's own check): dpsw's, which drops and counts it.
  struct dpsw_fast_port *op = bpf_map_lookup_elem(&dpsw_fast_ports, &ifindex);
  if (!op || (skb->gso_segs <= 1 && skb->len - VXLAN_ROOM > op->mtu + ETH_HLEN)) return -1;
  const __u64 segs = skb->gso_segs ? skb->gso_segs : 1;  // adjust_room resets it
  __u8 proto = 0;
  if (bpf_skb_load_bytes(skb, sizeof(struct vxlan_outer) + offsetof(struct iphdr, protocol), &proto, 1)) return -1;
  if (bpf_skb_adjust_room(skb, -(__s32)VXLAN_ROOM, BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_FIXED_GSO)) return -1;  // unchanged
  if (bpf_skb_store_bytes(skb, 0, &inner, sizeof(inner), 0)) return vxlan_error();
  count_frames(tport, oport, segs, skb->len);
  event(DPSW_EV_VXLAN_DECAP);
  return deliver(skb, conf, tport, punt, oport, ifindex, 1, proto == IPPROTO_TCP, 0);
}

// A container's IPv4 packet to dpsw's router MAC for an endpoint of another
// bridge network its own network is allowed to reach: routed as dpsw does
// (addresses kept, TTL down, MACs: the router's -> the endpoint's) and
// delivered into that container. The source must be of the sender's own
// network; frames the destination network's MTU would not carry are
// dpsw's. -1: punt (dpsw decides, and counts what it drops: isolated,
// spoofed, TTL).
static __always_inline int route_forward(struct __sk_buff *skb, struct dpsw_fast_port *in, struct dpsw_fast_conf *conf) {
  void *data = (void *)(long)skb->data;
  void *data_end = (void *)(long)skb->data_end;
  struct ethhdr *eth = data;
  struct iphdr *ip = (void *)(eth + 1);
  // Fragments and ICMP (errors are matched to flows by dpsw, or dropped) are dpsw's.
  if ((void *)(ip + 1) > data_end || ip->version != 4 || ip->ihl < 5 || ip->ttl <= 1 || (ip->frag_off & bpf_htons(0x3fff)) ||
      ip->protocol == IPPROTO_ICMP)
    return -1;
  __u32 daddr = ip->daddr, saddr = ip->saddr;
  struct dpsw_route_val *r = bpf_map_lookup_elem(&dpsw_fast_route, &daddr);
  if (!r || r->bd == in->bd) return -1;
  struct dpsw_allow_key ak = {.from_bd = in->bd, .to_bd = r->bd};
  struct dpsw_allow_val *a = bpf_map_lookup_elem(&dpsw_fast_allow, &ak);
  if (!a || (saddr & a->mask) != a->net) return -1;
  // A frame the sender's network carries fits a network with an MTU as large;
  // into a smaller one only a short non-GSO frame goes.
  if (r->mtu < in->mtu && (skb->gso_segs > 1 || skb->len > r->mtu + ETH_HLEN)) return -1;
  const __u32 ifindex = r->ifindex, out = r->port;
  const int tcp = ip->protocol == IPPROTO_TCP;  // read now: the helpers below invalidate `ip`
  __u8 dmac[6];
  __builtin_memcpy(dmac, r->mac, 6);
  __u32 old_ttl = bpf_htons((__u16)ip->ttl << 8 | ip->protocol);
  __u32 new_ttl = bpf_htons((__u16)(ip->ttl - 1) << 8 | ip->protocol);
  __u8 ttl = ip->ttl - 1;
  if (bpf_l3_csum_replace(skb, ETH_HLEN + offsetof(struct iphdr, check), old_ttl, new_ttl, 2) ||
      bpf_skb_store_bytes(skb, ETH_HLEN + offsetof(struct iphdr, ttl), &ttl, 1, 0) || bpf_skb_store_bytes(skb, 0, dmac, 6, 0) ||
      bpf_skb_store_bytes(skb, 6, conf->router_mac, 6, 0))
    return nat_error();
  count_forwarded(skb, in->port, out);
  event(DPSW_EV_ROUTED);
  return deliver(skb, conf, in->port, in->punt, out, ifindex, 1, tcp, 0);
}

static __always_inline int is_tcp(struct ethhdr *eth, void *data_end) {
  if (eth->h_proto == bpf_htons(ETH_P_IP)) {
    struct iphdr *ip = (void *)(eth + 1);
    return (void *)(ip + 1) <= data_end && ip->protocol == IPPROTO_TCP;
  }
  if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
    struct ipv6hdr *ip6 = (void *)(eth + 1);
    return (void *)(ip6 + 1) <= data_end && ip6->nexthdr == IPPROTO_TCP;
  }
  return 0;
}


SEC("tc")
int dpsw_fast_ingress(struct __sk_buff *skb) {
  __u32 ifindex = skb->ifindex;
  struct dpsw_fast_port *in = bpf_map_lookup_elem(&dpsw_fast_ports, &ifindex);
  if (!in) {  // not (or no longer) a fast-tier port: never leak to the host stack
    event(DPSW_EV_NO_PORT);
    return TC_ACT_SHOT;
  }
  void *data = (void *)(long)skb->data;
  void *data_end = (void *)(long)skb->data_end;
  struct ethhdr *eth = data;
  if ((void *)(eth + 1) > data_end) {
    event(DPSW_EV_NO_PORT);
    return TC_ACT_SHOT;
  }
  __u32 zero = 0;
  struct dpsw_fast_conf *conf = bpf_map_lookup_elem(&dpsw_fast_conf, &zero);
  if (!conf) {
    event(DPSW_EV_NO_PORT);
    return TC_ACT_SHOT;
  }
  // A multicast or zero source, or dpsw's own router MAC, is never a
  // container's: dropped, as the userspace tier drops them.
  if ((eth->h_source[0] & 1) || !(eth->h_source[0] | eth->h_source[1] | eth->h_source[2] | eth->h_source[3] |
                                   eth->h_source[4] | eth->h_source[5]) ||
      mac_is(eth->h_source, conf->router_mac)) {
    event(DPSW_EV_BAD_SRC);
    return TC_ACT_SHOT;
  }
  // Longer than the network allows (the host end takes up to 3500 bytes or the
  // network's MTU, fast_host_mtu(); longer ones the veth drops, counted on the
  // container end as tx_dropped): dropped and counted, as the
  // userspace tier does. GSO frames are checked segment by segment where
  // they are segmented.
  if (skb->gso_segs <= 1 && skb->len > in->mtu + ETH_HLEN) {
    __u32 ip = in->port;
    struct dpsw_fast_stats *si = bpf_map_lookup_elem(&dpsw_fast_stats, &ip);
    if (si) si->oversize += 1;
    return TC_ACT_SHOT;
  }
  // A service backend's packet from a service port (to a client of its own
  // network, or through the router MAC to another's): the reply of a VIP
  // connection the kernel tier carries (dpsw_fast_nat, keyed by the tuple
  // as it arrives from this port), else dpsw's (punted below), which
  // restores the VIP or bridges it.
  if (in->nsvc && eth->h_proto == bpf_htons(ETH_P_IP) && !skb->vlan_present && !(eth->h_dest[0] & 1)) {
    struct iphdr *ip = (void *)(eth + 1);
    struct udphdr *uh = (void *)(ip + 1);  // TCP's ports sit at the same place
    if ((void *)(uh + 1) <= data_end && (ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP) &&
        (ip->ihl != 5 || (ip->frag_off & bpf_htons(0x1fff))))
      goto punt;  // IP options, a later fragment: dpsw's (it restores the VIP of a flow's, or bridges it)
    if ((void *)(uh + 1) <= data_end && (ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP)) {
      const __u16 sport = bpf_ntohs(uh->source);
      int svc = 0;
#pragma unroll
      for (int i = 0; i < DPSW_SVC_RANGES; i++)
        if ((__u32)i < in->nsvc && (in->svc_proto[i] == 255 || (in->svc_proto[i] == ip->protocol && sport >= in->svc_lo[i] && sport <= in->svc_hi[i])))
          svc = 1;
      if (svc) {
        int r = nat_forward(skb, in->port, conf, in->punt);
        if (r >= 0) return r;
        goto punt;
      }
    }
  }
  // Routed traffic of an established flow dpsw handed to the kernel tier:
  // sent to dpsw's router MAC by a container, to the uplink's own MAC from
  // the outside (a veth uplink served by this program).
  const __u8 *rmac = ifindex == conf->uplink_ifindex ? conf->uplink_mac : conf->router_mac;
  if (eth->h_proto == bpf_htons(ETH_P_IP) && !skb->vlan_present && mac_is(eth->h_dest, rmac)) {
    struct iphdr *ip = (void *)(eth + 1);
    struct udphdr *uh = (void *)(ip + 1);
    int r;
    if (conf->uplink_punted && ifindex == conf->uplink_ifindex && (void *)(uh + 1) <= data_end && ip->protocol == IPPROTO_UDP &&
        uh->dest == bpf_htons(VXLAN_PORT))
      r = vxlan_decap(skb, conf, in->punt);  // a remote VTEP's frame for a local endpoint
    else if (ifindex != conf->uplink_ifindex && (void *)(uh + 1) <= data_end && ip->protocol == IPPROTO_UDP && uh->dest == bpf_htons(53) &&
             (r = dns_answer(skb, in->bd, in->port)) >= 0)
      return r;  // a name dpsw_fast_dns holds, answered here
    else
      r = nat_forward(skb, in->port, conf, in->punt);
    if (r < 0 && ifindex != conf->uplink_ifindex) r = route_forward(skb, in, conf);  // no flow: another network's endpoint?
    if (r >= 0) return r;
    data = (void *)(long)skb->data;  // the helpers may have moved the data: checks again below
    data_end = (void *)(long)skb->data_end;
    eth = data;
    if ((void *)(eth + 1) > data_end) {
      event(DPSW_EV_NO_PORT);
      return TC_ACT_SHOT;
    }
  }
  // Only plain unicast is decided here; tagged frames, broadcast, multicast
  // and unknown destinations are dpsw's, and so is ARP (rare; dpsw refuses an
  // endpoint's ARP that announces dpsw's own address, unicast ones too).
  if ((void *)(eth + 1) <= data_end && !skb->vlan_present && !(eth->h_dest[0] & 1) &&
      eth->h_proto != bpf_htons(ETH_P_8021Q) && eth->h_proto != bpf_htons(ETH_P_8021AD) && eth->h_proto != bpf_htons(ETH_P_ARP)) {
    struct dpsw_fdb_key k = {.bd = in->bd};
    __builtin_memcpy(k.mac, eth->h_dest, 6);
    struct dpsw_fdb_val *out = bpf_map_lookup_elem(&dpsw_fast_fdb, &k);
    if (out && ifindex == conf->uplink_ifindex) {
      // From the outside (to a macvlan endpoint): only from a host dpsw has
      // learned behind the uplink, so that dpsw keeps seeing (and learning,
      // and ageing) the outside's stations; the others' frames are punted.
      struct dpsw_fdb_key sk = {.bd = in->bd};
      __builtin_memcpy(sk.mac, eth->h_source, 6);
      struct dpsw_fdb_val *src = bpf_map_lookup_elem(&dpsw_fast_fdb, &sk);
      if (!src || src->port != in->port) out = 0;
    }
    if (out && (out->flags & DPSW_FDB_TUNNEL)) {  // behind a remote VTEP
      int r = vxlan_encap(skb, conf, in->port, in->punt, out->port);
      if (r >= 0) return r;
      out = 0;  // punted below (the frame is as it was)
    }
    if (out && out->ifindex != ifindex) {
      __u32 ip = in->port, op = out->port;
      count_forwarded(skb, ip, op);
      if (skb->gso_size == 0 && !is_tcp(eth, data_end) && steer(conf, ip) && steer_to_punt(skb, conf, ip, op))
        return bpf_redirect(in->punt, BPF_F_INGRESS);
      // Behind the uplink (an outside host, for a macvlan endpoint): out of it.
      return out->flags & DPSW_FDB_EGRESS ? out_of_uplink(skb, conf, out->ifindex, 0) : into_container(conf, out->ifindex);
    }
  }
punt:
  if (ifindex != conf->uplink_ifindex && over_share(in)) {  // the uplink had a ring of its own: it keeps its frames
    __u32 ip = in->port;
    struct dpsw_fast_stats *si = bpf_map_lookup_elem(&dpsw_fast_stats, &ip);
    if (si) si->punt_share_drops += 1;
    event(DPSW_EV_PUNT_SHARE);
    return TC_ACT_SHOT;
  }
  __u32 punt = in->punt;
  if (bpf_skb_vlan_push(skb, bpf_htons(ETH_P_8021Q), DPSW_PUNT_VID(in->port))) {
    event(DPSW_EV_NO_PORT);
    return TC_ACT_SHOT;
  }
  event(DPSW_EV_PUNTED);
  return bpf_redirect(punt, 0);
}

// An AF_XDP (NIC) uplink's TC ingress: packets of flows in dpsw_fast_nat
// (replies, published ports), which its XDP program passed up instead of
// handing them to dpsw's socket, go straight into their container. Anything else goes on as before (what
// XDP passes for want of a socket, or a reply whose entry just went: dpsw's
// flow still holds it, TCP retransmits).
SEC("tc")
int dpsw_fast_uplink_in(struct __sk_buff *skb) {
  __u32 zero = 0;
  struct dpsw_fast_conf *conf = bpf_map_lookup_elem(&dpsw_fast_conf, &zero);
  if (!conf || skb->ifindex != conf->uplink_ifindex || skb->vlan_present) return TC_ACT_OK;
  void *data = (void *)(long)skb->data;
  void *data_end = (void *)(long)skb->data_end;
  struct ethhdr *eth = data;
  if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP)) return TC_ACT_OK;
  int r = nat_forward(skb, conf->uplink_port, conf, 0);  // (no punt veth of its own to steer through)
  return r >= 0 ? r : TC_ACT_OK;
}

SEC("tc")
int dpsw_fast_punt_rx(struct __sk_buff *skb) {
  if (!skb->vlan_present || skb->vlan_proto != bpf_htons(ETH_P_8021Q)) {
    event(DPSW_EV_PUNT_BAD_TAG);
    return TC_ACT_SHOT;
  }
  __u32 port = DPSW_PUNT_PORT(skb->vlan_tci & 0x0fff);
  __u32 *ifindex = bpf_map_lookup_elem(&dpsw_fast_peer, &port);
  if (!ifindex || !*ifindex) {
    event(DPSW_EV_PUNT_NO_PEER);
    return TC_ACT_SHOT;
  }
  __u32 target = *ifindex;
  if (bpf_skb_vlan_pop(skb)) {
    event(DPSW_EV_PUNT_BAD_TAG);
    return TC_ACT_SHOT;
  }
  // A punted veth uplink: out of it (out_of_uplink); a container: into it.
  __u32 zero = 0;
  struct dpsw_fast_conf *conf = bpf_map_lookup_elem(&dpsw_fast_conf, &zero);
  if (conf && conf->uplink_punted && target == conf->uplink_ifindex) return out_of_uplink(skb, conf, target, 0);
  return into_container(conf, target);
}

char _license[] SEC("license") = "GPL";
