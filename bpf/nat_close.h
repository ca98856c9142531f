/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/* Shared by the fast tier's TC program (bpf/fast_l2.bpf.c) and the NIC
 * uplink's XDP program (bpf/xsk_redirect.bpf.c): a TCP FIN or RST of a flow
 * in dpsw_fast_nat, about to be handed to dpsw, marks both directions'
 * entries DPSW_NAT_CLOSED (dpsw_abi.h), so nothing more of this connection,
 * nor of a new one that reuses the tuple before dpsw's next sync (which
 * removes or replaces them), takes them. Only a packet dpsw itself will
 * accept marks: from the flow's own port, with a valid IPv4 header
 * (checksum, total length): a forged or corrupt FIN that dpsw drops must
 * not push a live connection onto the punted path. */
#ifndef DPSW_NAT_CLOSE_H
#define DPSW_NAT_CLOSE_H

#include <linux/ip.h>

#include "dpsw_abi.h"

/* ip: a 20-byte header (ihl 5) already bounds-checked; pkt_len: the bytes from ip on. */
static __always_inline int ipv4_header_ok(const struct iphdr *ip, __u32 pkt_len) {
  const __u16 *w = (const __u16 *)ip;
  __u32 sum = 0;
#pragma unroll
  for (int i = 0; i < 10; i++) sum += w[i];
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  const __u32 tot = ((ip->tot_len & 0xff) << 8) | (ip->tot_len >> 8);
  return sum == 0xffff && tot >= 40 && tot <= pkt_len;
}

static __always_inline void nat_close(void *nat_map, const struct dpsw_nat_key *k, __u32 in_port) {
  struct dpsw_nat_val *v = bpf_map_lookup_elem(nat_map, k);
  if (!v || v->in_port != in_port) return;
  /* The other direction arrives as this one's rewrite, reversed. */
  struct dpsw_nat_key r = {.saddr = v->xdaddr, .daddr = v->xsaddr, .sport = v->xdport, .dport = v->xsport, .proto = k->proto};
  /* Plain read-modify-writes: the kernel only ever sets this bit, and dpsw
   * replaces whole entries (no 32-bit atomics before BPF v3). */
  v->flags |= DPSW_NAT_CLOSED;
  struct dpsw_nat_val *b = bpf_map_lookup_elem(nat_map, &r);
  if (b) b->flags |= DPSW_NAT_CLOSED;
}

#endif
