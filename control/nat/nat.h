// The uplink and routing/NAT as a control module: with `uplink:` in the
// config, the uplink's AF_XDP port and segment (its bridge domain) and the
// dataplane's L3 state (conntrack, the uplink ARP cache), made at setup and
// released at teardown; the snapshot's uplink (its segment's address and
// MAC, its port, first in its flood and rx lists) and L3 configuration
// (routing between networks, masquerade, published ports); conntrack expiry
// on the tick; the `conntrack` view. Without an uplink every hook does
// nothing.
#pragma once

#include <cstdint>

#include "control/core/module.h"

namespace dpsw {

class FastControl;

class Bridge;

class Nat : public Module {
 public:
  // Published ports are the bridge module's endpoints'.
  // A veth uplink is the fast tier's (FastControl::add_uplink) when the switch's fast_path is auto.
  Nat(Core& core, const Bridge& bridge, FastControl& fast) : Module(core), bridge_(bridge), fast_(fast) {}

  const char* name() const override { return "nat"; }
  void preflight() const override;  // the uplink interface exists
  void check(const Config& next, const Plan& plan) const override;  // no endpoint takes the uplink's own MAC
  void start() override;                       // L3 state in the dataplane, the uplink port and segment
  // The uplink's segment (address, MAC), port and place in the flood and rx
  // lists, and s.l3. The last module that adds ports: the uplink goes in front of the lists
  // the others filled (its worker polls it first, then the punt port, then
  // the endpoints).
  void contribute(Snapshot& s) const override;
  void tick(uint32_t now) override;             // conntrack expiry; "conntrack full" (rate-limited)
  void release_port(uint16_t id, const PortRec& pr) override;  // the port's flows go with it (an address reused at once finds none)
  void views(ViewRegistry& r) override;         // `conntrack`
  void counters(nlohmann::json& out) const override;  // "conntrack"
  void stop() override;                         // detaches from the uplink (the interface is not ours)

  int uplink_port() const { return uplink_port_; }  // its port id, -1: none (the overlay's tunnels share its worker)

 private:
  void create_uplink();

  const Bridge& bridge_;
  FastControl& fast_;
  int uplink_port_ = -1;    // port id of the uplink, -1: none
  uint16_t uplink_bd_ = 0;  // the uplink segment's bridge domain (macvlan networks live here; Core::uplink_bd())
  Mac uplink_mac_ = 0;      // answers for the uplink address

  uint64_t ct_full_reported_ = 0;  // conntrack refusals already logged
  uint32_t ct_full_logged_ms_ = 0;
};

}  // namespace dpsw
