// Services' control side (issue 16; the packet side is dataplane/services):
// each `services:` entry's backends (endpoints on its network named in
// `backends`, or carrying its `labels`), its virtual IP (the plan's), its
// Maglev table (rebuilt only when its backends change), its published ports,
// and every backend port's service ports, as the snapshot's ServiceTable;
// `service add|del` and `show services`. A backend is an endpoint's port in
// the snapshot being built: one removed (or not yet made) is no backend.
#pragma once

#include <map>
#include <set>
#include <memory>
#include <string>
#include <vector>

#include "control/core/module.h"

namespace dpsw {

// The ports (in snapshot s, on the service's network) of svc's backends, by
// endpoint name order; `down`: ports whose link is down, left out.
std::vector<uint16_t> service_backends(const Core& core, const Snapshot& s, const ServiceConfig& svc,
                                       const std::set<uint16_t>* down = nullptr);

class Services : public Module {
 public:
  explicit Services(Core& core) : Module(core) {}

  const char* name() const override { return "services"; }
  void reload_check(Reload& r) const override;  // "services" in what it applies
  void contribute(Snapshot& s) const override;  // ServiceTable, the VIPs on their networks, published service ports
  void views(ViewRegistry& r) override;         // show services
  void tick(uint32_t now) override;             // each second: backends whose link went down leave their tables (and come back)
  void verbs(VerbRegistry& r) override;         // service add | del

 private:
  nlohmann::json add(const ServiceConfig& svc);
  nlohmann::json del(const std::string& name);
  // Maglev tables by service: rebuilt when the backends' keys change.
  struct Cached {
    std::vector<uint64_t> keys;
    std::shared_ptr<const std::vector<uint16_t>> table;
  };
  mutable std::map<std::string, Cached> tables_;
  // Ports that were a backend and are no more (relabelled, dropped from a
  // service, its service deleted) while their endpoint lives: their service
  // ports stay diverted, so that the connections they still serve keep
  // getting their replies restored. Until the endpoint goes.
  mutable std::map<uint16_t, std::vector<SvcPort>> former_;
  std::set<uint16_t> down_;  // backend ports whose link is down (the container's end is down)
  uint32_t checked_ms_ = 0;
  // Health checks: (service, backend port) that failed their last probe; when each service was probed.
  std::set<std::pair<std::string, uint16_t>> unhealthy_;
  std::map<std::string, uint32_t> probed_ms_;
  bool probe(uint16_t port, uint16_t tcp_port) const;  // a TCP connection accepted, from inside the backend's namespace
  void health(uint32_t now, bool* changed);
};

}  // namespace dpsw
