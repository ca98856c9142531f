// The overlay (VXLAN) as a control module: one tunnel port per (overlay
// network, peer VTEP), following the networks' peer lists in the config in
// force; the tunnel ports' snapshot part (flood lists, the VNI/peer index).
// Tunnels have no Port object and no kernel state: a record in the Core's
// port registry (PortRec::Kind::kTunnel: network, bridge domain, MTU), the
// module's own (peer VTEP, VNI, retiring) under the same port id, and
// entries in the snapshot.
#pragma once

#include <cstdint>
#include <map>
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
  bool port_hidden(uint16_t id) const override;  // a retiring tunnel
  void stop() override;                          // forgets its tunnels (teardown clears the port records)

  uint32_t next_hop(uint32_t vtep) const;  // the peer, or the uplink gateway when off-segment (0: none)

 private:
  void sync_tunnels();
  void retire_tunnels(const std::vector<uint16_t>& ids);
  void free_tunnel(uint16_t id);  // its port record and its entry here

  struct Tunnel {
    uint32_t vtep = 0;      // the remote VTEP
    uint32_t vni = 0;
    bool retiring = false;  // on its way out: no longer published, not shown; freed after a grace period
  };
  const Nat& nat_;
  std::map<uint16_t, Tunnel> tunnels_;  // by port id: every port of kind kTunnel, retiring ones included
};

}  // namespace dpsw
