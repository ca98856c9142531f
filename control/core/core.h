// What the daemon and its control modules (module.h) share: the machine-wide
// objects (the dataplane, the XDP program, the journal), the config and plan
// in force, the modules themselves, and the registries of ports and bridge
// domains, with the few operations on them every feature needs (a port id,
// a bridge domain id, the worker that owns a port, releasing what was made
// for an endpoint, every module's check()/apply(), publishing a snapshot).
// What a feature made (an endpoint's namespace and links, a tunnel's peer,
// the uplink) is its module's.
//
// Control thread only, like everything in control/. The Daemon is a Core (it
// owns this state and its lifecycle); a module gets a Core& and reads or
// changes only what its feature needs, never the Daemon's privates.
#pragma once

#include <unistd.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "control/core/config.h"
#include "control/core/journal.h"
#include "dataplane/ports/afxdp_port.h"
#include "dataplane/core/dataplane.h"
#include "dataplane/ports/port.h"

namespace dpsw {

class Module;

struct DaemonOptions {
  std::string bpf_object;   // XDP: bpf/xsk_redirect.bpf.o
  std::string fast_object;  // TC: bpf/fast_l2.bpf.o (the fast tier; loaded when an endpoint uses it)
};

// A file descriptor closed when it goes out of scope.
struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

// One port id's record (ports_ is indexed by port id).
struct PortRec {
  enum class Kind : uint8_t {
    kNone,    // id free (or being made: `port` not set yet)
    kAfxdp,   // AF_XDP (an endpoint's veth or the uplink): bound in the XDP maps, program attached to ifindex
    kPunt,    // the fast tier's punt port of a worker: AF_XDP like kAfxdp, in no network
    kFast,    // a fast-tier endpoint (FastPort): TC program on ifindex, no XDP
    kVhost,   // a vhost-user port: the relay serves its application's socket (under `endpoint`; control/ports)
    kTunnel,  // a VXLAN tunnel (no Port object; its peer and VNI are the overlay module's)
  };
  std::string endpoint, network, host_ifname, ifname;
  int ifindex = 0;
  uint16_t bd = 0;
  Mac mac = 0;
  uint32_t ip = 0;
  uint32_t mtu = 1500;
  std::unique_ptr<Port> port;  // nullptr: id free (unless a tunnel)
  Kind kind = Kind::kNone;
  bool used() const { return port || kind == Kind::kTunnel; }
  bool xdp() const { return kind == Kind::kAfxdp || kind == Kind::kPunt; }  // bound in the XDP maps
};

// What dpsw made for one endpoint (the bridge module keeps one per endpoint)
// or for a module's own links and ports (the fast tier's punt veths, the
// uplink's port): what Core::release() undoes.
struct EndpointRec {
  bool created_netns = false;
  std::string netns_name;
  std::string netns_path;  // an adopted namespace: where to restore `sysctls`
  std::vector<std::pair<std::string, std::string>> sysctls;  // adopted: values dpsw changed, as they were
  std::vector<uint16_t> ports;
  std::vector<std::string> links;
};

// The name the uplink's segment is registered under (its bridge domain, by
// the NAT module; not a valid network name): a macvlan network shares that
// bridge domain, and it is the uplink port's network.
inline constexpr char kUplinkNetwork[] = "(uplink)";

struct Core {
  Core(Config cfg, Plan plan, DaemonOptions opt);
  virtual ~Core();

  uint16_t new_port_id();  // the lowest free id; throws past kMaxPorts
  // Port `id` (pr: its record, ifindex set) as an AF_XDP port on host
  // interface `ifname`: the socket, bound in the XDP maps, the program attached.
  void open_afxdp(uint16_t id, PortRec& pr, const std::string& ifname);
  uint16_t add_bd(const NetworkConfig& network);  // a bridge domain id; a macvlan network maps onto the uplink's segment
  int uplink_bd() const;  // the uplink segment's bridge domain (kUplinkNetwork's), -1: none (no uplink)
  // add_bd() for each of cfg's networks without a bridge domain: at setup
  // (before every apply(), which finds them), `network add` and a reload
  // (before the endpoints that join them).
  void add_bds(const Config& cfg);
  // The worker that owns (polls, transmits on) port `id`: stable, a port
  // never changes worker.
  uint16_t owner(uint16_t id) const { return uint16_t(id % dp_->workers()); }
  // Frees rec's ports (they must be out of the snapshot), links, namespace
  // (unless keep_netns) and restores the sysctls it changed.
  void release(EndpointRec& rec, bool keep_netns = false);
  virtual void publish_snapshot() = 0;  // from the records below and every module's contribution
  // Every module's check() of a change's next config and plan (throws
  // ConfigError: the change is refused, nothing changed).
  void check_modules(const Config& next, const Plan& plan) const;
  void apply_modules();  // every module's apply(): cfg_ holds the new config; the caller publishes
  // Every module's hook of that name (module.h), for the module that removes
  // a network, changes its MTU or shows a MAC entry: only the core walks
  // modules_.
  void network_removed_modules(uint16_t bd);
  void network_gone_modules(uint16_t bd);
  void network_mtu_modules(const std::string& network);
  void mac_row_modules(const MacTable::Entry& e, nlohmann::json& row) const;
  bool port_hidden(uint16_t id) const;  // a module's port on its way out (Module::port_hidden()): not shown
  // Pins this thread, the control thread, to switch.control_cores (unset:
  // the workers' cores when they block when idle, else every allowed core
  // but the polled workers'); threads started after it inherit the mask.
  // A worker with a vhost-user port polls whatever switch.idle says, so
  // with one planned (or `vhost`: one being added) the workers count as
  // polled. Called by setup() before any thread starts, and by Ports before
  // the first vhost-user port starts DPDK's threads and the relay's.
  void place_control_thread(bool vhost);

  Config cfg_;
  Plan plan_;
  DaemonOptions opt_;
  std::unique_ptr<Journal> journal_;
  std::unique_ptr<XdpProgram> xdp_;
  std::unique_ptr<Dataplane> dp_;
  std::vector<std::unique_ptr<Module>> modules_;  // in the order their hooks run
  std::vector<PortRec> ports_;                  // by port id
  std::map<std::string, uint16_t> bd_of_;       // network -> bridge domain id
  std::vector<std::string> bd_name_;            // bridge domain id -> network ("" free)
  // Teardown: the links and namespaces detach() removed, logged once
  // everything is gone ("removed N links and M namespaces").
  size_t removed_links_ = 0, removed_netns_ = 0;
  std::string control_cores_;  // where place_control_thread() put the control thread (the ready line)

 protected:
  Core(const Core&) = delete;
  Core& operator=(const Core&) = delete;
};

}  // namespace dpsw
