// The overlay (VXLAN) as a control module: one tunnel port per (overlay
// network, peer VTEP), following the networks' peer lists in the config in
// force; the tunnel ports' snapshot part (flood lists, the VNI/peer index).
// Tunnels have no Port object and no kernel state: records in the Core's
// port registry (PortRec::Kind::kTunnel) and entries in the snapshot.
#pragma once

#include <cstdint>
#include <vector>

#include "control/core/module.h"

namespace dpsw {

class Nat;

class Overlay : public Module {
 public:
  // Tunnels are encapsulated by the uplink's worker (NAT's uplink port).
  Overlay(Core& core, const Nat& nat) : Module(core), nat_(nat) {}

  const char* name() const override { return "tunnels"; }
  // Tunnel ports follow the overlay networks' peer lists in cfg_: creates the
  // missing ones, retires the others (publish, MAC flush; after a grace
  // period, deferred: MAC flush again, id freed). The caller publishes the result.
  void apply() override { sync_tunnels(); }
  void reload_check(Reload& r) const override;  // "peers_changed" in what it applies
  void contribute(Snapshot& s) const override;  // tunnel ports, their flood-list places, the tunnel index
  void network_removed(uint16_t bd) override;    // its tunnels retire with it...
  void network_gone(uint16_t bd) override;       // ...and their records go after the grace period
  void network_mtu(const std::string& network) override;  // its tunnels' MTU
  nlohmann::json port_row(uint16_t id, const PortRec& pr) const override;  // a tunnel in `show ports`

  uint32_t next_hop(uint32_t vtep) const;  // the peer, or the uplink gateway when off-segment (0: none)

 private:
  void sync_tunnels();
  void retire_tunnels(const std::vector<uint16_t>& ids);

  const Nat& nat_;
};

}  // namespace dpsw
