#include "control/overlay/overlay.h"

#include <algorithm>

#include "control/core/ipv4.h"
#include "control/core/log.h"
#include "control/nat/nat.h"

namespace dpsw {

void Overlay::sync_tunnels() {
  std::vector<uint16_t> stale;
  for (uint16_t id = 0; id < core_.ports_.size(); id++) {
    const PortRec& pr = core_.ports_[id];
    if (pr.kind != PortRec::Kind::kTunnel || pr.retiring) continue;  // retiring: already on its way out
    const NetworkConfig* n = core_.cfg_.network(pr.network);
    bool keep = n && n->driver == Driver::kOverlay && n->vni == pr.vni && core_.bd_of_.count(n->name) && core_.bd_of_.at(n->name) == pr.bd &&
                std::count(n->peers.begin(), n->peers.end(), pr.vtep);
    if (!keep) stale.push_back(id);
  }
  retire_tunnels(stale);
  for (const auto& n : core_.cfg_.networks) {
    if (n.driver != Driver::kOverlay || !core_.bd_of_.count(n.name)) continue;
    for (uint32_t peer : n.peers) {
      bool have = std::any_of(core_.ports_.begin(), core_.ports_.end(),
                              [&](const PortRec& p) { return p.vtep == peer && p.network == n.name && !p.retiring; });
      if (have) continue;
      uint16_t id = core_.new_port_id();
      PortRec& pr = core_.ports_[id];
      pr.network = n.name;
      pr.host_ifname = "vxlan:" + std::to_string(n.vni) + ":" + ipv4_to_string(peer);
      pr.bd = core_.bd_of_.at(n.name);
      pr.ip = peer;
      pr.mtu = n.mtu;
      pr.kind = PortRec::Kind::kTunnel;
      pr.vtep = peer;
      pr.vni = n.vni;
      // Resolve the next hop now, so the first frames do not wait for ARP.
      if (uint32_t nh = next_hop(peer)) core_.dp_->arp()->want(nh);
      LOG_INFO("network %s: VXLAN tunnel to %s, VNI %u (port %u)", n.name.c_str(), ipv4_to_string(peer).c_str(), n.vni, id);
    }
  }
}

void Overlay::reload_check(Reload& r) const {
  r.applied["peers_changed"] = r.diff.peers_changed;  // overlay networks whose peer lists alone changed: apply() follows them
}

uint32_t Overlay::next_hop(uint32_t vtep) const {
  return core_.cfg_.uplink->address.contains(vtep) ? vtep : core_.cfg_.uplink->gateway;  // as stage_vxlan_output chooses
}

void Overlay::retire_tunnels(const std::vector<uint16_t>& ids) {
  if (ids.empty()) return;
  for (uint16_t id : ids) core_.ports_[id].retiring = true;
  core_.publish_snapshot();  // out of every flood list and the VNI index
  for (uint16_t id : ids) {
    core_.dp_->macs().flush_port(id);  // remote MACs learned behind that peer: their frames flood from now on
    LOG_INFO("network %s: VXLAN tunnel to %s removed", core_.ports_[id].network.c_str(), ipv4_to_string(core_.ports_[id].vtep).c_str());
  }
  // Once no worker still holds a frame for them (a grace period; the caller
  // does not wait for it: the next maintenance tick runs this): MACs a worker
  // relearned behind them meanwhile go, and their ids are free (a retiring
  // record is never reused before).
  core_.dp_->defer([this, ids] {
    for (uint16_t id : ids) {
      core_.dp_->macs().flush_port(id);
      core_.ports_[id] = PortRec{};
    }
  });
}

void Overlay::contribute(Snapshot& s) const {
  for (uint16_t id = 0; id < core_.ports_.size(); id++) {
    const PortRec& pr = core_.ports_[id];
    if (pr.kind != PortRec::Kind::kTunnel || pr.retiring || pr.bd >= s.bds.size()) continue;
    PortEntry& pe = s.ports[id];
    pe.bd = pr.bd;
    pe.max_frame = pr.mtu + kEthHdrLen;
    pe.vtep = pr.vtep;
    pe.vni = pr.vni;
    pe.owner = nat_.uplink_port() >= 0 ? core_.owner(uint16_t(nat_.uplink_port())) : 0;  // the uplink's; never polled: encapsulated by whoever forwards to it
    s.bds[pr.bd].ports.push_back(id);
    s.tunnels.push_back({TunnelKey::make(pr.vni, pr.vtep), id});
  }
  std::sort(s.tunnels.begin(), s.tunnels.end(), [](const TunnelKey& a, const TunnelKey& b) { return a.key < b.key; });
}

void Overlay::network_removed(uint16_t bd) {
  for (auto& pr : core_.ports_)
    if (pr.kind == PortRec::Kind::kTunnel && pr.bd == bd) pr.retiring = true;
}

void Overlay::network_gone(uint16_t bd) {
  for (auto& pr : core_.ports_)
    if (pr.kind == PortRec::Kind::kTunnel && pr.retiring && pr.bd == bd) pr = PortRec{};
}

void Overlay::network_mtu(const std::string& network) {
  if (const NetworkConfig* n = core_.cfg_.network(network))
    for (auto& pr : core_.ports_)
      if (pr.kind == PortRec::Kind::kTunnel && pr.network == network) pr.mtu = n->mtu;
}

nlohmann::json Overlay::port_row(uint16_t id, const PortRec& pr) const {
  if (pr.kind != PortRec::Kind::kTunnel) return nullptr;
  // A VXLAN tunnel: "up" once its next hop is resolved.
  const uint32_t nh = next_hop(pr.vtep);
  const Mac m = nh ? core_.dp_->arp()->peek(nh) : 0;
  return {{"id", id}, {"name", pr.host_ifname}, {"kind", "vxlan"}, {"endpoint", ""}, {"network", pr.network},
          {"ifname", ""}, {"mac", m ? mac_to_string(m) : "unresolved"}, {"ip", ipv4_to_string(pr.vtep)},
          {"vni", pr.vni}, {"worker", "-"}, {"link", m ? "up" : "down"}, {"link_changes", 0}};
}

}  // namespace dpsw
