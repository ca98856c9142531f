// Node l2_fwd (batch: the one place the burst forks into a bulk step): wraps
// stage::l2_fwd (learning from every valid frame, bulk lookup for those not
// consumed before) and applies split horizon to the frames on its Frame.
// Runs for every burst, even with no frame to forward: it learns.
// Exits: kUnicast -> output (the port as arg), kFlood -> flood, kDrop -> drop.
#pragma once

#include "dataplane/core/node.h"
#include "dataplane/bridge/stage_l2_fwd.h"

namespace dpsw::graph {

struct L2Fwd : Node<stage::FwdNext, 3, true> {

  template <class Emit>
  [[gnu::always_inline]] static void run(Ctx& c, const Frame& f, Emit&& emit) {
    Next next[kBurst];
    uint16_t out[kBurst];
    Drop drop[kBurst];
    stage::l2_fwd(c.macs, c.in.bd, c.in_port, c.in.learn, c.now, c.n, c.lane.valid, c.lane.handled, c.lane.src, c.lane.dst, next, out, drop,
                  c.wc, c.worker);
    // Split horizon: what came from a tunnel never goes back into one.
    const bool from_tunnel = c.in.vtep != 0;
    for (uint16_t k = 0; k < f.n; k++) {
      const uint16_t i = f.idx[k];
      switch (next[i]) {
        case Next::kUnicast:
          if (from_tunnel && c.s.ports[out[i]].vtep) emit(i, Next::kDrop, uint16_t(Drop::kSplitHorizon));
          else emit(i, Next::kUnicast, out[i]);
          break;
        case Next::kFlood:
          emit(i, Next::kFlood, 0);
          break;
        case Next::kDrop:
          emit(i, Next::kDrop, uint16_t(drop[i]));
          break;
      }
    }
  }
};

}  // namespace dpsw::graph
