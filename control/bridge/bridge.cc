// Networks and endpoints: the bridge control module (bridge.h).
#include "control/bridge/bridge.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>

#include "control/core/log.h"
#include "control/core/netlink.h"
#include "control/fast/fast_control.h"
#include "control/ports/ports.h"
#include "dataplane/core/clock.h"

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

void Bridge::check_adopted_netns(const PlannedEndpoint& ep) const {
  struct stat st;
  if (!ep.create_netns && !ep.netns_path.empty() && stat(ep.netns_path.c_str(), &st) != 0)
    throw ConfigError(core_.cfg_.path + ": endpoint '" + ep.name + "': netns " + ep.netns_path + " does not exist");
}

void Bridge::preflight() const {
  for (const auto& ep : core_.plan_.endpoints) {  // endpoint by endpoint: its namespace, then its socket
    check_adopted_netns(ep);
    vhost_.preflight(ep);
  }
}

void Bridge::prepare() const {
  // Names we are about to create must be free now (stale ones were just removed).
  for (const auto& ep : core_.plan_.endpoints) check_can_create(ep, "");
}

void Bridge::start() { router_mac_ = dpsw::router_mac(core_.cfg_.sw.name); }  // the member hides the function

void Bridge::attach() {
  for (const auto& ep : core_.plan_.endpoints) create_endpoint(ep);
}

json Bridge::persisted_entry(const std::string& endpoint, json spec) const {
  const PlannedEndpoint* pe = planned(endpoint);
  if (pe && !pe->attachments.empty()) {
    spec["ip"] = ipv4_to_string(pe->attachments[0].ip);
    spec["mac"] = mac_to_string(pe->attachments[0].mac);
  }
  json entry = {{"spec", spec}};
  if (pe && !pe->netns_path.empty()) {
    entry["netns_id"] = netns_id(pe->netns_path);
    entry["boot_id"] = boot_id();
  }
  return entry;
}

void Bridge::restore() {
  const std::string path = PersistedItems::path(core_.cfg_.sw);
  PersistedItems saved;
  try {
    saved = PersistedItems::load(path);
  } catch (const std::exception& e) {
    // Kept aside, not overwritten by the next save: a person may want it.
    LOG_WARN("%s; nothing persisted is made again (moved to %s.unreadable)", e.what(), path.c_str());
    std::rename(path.c_str(), (path + ".unreadable").c_str());
    return;
  }
  const std::string own = netns_id("/proc/self/ns/net"), boot = boot_id();
  size_t made = 0, dropped = 0;
  auto attempt = [&](const char* kind, const std::string& name, const std::function<void()>& add) {
    try {
      add();
      made++;
    } catch (const std::exception& e) {
      dropped++;
      LOG_WARN("persisted %s %s cannot be made again, dropped: %s", kind, name.c_str(), e.what());
    }
  };
  for (const auto& [name, spec] : saved.networks)  // networks first: the endpoints are on them
    attempt("network", name, [&] {
      add_network(parse_network_item(spec.dump(), "persisted network '" + name + "'"));
      persisted_.networks[name] = spec;
    });
  for (const auto& [name, entry] : saved.endpoints)
    attempt("endpoint", name, [&] {
      const json& spec = entry["spec"];
      if (spec.contains("netns") && spec["netns"].is_string()) {
        // The same namespace, not whatever now has its path (/proc/PID/ns/net
        // of a reused PID; any namespace after a reboot: inode numbers are reused).
        const std::string path = spec["netns"].get<std::string>(), id = netns_id(path);
        if (id.empty()) throw std::runtime_error("its namespace " + path + " is gone");
        if (entry.value("boot_id", boot) != boot) throw std::runtime_error("it was made before the machine restarted");
        if (entry.contains("netns_id") ? id != entry["netns_id"] : id == own)
          throw std::runtime_error(path + " is another namespace now than the one it was made in");
      }
      add_endpoint(parse_endpoint_item(spec.dump(), "persisted endpoint '" + name + "'"));
      persisted_.endpoints[name] = persisted_entry(name, spec);
    });
  LOG_INFO("made %zu persisted network(s) and endpoint(s) of the last run again", made);
  if (dropped) {
    try {
      save_persisted(persisted_);
    } catch (const std::exception& e) {  // never a failed start: the dropped ones are tried (and dropped) again next time
      LOG_WARN("%s", e.what());
    }
  }
}

json Bridge::update_endpoint(const std::string& name, const json& spec) {
  if (!core_.cfg_.endpoint(name)) throw ConfigError("endpoint update: unknown endpoint '" + name + "'");
  // The endpoint as it is, with the keys given replaced, checked like any item.
  Config next = core_.cfg_;
  auto it = std::find_if(next.endpoints.begin(), next.endpoints.end(), [&](auto& e) { return e.name == name; });
  for (const auto& [k, v] : spec.items())
    if (k != "name" && k != "publish" && k != "labels" && k != "aliases")
      throw ConfigError("endpoint update: " + k + ": only publish, labels and aliases change in place (del and add the endpoint for the rest)");
  EndpointConfig probe = parse_endpoint_item(json{{"name", name}, {"networks", it->networks}, {"publish", spec.value("publish", json::array())},
                                                  {"labels", spec.value("labels", json::object())},
                                                  {"aliases", spec.value("aliases", json::array())}}.dump(), "endpoint update");
  if (spec.contains("publish")) it->publish = probe.publish;
  if (spec.contains("labels")) it->labels = probe.labels;
  if (spec.contains("aliases")) it->aliases = probe.aliases;
  check_config(next);
  if (auto p = persisted_.endpoints.find(name); p != persisted_.endpoints.end()) {
    PersistedItems after = persisted_;  // saved first: a failed save changes nothing
    json& saved = after.endpoints[name]["spec"];
    for (const char* k : {"publish", "labels", "aliases"})
      if (spec.contains(k)) saved[k] = spec[k];
    save_persisted(after);
    persisted_ = std::move(after);
  }
  core_.cfg_ = std::move(next);
  core_.publish_snapshot();  // published ports (NAT's part of the snapshot), names (DNS's)
  LOG_INFO("endpoint %s updated in place", name.c_str());
  return endpoint_json(*planned(name));
}

void Bridge::detach() {
  for (auto& [name, rec] : eps_) {
    core_.removed_links_ += rec.links.size();  // the daemon logs them at the end of teardown
    core_.removed_netns_ += rec.created_netns;
    core_.release(rec);
  }
  eps_.clear();
}

void Bridge::remove_bd(const std::string& network) {
  auto it = core_.bd_of_.find(network);
  if (it == core_.bd_of_.end()) return;
  uint16_t id = it->second;
  core_.bd_of_.erase(it);
  if (id == core_.uplink_bd()) {  // a macvlan network: the segment stays with the uplink
    core_.bd_name_[id] = kUplinkNetwork;
    core_.publish_snapshot();
    return;
  }
  core_.network_removed_modules(id);  // e.g. its tunnels go with it
  core_.bd_name_[id] = "(removed)";  // no network's any more, and not reused until the work below is done
  core_.publish_snapshot();  // the network's flood list disappears
  core_.dp_->macs().flush_bd(id);  // its MAC entries go now (`show mac`)...
  // ...and once no worker still forwards in it (a grace period; the reply
  // does not wait for it: the next maintenance tick runs this), nothing can
  // be learned into it any more: what was relearned meanwhile goes, the
  // modules' records of it (its tunnels) and its id are free.
  core_.dp_->defer([this, id] {
    core_.network_gone_modules(id);
    core_.dp_->macs().flush_bd(id);
    core_.bd_name_[id].clear();
  });
}

void Bridge::create_vhost_endpoint(const PlannedEndpoint& ep, EndpointRec& rec) {
  const PlannedAttachment& a = ep.attachments.at(0);
  const uint16_t id = vhost_.add_vhost(ep, rec);
  join(id, ep, a);
  pin_mac(id, ep);  // the application's MAC, as configured
  LOG_INFO("endpoint %s: vhost-user %s %s on network %s (port %u)", ep.name.c_str(), ep.vhost_client ? "client of" : "server at",
           ep.vhost_socket.c_str(), a.network.c_str(), id);
}

PortRec& Bridge::join(uint16_t id, const PlannedEndpoint& ep, const PlannedAttachment& a) {
  PortRec& pr = core_.ports_[id];
  pr.endpoint = ep.name;
  pr.network = a.network;
  pr.bd = core_.bd_of_.at(a.network);
  pr.mac = a.mac;
  pr.ip = a.ip;
  pr.mtu = a.mtu;
  return pr;
}

void Bridge::pin_mac(uint16_t id, const PlannedEndpoint& ep) {
  // Every endpoint's MAC is known by configuration: a static entry, never
  // learned elsewhere, moved or aged (another port sending from it cannot
  // take its traffic). macvlan: frames from the uplink for it go straight
  // to it; fast tier: both tiers agree on where it is (the kernel tier
  // carries its traffic, which dpsw then never sees to learn from).
  const PortRec& pr = core_.ports_[id];
  if (!core_.dp_->macs().add_static(pr.bd, pr.mac, id))
    throw std::runtime_error("endpoint " + ep.name + ": no room for its MAC " + mac_to_string(pr.mac) +
                             " in the MAC table (mac_table.size)");
}

void Bridge::create_endpoint(const PlannedEndpoint& ep, bool reuse_netns) {
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
    if (ep.handoff) {
      create_handoff_endpoint(ep, rec);
      eps_[ep.name] = std::move(rec);
      return;
    }
    if (ep.create_netns) {
      if (!reuse_netns) {
        core_.journal_->record("netns", ep.netns_name);
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
      core_.journal_->record("link", a.host_ifname);
      // The host end takes what the container sends up to what its port can
      // carry (fast tier: fast_host_mtu()): one longer than the network allows
      // reaches dpsw and is dropped as `oversize` there, counted, not lost unseen in the kernel.
      host.create_veth(a.host_ifname, core_.journal_->alias_tag() + ep.name + ":" + a.network, a.ifname, ns.fd, a.mac, a.mtu,
                       fast ? fast_host_mtu(a.mtu) : kAfxdpMaxMtu);
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
      if (fast) fast_.ensure(router_mac_);
      else in_netns(ns.fd, [&] { ethtool_set_tx_csum(a.ifname, false); });
      inside.set_up(a.ifname);
      // The default route: through the first network that routes (an
      // overlay is pure L2 across hosts, like Docker's, which leaves the
      // way out to another network: docker_gwbridge there, a bridge here).
      if (!routed && a.driver != Driver::kOverlay) {
        inside.add_default_route(a.gateway);
        routed = true;
      }

      open_port(ep, a, rec, fast, host);
    }
  } catch (...) {
    core_.release(rec);  // not yet in any snapshot: no grace period needed
    throw;
  }
  eps_[ep.name] = std::move(rec);
}

void Bridge::open_port(const PlannedEndpoint& ep, const PlannedAttachment& a, EndpointRec& rec, bool fast, Rtnl& host) {
  uint16_t id = core_.new_port_id();
  PortRec& pr = join(id, ep, a);
  pr.host_ifname = a.host_ifname;
  pr.ifname = a.ifname;
  pr.ifindex = host.ifindex(a.host_ifname);
  rec.ports.push_back(id);
  if (fast)
    fast_.add_port(id, pr);
  else
    core_.open_afxdp(id, pr, a.host_ifname);
  pin_mac(id, ep);
  LOG_INFO("endpoint %s: %s %s/%u on network %s via %s (port %u%s)", ep.name.c_str(), mac_to_string(a.mac).c_str(),
           ipv4_to_string(a.ip).c_str(), a.prefix_len, a.network.c_str(), a.host_ifname.c_str(), id, fast ? ", fast tier" : "");
}

void Bridge::create_handoff_endpoint(const PlannedEndpoint& ep, EndpointRec& rec) {
  // Both ends in our namespace; the runtime moves the container end (then the
  // fast tier's bpf_redirect_peer reaches it), renames it and sets its
  // addresses and routes. Until then frames for it go nowhere, as they
  // would to a container not yet started.
  const PlannedAttachment& a = ep.attachments.at(0);
  Fd self(netns::open_path("/proc/self/ns/net"));
  Rtnl host;
  core_.journal_->record("link", a.host_ifname);
  host.create_veth(a.host_ifname, core_.journal_->alias_tag() + ep.name + ":" + a.network, a.ifname, self.fd, a.mac, a.mtu,
                   a.fast ? fast_host_mtu(a.mtu) : kAfxdpMaxMtu);
  rec.links.push_back(a.host_ifname);
  try {
    sysctl_write("net/ipv6/conf/" + a.host_ifname + "/disable_ipv6", "1");
  } catch (const std::exception&) {
  }
  host.set_up(a.host_ifname);
  if (a.fast) fast_.ensure(router_mac_);
  else ethtool_set_tx_csum(a.ifname, false);  // AF_XDP: the container computes its own checksums (kept across the move)
  open_port(ep, a, rec, a.fast, host);
  LOG_INFO("endpoint %s: container end %s left for the runtime to move", ep.name.c_str(), a.ifname.c_str());
}

std::string Bridge::destroy_endpoint(const std::string& name, bool keep_netns) {
  auto it = eps_.find(name);
  if (it == eps_.end()) return "";
  EndpointRec rec = std::move(it->second);
  eps_.erase(it);
  // Out of the fast tier first: no frame is redirected to it any more.
  for (uint16_t id : rec.ports) fast_.remove_port(id);
  // Out of the snapshot next; then wait until no worker can still be
  // polling or transmitting on its ports before they are closed. This one
  // waits (synchronize() sleeps, it does not spin; workers blocked while
  // idle are offline and do not delay it) rather than defer(): the reply
  // says the endpoint is gone, so its links, namespace and names must be
  // (a reload recreates a changed endpoint under the same names right after).
  core_.publish_snapshot();
  core_.dp_->synchronize();
  std::string kept = keep_netns && rec.created_netns ? rec.netns_name : "";
  core_.release(rec, keep_netns);
  return kept;
}

void Bridge::contribute(Snapshot& s) const {
  for (size_t i = 0; i < s.bds.size(); i++) {
    BdEntry& b = s.bds[i];  // the uplink's segment is named kUplinkNetwork or after its macvlan network: NAT's part
    if (const NetworkConfig* n = core_.cfg_.network(b.name); n && n->driver != Driver::kMacvlan) {
      b.local_ip = n->gateway;  // the network's gateway (an overlay's: this host's, for its own endpoints)
      b.router_mac = router_mac_;
      b.nat = n->driver == Driver::kBridge && !n->internal;
      b.local_only = n->driver == Driver::kOverlay;
      b.relay_names = !n->internal;
      b.subnet = n->subnet.network();
      b.mask = n->subnet.mask();
    }
  }
  for (const auto& [name, rec] : eps_) {
    for (uint16_t id : rec.ports) {
      const PortRec& pr = core_.ports_[id];
      PortEntry& pe = s.ports[id];
      pe.port = pr.port.get();
      pe.bd = pr.bd;
      pe.owner = core_.owner(id);
      pe.max_frame = pr.mtu + kEthHdrLen;
      pe.endpoint = true;
      const NetworkConfig* net = core_.cfg_.network(pr.network);
      pe.learn = !(net && net->driver == Driver::kMacvlan);
      s.bds[pr.bd].ports.push_back(id);
      if (pr.kind == PortRec::Kind::kFast) {  // received and sent through its worker's punt port (FastControl::contribute)
        pe.fast = true;
        continue;
      }
      s.rx_ports[pe.owner].push_back(id);
    }
  }
}

void Bridge::check_can_create(const PlannedEndpoint& ep, const std::string& replacing) const {
  const std::string where = core_.cfg_.path + ": endpoint '" + ep.name + "': ";
  check_adopted_netns(ep);
  if (ep.create_netns && ep.netns_name != replacing && netns::exists(ep.netns_name))
    throw ConfigError(where + "namespace " + ep.netns_name + " already exists and was not created by this instance");
  if (ep.port == PortKind::kVhost) {
    vhost_.check_new(ep, eps_.count(ep.name) ? planned(ep.name) : nullptr);
    return;
  }
  Rtnl rt;
  auto it = eps_.find(ep.name);
  for (const auto& a : ep.attachments) {
    bool ours = it != eps_.end() && std::count(it->second.links.begin(), it->second.links.end(), a.host_ifname);
    if (!ours && rt.ifindex(a.host_ifname)) throw ConfigError(where + "link " + a.host_ifname + " already exists");
    if (ep.handoff && !ours && rt.ifindex(a.ifname)) throw ConfigError(where + "link " + a.ifname + " already exists");
  }
}

void Bridge::apply_mtu(const std::string& network) {
  for (const auto& ep : core_.plan_.endpoints) {
    auto rec = eps_.find(ep.name);
    if (rec == eps_.end()) continue;
    for (size_t i = 0; i < ep.attachments.size() && i < rec->second.ports.size(); i++) {
      const PlannedAttachment& a = ep.attachments[i];
      PortRec& pr = core_.ports_[rec->second.ports[i]];
      if (a.network != network || pr.mtu == a.mtu) continue;
      pr.mtu = a.mtu;
      if (ep.port == PortKind::kVhost) continue;  // the application sets its own
      fast_.set_mtu(rec->second.ports[i], a.mtu);
      if (pr.kind == PortRec::Kind::kFast) {  // its host end: fast_host_mtu() of the new MTU
        try {
          Rtnl().set_up(pr.host_ifname, fast_host_mtu(a.mtu));
        } catch (const std::exception& e) {  // e.g. the container's XDP program caps it: longer frames dropped by the veth
          LOG_WARN("endpoint %s: cannot set host end %s's MTU to %u (%s): longer frames are dropped by the veth", ep.name.c_str(),
                   pr.host_ifname.c_str(), fast_host_mtu(a.mtu), e.what());
        }
      }
      if (ep.handoff) continue;  // its container end is the runtime's now
      Fd ns(netns::open_path(ep.netns_path));
      Rtnl inside(ns.fd);
      inside.set_up(a.ifname, a.mtu);
    }
  }
  core_.network_mtu_modules(network);  // e.g. its tunnels'
  LOG_INFO("network %s: MTU applied in place", network.c_str());
}

const PlannedEndpoint* Bridge::planned(const std::string& name) const {
  for (const auto& ep : core_.plan_.endpoints)
    if (ep.name == name) return &ep;
  return nullptr;
}

json Bridge::add_network(const NetworkConfig& n) {
  Config next = core_.cfg_;
  next.networks.push_back(n);
  resolve_defaults(next);  // an overlay's MTU follows the uplink's
  check_config(next);
  Plan np = make_plan(next, &core_.plan_);
  core_.check_modules(next, np);
  core_.add_bds(next);  // the network's bridge domain, which the modules' apply() finds
  core_.cfg_ = std::move(next);
  core_.plan_ = std::move(np);
  core_.apply_modules();
  core_.publish_snapshot();
  LOG_INFO("network %s added (%s)", n.name.c_str(), prefix_to_string(n.subnet).c_str());
  return {{"network", n.name}, {"subnet", prefix_to_string(n.subnet)}, {"gateway", ipv4_to_string(n.gateway)}};
}

Config Bridge::check_del_network(const std::string& name) const {
  if (!core_.cfg_.network(name)) throw ConfigError("network del: unknown network '" + name + "'");
  std::string users;
  for (const auto& e : core_.cfg_.endpoints)
    if (std::count(e.networks.begin(), e.networks.end(), name)) users += (users.empty() ? "" : ", ") + e.name;
  if (!users.empty()) throw ConfigError("network del: network '" + name + "' still has endpoints: " + users);
  for (const auto& n : core_.cfg_.networks)
    if (std::count(n.allow.begin(), n.allow.end(), name))
      throw ConfigError("network del: network '" + name + "' is in the allow list of network '" + n.name + "'; remove it there first");
  Config next = core_.cfg_;
  next.networks.erase(std::find_if(next.networks.begin(), next.networks.end(), [&](auto& n) { return n.name == name; }));
  check_config(next);  // the result must be a valid configuration
  return next;
}

json Bridge::del_network(const std::string& name) {
  Config next = check_del_network(name);
  remove_bd(name);
  core_.cfg_ = std::move(next);
  LOG_INFO("network %s removed", name.c_str());
  return {{"network", name}};
}

json Bridge::add_endpoint(const EndpointConfig& e) {
  Config next = core_.cfg_;
  next.endpoints.push_back(e);
  check_config(next);
  Plan np = make_plan(next, &core_.plan_);
  core_.check_modules(next, np);
  const PlannedEndpoint& pe = np.endpoints.back();
  check_can_create(pe, "");
  create_endpoint(pe);  // all or nothing
  core_.cfg_ = std::move(next);
  core_.plan_ = std::move(np);
  core_.publish_snapshot();
  return endpoint_json(core_.plan_.endpoints.back());
}

void Bridge::check_del_endpoint(const std::string& name) const {
  if (!core_.cfg_.endpoint(name)) throw ConfigError("endpoint del: unknown endpoint '" + name + "'");
  for (const auto& e : core_.cfg_.endpoints)
    if (e.mode == Mode::kContainer && e.container == name)
      throw ConfigError("endpoint del: endpoint '" + name + "' is joined by '" + e.name + "' (container:" + name + "); remove that first");
}

json Bridge::del_endpoint(const std::string& name) {
  check_del_endpoint(name);
  destroy_endpoint(name);
  core_.cfg_.endpoints.erase(std::find_if(core_.cfg_.endpoints.begin(), core_.cfg_.endpoints.end(), [&](auto& x) { return x.name == name; }));
  core_.plan_.endpoints.erase(std::find_if(core_.plan_.endpoints.begin(), core_.plan_.endpoints.end(), [&](auto& x) { return x.name == name; }));
  LOG_INFO("endpoint %s removed", name.c_str());
  return {{"endpoint", name}};
}

namespace {
bool in(const std::vector<std::string>& v, const std::string& x) { return std::find(v.begin(), v.end(), x) != v.end(); }
// Made anew by a reload: added, or recreated because its definition changed.
bool fresh(const ConfigDiff& d, const std::string& endpoint) { return in(d.endpoints_added, endpoint) || in(d.endpoints_changed, endpoint); }
}  // namespace

const EndpointRec* Bridge::endpoint(const std::string& name) const {
  auto it = eps_.find(name);
  return it == eps_.end() ? nullptr : &it->second;
}

std::string Bridge::created_netns(const std::string& endpoint) const {
  auto it = eps_.find(endpoint);
  return it != eps_.end() && it->second.created_netns ? it->second.netns_name : "";
}

void Bridge::reload_check(Reload& r) const {
  // Validate everything against this machine before changing anything: a
  // rejected reload changes nothing. A changed endpoint keeps the namespace
  // dpsw made for it (processes inside keep their network namespace; only
  // its interfaces are made anew).
  for (const auto& ep : r.plan->endpoints)
    if (fresh(r.diff, ep.name)) check_can_create(ep, created_netns(ep.name));
  const ConfigDiff& d = r.diff;
  r.applied.update({{"networks_added", d.networks_added}, {"networks_removed", d.networks_removed},
                    {"networks_changed", d.networks_changed}, {"networks_updated", d.networks_updated},
                    {"endpoints_added", d.endpoints_added}, {"endpoints_removed", d.endpoints_removed},
                    {"endpoints_changed", d.endpoints_changed}, {"endpoints_updated", d.endpoints_updated}});
}

void Bridge::reload_replace(Reload& r) {
  const ConfigDiff& d = r.diff;
  std::map<std::string, std::string> reuse;  // endpoint -> its namespace, kept across the change
  for (const auto& ep : r.plan->endpoints) {
    if (!fresh(d, ep.name)) continue;
    const std::string current = created_netns(ep.name);
    if (!current.empty() && ep.create_netns && ep.netns_name == current) reuse[ep.name] = current;
  }
  // Removals (and the old halves of changes) first.
  for (const auto& n : d.endpoints_removed) destroy_endpoint(n);
  std::vector<std::string> kept_ns;
  for (const auto& n : d.endpoints_changed)
    if (std::string ns = destroy_endpoint(n, reuse.count(n) > 0); !ns.empty()) kept_ns.push_back(ns);
  for (const auto& n : d.networks_removed) remove_bd(n);
  for (const auto& n : d.networks_changed) remove_bd(n);
  core_.add_bds(*r.next);
  bool failed = false;
  for (const auto& ep : r.plan->endpoints) {
    if (!fresh(d, ep.name)) continue;
    try {
      create_endpoint(ep, reuse.count(ep.name) > 0);
    } catch (const std::exception& e) {
      r.fail(ep.name, e);
      failed = true;
    }
  }
  for (const auto& ns : kept_ns)  // a namespace kept for an endpoint that could not be made again
    if (std::none_of(eps_.begin(), eps_.end(), [&](const auto& e) { return e.second.netns_name == ns; })) netns::remove(ns);
  // What is in force now is the new config minus endpoints that failed.
  if (failed) {
    std::erase_if(r.next->endpoints, [&](auto& e) { return !eps_.count(e.name); });
    std::erase_if(r.plan->endpoints, [&](auto& e) { return !eps_.count(e.name); });
  }
}

void Bridge::reload_update(Reload& r) {
  // Persisted endpoints follow what the reload made of them (re-planned
  // addresses; ones that could not be made again are gone).
  PersistedItems after = persisted_;
  for (auto it = after.endpoints.begin(); it != after.endpoints.end();) {
    if (!core_.cfg_.endpoint(it->first) || !planned(it->first)) {
      it = after.endpoints.erase(it);
      continue;
    }
    json entry = persisted_entry(it->first, it->second["spec"]);
    if (!fresh(r.diff, it->first) && it->second.contains("netns_id"))  // the namespace it was made in, not whatever the path names now
      entry["netns_id"] = it->second["netns_id"];
    it->second = std::move(entry);
    ++it;
  }
  if (after.endpoints != persisted_.endpoints) {
    persisted_ = std::move(after);  // memory follows what is in force; a failed save is caught up by the next one
    try {
      save_persisted(persisted_);
    } catch (const std::exception& e) {
      r.fail("persisted endpoints", e);
    }
  }
  for (const auto& n : r.diff.networks_updated) {  // allow, internal and ip_range need only the new snapshot/plan
    try {
      apply_mtu(n);
    } catch (const std::exception& e) {
      r.fail("network " + n + " MTU", e);
    }
  }
}

void Bridge::verbs(VerbRegistry& r) {
  using Request = VerbRegistry::Request;
  // What persists is saved after it was made; a failed save undoes it (all or nothing).
  auto keep = [this](PersistedItems after, const std::function<void()>& undo) {
    try {
      save_persisted(after);
    } catch (...) {
      try {
        undo();
      } catch (const std::exception& e) {  // the save's error is the one to report
        LOG_ERR("undoing an unsaved persisted item failed: %s", e.what());
      }
      throw;
    }
    persisted_ = std::move(after);
  };
  // A deletion is checked, then saved, then done: a refused one writes
  // nothing, a failed save deletes nothing; a deletion that fails after the
  // checks (the kernel refused) puts the file back.
  auto forget = [this](bool is_network, const std::string& name, const std::function<void()>& check, const std::function<json()>& del) {
    PersistedItems after = persisted_;
    if (!(is_network ? after.networks : after.endpoints).erase(name)) return del();
    check();
    save_persisted(after);
    json out;
    try {
      out = del();
    } catch (...) {
      try {
        save_persisted(persisted_);
      } catch (const std::exception& e) {
        LOG_WARN("%s", e.what());
      }
      throw;
    }
    persisted_ = std::move(after);
    return out;
  };
  r.add("network add", [this, keep](const Request& q) {
    NetworkConfig n = parse_network_item(q.spec(), "network add");
    json out = add_network(n);
    if (n.persist) {
      PersistedItems after = persisted_;
      after.networks[n.name] = json::parse(q.spec());
      keep(std::move(after), [&] { del_network(n.name); });
    }
    return out;
  });
  r.add("network del", [this, forget](const Request& q) {
    return forget(true, q.name(), [&] { check_del_network(q.name()); }, [&] { return del_network(q.name()); });
  });
  r.add("endpoint add", [this, keep](const Request& q) {
    EndpointConfig e = parse_endpoint_item(q.spec(), "endpoint add");
    if (e.persist)  // a reload removes a network added at runtime without persist: true
      for (const auto& n : e.networks)
        if (const NetworkConfig* net = core_.cfg_.network(n); net && !net->persist && net->src.path.empty())
          throw ConfigError("endpoint add: persist: network '" + n + "' was added at runtime without persist: true (a reload would remove it)");
    json out = add_endpoint(e);
    if (e.persist) {
      PersistedItems after = persisted_;
      after.endpoints[e.name] = persisted_entry(e.name, json::parse(q.spec()));  // JSON: the request's object
      keep(std::move(after), [&] { del_endpoint(e.name); });
    }
    return out;
  });
  r.add("endpoint del", [this, forget](const Request& q) {
    return forget(false, q.name(), [&] { check_del_endpoint(q.name()); }, [&] { return del_endpoint(q.name()); });
  });
  r.add("endpoint update", [this](const Request& q) {
    json spec = json::parse(q.spec());
    if (!spec.is_object() || !spec.contains("name") || !spec["name"].is_string())
      throw ConfigError("endpoint update: needs a spec with the endpoint's name and publish, labels and/or aliases");
    return update_endpoint(spec["name"].get<std::string>(), spec);
  });
}

json Bridge::endpoint_json(const PlannedEndpoint& ep) const {
  json atts = json::array();
  const PlannedAttachment* route = nullptr;  // the container's default route goes through it (create_endpoint)
  for (const auto& a : ep.attachments)
    if (!route && a.driver != Driver::kOverlay) route = &a;
  for (const auto& a : ep.attachments)
    atts.push_back({{"network", a.network}, {"ifname", a.ifname}, {"host_ifname", a.host_ifname},
                    {"mac", mac_to_string(a.mac)}, {"ip", ipv4_to_string(a.ip) + "/" + std::to_string(a.prefix_len)},
                    {"gateway", ipv4_to_string(a.gateway)}, {"mtu", a.mtu}, {"default_route", &a == route}});
  json e = {{"name", ep.name}, {"mode", mode_name(ep.mode)}, {"netns", ep.netns_path}, {"handoff", ep.handoff}, {"attachments", atts},
            {"port", ep.port == PortKind::kVhost ? "vhost" : "afxdp"}};
  if (ep.mode == Mode::kContainer) e["joins"] = ep.joins;
  if (const EndpointConfig* ec = core_.cfg_.endpoint(ep.name)) {
    if (!ec->publish.empty()) {
      json pub = json::array();
      for (const auto& p : ec->publish) pub.push_back(publish_to_string(p));
      e["publish"] = pub;
    }
    if (!ec->labels.empty()) e["labels"] = ec->labels;
  }
  if (ep.port == PortKind::kVhost) {
    e["vhost_socket"] = ep.vhost_socket;
    e["vhost_mode"] = ep.vhost_client ? "client" : "server";
  }
  return e;
}

void Bridge::views(ViewRegistry& r) {
  using view::col, view::pick, view::table;
  r.entries.push_back({{"networks", "", "networks: subnet, gateway, MTU, endpoints, overlay VNI and peers",
                    {table("", {col("NETWORK", "name"), col("DRIVER", "driver"), col("SUBNET", "subnet"),
                                col("GATEWAY", "gateway"), col("MTU", "mtu"), col("ENDPOINTS", "endpoints"),
                                pick("OVERLAY", {{"peers", "vni {vni} peers {peers}"}, {"vni", "vni {vni} peers (none)"}})})}},
                   0, [this] {
    json out = json::array();
    for (const auto& n : core_.cfg_.networks) {
      json eps = json::array();
      for (const auto& e : core_.cfg_.endpoints)
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

  r.entries.push_back({{"endpoints", "[ENDPOINT]", "endpoints and their interface on each network",
                    {table("", {col("ENDPOINT", "name"), col("MODE", "mode"),
                                pick("NETNS", {{"joins", "container:{joins}"}, {"netns", "{netns}"}, {"", "(host)"}}),
                                col("NETWORK", "attachments.network"), col("IF", "attachments.ifname"),
                                col("MAC", "attachments.mac"), col("IP", "attachments.ip")})
                         .for_each("attachments")}},
                   1, [this, &args = r.args] {
    json out = json::array();
    for (const auto& ep : core_.plan_.endpoints)
      if (args.empty() || ep.name == args[0]) out.push_back(endpoint_json(ep));
    if (!args.empty() && out.empty()) throw std::runtime_error("unknown endpoint '" + args[0] + "'");
    return out;
  }});

  r.entries.push_back({{"mac", "[NETWORK]", "the MAC table (of one network)",
                    {table("", {col("NETWORK", "network"), col("MAC", "mac"), col("PORT", "port"), col("ENDPOINT", "endpoint"),
                                col("AGE(s)", "age_ms", "ms_as_s"), col("ESTABLISHED", "established"),
                                col("FAST_TIER", "fast_tier")})}},
                   1, [this, &args = r.args] {
    int bd = -1;
    if (!args.empty()) {
      auto it = core_.bd_of_.find(args[0]);
      if (it == core_.bd_of_.end()) throw std::runtime_error("unknown network '" + args[0] + "'");
      bd = it->second;
    }
    json out = json::array();
    uint32_t now = now_ms();
    core_.dp_->macs().for_each([&](const MacTable::Entry& e) {
      if (bd >= 0 && e.bd != bd) return;
      bool known = e.port < core_.ports_.size() && core_.ports_[e.port].used();
      std::string port = known ? core_.ports_[e.port].host_ifname : std::to_string(e.port);
      std::string ep = known ? core_.ports_[e.port].endpoint : "";
      json row{{"network", e.bd < core_.bd_name_.size() ? core_.bd_name_[e.bd] : "?"},
               {"mac", mac_to_string(e.mac)}, {"port", port}, {"endpoint", ep},
               {"age_ms", e.is_static || int32_t(now - e.last_seen_ms) < 0 ? 0 : now - e.last_seen_ms},
               {"established", e.established}, {"static", e.is_static}};
      core_.mac_row_modules(e, row);  // e.g. "fast_tier"
      out.push_back(row);
    });
    return out;
  }});
}

}  // namespace dpsw
