// Node tx (per frame, arg = destination port): queue the frame on the
// worker's tx stage (stage_tx.h), sent at the flush ending the burst's scope.
// No exits: the tx stage counts what it sends and drops.
#pragma once

#include "dataplane/core/node.h"

namespace dpsw::graph {

struct Tx : Node<NoExit, 0> {

  template <class Emit>
  [[gnu::always_inline]] static void run(Ctx& c, uint16_t i, uint16_t port, Emit&&) {
    c.tx.enqueue(c.s, port, c.b, c.slot(i));
  }
};

}  // namespace dpsw::graph
