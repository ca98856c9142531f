// Node flood (per frame): one copy to every other port of the network
// (broadcast, multicast, unknown unicast); never from a tunnel into one.
// Exits: kTx -> tx (a network without tunnels: straight to the tx stage),
// kOut -> output (tunnel ports encapsulate). The port is the arg.
#pragma once

#include "dataplane/core/node.h"

namespace dpsw::graph {

enum class FloodNext : uint8_t { kTx, kOut };
struct Flood : Node<FloodNext, 2> {

  template <class Emit>
  [[gnu::always_inline]] static void run(Ctx& c, uint16_t i, uint16_t /*arg*/, Emit&& emit) {
    // Locals, not Ctx members, in the loop: the tx stage's stores in between
    // would make the compiler reload them for every copy.
    const std::vector<uint16_t>& flood = c.bd.ports;
    const uint16_t in_port = c.in_port;
    uint32_t copies = 0;
    if (!c.bd.has_tunnels) {
      for (uint16_t p : flood) {
        if (p == in_port) continue;
        emit(i, Next::kTx, p);
        copies++;
      }
    } else {
      const bool from_tunnel = c.in.vtep != 0;
      for (uint16_t p : flood) {
        if (p == in_port || (from_tunnel && c.s.ports[p].vtep)) continue;
        emit(i, Next::kOut, p);
        copies++;
      }
    }
    c.flooded += copies;
  }
};

}  // namespace dpsw::graph
