// Node eth_input (per frame): the graph's entry; graph::run() feeds it every
// frame of a burst from one port, in order. Wraps stage::eth_input; records
// the MACs and validity later nodes use (l2_fwd reads them for the burst).
// Exits: kL2 -> l3_local, kDrop -> drop (the reason as arg).
#pragma once

#include "dataplane/core/node.h"
#include "dataplane/bridge/stage_eth_input.h"

namespace dpsw::graph {

struct EthInput : Node<stage::EthNext, 2> {

  template <class Emit>
  [[gnu::always_inline]] static void run(Ctx& c, uint16_t i, uint16_t /*arg*/, Emit&& emit) {
    stage::EthResult r = stage::eth_input(c.pkt(i), c.in, c.bd);
    const bool ok = r.next == Next::kL2;
    c.lane.valid[i] = ok;
    c.lane.handled[i] = false;
    c.lane.src[i] = r.src;
    c.lane.dst[i] = r.dst;
    if (!ok) emit(i, Next::kDrop, uint16_t(r.drop));
    else emit(i, Next::kL2, 0);
  }
};

}  // namespace dpsw::graph
