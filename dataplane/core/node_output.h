// Node output (per frame, arg = destination port): a tunnel port's frames
// are encapsulated, every other port's go to the tx stage.
// Exits: kTx -> tx, kTunnel -> vxlan_output (the port as arg).
#pragma once

#include "dataplane/core/node.h"

namespace dpsw::graph {

enum class OutputNext : uint8_t { kTx, kTunnel };
struct Output : Node<OutputNext, 2> {

  template <class Emit>
  [[gnu::always_inline]] static void run(Ctx& c, uint16_t i, uint16_t port, Emit&& emit) {
    if (__builtin_expect(c.s.ports[port].vtep != 0, 0)) emit(i, Next::kTunnel, port);
    else emit(i, Next::kTx, port);
  }
};

}  // namespace dpsw::graph
