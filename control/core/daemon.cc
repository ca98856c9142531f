#include "control/core/daemon.h"

#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <set>

#include "control/core/module.h"
#include "control/core/ctl_server.h"
#include "control/fast/fast_control.h"
#include "control/nat/nat.h"
#include "control/overlay/overlay.h"
#include "control/ports/ports.h"
#include "control/core/view.h"
#include "control/core/log.h"
#include "control/core/netlink.h"
#include "control/core/socket_path.h"
#include "dataplane/core/clock.h"
#include "dataplane/ports/dpdk_env.h"

namespace dpsw {

using nlohmann::json;

namespace {
const char* mode_name(Mode m) {
  switch (m) {
    case Mode::kBridge: return "bridge";
    case Mode::kNone: return "none";
    case Mode::kHost: return "host";
    case Mode::kContainer: return "container";
  }
  return "?";
}
}  // namespace

// Only an absent path or a socket may be there (a live one is refused by setup(): `dpsw --check` of a running config passes).
static SocketPathState control_socket_state(const Config& cfg) {
  try {
    return check_socket_path(cfg.sw.control_socket, "switch.control_socket");
  } catch (const std::runtime_error& e) {
    throw ConfigError(cfg.path + ": " + e.what());
  }
}

void preflight(const Config& cfg, const Plan& plan, const DaemonOptions& opt) { Daemon(cfg, plan, opt).preflight(); }

void Daemon::preflight() const {
  const Config& cfg = cfg_;
  control_socket_state(cfg);
  cpu_set_t allowed;
  sched_getaffinity(0, sizeof allowed, &allowed);
  auto check_cores = [&](const std::vector<int>& cores, const std::string& key) {
    for (size_t i = 0; i < cores.size(); i++) {
      int c = cores[i];
      if (c >= CPU_SETSIZE || !CPU_ISSET(c, &allowed))
        throw ConfigError(cfg.path + ": switch." + key + "[" + std::to_string(i) + "]: core " + std::to_string(c) +
                          " is not available on this machine (" + std::to_string(CPU_COUNT(&allowed)) + " usable cores)");
    }
  };
  check_cores(cfg.sw.workers, "workers");
  if (cfg.sw.steer_cores) check_cores(*cfg.sw.steer_cores, "fast_path_steering.cores");
  for (const auto& ep : plan_.endpoints) {
    struct stat st;
    if (!ep.create_netns && !ep.netns_path.empty() && stat(ep.netns_path.c_str(), &st) != 0)
      throw ConfigError(cfg.path + ": endpoint '" + ep.name + "': netns " + ep.netns_path + " does not exist");
  }
  if (access(opt_.bpf_object.c_str(), R_OK) != 0)
    throw ConfigError("BPF object " + opt_.bpf_object + " is not readable (use --bpf-object)");
  for (const auto& m : modules_) m->preflight();
}

void read_uplink_mtu(Config& cfg) {
  if (!cfg.uplink || !if_nametoindex(cfg.uplink->interface.c_str())) return;
  Rtnl rt;
  cfg.uplink->mtu = rt.link_mtu(cfg.uplink->interface);
  resolve_defaults(cfg);
}

Daemon::Daemon(Config cfg, Plan plan, DaemonOptions opt) : Core(std::move(cfg), std::move(plan), std::move(opt)) {
  // The control modules, in the order their hooks run.
  Core& core = *this;
  auto ports = std::make_unique<Ports>(core);
  vhost_ = ports.get();
  modules_.push_back(std::move(ports));
  auto fast = std::make_unique<FastControl>(core);
  fast_ = fast.get();
  modules_.push_back(std::move(fast));
  modules_.push_back(std::make_unique<Overlay>(core));
  modules_.push_back(std::make_unique<Nat>(core));
}

Daemon::~Daemon() { teardown(); }

void Daemon::setup() {
  // One table of control verbs, the core's and every module's: a name taken
  // twice refuses the start here, before anything is made.
  verbs_.add("show", [this](const VerbRegistry::Request& r) {
    return show(r.args.empty() ? "views" : r.args[0],  // `show` alone lists the views
                std::vector<std::string>(r.args.begin() + (r.args.empty() ? 0 : 1), r.args.end()));
  });
  verbs_.add("reload", [this](const VerbRegistry::Request&) { return reload(); });
  verbs_.add("version", [](const VerbRegistry::Request&) { return json{{"version", DPSW_VERSION}, {"protocol", kCtlProtocolVersion}}; });
  verbs_.add("network add", [this](const VerbRegistry::Request& r) { return add_network(parse_network_item(r.spec(), "network add")); });
  verbs_.add("network del", [this](const VerbRegistry::Request& r) { return del_network(r.name()); });
  verbs_.add("endpoint add", [this](const VerbRegistry::Request& r) { return add_endpoint(parse_endpoint_item(r.spec(), "endpoint add")); });
  verbs_.add("endpoint del", [this](const VerbRegistry::Request& r) { return del_endpoint(r.name()); });
  for (const auto& m : modules_) m->verbs(verbs_);

  rlimit rl{RLIM_INFINITY, RLIM_INFINITY};
  setrlimit(RLIMIT_MEMLOCK, &rl);  // UMEMs are locked memory on older kernels

  journal_ = std::make_unique<Journal>(cfg_.sw.state_dir, cfg_.sw.name);
  if (int n = journal_->recover()) LOG_WARN("removed %d namespaces/links left by an earlier run of '%s'", n, cfg_.sw.name.c_str());

  try {
    if (control_socket_state(cfg_) == SocketPathState::kLive)
      throw ConfigError(cfg_.path + ": switch.control_socket: " + cfg_.sw.control_socket + " is in use by another running dpsw");
    // Names we are about to create must be free now (stale ones were just removed).
    for (const auto& ep : plan_.endpoints) check_can_create(ep, "");

    xdp_ = std::make_unique<XdpProgram>(opt_.bpf_object);
    Dataplane::Options dopt;
    dopt.cores = cfg_.sw.workers;
    dopt.mac.size = cfg_.sw.mac_table_size;
    dopt.mac.aging_ms = cfg_.sw.mac_aging_s * 1000;
    dopt.mac.confirm_ms = std::min<uint32_t>(1000, dopt.mac.aging_ms / 2);
    dopt.mac.refresh_ms = dopt.mac.confirm_ms;
    dopt.idle = cfg_.sw.blocks() ? Dataplane::Options::Idle::kBlock : Dataplane::Options::Idle::kPoll;
    dopt.idle_after_us = cfg_.sw.idle_after_us;
    dp_ = std::make_unique<Dataplane>(dopt);
    router_mac_ = router_mac(cfg_.sw.name);
    for (const auto& m : modules_) m->start();
    for (const auto& m : modules_) m->check(cfg_, plan_);
    for (const auto& n : cfg_.networks) add_bd(n);
    for (const auto& m : modules_) m->apply();
    for (const auto& ep : plan_.endpoints) create_endpoint(ep);
    publish_snapshot();
    dp_->start();
    ctl_ = std::make_unique<CtlServer>(cfg_.sw.control_socket, [this](const json& r) { return handle(r); });
  } catch (...) {
    teardown();
    throw;
  }
}

void Daemon::remove_bd(const std::string& network) {
  auto it = bd_of_.find(network);
  if (it == bd_of_.end()) return;
  uint16_t id = it->second;
  bd_of_.erase(it);
  if (uplink_port_ >= 0 && id == uplink_bd_) {  // a macvlan network: the segment stays with the uplink
    bd_name_[id] = "(uplink)";
    publish_snapshot();
    return;
  }
  for (auto& m : modules_) m->network_removed(id);  // e.g. its tunnels go with it
  bd_name_[id] = "(removed)";  // no network's any more, and not reused until the work below is done
  publish_snapshot();  // the network's flood list disappears
  dp_->macs().flush_bd(id);  // its MAC entries go now (`show mac`)...
  // ...and once no worker still forwards in it (a grace period; the reply
  // does not wait for it: the next maintenance tick runs this), nothing can
  // be learned into it any more: what was relearned meanwhile goes, the
  // modules' records of it (its tunnels) and its id are free.
  dp_->defer([this, id] {
    for (auto& m : modules_) m->network_gone(id);
    dp_->macs().flush_bd(id);
    bd_name_[id].clear();
  });
}

void Daemon::create_vhost_endpoint(const PlannedEndpoint& ep, EndpointRec& rec) {
  const PlannedAttachment& a = ep.attachments.at(0);
  uint16_t id = vhost_->add_vhost(ep, rec);
  PortRec& pr = ports_[id];
  pr.endpoint = ep.name;
  pr.network = a.network;
  pr.bd = bd_of_.at(a.network);
  pr.mac = a.mac;
  pr.ip = a.ip;
  pr.mtu = a.mtu;
  if (!dp_->macs().add_static(pr.bd, a.mac, id))  // the application's MAC, as configured (see create_endpoint)
    throw std::runtime_error("endpoint " + ep.name + ": no room for its MAC " + mac_to_string(a.mac) + " in the MAC table (mac_table.size)");
  LOG_INFO("endpoint %s: vhost-user %s %s on network %s (port %u)", ep.name.c_str(), ep.vhost_client ? "client of" : "server at",
           ep.vhost_socket.c_str(), a.network.c_str(), id);
}

void Daemon::create_endpoint(const PlannedEndpoint& ep, bool reuse_netns) {
  EndpointRec rec;
  if (ep.mode == Mode::kHost || ep.mode == Mode::kContainer) {  // nothing of its own to create
    eps_[ep.name] = std::move(rec);
    return;
  }
  try {
    if (ep.port == PortKind::kVhost) {
      create_vhost_endpoint(ep, rec);
      eps_[ep.name] = std::move(rec);
      return;
    }
    if (ep.create_netns) {
      if (!reuse_netns) {
        journal_->record("netns", ep.netns_name);
        netns::create(ep.netns_name);
      }
      rec.created_netns = true;
      rec.netns_name = ep.netns_name;
    } else {
      rec.netns_path = ep.netns_path;
    }
    Fd ns(netns::open_path(ep.netns_path));
    // The fast tier delivers with bpf_redirect_peer, which needs the
    // container end in another namespace than the host end: an endpoint in
    // dpsw's own namespace (adopting the host's) is served by AF_XDP.
    struct stat mine, theirs;
    const bool own_netns = fstat(ns.fd, &theirs) == 0 && stat("/proc/self/ns/net", &mine) == 0 && mine.st_ino == theirs.st_ino &&
                           mine.st_dev == theirs.st_dev;
    Rtnl host;
    Rtnl inside(ns.fd);
    inside.set_up("lo");
    // Like Docker: containers on IPv4-only networks have IPv6 off (no ND/MLD
    // chatter). In a namespace dpsw adopted, what it changes is put back
    // when the endpoint goes (the namespace may be the host's own).
    in_netns(ns.fd, [&] {
      for (const char* k : {"net/ipv6/conf/all/disable_ipv6", "net/ipv6/conf/default/disable_ipv6"}) {
        if (!rec.created_netns) rec.sysctls.emplace_back(k, sysctl_read(k));
        sysctl_write(k, "1");
      }
    });
    bool routed = false;
    for (size_t i = 0; i < ep.attachments.size(); i++) {
      const PlannedAttachment& a = ep.attachments[i];
      const bool fast = a.fast && !own_netns;
      if (a.fast && own_netns) LOG_INFO("endpoint %s: in dpsw's own namespace: served by AF_XDP, not the fast tier", ep.name.c_str());
      journal_->record("link", a.host_ifname);
      // The host end takes any frame the container sends (up to what its
      // port can carry): one longer than the network allows reaches dpsw and
      // is dropped as `oversize` there, counted, not lost unseen in the kernel.
      host.create_veth(a.host_ifname, journal_->alias_tag() + ep.name + ":" + a.network, a.ifname, ns.fd, a.mac, a.mtu,
                       fast ? kFastHostMtu : kAfxdpMaxMtu);
      rec.links.push_back(a.host_ifname);
      try {
        sysctl_write("net/ipv6/conf/" + a.host_ifname + "/disable_ipv6", "1");
      } catch (const std::exception&) {
      }
      host.set_up(a.host_ifname);
      inside.add_address(a.ifname, a.ip, a.prefix_len);
      // AF_XDP hands frames over as they are; a partial checksum left for
      // offload would arrive unfinished, so the container computes its own.
      // The fast tier keeps the container's offloads (checksum, TSO): the
      // kernel completes what it punts to dpsw.
      if (fast) fast_->ensure();
      else in_netns(ns.fd, [&] { ethtool_set_tx_csum(a.ifname, false); });
      inside.set_up(a.ifname);
      // The default route: through the first network that routes (an
      // overlay is pure L2 across hosts, like Docker's, which leaves the
      // way out to another network: docker_gwbridge there, a bridge here).
      if (!routed && a.driver != Driver::kOverlay) {
        inside.add_default_route(a.gateway);
        routed = true;
      }

      uint16_t id = new_port_id();
      PortRec& pr = ports_[id];
      pr.endpoint = ep.name;
      pr.network = a.network;
      pr.host_ifname = a.host_ifname;
      pr.ifname = a.ifname;
      pr.ifindex = host.ifindex(a.host_ifname);
      pr.bd = bd_of_.at(a.network);
      pr.mac = a.mac;
      pr.ip = a.ip;
      pr.mtu = a.mtu;
      rec.ports.push_back(id);
      if (fast) {
        fast_->add_port(id, pr);
      } else {
        auto port = std::make_unique<AfxdpPort>(a.host_ifname, AfxdpPort::Options{});
        int fd = port->fd();
        pr.port = std::move(port);
        pr.kind = PortRec::Kind::kAfxdp;
        xdp_->bind_socket(pr.ifindex, id, fd);
        xdp_->attach(pr.ifindex, a.host_ifname);
      }
      // Every endpoint's MAC is known by configuration: a static entry, never
      // learned elsewhere, moved or aged (another port sending from it cannot
      // take its traffic). macvlan: frames from the uplink for it go straight
      // to it; fast tier: both tiers agree on where it is (the kernel tier
      // carries its traffic, which dpsw then never sees to learn from).
      if (!dp_->macs().add_static(pr.bd, a.mac, id))
        throw std::runtime_error("endpoint " + ep.name + ": no room for its MAC " + mac_to_string(a.mac) +
                                 " in the MAC table (mac_table.size)");
      LOG_INFO("endpoint %s: %s %s/%u on network %s via %s (port %u%s)", ep.name.c_str(), mac_to_string(a.mac).c_str(),
               ipv4_to_string(a.ip).c_str(), a.prefix_len, a.network.c_str(), a.host_ifname.c_str(), id,
               fast ? ", fast tier" : "");
    }
  } catch (...) {
    release(rec);  // not yet in any snapshot: no grace period needed
    throw;
  }
  eps_[ep.name] = std::move(rec);
}

std::string Daemon::destroy_endpoint(const std::string& name, bool keep_netns) {
  auto it = eps_.find(name);
  if (it == eps_.end()) return "";
  EndpointRec rec = std::move(it->second);
  eps_.erase(it);
  // Out of the fast tier first: no frame is redirected to it any more.
  for (uint16_t id : rec.ports) fast_->remove_port(id);
  // Out of the snapshot next; then wait until no worker can still be
  // polling or transmitting on its ports before they are closed. This one
  // waits (synchronize() sleeps, it does not spin; workers blocked while
  // idle are offline and do not delay it) rather than defer(): the reply
  // says the endpoint is gone, so its links, namespace and names must be
  // (a reload recreates a changed endpoint under the same names right after).
  publish_snapshot();
  dp_->synchronize();
  std::string kept = keep_netns && rec.created_netns ? rec.netns_name : "";
  release(rec, keep_netns);
  return kept;
}

void Daemon::publish_snapshot() {
  auto s = std::make_unique<Snapshot>();
  s->generation = ++generation_;
  s->rx_ports.resize(dp_->workers());
  s->ports.resize(ports_.size());
  s->bds.resize(bd_name_.size());
  for (size_t i = 0; i < bd_name_.size(); i++) {
    BdEntry& b = s->bds[i];
    b.name = bd_name_[i];
    if (uplink_port_ >= 0 && i == uplink_bd_) {
      b.local_ip = cfg_.uplink->address.addr;  // the host, on its own segment
      b.router_mac = uplink_mac_;
    } else if (const NetworkConfig* n = cfg_.network(b.name); n && n->driver == Driver::kBridge) {
      b.local_ip = n->gateway;  // the network's gateway
      b.router_mac = router_mac_;
      b.nat = !n->internal;
      b.subnet = n->subnet.network();
      b.mask = n->subnet.mask();
    }
  }
  if (uplink_port_ >= 0) {
    uint16_t id = uint16_t(uplink_port_);
    PortEntry& pe = s->ports[id];
    pe.port = ports_[id].port.get();
    pe.bd = uplink_bd_;
    pe.owner = owner(id);
    pe.max_frame = std::min(cfg_.uplink->mtu, kAfxdpMaxMtu) + kEthHdrLen;
    s->bds[uplink_bd_].ports.push_back(id);
    s->rx_ports[pe.owner].push_back(id);
  }
  for (const auto& [name, rec] : eps_) {
    for (uint16_t id : rec.ports) {
      const PortRec& pr = ports_[id];
      PortEntry& pe = s->ports[id];
      pe.port = pr.port.get();
      pe.bd = pr.bd;
      pe.owner = owner(id);
      pe.max_frame = pr.mtu + kEthHdrLen;
      pe.endpoint = true;
      const NetworkConfig* net = cfg_.network(pr.network);
      pe.learn = !(net && net->driver == Driver::kMacvlan);
      s->bds[pr.bd].ports.push_back(id);
      if (pr.kind == PortRec::Kind::kFast) {  // received and sent through its worker's punt port (FastControl::contribute)
        pe.fast = true;
        continue;
      }
      s->rx_ports[pe.owner].push_back(id);
    }
  }
  for (const auto& m : modules_) m->contribute(*s);
  dp_->publish(std::move(s));
}

void Daemon::check_can_create(const PlannedEndpoint& ep, const std::string& replacing) const {
  const std::string where = cfg_.path + ": endpoint '" + ep.name + "': ";
  struct stat st;
  if (!ep.create_netns && !ep.netns_path.empty() && stat(ep.netns_path.c_str(), &st) != 0)
    throw ConfigError(where + "netns " + ep.netns_path + " does not exist");
  if (ep.create_netns && ep.netns_name != replacing && netns::exists(ep.netns_name))
    throw ConfigError(where + "namespace " + ep.netns_name + " already exists and was not created by this instance");
  if (ep.port == PortKind::kVhost) {
    vhost_->check_new(ep, eps_.count(ep.name) ? planned(ep.name) : nullptr);
    return;
  }
  Rtnl rt;
  auto it = eps_.find(ep.name);
  for (const auto& a : ep.attachments) {
    bool ours = it != eps_.end() && std::count(it->second.links.begin(), it->second.links.end(), a.host_ifname);
    if (!ours && rt.ifindex(a.host_ifname)) throw ConfigError(where + "link " + a.host_ifname + " already exists");
  }
}

void Daemon::apply_mtu(const std::string& network) {
  for (const auto& ep : plan_.endpoints) {
    auto rec = eps_.find(ep.name);
    if (rec == eps_.end()) continue;
    for (size_t i = 0; i < ep.attachments.size() && i < rec->second.ports.size(); i++) {
      const PlannedAttachment& a = ep.attachments[i];
      PortRec& pr = ports_[rec->second.ports[i]];
      if (a.network != network || pr.mtu == a.mtu) continue;
      pr.mtu = a.mtu;
      if (ep.port == PortKind::kVhost) continue;  // the application sets its own
      fast_->set_mtu(rec->second.ports[i], a.mtu);  // a fast-tier port's host end keeps its higher MTU
      Fd ns(netns::open_path(ep.netns_path));
      Rtnl inside(ns.fd);
      inside.set_up(a.ifname, a.mtu);
    }
  }
  for (auto& m : modules_) m->network_mtu(network);  // e.g. its tunnels'
  LOG_INFO("network %s: MTU applied in place", network.c_str());
}

const PlannedEndpoint* Daemon::planned(const std::string& name) const {
  for (const auto& ep : plan_.endpoints)
    if (ep.name == name) return &ep;
  return nullptr;
}

json Daemon::add_network(const NetworkConfig& n) {
  Config next = cfg_;
  next.networks.push_back(n);
  resolve_defaults(next);  // an overlay's MTU follows the uplink's
  check_config(next);
  Plan np = make_plan(next, &plan_);
  for (const auto& m : modules_) m->check(next, np);
  add_bd(next.networks.back());
  cfg_ = std::move(next);
  plan_ = std::move(np);
  for (const auto& m : modules_) m->apply();
  publish_snapshot();
  LOG_INFO("network %s added (%s)", n.name.c_str(), prefix_to_string(n.subnet).c_str());
  return {{"network", n.name}, {"subnet", prefix_to_string(n.subnet)}, {"gateway", ipv4_to_string(n.gateway)}};
}

json Daemon::del_network(const std::string& name) {
  if (!cfg_.network(name)) throw ConfigError("network del: unknown network '" + name + "'");
  std::string users;
  for (const auto& e : cfg_.endpoints)
    if (std::count(e.networks.begin(), e.networks.end(), name)) users += (users.empty() ? "" : ", ") + e.name;
  if (!users.empty()) throw ConfigError("network del: network '" + name + "' still has endpoints: " + users);
  for (const auto& n : cfg_.networks)
    if (std::count(n.allow.begin(), n.allow.end(), name))
      throw ConfigError("network del: network '" + name + "' is in the allow list of network '" + n.name + "'; remove it there first");
  Config next = cfg_;
  next.networks.erase(std::find_if(next.networks.begin(), next.networks.end(), [&](auto& n) { return n.name == name; }));
  check_config(next);  // the result must be a valid configuration
  remove_bd(name);
  cfg_ = std::move(next);
  LOG_INFO("network %s removed", name.c_str());
  return {{"network", name}};
}

json Daemon::add_endpoint(const EndpointConfig& e) {
  Config next = cfg_;
  next.endpoints.push_back(e);
  check_config(next);
  Plan np = make_plan(next, &plan_);
  for (const auto& m : modules_) m->check(next, np);
  const PlannedEndpoint& pe = np.endpoints.back();
  check_can_create(pe, "");
  create_endpoint(pe);  // all or nothing
  cfg_ = std::move(next);
  plan_ = std::move(np);
  publish_snapshot();
  return endpoint_json(plan_.endpoints.back());
}

json Daemon::del_endpoint(const std::string& name) {
  if (!cfg_.endpoint(name)) throw ConfigError("endpoint del: unknown endpoint '" + name + "'");
  for (const auto& e : cfg_.endpoints)
    if (e.mode == Mode::kContainer && e.container == name)
      throw ConfigError("endpoint del: endpoint '" + name + "' is joined by '" + e.name + "' (container:" + name + "); remove that first");
  destroy_endpoint(name);
  cfg_.endpoints.erase(std::find_if(cfg_.endpoints.begin(), cfg_.endpoints.end(), [&](auto& x) { return x.name == name; }));
  plan_.endpoints.erase(std::find_if(plan_.endpoints.begin(), plan_.endpoints.end(), [&](auto& x) { return x.name == name; }));
  LOG_INFO("endpoint %s removed", name.c_str());
  return {{"endpoint", name}};
}

json Daemon::reload() {
  Config next = load_config(cfg_.path);
  if (next.uplink && cfg_.uplink) {
    next.uplink->mtu = cfg_.uplink->mtu;
    resolve_defaults(next);
  }
  ConfigDiff d = diff_configs(cfg_, next);
  if (!d.switch_changed.empty()) {
    std::string keys;
    for (auto& k : d.switch_changed) keys += (keys.empty() ? "" : ", ") + (k == "uplink" ? k : "switch." + k);
    throw ConfigError(cfg_.path + ": " + keys + " cannot change while dpsw runs (restart it); nothing was changed");
  }
  auto in = [](const std::vector<std::string>& v, const std::string& x) { return std::find(v.begin(), v.end(), x) != v.end(); };
  // Plan against what stays: changed endpoints are planned from scratch.
  Plan keep;
  for (const auto& ep : plan_.endpoints)
    if (!in(d.endpoints_changed, ep.name) && !in(d.endpoints_removed, ep.name)) keep.endpoints.push_back(ep);
  Plan np = make_plan(next, &keep);
  for (const auto& m : modules_) m->check(next, np);
  std::vector<std::string> fresh = d.endpoints_added;
  fresh.insert(fresh.end(), d.endpoints_changed.begin(), d.endpoints_changed.end());
  // Validate everything against this machine before changing anything: a
  // rejected reload changes nothing. A changed endpoint keeps the namespace
  // dpsw made for it (processes inside keep their network namespace; only
  // its interfaces are made anew).
  std::map<std::string, std::string> reuse;  // endpoint -> its namespace, kept across the change
  for (const auto& ep : np.endpoints) {
    if (!in(fresh, ep.name)) continue;
    auto old = eps_.find(ep.name);
    std::string current = old != eps_.end() && old->second.created_netns ? old->second.netns_name : "";
    if (!current.empty() && ep.create_netns && ep.netns_name == current) reuse[ep.name] = current;
    check_can_create(ep, current);
  }
  json applied = {{"networks_added", d.networks_added}, {"networks_removed", d.networks_removed},
                  {"networks_changed", d.networks_changed}, {"networks_updated", d.networks_updated},
                  {"peers_changed", d.peers_changed}, {"endpoints_added", d.endpoints_added},
                  {"endpoints_removed", d.endpoints_removed}, {"endpoints_changed", d.endpoints_changed},
                  {"endpoints_updated", d.endpoints_updated}};
  if (d.empty()) return {{"applied", applied}, {"unchanged", true}};

  // Everything validated: apply. Removals (and the old halves of changes) first.
  for (const auto& n : d.endpoints_removed) destroy_endpoint(n);
  std::vector<std::string> kept_ns;
  for (const auto& n : d.endpoints_changed)
    if (std::string ns = destroy_endpoint(n, reuse.count(n) > 0); !ns.empty()) kept_ns.push_back(ns);
  for (const auto& n : d.networks_removed) remove_bd(n);
  for (const auto& n : d.networks_changed) remove_bd(n);
  for (const auto& n : next.networks)
    if (!bd_of_.count(n.name)) add_bd(n);
  std::string failed;
  for (const auto& ep : np.endpoints) {
    if (!in(fresh, ep.name)) continue;
    try {
      create_endpoint(ep, reuse.count(ep.name) > 0);
    } catch (const std::exception& e) {
      failed += (failed.empty() ? "" : "; ") + ep.name + ": " + e.what();
    }
  }
  for (const auto& ns : kept_ns)  // a namespace kept for an endpoint that could not be made again
    if (std::none_of(eps_.begin(), eps_.end(), [&](const auto& e) { return e.second.netns_name == ns; })) netns::remove(ns);
  // What is in force now is the new config minus endpoints that failed.
  if (!failed.empty()) {
    std::erase_if(next.endpoints, [&](auto& e) { return !eps_.count(e.name); });
    std::erase_if(np.endpoints, [&](auto& e) { return !eps_.count(e.name); });
  }
  cfg_ = std::move(next);
  plan_ = std::move(np);
  // From here on the new config is in force: whatever fails below is
  // reported, and the snapshot is published regardless (nothing created by
  // this reload may be left out of it).
  for (const auto& n : d.networks_updated) {  // allow, internal and ip_range need only the new snapshot/plan
    try {
      apply_mtu(n);
    } catch (const std::exception& e) {
      failed += (failed.empty() ? "" : "; ") + std::string("network ") + n + " MTU: " + e.what();
    }
  }
  for (const auto& m : modules_) {
    try {
      m->apply();  // the overlay: peers added and removed; tunnels of changed networks recreated
    } catch (const std::exception& e) {
      failed += (failed.empty() ? "" : "; ") + std::string(m->name()) + ": " + e.what();
    }
  }
  publish_snapshot();  // published ports, allow, internal: in place
  LOG_INFO("reload: %s", applied.dump().c_str());
  if (!failed.empty()) throw std::runtime_error("reload applied, except: " + failed);
  return {{"applied", applied}, {"unchanged", false}};
}

int Daemon::run() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  Fd sfd(signalfd(-1, &set, SFD_CLOEXEC));
  std::string cores;
  for (int c : cfg_.sw.workers) {
    if (!cores.empty()) cores += ",";
    cores += std::to_string(c);
  }
  LOG_INFO("ready: %zu ports, %zu networks, %u workers on cores [%s], control socket %s", ports_.size(),
           cfg_.networks.size(), dp_->workers(), cores.c_str(), cfg_.sw.control_socket.c_str());
  uint32_t last_maint = now_ms();
  std::vector<pollfd> fds;
  for (;;) {
    fds.assign({{sfd.fd, POLLIN, 0}});
    ctl_->fill_pollfds(fds);  // control clients never block this loop: ageing and signals keep their pace
    const int ctl_wait = ctl_->next_timeout_ms();
    int r = poll(fds.data(), fds.size(), ctl_wait >= 0 ? std::min(ctl_wait, 200) : 200);
    if (r < 0 && errno != EINTR) break;
    if (fds[0].revents & POLLIN) {
      signalfd_siginfo si;
      if (read(sfd.fd, &si, sizeof si) == sizeof si) {
        LOG_INFO("signal %s: shutting down", strsignal(int(si.ssi_signo)));
        break;
      }
    }
    ctl_->on_events(fds.data() + 1, r > 0 ? fds.size() - 1 : 0);
    uint32_t now = now_ms();
    if (now - last_maint >= 250) {
      dp_->maintain(now, cfg_.sw.mac_aging_s * 1000);
      for (auto& m : modules_) m->tick(now);
      last_maint = now;
    }
  }
  teardown();
  return 0;
}

void Daemon::teardown() {
  ctl_.reset();
  if (dp_) {
    dp_->stop();  // workers gone: ports can be released without a grace period
    dp_->synchronize();  // runs what defer() still holds (it touches ports_ and the MAC table), while they are whole
  }
  size_t nlinks = 0, nns = 0;
  for (auto& [name, rec] : eps_) {
    nlinks += rec.links.size();
    nns += rec.created_netns;
    release(rec);
  }
  eps_.clear();
  for (auto m = modules_.rbegin(); m != modules_.rend(); ++m) (*m)->stop();  // reverse order: users before what they use
  dp_.reset();
  xdp_.reset();
  DpdkEnv::shutdown();  // no-op unless a vhost port brought DPDK up
  if (journal_) {
    try {
      Rtnl rt;
      for (const auto& l : rt.links_with_alias_prefix(journal_->alias_tag())) rt.delete_link(l);
    } catch (const std::exception& e) {
      LOG_ERR("teardown: %s", e.what());
    }
    journal_->clear();
    journal_.reset();
    if (nlinks || nns) LOG_INFO("removed %zu links and %zu namespaces", nlinks, nns);
  }
  ports_.clear();
}

CtlReply Daemon::handle(const json& req) { return verbs_.dispatch(req); }

json Daemon::endpoint_json(const PlannedEndpoint& ep) const {
  json atts = json::array();
  for (const auto& a : ep.attachments)
    atts.push_back({{"network", a.network}, {"ifname", a.ifname}, {"host_ifname", a.host_ifname},
                    {"mac", mac_to_string(a.mac)}, {"ip", ipv4_to_string(a.ip) + "/" + std::to_string(a.prefix_len)}});
  json e = {{"name", ep.name}, {"mode", mode_name(ep.mode)}, {"netns", ep.netns_path}, {"attachments", atts},
            {"port", ep.port == PortKind::kVhost ? "vhost" : "afxdp"}};
  if (ep.mode == Mode::kContainer) e["joins"] = ep.joins;
  if (const EndpointConfig* ec = cfg_.endpoint(ep.name); ec && !ec->publish.empty()) {
    json pub = json::array();
    for (const auto& p : ec->publish) pub.push_back(publish_to_string(p));
    e["publish"] = pub;
  }
  if (ep.port == PortKind::kVhost) {
    e["vhost_socket"] = ep.vhost_socket;
    e["vhost_mode"] = ep.vhost_client ? "client" : "server";
  }
  return e;
}

// Every view of `show` is declared once, here or in its feature's module
// (Module::views(), asked between `mac` and `counters`): the rows of its
// answer (the reply's "result", which scripts read) and how a person reads
// them (the reply's "view", see view.h). dpswctl prints any view from that
// description.
CtlReply Daemon::show(const std::string& what, const std::vector<std::string>& args) {
  using view::col, view::line, view::pick, view::table;
  auto port_counters = [&](uint16_t id) {
    auto t = dp_->port_totals(id);
    json extra = json::object();
    for (const auto& m : modules_)  // what a module counts for the port (the kernel tier's own frames)
      if (json x = m->port_counters(id, t); x.is_object()) extra.update(x);
    json drops = json::object();
    for (size_t d = 0; d < kDropReasons; d++)
      if (t.drops[d]) drops[std::string(drop_reason_name(Drop(d)))] = t.drops[d];
    json j{{"rx_packets", t.rx_packets}, {"rx_bytes", t.rx_bytes}, {"tx_packets", t.tx_packets},
           {"tx_bytes", t.tx_bytes}, {"flood_packets", t.flood_packets}, {"drops", drops}};
    j.update(extra);
    return j;
  };
  using Shown = ViewRegistry::Entry;
  ViewRegistry reg{args, {}};
  std::vector<Shown>& views = reg.entries;

  views.push_back({{"ports", "", "every port: endpoint, network, addresses, owning worker, packets",
                    {table("", {col("ID", "id"), col("PORT", "name"), col("KIND", "kind"), col("ENDPOINT", "endpoint"),
                                col("NETWORK", "network"), col("MAC", "mac"), col("IP", "ip"), col("WORKER", "worker"),
                                col("RX", "counters.rx_packets"), col("TX", "counters.tx_packets")})}},
                   0, [&] {
    json out = json::array();
    const Snapshot& s = dp_->snapshot();
    for (uint16_t id = 0; id < ports_.size(); id++) {
      const PortRec& pr = ports_[id];
      if (!pr.used() || pr.retiring) continue;  // retiring: a removed tunnel awaiting its grace period
      json p;
      for (const auto& m : modules_)  // a port of a module's own kind (a tunnel)
        if (p.is_null()) p = m->port_row(id, pr);
      if (p.is_null()) {
        p = {{"id", id}, {"name", pr.host_ifname}, {"kind", pr.kind == PortRec::Kind::kPunt ? "punt" : pr.port->kind()}, {"endpoint", pr.endpoint},
             {"network", pr.network}, {"ifname", pr.ifname}, {"mac", mac_to_string(pr.mac)},
             {"ip", ipv4_to_string(pr.ip)}, {"worker", s.port(id) ? s.port(id)->owner : 0},
             {"link", pr.port->link_up() ? "up" : "down"}, {"link_changes", pr.port->link_changes()}};
      }
      p["counters"] = port_counters(id);
      out.push_back(p);
    }
    return out;
  }});

  views.push_back({{"networks", "", "networks: subnet, gateway, MTU, endpoints, overlay VNI and peers",
                    {table("", {col("NETWORK", "name"), col("DRIVER", "driver"), col("SUBNET", "subnet"),
                                col("GATEWAY", "gateway"), col("MTU", "mtu"), col("ENDPOINTS", "endpoints"),
                                pick("OVERLAY", {{"peers", "vni {vni} peers {peers}"}, {"vni", "vni {vni} peers (none)"}})})}},
                   0, [&] {
    json out = json::array();
    for (const auto& n : cfg_.networks) {
      json eps = json::array();
      for (const auto& e : cfg_.endpoints)
        if (std::count(e.networks.begin(), e.networks.end(), n.name)) eps.push_back(e.name);
      json j = {{"name", n.name}, {"driver", driver_name(n.driver)}, {"subnet", prefix_to_string(n.subnet)},
                {"gateway", ipv4_to_string(n.gateway)}, {"mtu", n.mtu}, {"internal", n.internal}, {"endpoints", eps}};
      if (n.driver == Driver::kOverlay) {
        json peers = json::array();
        for (uint32_t p : n.peers) peers.push_back(ipv4_to_string(p));
        j["vni"] = n.vni;
        j["peers"] = peers;
      }
      out.push_back(j);
    }
    return out;
  }});

  views.push_back({{"endpoints", "", "endpoints and their interface on each network",
                    {table("", {col("ENDPOINT", "name"), col("MODE", "mode"),
                                pick("NETNS", {{"joins", "container:{joins}"}, {"netns", "{netns}"}, {"", "(host)"}}),
                                col("NETWORK", "attachments.network"), col("IF", "attachments.ifname"),
                                col("MAC", "attachments.mac"), col("IP", "attachments.ip")})
                         .for_each("attachments")}},
                   0, [&] {
    json out = json::array();
    for (const auto& ep : plan_.endpoints) out.push_back(endpoint_json(ep));
    return out;
  }});

  views.push_back({{"mac", "[NETWORK]", "the MAC table (of one network)",
                    {table("", {col("NETWORK", "network"), col("MAC", "mac"), col("PORT", "port"), col("ENDPOINT", "endpoint"),
                                col("AGE(s)", "age_ms", "ms_as_s"), col("ESTABLISHED", "established"),
                                col("FAST_TIER", "fast_tier")})}},
                   1, [&] {
    int bd = -1;
    if (!args.empty()) {
      auto it = bd_of_.find(args[0]);
      if (it == bd_of_.end()) throw std::runtime_error("unknown network '" + args[0] + "'");
      bd = it->second;
    }
    json out = json::array();
    uint32_t now = now_ms();
    dp_->macs().for_each([&](const MacTable::Entry& e) {
      if (bd >= 0 && e.bd != bd) return;
      bool known = e.port < ports_.size() && ports_[e.port].used();
      std::string port = known ? ports_[e.port].host_ifname : std::to_string(e.port);
      std::string ep = known ? ports_[e.port].endpoint : "";
      json row{{"network", e.bd < bd_name_.size() ? bd_name_[e.bd] : "?"},
               {"mac", mac_to_string(e.mac)}, {"port", port}, {"endpoint", ep},
               {"age_ms", e.is_static || int32_t(now - e.last_seen_ms) < 0 ? 0 : now - e.last_seen_ms},
               {"established", e.established}, {"static", e.is_static}};
      for (const auto& m : modules_) m->mac_row(e, row);  // e.g. "fast_tier"
      out.push_back(row);
    });
    return out;
  }});

  for (auto& m : modules_) m->views(reg);

  views.push_back({{"counters", "", "packets and drops by port, worker load, table occupancy",
                    {table("ports", {col("PORT", "@key"), col("ENDPOINT", "endpoint"), col("RX_PKTS", "rx_packets"),
                                     col("RX_BYTES", "rx_bytes"), col("TX_PKTS", "tx_packets"), col("TX_BYTES", "tx_bytes"),
                                     col("FLOODED", "flood_packets"), col("DROPS", "drops")}),
                     table("workers", {col("WORKER", "worker"), col("CORE", "core"), col("LOOPS", "loops"),
                                       col("BUSY(cycles)", "busy_percent", "percent"),
                                       col("PKTS/BUSY_LOOP", "pkts_per_busy_loop", "ratio"), col("LEARN_SKIPPED", "learn_skipped")}),
                     line("mac table: {mac_table.entries}/{mac_table.capacity} entries; "
                          "xdp: {xdp.redirected} redirected, {xdp.passed_no_socket} passed (no socket)"),
                     line("conntrack: {conntrack.flows}/{conntrack.capacity} flows; refused (table full) {conntrack.refused_full}, "
                          "early drops {conntrack.early_drop}")
                         .only_if("conntrack"),
                     line("fast tier fdb: {fast_tier.fdb_entries}/{fast_tier.fdb_capacity} entries, {fast_tier.fdb_refused} refused")
                         .only_if("fast_tier"),
                     line("dpdk mbufs: {dpdk.mbufs_available}/{dpdk.mbufs_total} available").only_if("dpdk")}},
                   0, [&] {
    json ports = json::object();
    uint64_t rx = 0;
    for (uint16_t id = 0; id < ports_.size(); id++) {
      const PortRec& pr = ports_[id];
      if (!pr.used() || pr.retiring) continue;
      ports[pr.host_ifname] = port_counters(id);
      ports[pr.host_ifname]["endpoint"] = pr.endpoint;
      ports[pr.host_ifname]["network"] = pr.network;
      rx += ports[pr.host_ifname]["rx_packets"].get<uint64_t>();
    }
    json workers = json::array();
    for (unsigned w = 0; w < dp_->workers(); w++) {
      auto& c = dp_->worker(w).counters();
      const uint64_t busy_loops = c.busy_loops.get(), busy = c.busy_cycles.get(), idle = c.idle_cycles.get();
      json j = {{"worker", w}, {"core", cfg_.sw.workers[w]}, {"loops", c.loops.get()},
                {"busy_loops", busy_loops}, {"busy_cycles", busy},
                {"idle_cycles", idle}, {"sleeps", c.sleeps.get()},
                {"learn_skipped", c.learn_skipped.get()}};
      j["busy_percent"] = busy + idle > 0 ? 100.0 * double(busy) / (double(busy) + double(idle)) : 0.0;  // the real load
      if (dp_->workers() == 1)  // average burst (ports are not per worker: only with one worker)
        j["pkts_per_busy_loop"] = busy_loops > 0 ? double(rx) / double(busy_loops) : 0.0;
      workers.push_back(j);
    }
    auto [redir, passed] = xdp_->stats();
    json out{{"ports", ports}, {"workers", workers},
             {"mac_table", {{"entries", dp_->macs().count()}, {"capacity", dp_->macs().capacity()}}},
             {"xdp", {{"redirected", redir}, {"passed_no_socket", passed}}}};
    for (const auto& m : modules_) m->counters(out);  // "dpdk", "conntrack", "fast_tier"
    return out;
  }});

  views.push_back({{"views", "", "this list (`show` alone)", {table("", {col("VIEW", "name"), col("ARGS", "args"), col("ABOUT", "about")})}},
                   0, [&] {
    json out = json::array();
    for (const auto& v : views) out.push_back({{"name", v.view.name}, {"args", v.view.args}, {"about", v.view.about}});
    return out;
  }});

  auto it = std::find_if(views.begin(), views.end(), [&](const Shown& v) { return v.view.name == what; });
  if (it == views.end()) {
    std::string names;
    for (const auto& v : views) names += (names.empty() ? "" : ", ") + v.view.name + (v.view.args.empty() ? "" : " " + v.view.args);
    throw std::runtime_error("cannot show '" + what + "': expected " + names);
  }
  if (args.size() > it->max_args)
    throw std::runtime_error("show " + what + ": unexpected '" + args[it->max_args] + "' (usage: show " + what +
                             (it->view.args.empty() ? "" : " " + it->view.args) + ")");
  CtlReply r(it->rows());
  r.extra["view"] = it->view.describe();
  return r;
}

}  // namespace dpsw
