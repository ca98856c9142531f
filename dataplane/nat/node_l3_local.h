// Node l3_local (per frame, inline in eth_input's pass): completes uplink
// frames' partial checksums and learns uplink ARP; leaves a tunnel's frames
// on an overlay to L2 (its gateway is each host's own),
// then wraps stage::l3_local (dpsw's own address: ARP and echo answered in
// place). Frames it does not consume go on to the burst's L2 forwarding.
// Exits: kNotLocal -> l2_fwd, kReply -> tx (back to the input port),
// kRoute -> l3_route, kDrop -> drop, kDns -> dns (UDP to port 53 of a
// network's gateway, when the network has DNS).
#pragma once

#include "dataplane/core/checksum.h"
#include "dataplane/core/node.h"
#include "dataplane/nat/stage_l3_local.h"

namespace dpsw::graph {

struct L3Local : Node<stage::LocalNext, 5> {

  template <class Emit>
  [[gnu::always_inline]] static void run(Ctx& c, uint16_t i, uint16_t /*arg*/, Emit&& emit) {
    Packet& p = c.pkt(i);
    if (c.from_uplink) {
      // From the outside: a checksum a Linux peer left to offload is finished
      // here, before NAT rewrites it or a container receives it.
      csum::complete_partial(p.data, p.len);
      if (c.arp) arp_learn(p.data, p.len, *c.arp);
    }
    if (c.in.svc_backend && c.lane.dst[i] != c.bd.router_mac && stage::backend_reply(p, c.s.services)) {  // a service backend's packet: l3_route restores the VIP, or hands it back
      c.lane.handled[i] = true;
      emit(i, Next::kRoute, 0);
      return;
    }
    if (c.in.vtep && c.bd.local_only) {  // from another host: its own dpsw answers its overlay gateway
      c.lane.handled[i] = c.lane.dst[i] == c.bd.router_mac;  // (our MAC is never sent into a tunnel: bogus)
      if (c.lane.handled[i]) emit(i, Next::kDrop, uint16_t(Drop::kNoRoute));
      else emit(i, Next::kNotLocal, 0);
      return;
    }
    Drop d = Drop::kCount;
    switch (stage::l3_local(p, c.bd, c.lane.dst[i], &d)) {
      case Next::kNotLocal:
        emit(i, Next::kNotLocal, 0);
        break;
      case Next::kReply:
        c.lane.handled[i] = true;
        emit(i, Next::kReply, c.in_port);
        break;
      case Next::kRoute:
        c.lane.handled[i] = true;
        emit(i, Next::kRoute, 0);
        break;
      case Next::kDrop:
        c.lane.handled[i] = true;
        emit(i, Next::kDrop, uint16_t(d));
        break;
      case Next::kDns:
        c.lane.handled[i] = true;
        emit(i, Next::kDns, 0);
        break;
    }
  }
};

}  // namespace dpsw::graph
