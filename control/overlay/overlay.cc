#include "control/overlay/overlay.h"

#include <algorithm>

#include "control/core/ipv4.h"
#include "control/core/log.h"
#include "control/nat/nat.h"

namespace dpsw {

void Overlay::sync_tunnels() {
  std::vector<uint16_t> stale;
  for (const auto& [id, t] : tunnels_) {  // in port id order
    if (t.retiring) continue;  // already on its way out
    const PortRec& pr = core_.ports_[id];
    const NetworkConfig* n = core_.cfg_.network(pr.network);
    bool keep = n && n->driver == Driver::kOverlay && n->vni == t.vni && core_.bd_of_.count(n->name) && core_.bd_of_.at(n->name) == pr.bd &&
                std::count(n->peers.begin(), n->peers.end(), t.vtep);
    if (!keep) stale.push_back(id);
  }
  retire_tunnels(stale);
  for (const auto& n : core_.cfg_.networks) {
    if (n.driver != Driver::kOverlay || !core_.bd_of_.count(n.name)) continue;
    for (uint32_t peer : n.peers) {
      bool have = std::any_of(tunnels_.begin(), tunnels_.end(), [&](const auto& t) {
        return t.second.vtep == peer && core_.ports_[t.first].network == n.name && !t.second.retiring;
      });
      if (have) continue;
      uint16_t id = core_.new_port_id();
      PortRec& pr = core_.ports_[id];
      pr.network = n.name;
      pr.host_ifname = "vxlan:" + std::to_string(n.vni) + ":" + ipv4_to_string(peer);
      pr.bd = core_.bd_of_.at(n.name);
      pr.ip = peer;
      pr.mtu = n.mtu;
      pr.kind = PortRec::Kind::kTunnel;
      tunnels_[id] = Tunnel{.vtep = peer, .vni = n.vni};
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
  for (uint16_t id : ids) tunnels_.at(id).retiring = true;
  core_.publish_snapshot();  // out of every flood list and the VNI index
  for (uint16_t id : ids)  // and out of the kernel tier's maps (which follow the snapshot only at the next tick)
    for (const auto& m : core_.modules_) m->release_port(id, core_.ports_[id]);
  for (uint16_t id : ids) {
    core_.dp_->macs().flush_port(id);  // remote MACs learned behind that peer: their frames flood from now on
    LOG_INFO("network %s: VXLAN tunnel to %s removed", core_.ports_[id].network.c_str(), ipv4_to_string(tunnels_.at(id).vtep).c_str());
  }
  // Once no worker still holds a frame for them (a grace period; the caller
  // does not wait for it: the next maintenance tick runs this): MACs a worker
  // relearned behind them meanwhile go, and their ids are free (a retiring
  // record is never reused before).
  core_.dp_->defer([this, ids] {
    for (uint16_t id : ids) {
      core_.dp_->macs().flush_port(id);
      free_tunnel(id);
    }
  });
}

void Overlay::contribute(Snapshot& s) const {
  for (const auto& [id, t] : tunnels_) {  // in port id order
    const PortRec& pr = core_.ports_[id];
    if (t.retiring || pr.bd >= s.bds.size()) continue;
    PortEntry& pe = s.ports[id];
    pe.bd = pr.bd;
    pe.max_frame = pr.mtu + kEthHdrLen;
    pe.vtep = t.vtep;
    pe.vni = t.vni;
    pe.owner = nat_.uplink_port() >= 0 ? core_.owner(uint16_t(nat_.uplink_port())) : 0;  // the uplink's; never polled: encapsulated by whoever forwards to it
    s.bds[pr.bd].ports.push_back(id);
    s.tunnels.push_back({TunnelKey::make(t.vni, t.vtep), id});
  }
  std::sort(s.tunnels.begin(), s.tunnels.end(), [](const TunnelKey& a, const TunnelKey& b) { return a.key < b.key; });
}

void Overlay::free_tunnel(uint16_t id) {
  for (const auto& m : core_.modules_) m->release_port(id, core_.ports_[id]);  // (again: a network removed with it)
  core_.ports_[id] = PortRec{};
  tunnels_.erase(id);
}

void Overlay::network_removed(uint16_t bd) {
  for (auto& [id, t] : tunnels_)
    if (core_.ports_[id].bd == bd) t.retiring = true;
}

void Overlay::network_gone(uint16_t bd) {
  std::vector<uint16_t> gone;
  for (const auto& [id, t] : tunnels_)
    if (t.retiring && core_.ports_[id].bd == bd) gone.push_back(id);
  for (uint16_t id : gone) free_tunnel(id);
}

void Overlay::network_mtu(const std::string& network) {
  if (const NetworkConfig* n = core_.cfg_.network(network))
    for (const auto& [id, t] : tunnels_)
      if (PortRec& pr = core_.ports_[id]; pr.network == network) pr.mtu = n->mtu;
}

void Overlay::stop() { tunnels_.clear(); }  // with the Core's port records, which teardown clears

bool Overlay::port_hidden(uint16_t id) const {
  auto t = tunnels_.find(id);
  return t != tunnels_.end() && t->second.retiring;
}

nlohmann::json Overlay::port_row(uint16_t id, const PortRec& pr) const {
  if (pr.kind != PortRec::Kind::kTunnel) return nullptr;
  // A VXLAN tunnel: "up" once its next hop is resolved.
  const Tunnel& t = tunnels_.at(id);
  const uint32_t nh = next_hop(t.vtep);
  const Mac m = nh ? core_.dp_->arp()->peek(nh) : 0;
  return {{"id", id}, {"name", pr.host_ifname}, {"kind", "vxlan"}, {"endpoint", ""}, {"network", pr.network},
          {"ifname", ""}, {"mac", m ? mac_to_string(m) : "unresolved"}, {"ip", ipv4_to_string(t.vtep)},
          {"vni", t.vni}, {"worker", "-"}, {"link", m ? "up" : "down"}, {"link_changes", 0}};
}

}  // namespace dpsw
