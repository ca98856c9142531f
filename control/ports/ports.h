// The ports folder's control module: the port kinds that need more than an
// AF_XDP socket, today vhost-user. It owns the vhost-user relay (made with
// the first vhost-user endpoint, control/ports/vhost_relay.h) and brings
// DPDK up for it; it checks the sockets a vhost-user endpoint will create
// (`dpsw --check` and before every change), lets an application go when its
// port is released, and reports DPDK's mbufs in `show counters`.
//
// The endpoint code (control/bridge) makes a vhost-user endpoint's port with
// add_vhost(), checks a new or changed one with check_new() and each
// endpoint's socket with preflight(ep).
#pragma once

#include <cstdint>
#include <memory>

#include "control/core/module.h"

namespace dpsw {

class VhostRelay;

class Ports : public Module {
 public:
  explicit Ports(Core& core);
  ~Ports() override;

  const char* name() const override { return "ports"; }
  void release_port(uint16_t id, const PortRec& pr) override;  // the relay disconnects the application first
  void stop() override;                                         // the relay (after every port was released)
  void counters(nlohmann::json& out) const override;            // "dpdk"

  // `dpsw --check` and before setup, for each endpoint right after its
  // namespace (Bridge::preflight()): a vhost-user endpoint in server mode
  // has a socket path that is absent or a socket. Throws ConfigError.
  void preflight(const PlannedEndpoint& ep) const;
  // Checks a new (or recreated) vhost-user endpoint `ep` against this
  // machine: in server mode its socket path must be absent or a socket,
  // unless it is `current`'s (the same endpoint's definition in force, whose
  // socket dpsw holds). Throws ConfigError.
  void check_new(const PlannedEndpoint& ep, const PlannedEndpoint* current) const;
  // Makes the port of vhost-user endpoint `ep` (brings DPDK up, the relay
  // serves its socket): a new id in rec.ports, its record filled in but for
  // its network (the endpoint code's). Throws; release(rec) undoes it.
  uint16_t add_vhost(const PlannedEndpoint& ep, EndpointRec& rec);

 private:
  void check_socket(const PlannedEndpoint& ep) const;  // ConfigError unless the path is absent or a socket

  std::unique_ptr<VhostRelay> relay_;  // made with the first vhost-user endpoint
};

}  // namespace dpsw
