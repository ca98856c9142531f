// Networks and endpoints as a control module: the bridge domains of the
// networks in force (their ids in the Core's registry; a macvlan network is
// the uplink's segment), and each endpoint's namespace, veths (or vhost-user
// socket, through the ports module) and ports, made at setup, by `endpoint
// add`, by a reload, and released at teardown. Its snapshot part (every
// bridge network's gateway and NAT settings, the endpoint ports in their
// flood and rx lists), the `networks`, `endpoints` and `mac` views and the
// `network add|del` and `endpoint add|del` verbs.
//
// Every change follows one pattern: validate the whole resulting config
// (check_config + make_plan + every module's check()) and the names it will
// create on this machine before touching anything; create new kernel state
// and ports; publish one new snapshot; for removals, publish first, wait for
// a QSBR grace period, then flush MACs and free ports, links and namespaces.
// Untouched endpoints' ports, MAC entries and addresses never change, so
// their traffic flows on.
#pragma once

#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "control/bridge/persisted.h"
#include "control/core/module.h"

namespace dpsw {

class FastControl;
class Rtnl;
class Ports;

class Bridge : public Module {
 public:
  // Endpoints use the fast tier and the ports module (vhost-user) when their
  // definition asks for them.
  Bridge(Core& core, FastControl& fast, Ports& ports) : Module(core), fast_(fast), vhost_(ports) {}

  const char* name() const override { return "bridge"; }
  void preflight() const override;              // each endpoint: a namespace to adopt exists, a vhost-user socket can be made
  void prepare() const override;                // the names setup will create are free
  void start() override;                        // the router MAC
  void attach() override;                       // setup: every planned endpoint
  void restore() override;                      // setup: the persisted endpoints of the last run
  void detach() override;                       // teardown: every endpoint released
  void contribute(Snapshot& s) const override;  // networks' gateways and NAT; endpoint ports
  void views(ViewRegistry& r) override;         // `networks`, `endpoints`, `mac`
  void verbs(VerbRegistry& r) override;         // `network add|del`, `endpoint add|del`
  void reload_check(Reload& r) const override;  // new and recreated endpoints can be made; "applied"
  void reload_replace(Reload& r) override;      // endpoints and networks removed, recreated, added
  void reload_update(Reload& r) override;       // networks' MTU in place; persisted endpoints' addresses follow the plan

  // What was made for endpoint `name` (its ports: one per network, in its
  // networks' order); nullptr: no such endpoint. NAT reads the published
  // ports' endpoints from it.
  const EndpointRec* endpoint(const std::string& name) const;
  // The MAC that answers for the bridge networks' gateways (dpsw's own, from
  // the instance name; 0 before setup): NAT's published ports answer from it.
  Mac router_mac() const { return router_mac_; }

 private:
  // Runtime changes. Each throws (ConfigError or runtime_error) and changes
  // nothing when the request is bad.
  nlohmann::json add_network(const NetworkConfig& n);
  nlohmann::json del_network(const std::string& name);
  Config check_del_network(const std::string& name) const;  // throws what del_network refuses; the config without it
  void check_del_endpoint(const std::string& name) const;   // throws what del_endpoint refuses
  nlohmann::json add_endpoint(const EndpointConfig& e);
  // `network add` / `endpoint add` with persist: true is saved (an endpoint
  // with the address and MAC it got), so that the next start makes it again
  // as it was. Saved before persisted_ takes the new state (a failed save
  // leaves both as they were).
  void save_persisted(const PersistedItems& p) const { p.save(PersistedItems::path(core_.cfg_.sw)); }
  nlohmann::json persisted_entry(const std::string& endpoint, nlohmann::json spec) const;  // spec + address, MAC, netns id
  // `endpoint update NAME`: publish and labels in place (what a reload applies in place).
  nlohmann::json update_endpoint(const std::string& name, const nlohmann::json& spec);
  nlohmann::json del_endpoint(const std::string& name);

  // All or nothing. reuse_netns: the namespace dpsw created for this endpoint
  // is still there (a reload recreating its interfaces): keep it.
  void create_endpoint(const PlannedEndpoint& ep, bool reuse_netns = false);
  void create_vhost_endpoint(const PlannedEndpoint& ep, EndpointRec& rec);
  void create_handoff_endpoint(const PlannedEndpoint& ep, EndpointRec& rec);  // EndpointConfig::handoff
  // Attachment a's port on its host end (made and up): the fast tier's or an
  // AF_XDP one, in the snapshot's records, its MAC pinned.
  void open_port(const PlannedEndpoint& ep, const PlannedAttachment& a, EndpointRec& rec, bool fast, Rtnl& host);
  // Port `id` of endpoint `ep` joins the network of attachment `a`: its
  // record's endpoint, network, bridge domain, addresses and MTU.
  PortRec& join(uint16_t id, const PlannedEndpoint& ep, const PlannedAttachment& a);
  void pin_mac(uint16_t id, const PlannedEndpoint& ep);  // its MAC, static in the MAC table (throws when full)
  // Publish without it, grace period, release. keep_netns: leave the
  // namespace dpsw created for it (returned, "" if none) for create_endpoint.
  std::string destroy_endpoint(const std::string& name, bool keep_netns = false);
  // Checks an endpoint's planned definition against this machine before
  // anything changes: namespaces to adopt exist, names to create are free
  // (`replacing`: the endpoint's current namespace, about to be reused).
  void check_can_create(const PlannedEndpoint& ep, const std::string& replacing) const;
  void check_adopted_netns(const PlannedEndpoint& ep) const;  // a namespace to adopt exists (ConfigError)
  std::string created_netns(const std::string& endpoint) const;  // the namespace dpsw made for it ("" none)
  void apply_mtu(const std::string& network);        // in place: plan_ and cfg_ hold the new MTU
  void remove_bd(const std::string& network);        // after its ports are gone; id and MACs freed after a grace period (deferred)
  nlohmann::json endpoint_json(const PlannedEndpoint& ep) const;
  const PlannedEndpoint* planned(const std::string& name) const;

  FastControl& fast_;
  Ports& vhost_;
  std::map<std::string, EndpointRec> eps_;  // every endpoint in force (host/container mode: an empty record)
  PersistedItems persisted_;  // what persists, as saved
  Mac router_mac_ = 0;                      // answers for bridge and overlay networks' gateways (start())
};

}  // namespace dpsw
