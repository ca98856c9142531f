// SPDX-License-Identifier: GPL-2.0
// dpsw: hand every frame arriving on a port's host-side veth to that port's
// AF_XDP socket. One program object serves all ports: `dpsw_ports` maps the
// ingress ifindex to the port's slot in `dpsw_xsks`. Frames of interfaces
// without a socket yet are passed to the kernel (and counted).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "dpsw_abi.h"

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

static __always_inline void count(__u32 which) {
  __u64 *c = bpf_map_lookup_elem(&dpsw_xdp_stats, &which);
  if (c) (*c)++;
}

SEC("xdp")
int dpsw_xsk_redirect(struct xdp_md *ctx) {
  __u32 ifindex = ctx->ingress_ifindex;
  __u32 *slot = bpf_map_lookup_elem(&dpsw_ports, &ifindex);
  if (!slot) {
    count(DPSW_XDP_NO_SOCKET);
    return XDP_PASS;
  }
  count(DPSW_XDP_REDIRECTED);
  return bpf_redirect_map(&dpsw_xsks, *slot, XDP_PASS);
}

char _license[] SEC("license") = "GPL";
