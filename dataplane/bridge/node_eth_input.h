// Node eth_input (batch): the graph's entry for a burst from one port.
// Wraps stage::eth_input; records the MACs and validity later nodes use.
// Exits: kL2 -> l3_local, kDrop -> drop (the reason as arg).
#pragma once

#include "dataplane/core/node.h"
#include "dataplane/bridge/stage_eth_input.h"

namespace dpsw::graph {

struct EthInput {
  using Next = stage::EthNext;
  static constexpr unsigned kExits = 2;
  static constexpr bool kBatch = true;

  template <class Emit>
  static void run(Ctx& c, const Frame& f, Emit&& emit) {
    for (uint16_t k = 0; k < f.n; k++) {
      const uint16_t i = f.idx[k];
      stage::EthResult r = stage::eth_input(c.pkt(i), c.in, c.bd);
      c.valid[i] = r.next == Next::kL2;
      c.handled[i] = false;
      c.src[i] = r.src;
      c.dst[i] = r.dst;
      if (!c.valid[i]) emit(i, Next::kDrop, uint16_t(r.drop));
      else emit(i, Next::kL2, 0);
    }
  }
};

}  // namespace dpsw::graph
