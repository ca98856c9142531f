// Node l3_route (per frame, inline in the entry pass after l3_local, so
// routing sees ARP learned from the frames before it): wraps stage::l3_route (NAT, routing).
// Exits: kOut -> tx (the route's port as arg), kDrop -> drop.
#pragma once

#include "dataplane/core/node.h"
#include "dataplane/nat/stage_l3_route.h"

namespace dpsw::graph {

struct L3Route : Node<stage::RouteNext, 2> {

  template <class Emit>
  [[gnu::always_inline]] static void run(Ctx& c, uint16_t i, uint16_t /*arg*/, Emit&& emit) {
    Drop d = Drop::kNoRoute;  // without L3 state nothing routes
    if (c.ct) {
      stage::RouteCtx rc{c.s, *c.ct, *c.arp, c.worker, c.now};
      uint16_t out_port;
      if (stage::l3_route(c.pkt(i), c.bd, rc, &out_port, &d) == Next::kOut) {
        emit(i, Next::kOut, out_port);
        return;
      }
    }
    emit(i, Next::kDrop, uint16_t(d));
  }
};

}  // namespace dpsw::graph
