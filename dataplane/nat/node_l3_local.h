// Node l3_local (batch): learns uplink ARP, then wraps stage::l3_local
// (dpsw's own address: ARP and echo answered in place).
// Exits: kNotLocal -> l2_fwd, kReply -> tx (back to the input port),
// kRoute -> l3_route, kDrop -> drop.
#pragma once

#include "dataplane/core/node.h"
#include "dataplane/nat/stage_l3_local.h"

namespace dpsw::graph {

struct L3Local {
  using Next = stage::LocalNext;
  static constexpr unsigned kExits = 4;
  static constexpr bool kBatch = true;

  template <class Emit>
  static void run(Ctx& c, const Frame& f, Emit&& emit) {
    const bool uplink = c.in_port == c.s.l3.uplink_port && c.arp;
    for (uint16_t k = 0; k < f.n; k++) {
      const uint16_t i = f.idx[k];
      Packet& p = c.pkt(i);
      if (uplink) arp_learn(p.data, p.len, *c.arp);
      Drop d = Drop::kCount;
      switch (stage::l3_local(p, c.bd, c.dst[i], &d)) {
        case Next::kNotLocal:
          emit(i, Next::kNotLocal, 0);
          break;
        case Next::kReply:
          c.handled[i] = true;
          emit(i, Next::kReply, c.in_port);
          break;
        case Next::kRoute:
          c.handled[i] = true;
          emit(i, Next::kRoute, 0);
          break;
        case Next::kDrop:
          c.handled[i] = true;
          emit(i, Next::kDrop, uint16_t(d));
          break;
      }
    }
  }
};

}  // namespace dpsw::graph
