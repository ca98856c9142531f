/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/* The one interface between dpsw's BPF programs (bpf/NAME.bpf.c) and its C++
 * side (dataplane/fast/fast_tier.cc, dataplane/ports/afxdp_port.cc, fast_port.h): map
 * sizes, every map's key and value layout, the punt tag, the event slots.
 * Both sides include this file, so a change made on one side only cannot
 * build (C++ adds static_asserts against its own constants).
 *
 * Plain C with <linux/types.h> types: valid for clang -target bpf and C++. */
#ifndef DPSW_BPF_ABI_H
#define DPSW_BPF_ABI_H

#include <linux/types.h>

/* Port ids are dense indices below this (dataplane/core/packet.h kMaxPorts). */
#define DPSW_MAX_PORTS 1024
/* Workers (config: switch.workers, at most 64): one punt veth each. */
#define DPSW_MAX_WORKERS 64

/* A frame punted by the fast tier, or sent by dpsw to a fast-tier port,
 * carries an 802.1Q tag naming the port: VID = port id + 1 (VID 0 means
 * "priority only" in 802.1Q, so ids start at 1). */
#define DPSW_PUNT_VID(port) ((port) + 1)
#define DPSW_PUNT_PORT(vid) ((vid) - 1)

/* ---- bpf/xsk_redirect.bpf.c ---- */
/* dpsw_xdp_stats slots. */
enum dpsw_xdp_stat { DPSW_XDP_REDIRECTED, DPSW_XDP_NO_SOCKET, DPSW_XDP_NAT_PASSED, DPSW_XDP_STATS };
/* dpsw_xdp_conf[0]: the uplink's ifindex (0: none), whose frames of a flow in
 * dpsw_fast_nat are passed up to the fast tier's TC program. */
struct dpsw_xdp_conf {
  __u32 uplink_ifindex;
  __u32 uplink_port; /* its dpsw port id: the in_port of the flows' entries its FIN/RST close (nat_close.h) */
};

/* ---- bpf/fast_l2.bpf.c ---- */
/* dpsw_fast_ports: host veth ifindex -> its port. */
#define DPSW_SVC_RANGES 4
struct dpsw_fast_port {
  __u16 port;   /* dpsw port id */
  __u16 bd;     /* network (bridge domain) */
  __u32 punt;   /* ifindex of the punt veth (near end) of the worker that owns the port */
  __u32 worker; /* that worker: its slot in dpsw_fast_punt_share */
  __u32 mtu;    /* the network's MTU: longer non-GSO frames are dropped (oversize) */
  /* A service backend: its IPv4 packets from these (protocol, source port
   * range)s are replies of VIP connections (dpsw_fast_nat's entries, else
   * punted: dpsw restores the VIP), not plain bridging. nsvc = 0: none;
   * more ranges than fit: svc_proto[0] = 255, every TCP/UDP packet. */
  __u32 nsvc;
  __u8 svc_proto[DPSW_SVC_RANGES];
  __u16 svc_lo[DPSW_SVC_RANGES], svc_hi[DPSW_SVC_RANGES];
};

/* dpsw_fast_fdb: (network, MAC) -> where it lives. The map's size is set by
 * dpsw at load time (mac_table.size + DPSW_MAX_PORTS); this is the default. */
#define DPSW_FAST_FDB_DEFAULT 65536
struct dpsw_fdb_key {
  __u16 bd;
  __u8 mac[6];
};
struct dpsw_fdb_val {
  __u32 ifindex; /* destination host veth (its peer is the container's interface); a tunnel: the uplink */
  __u16 port;
  __u16 flags;   /* DPSW_FDB_TUNNEL: `port` is a VXLAN tunnel port (dpsw_fast_tunnels); DPSW_FDB_EGRESS below */
};
#define DPSW_FDB_TUNNEL 1
#define DPSW_FDB_EGRESS 2 /* `ifindex` is the (punted veth) uplink: sent out of it, not into a container */

/* dpsw_fast_route: routing between bridge networks that `allow` each other
 * (no NAT, no conntrack: stateless, as dpsw routes them). Key: a fast-tier
 * endpoint's address (network order) -> where it lives. dpsw_fast_allow:
 * (from network, to network) -> the source network's prefix (network
 * order); present only for allowed pairs. */
struct dpsw_route_val {
  __u32 ifindex; /* its host veth */
  __u16 port, bd;
  __u8 mac[6];
  __u16 mtu;     /* its network's: longer frames are dpsw's */
};
struct dpsw_allow_key {
  __u16 from_bd, to_bd;
};
struct dpsw_allow_val {
  __u32 net, mask;
};

/* dpsw_fast_tunnels[tunnel port id]: how the kernel tier encapsulates frames
 * for a remote VTEP of an overlay network (a veth uplink only); vtep 0: none.
 * Addresses in network order. dpsw_fast_vni: (VNI, remote VTEP) -> the tunnel
 * port whose frames the uplink's TC program may decapsulate. */
struct dpsw_tunnel {
  __u32 vtep, local_ip; /* outer destination, source */
  __u32 vni;            /* host order, 24 bits */
  __u32 uplink_ifindex;
  __u8 smac[6], dmac[6]; /* outer Ethernet: the uplink's MAC, the next hop's */
  __u16 uplink_port;
  __u16 mtu;            /* the overlay network's MTU: longer non-GSO frames are dpsw's (it answers "fragmentation needed") */
};
struct dpsw_vni_key {
  __u32 vni;  /* host order */
  __u32 vtep; /* network order */
};
struct dpsw_vni_val {
  __u16 port; /* the tunnel port */
  __u16 bd;   /* its network */
};

/* dpsw_fast_dns: the names the kernel tier answers itself, a subset of
 * dpsw's DNS responder's (dataplane/dns): a plain query (no EDNS, one
 * question, type A, class IN) from a fast-tier endpoint to its own network's
 * gateway, port 53, for a name with exactly one address on that network
 * (not a dnsrr service's). Everything else is punted to dpsw's responder.
 * Key: the network and the question's name in wire form (length-prefixed
 * labels, the root's zero included), lower case, zero-padded. */
#define DPSW_DNS_NAME_MAX 60
#define DPSW_FAST_DNS_ENTRIES 65536
struct dpsw_dns_key {
  __u16 bd;
  __u8 len; /* bytes of name used */
  __u8 pad;
  __u8 name[DPSW_DNS_NAME_MAX];
};
struct dpsw_dns_val {
  __u32 addr;    /* the answer (network order) */
  __u32 gateway; /* the network's gateway: the query's destination (network order) */
  __u32 ttl;     /* seconds (host order) */
};

/* dpsw_fast_stats, per port and CPU: frames the fast tier forwarded itself
 * (rx: from the port's container, tx: into it) and punted frames it dropped
 * because the port was over its share (see dpsw_fast_punt_share). Frames it
 * punted are counted by dpsw. */
struct dpsw_fast_stats {
  __u64 rx_packets, rx_bytes, tx_packets, tx_bytes;
  __u64 punt_share_drops;
  __u64 oversize; /* dropped: a non-GSO frame longer than the network's MTU allows */
};

/* dpsw_fast_conf[0], set by dpsw. */
#define DPSW_STEER_MAX_CPUS 64 /* steering cores the kernel tier knows (more: steered as before, RPS picks) */
struct dpsw_fast_conf {
  __u32 steer_per_ms;   /* steering threshold, frames per ms per (port, CPU); 0 = never */
  __u32 uplink_ifindex; /* the uplink (dpsw_fast_uplink_in, or dpsw_fast_ingress when punted, runs there), 0: none */
  __u8 router_mac[6];   /* dpsw's router MAC: never a container's source */
  __u16 uplink_port;    /* its dpsw port id */
  __u8 uplink_mac[6];   /* the uplink's own MAC: routed frames from the outside are sent to it */
  __u16 uplink_punted;  /* 1: a veth uplink served like a fast-tier port (TC + punt veth, no XDP) */
  __u32 uplink_ip;      /* the host address (network order): VXLAN to it is decapsulated when punted */
  /* Frames out of a punted veth uplink go straight into its peer's ingress
   * (bpf_redirect_peer, as into a container: no veth transmit, no second
   * backlog pass) while uplink_redirect_peer is 1 - dpsw found that peer in
   * another namespace, without XDP, and the uplink up - for a frame unicast
   * to the peer's own MAC that fits the peer's MTU as the veth would check
   * it (+ 14 + 4); everything else takes bpf_redirect. */
  __u16 uplink_redirect_peer;
  __u16 uplink_peer_mtu;
  __u8 uplink_peer_mac[6];
  /* The steering cores in ascending order, as RPS lists the punt veths'
   * mask: a frame RPS would steer to the very core it is being handled on
   * stays on the direct path (the detour would only queue it there again). */
  __u16 steer_ncpus;
  __u16 steer_cpu[DPSW_STEER_MAX_CPUS];
  /* How many containers' interfaces have an XDP program (the ports are in
   * dpsw_fast_xdp_peers): frames into those go through the host veth's
   * transmit, which runs it (bpf_redirect_peer would skip it). 0: no lookup. */
  __u32 xdp_peers;
};

/* dpsw_fast_punt_share[worker], memory-mapped by dpsw and written by that
 * worker (dataplane/fast/punt_share.h): while its punt port is congested, how
 * many frames each port may punt to it per window (~1 ms, ktime >> 20);
 * 0 = no limit. */
struct dpsw_punt_share {
  __u32 per_ms;
  __u32 pad;
};

/* dpsw_fast_punt_rate[port]: the port's punted frames in the current window
 * (all CPUs together; updated with atomic adds, reset racily: approximate). */
struct dpsw_punt_rate {
  __u64 window;
  __u64 count;
};

/* dpsw_fast_nat: established routed flows the kernel tier forwards itself
 * (masquerade, published ports, hairpin), one entry per direction, looked up
 * at the TC ingress of the port a packet arrives on (a fast-tier endpoint's
 * host veth, or the uplink: dpsw_fast_ingress on a punted veth uplink,
 * dpsw_fast_uplink_in behind a NIC's XDP program, which passes the flows'
 * packets up). Defined in bpf/xsk_redirect.bpf.c (that XDP program reads it)
 * and shared with bpf/fast_l2.bpf.c, which reuses that map.
 * Key: the packet's tuple as it arrives, addresses and ports in network
 * order. dpsw owns the state: it installs an entry once its conntrack holds
 * the flow established (TCP) or created (UDP), refreshes its own flow from
 * last_seen, and removes the entry before the flow goes. The map's size is
 * set by dpsw at load time (2 x conntrack.size, at most 1M); this is the default. */
#define DPSW_FAST_NAT_DEFAULT 65536
#define DPSW_NAT_PEER 1
/* Set by the kernel tier on both directions' entries when it punts a TCP
 * FIN or RST of the flow: the entries are skipped (everything punted) until
 * dpsw removes them, or replaces them for a new connection on the tuple. */
#define DPSW_NAT_CLOSED 2
struct dpsw_nat_key {
  __u32 saddr, daddr;
  __u16 sport, dport;
  __u8 proto;
  __u8 pad[3];
};
struct dpsw_nat_val {
  __u32 xsaddr, xdaddr; /* rewritten addresses (network order) */
  __u16 xsport, xdport; /* rewritten ports (network order) */
  __u32 ifindex;        /* sent out of this device (bpf_redirect, egress) */
  __u16 in_port;        /* the flow's packets come from this dpsw port only (others: punted) */
  __u16 out_port;       /* the device's dpsw port id (tx counted there) */
  __u8 smac[6], dmac[6]; /* the new Ethernet header */
  __u32 flags;          /* DPSW_NAT_PEER: deliver with bpf_redirect_peer (into a container), else bpf_redirect; DPSW_NAT_CLOSED */
  __u32 pad;
  __u64 last_seen;      /* bpf_ktime_get_ns() of a recent packet (updated every ~100 ms; a plain store: racy, monotonic enough) */
};

/* dpsw_fast_events slots: events that are not a port's. */
enum dpsw_fast_event {
  DPSW_EV_PUNTED,        /* handed to dpsw through a punt veth */
  DPSW_EV_NO_PORT,       /* dropped: not (or no longer) a fast-tier port, or no room to tag */
  DPSW_EV_PUNT_BAD_TAG,  /* from dpsw without a valid port tag */
  DPSW_EV_PUNT_NO_PEER,  /* from dpsw to a port that is not a fast-tier port */
  DPSW_EV_STEERED,       /* a flooding sender's frame (known unicast, or of a routed path) sent to another core through a punt veth's ingress */
  DPSW_EV_BAD_SRC,       /* dropped: multicast, zero or dpsw's router MAC as source */
  DPSW_EV_PUNT_SHARE,    /* dropped: the port was over its share of a congested punt port */
  DPSW_EV_NAT_FORWARDED, /* a routed flow's packet rewritten and sent on by the kernel tier (dpsw_fast_nat) */
  DPSW_EV_NAT_ERROR,     /* dropped: a routed flow's rewrite failed half way (a helper refused) */
  DPSW_EV_VXLAN_ENCAP,   /* a frame encapsulated to a remote VTEP and sent out of the uplink */
  DPSW_EV_VXLAN_DECAP,   /* a frame from a remote VTEP decapsulated and delivered into its container */
  DPSW_EV_VXLAN_ERROR,   /* dropped: an encapsulation or decapsulation failed half way */
  DPSW_EV_ROUTED,        /* routed between two allowed networks by the kernel tier (dpsw_fast_route) */
  DPSW_EV_DNS_ANSWERED,  /* a DNS query to a network's gateway answered by the kernel tier (dpsw_fast_dns) */
  DPSW_EV_COUNT
};

#endif
