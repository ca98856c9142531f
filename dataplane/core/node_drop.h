// Node drop (per frame, arg = a Drop reason from counters.h): counted on the
// input port. No exits.
#pragma once

#include "dataplane/core/node.h"

namespace dpsw::graph {

struct Discard : Node<NoExit, 0> {

  template <class Emit>
  [[gnu::always_inline]] static void run(Ctx& c, uint16_t /*i*/, uint16_t reason, Emit&&) {
    c.pc.drops[reason].add(1);
  }
};

}  // namespace dpsw::graph
