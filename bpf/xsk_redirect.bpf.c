// SPDX-License-Identifier: GPL-2.0
// dpsw: hand every frame arriving on a port's host-side veth to that port's
// AF_XDP socket. One program object serves all ports: `dpsw_ports` maps the
// ingress ifindex to the port's slot in `dpsw_xsks`. Frames of interfaces
// without a socket yet are passed to the kernel (and counted). On the
// uplink, a reply of a flow the fast tier forwards (dpsw_fast_nat) is passed
// up to the fast tier's TC program instead (bpf/fast_l2.bpf.c).
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "dpsw_abi.h"
#include "nat_close.h"

struct {
  __uint(type, BPF_MAP_TYPE_XSKMAP);
  __uint(max_entries, DPSW_MAX_PORTS);
  __type(key, __u32);
  __type(value, __u32);
} dpsw_xsks SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, DPSW_MAX_PORTS);
  __type(key, __u32);    // ifindex
  __type(value, __u32);  // slot in dpsw_xsks
} dpsw_ports SEC(".maps");

// enum dpsw_xdp_stat: redirected to a socket / no socket for this interface (passed).
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, DPSW_XDP_STATS);
  __type(key, __u32);
  __type(value, __u64);
} dpsw_xdp_stats SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(map_flags, BPF_F_NO_PREALLOC);  // memory as flows come (sized to conntrack.size), freed after RCU
  __uint(max_entries, DPSW_FAST_NAT_DEFAULT);  // resized by dpsw before load (conntrack.size)
  __type(key, struct dpsw_nat_key);
  __type(value, struct dpsw_nat_val);
} dpsw_fast_nat SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct dpsw_xdp_conf);
} dpsw_xdp_conf SEC(".maps");

static __always_inline void count(__u32 which) {
  __u64 *c = bpf_map_lookup_elem(&dpsw_xdp_stats, &which);
  if (c) (*c)++;
}

// A TCP (not SYN/FIN/RST) or UDP packet of a flow in dpsw_fast_nat: the
// same tests as the fast tier's TC program, which takes it from here. A
// FIN or RST goes to dpsw, the flow's entries closed first (nat_close.h).
static __always_inline int is_fast_flow(struct xdp_md *ctx, __u32 uplink_port) {
  void *data = (void *)(long)ctx->data;
  void *data_end = (void *)(long)ctx->data_end;
  struct ethhdr *eth = data;
  struct iphdr *ip = (void *)(eth + 1);
  if ((void *)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->version != 4 || ip->ihl != 5 || ip->ttl <= 1 ||
      (ip->frag_off & bpf_htons(0x3fff)))
    return 0;
  struct dpsw_nat_key k = {.saddr = ip->saddr, .daddr = ip->daddr, .proto = ip->protocol};
  if (ip->protocol == IPPROTO_TCP) {
    struct tcphdr *th = (void *)(ip + 1);
    if ((void *)(th + 1) > data_end || th->syn) return 0;
    k.sport = th->source;
    k.dport = th->dest;
    if (th->fin || th->rst) {  // dpsw's (through AF_XDP); the flow's entries closed first
      if (ipv4_header_ok(ip, (__u32)((long)data_end - (long)ip))) nat_close(&dpsw_fast_nat, &k, uplink_port);
      return 0;
    }
  } else if (ip->protocol == IPPROTO_UDP) {
    struct udphdr *uh = (void *)(ip + 1);
    if ((void *)(uh + 1) > data_end) return 0;
    k.sport = uh->source;
    k.dport = uh->dest;
  } else {
    return 0;
  }
  struct dpsw_nat_val *v = bpf_map_lookup_elem(&dpsw_fast_nat, &k);
  return v && !(v->flags & DPSW_NAT_CLOSED);
}

SEC("xdp")
int dpsw_xsk_redirect(struct xdp_md *ctx) {
  __u32 ifindex = ctx->ingress_ifindex;
  __u32 zero = 0;
  struct dpsw_xdp_conf *conf = bpf_map_lookup_elem(&dpsw_xdp_conf, &zero);
  if (conf && conf->uplink_ifindex == ifindex && is_fast_flow(ctx, conf->uplink_port)) {
    count(DPSW_XDP_NAT_PASSED);
    return XDP_PASS;
  }
  __u32 *slot = bpf_map_lookup_elem(&dpsw_ports, &ifindex);
  if (!slot) {
    count(DPSW_XDP_NO_SOCKET);
    return XDP_PASS;
  }
  count(DPSW_XDP_REDIRECTED);
  return bpf_redirect_map(&dpsw_xsks, *slot, XDP_PASS);
}

char _license[] SEC("license") = "GPL";
