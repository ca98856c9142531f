// Node vxlan_output (per frame, arg = the tunnel port): wraps
// stage::vxlan_output. The outer frame is built in the arena's scratch
// (burst.h) and queued on the tx stage for the uplink directly, like tx
// does; a frame too big for the underlay may get an ICMP "fragmentation
// needed" back to its sender the same way. Its drops are counted on the
// tunnel port (as its tx is). No exits.
#pragma once

#include "dataplane/core/node.h"
#include "dataplane/overlay/stage_vxlan_output.h"

namespace dpsw::graph {

struct VxlanOutput : Node<NoExit, 0> {

  template <class Emit>
  static void run(Ctx& c, uint16_t i, uint16_t dst, Emit&&) {
    encap(c.s, c.tx, c.wc, c.arp, c.arena, c.ip_id, c.pkt(i), dst);
  }

  // Out of line: the rare path (tunnel ports) stays out of the loops. Takes
  // the services, not the Ctx: a Ctx whose address escapes to an opaque
  // call could not stay in registers in the nodes' loops.
  [[gnu::noinline]] static void encap(const Snapshot& s, stage::TxStage& tx, WorkerCounters& wc, ArpCache* arp,
                                      BurstArena& a, uint16_t& ip_id, const Packet& p, uint16_t dst) {
    const PortEntry& pe = s.ports[dst];
    if (a.scratch_full()) {
      tx.flush(s);  // sends (copies) every queued frame: the buffers are free again
      a.scratch_reset();
    }
    PortCounters& tc = wc.ports[dst];
    Burst& ob = a.scratch_burst();
    const uint16_t oi = a.scratch_index();
    Packet& o = ob[oi];
    uint8_t* const buf = a.scratch_data();
    Drop d = Drop::kCount;
    if (!arp) {  // tunnels exist only with an uplink
      tc.drops[size_t(Drop::kNoRoute)].add(1);
      return;
    }
    switch (stage::vxlan_output(p, pe, s, *arp, ip_id++, buf, BurstArena::kScratchBytes, &o, &d)) {
      case stage::VxlanOutNext::kOut:
        a.scratch_commit();
        tc.tx_packets.add(1);
        tc.tx_bytes.add(p.len);
        tx.enqueue(s, s.l3.uplink_port, ob, oi);
        return;
      case stage::VxlanOutNext::kTooBig:
        tc.drops[size_t(d)].add(1);
        if (p.in_port < s.ports.size() && !s.ports[p.in_port].vtep) {
          const uint32_t inner_mtu = s.ports[s.l3.uplink_port].max_frame - kEthHdrLen - kVxlanOverhead;
          if (uint32_t len = stage::frag_needed(p, inner_mtu, buf)) {
            o.data = buf;
            o.len = len;
            o.in_port = dst;
            o.mbuf = nullptr;
            a.scratch_commit();
            tx.enqueue(s, p.in_port, ob, oi);
          }
        }
        return;
      case stage::VxlanOutNext::kDrop:
        tc.drops[size_t(d)].add(1);
        return;
    }
  }
};

}  // namespace dpsw::graph
