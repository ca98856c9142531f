// The dpsw daemon's control thread: turns a Config into namespaces, veths,
// AF_XDP ports and a dataplane snapshot; changes them while workers forward
// (add/remove networks and endpoints, reload); serves the control socket;
// ages the MAC table; tears everything down on SIGINT/SIGTERM.
//
// Every change follows one pattern: validate the whole resulting config
// (check_config + make_plan) before touching anything; create new kernel
// state and ports; publish one new snapshot; for removals, publish first,
// wait for a QSBR grace period, then flush MACs and free ports, links and
// namespaces. Untouched endpoints' ports, MAC entries and addresses never
// change, so their traffic flows on.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "control/config.h"
#include "control/journal.h"
#include "dataplane/afxdp_port.h"
#include "dataplane/dataplane.h"
#include "dataplane/fast_tier.h"
#include "dataplane/port.h"

namespace dpsw {

class CtlServer;
struct CtlReply;
class VhostRelay;

struct DaemonOptions {
  std::string bpf_object;   // XDP: bpf/xsk_redirect.bpf.o
  std::string fast_object;  // TC: bpf/fast_l2.bpf.o (the fast tier; loaded when an endpoint uses it)
};

// Checks that depend on this machine (cores, namespaces to adopt, BPF
// object), without changing anything. Throws ConfigError.
void preflight(const Config& cfg, const Plan& plan, const DaemonOptions& opt);
// Reads the uplink interface's MTU into cfg.uplink->mtu and re-resolves the
// defaults that follow it (overlay networks' MTU). No-op without an uplink
// or when the interface is missing (preflight() reports that).
void read_uplink_mtu(Config& cfg);

class Daemon {
 public:
  Daemon(Config cfg, Plan plan, DaemonOptions opt);
  ~Daemon();  // tears down whatever exists

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
  struct PortRec {
    std::string endpoint, network, host_ifname, ifname;
    int ifindex = 0;
    uint16_t bd = 0;
    Mac mac = 0;
    uint32_t ip = 0;
    uint32_t mtu = 1500;
    std::unique_ptr<Port> port;  // nullptr: id free (unless a tunnel)
    bool xdp = false;            // AF_XDP: bound in the XDP maps, program attached to ifindex
    uint32_t vtep = 0, vni = 0;  // a VXLAN tunnel port (no Port object): remote VTEP, VNI
    bool retiring = false;       // a tunnel on its way out: no longer published, not shown; freed after a grace period
    bool fast = false;           // a fast-tier endpoint (FastPort): TC program on ifindex, no XDP
    bool punt = false;           // the fast tier's punt port
    bool relay = false;          // a vhost-user port: the relay serves its application's socket (under `endpoint`)
    bool used() const { return port || vtep; }
  };
  struct EndpointRec {
    bool created_netns = false;
    std::string netns_name;
    std::string netns_path;  // an adopted namespace: where to restore `sysctls`
    std::vector<std::pair<std::string, std::string>> sysctls;  // adopted: values dpsw changed, as they were
    std::vector<uint16_t> ports;
    std::vector<std::string> links;
  };

  // All or nothing. reuse_netns: the namespace dpsw created for this endpoint
  // is still there (a reload recreating its interfaces): keep it.
  void create_endpoint(const PlannedEndpoint& ep, bool reuse_netns = false);
  void create_vhost_endpoint(const PlannedEndpoint& ep, EndpointRec& rec);
  uint16_t new_port_id();
  void release(EndpointRec& rec, bool keep_netns = false);  // ports must be out of the snapshot
  // Publish without it, grace period, release. keep_netns: leave the
  // namespace dpsw created for it (returned, "" if none) for create_endpoint.
  std::string destroy_endpoint(const std::string& name, bool keep_netns = false);
  // Checks an endpoint's planned definition against this machine before
  // anything changes: namespaces to adopt exist, names to create are free
  // (`replacing`: the endpoint's current namespace, about to be reused).
  void check_can_create(const PlannedEndpoint& ep, const std::string& replacing) const;
  void check_macs(const Plan& plan) const;           // none is dpsw's uplink MAC
  void apply_mtu(const std::string& network);        // in place: plan_ and cfg_ hold the new MTU
  uint16_t add_bd(const NetworkConfig& network);      // a macvlan network maps onto the uplink's segment
  void remove_bd(const std::string& network);         // after its ports are gone; id and MACs freed after a grace period (deferred)
  void create_uplink();
  // The fast tier (object, a punt veth pair and port per worker): made when
  // the first endpoint needs it, kept until teardown.
  void ensure_fast_tier();
  // Fast-tier MACs learned by the MAC table (maintenance tick).
  void sync_fast_macs();
  // Tunnel ports follow the overlay networks' peer lists in cfg_: creates the
  // missing ones, retires the others (publish, MAC flush; after a grace
  // period, deferred: MAC flush again, id freed). The caller publishes the result.
  void sync_tunnels();
  void retire_tunnels(const std::vector<uint16_t>& ids);
  uint32_t tunnel_next_hop(uint32_t vtep) const;  // the peer, or the uplink gateway when off-segment (0: none)
  void publish_snapshot();
  CtlReply show(const std::string& what, const std::vector<std::string>& args);  // the views of `show`, declared once
  nlohmann::json endpoint_json(const PlannedEndpoint& ep) const;
  const PlannedEndpoint* planned(const std::string& name) const;

  Config cfg_;
  Plan plan_;
  DaemonOptions opt_;
  std::unique_ptr<Journal> journal_;
  std::unique_ptr<XdpProgram> xdp_;
  std::unique_ptr<FastTier> fast_;
  struct Punt {
    EndpointRec rec;       // its port and veth pair
    uint16_t port = 0;     // port id of the AF_XDP side
    int near_ifindex = 0;  // where the fast tier sends what it punts
  };
  std::vector<Punt> punts_;  // the fast tier's punt ports: one per worker (index), owned by it
  std::unique_ptr<Dataplane> dp_;
  std::unique_ptr<CtlServer> ctl_;
  std::unique_ptr<VhostRelay> relay_;  // made with the first vhost-user endpoint
  std::vector<PortRec> ports_;                  // by port id
  std::map<std::string, uint16_t> bd_of_;       // network -> bridge domain id
  std::vector<std::string> bd_name_;            // bridge domain id -> network ("" free)
  std::map<std::string, EndpointRec> eps_;
  uint64_t generation_ = 0;
  int uplink_port_ = -1;      // port id of the uplink, -1: none
  uint16_t uplink_bd_ = 0;    // the uplink segment's bridge domain (macvlan networks live here)
  Mac uplink_mac_ = 0;        // answers for the uplink address
  Mac router_mac_ = 0;        // answers for bridge networks' gateways
  uint64_t ct_full_reported_ = 0;  // conntrack refusals already logged
  uint64_t fast_refused_reported_ = 0;  // fast-tier fdb refusals already logged
  uint32_t ct_full_logged_ms_ = 0;
};

}  // namespace dpsw
