// The dpsw daemon's control thread: turns a Config into namespaces, veths,
// AF_XDP ports and a dataplane snapshot; changes them while workers forward
// (add/remove networks and endpoints, reload); serves the control socket;
// ages the MAC table; tears everything down on SIGINT/SIGTERM.
//
// Every change follows one pattern: validate the whole resulting config
// (check_config + make_plan + every module's check()) before touching
// anything; create new kernel state and ports; publish one new snapshot; for
// removals, publish first, wait for a QSBR grace period, then flush MACs and
// free ports, links and namespaces. Untouched endpoints' ports, MAC entries
// and addresses never change, so their traffic flows on.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "control/core/config.h"
#include "control/core/core.h"
#include "control/core/verbs.h"

namespace dpsw {

class CtlServer;
struct CtlReply;
class FastControl;
class Overlay;
class Ports;

// Checks that depend on this machine (cores, namespaces to adopt, BPF
// object), without changing anything. Throws ConfigError.
void preflight(const Config& cfg, const Plan& plan, const DaemonOptions& opt);
// Reads the uplink interface's MTU into cfg.uplink->mtu and re-resolves the
// defaults that follow it (overlay networks' MTU). No-op without an uplink
// or when the interface is missing (preflight() reports that).
void read_uplink_mtu(Config& cfg);

// The Daemon is the Core (control/core/core.h) its modules (module.h) share:
// it owns that state and runs the lifecycle, the control loop and request
// dispatch; features take part through the modules' hooks.
class Daemon : private Core {
 public:
  Daemon(Config cfg, Plan plan, DaemonOptions opt);
  ~Daemon();  // tears down whatever exists

  void preflight() const;  // see preflight() above: the core's checks, then every module's
  void setup();  // creates everything; on failure undoes it and throws
  int run();     // control loop until SIGINT/SIGTERM; returns exit code
  void teardown();

  CtlReply handle(const nlohmann::json& req);  // control socket requests

  // Runtime changes. Each throws (ConfigError or runtime_error) and changes
  // nothing when the request is bad.
  nlohmann::json add_network(const NetworkConfig& n);
  nlohmann::json del_network(const std::string& name);
  nlohmann::json add_endpoint(const EndpointConfig& e);
  nlohmann::json del_endpoint(const std::string& name);
  nlohmann::json reload();

 private:
  // All or nothing. reuse_netns: the namespace dpsw created for this endpoint
  // is still there (a reload recreating its interfaces): keep it.
  void create_endpoint(const PlannedEndpoint& ep, bool reuse_netns = false);
  void create_vhost_endpoint(const PlannedEndpoint& ep, EndpointRec& rec);
  // Publish without it, grace period, release. keep_netns: leave the
  // namespace dpsw created for it (returned, "" if none) for create_endpoint.
  std::string destroy_endpoint(const std::string& name, bool keep_netns = false);
  // Checks an endpoint's planned definition against this machine before
  // anything changes: namespaces to adopt exist, names to create are free
  // (`replacing`: the endpoint's current namespace, about to be reused).
  void check_can_create(const PlannedEndpoint& ep, const std::string& replacing) const;
  void apply_mtu(const std::string& network);        // in place: plan_ and cfg_ hold the new MTU
  void remove_bd(const std::string& network);         // after its ports are gone; id and MACs freed after a grace period (deferred)
  void publish_snapshot() override;
  CtlReply show(const std::string& what, const std::vector<std::string>& args);  // the views of `show`, declared once
  nlohmann::json endpoint_json(const PlannedEndpoint& ep) const;
  const PlannedEndpoint* planned(const std::string& name) const;

  Ports* vhost_ = nullptr;       // the ports module (in modules_): vhost-user endpoints use it
  FastControl* fast_ = nullptr;  // the fast tier's module (in modules_): endpoints use it
  VerbRegistry verbs_;  // the control socket's verbs: the core's and every module's (setup())
  std::unique_ptr<CtlServer> ctl_;
  uint64_t generation_ = 0;
};

}  // namespace dpsw
