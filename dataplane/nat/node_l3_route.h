// Node l3_route (per frame, inline in the entry pass after l3_local, so
// routing sees ARP learned from the frames before it): wraps stage::l3_route (NAT, routing).
// Exits: kOut -> tx (the route's port as arg), kDrop -> drop, kL2 -> l2_fwd
// (a service backend's packet l3_local sent here that belongs to no VIP
// connection: forwarded at L2 as it would have been).
#pragma once

#include "dataplane/core/node.h"
#include "dataplane/nat/stage_l3_route.h"

namespace dpsw::graph {

struct L3Route : Node<stage::RouteNext, 3> {

  template <class Emit>
  [[gnu::always_inline]] static void run(Ctx& c, uint16_t i, uint16_t /*arg*/, Emit&& emit) {
    Drop d = Drop::kNoRoute;  // without L3 state nothing routes
    if (c.ct) {
      stage::RouteCtx rc{c.s, *c.ct, *c.arp, c.worker, c.now};
      uint16_t out_port;
      switch (stage::l3_route(c.pkt(i), c.bd, rc, &out_port, &d)) {
        case Next::kOut:
          emit(i, Next::kOut, out_port);
          return;
        case Next::kL2:  // a service backend's packet of no VIP connection: bridged as any other
          c.lane.handled[i] = false;
          emit(i, Next::kL2, 0);
          return;
        case Next::kDrop:
          break;
      }
    }
    emit(i, Next::kDrop, uint16_t(d));
  }
};

}  // namespace dpsw::graph
