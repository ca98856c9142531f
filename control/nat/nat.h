// The uplink and routing/NAT as a control module: with `uplink:` in the
// config, the uplink's AF_XDP port and segment (its bridge domain) and the
// dataplane's L3 state (conntrack, the uplink ARP cache), made at setup and
// released at teardown; the snapshot's L3 configuration (routing between
// networks, masquerade, published ports); conntrack expiry on the tick; the
// `conntrack` view. Without an uplink every hook does nothing.
#pragma once

#include <cstdint>

#include "control/core/module.h"

namespace dpsw {

class Bridge;

class Nat : public Module {
 public:
  // Published ports are the bridge module's endpoints'.
  Nat(Core& core, const Bridge& bridge) : Module(core), bridge_(bridge) {}

  const char* name() const override { return "nat"; }
  void preflight() const override;  // the uplink interface exists
  void check(const Config& next, const Plan& plan) const override;  // no endpoint takes the uplink's own MAC
  void start() override;                       // L3 state in the dataplane, the uplink port and segment
  void contribute(Snapshot& s) const override;  // s.l3
  void tick(uint32_t now) override;             // conntrack expiry; "conntrack full" (rate-limited)
  void views(ViewRegistry& r) override;         // `conntrack`
  void counters(nlohmann::json& out) const override;  // "conntrack"
  void stop() override;                         // detaches from the uplink (the interface is not ours)

 private:
  void create_uplink();

  const Bridge& bridge_;

  uint64_t ct_full_reported_ = 0;  // conntrack refusals already logged
  uint32_t ct_full_logged_ms_ = 0;
};

}  // namespace dpsw
