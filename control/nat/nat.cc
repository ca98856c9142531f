#include "control/nat/nat.h"

#include <net/if.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "control/bridge/bridge.h"
#include "control/core/log.h"
#include "control/core/netlink.h"
#include "control/fast/fast_control.h"
#include "dataplane/core/clock.h"

namespace dpsw {

using nlohmann::json;

void Nat::preflight() const {
  const Config& cfg = core_.cfg_;
  if (cfg.uplink && !if_nametoindex(cfg.uplink->interface.c_str()))
    throw ConfigError(cfg.path + ": uplink.port.interface: no interface '" + cfg.uplink->interface + "' on this host");
}

void Nat::start() {
  if (!core_.cfg_.uplink) return;
  ConnTrack::Options ct;
  ct.size = core_.cfg_.sw.conntrack_size;
  ct.timeouts.tcp_established = core_.cfg_.sw.ct_tcp_established;
  ct.timeouts.tcp_syn_sent = core_.cfg_.sw.ct_tcp_syn_sent;
  ct.timeouts.tcp_syn_recv = core_.cfg_.sw.ct_tcp_syn_recv;
  ct.timeouts.other = core_.cfg_.sw.ct_other;
  ct.timeouts.other_replied = core_.cfg_.sw.ct_other * 6;
  ct.timeouts.tcp_closing = core_.cfg_.sw.ct_tcp_transitory;
  ct.timeouts.tcp_close = std::min<uint32_t>(10, core_.cfg_.sw.ct_tcp_transitory);
  ct.timeouts.udp = core_.cfg_.sw.ct_udp;
  ct.timeouts.udp_replied = core_.cfg_.sw.ct_udp * 4;
  ct.timeouts.icmp = core_.cfg_.sw.ct_icmp;
  core_.dp_->enable_l3(ct, core_.cfg_.uplink->address.network(), core_.cfg_.uplink->address.len);
  if (core_.cfg_.uplink->gateway) core_.dp_->arp()->want(core_.cfg_.uplink->gateway);  // resolved by the uplink's worker right away
  create_uplink();
}

void Nat::create_uplink() {
  const UplinkConfig& up = *core_.cfg_.uplink;
  Rtnl rt;
  uplink_bd_ = core_.add_bd(NetworkConfig{.name = kUplinkNetwork});
  uplink_mac_ = rt.link_mac(up.interface);
  rt.set_up(up.interface);
  // A veth uplink (to another namespace, a bridge or the host's own stack)
  // is served like a fast-tier endpoint: XDP on it would turn GSO off on its
  // peer, and its peer's partial checksums are finished by the punt veth.
  // A NIC keeps AF_XDP with its XDP program (which passes routed flows up).
  // DPSW_UPLINK_XDP=1 keeps a veth uplink on the NIC's path (tests of that path on a machine without a NIC).
  const char* force_xdp = getenv("DPSW_UPLINK_XDP");
  const bool punted = core_.cfg_.sw.fast_path && rt.link_kind(up.interface) == "veth" && !(force_xdp && *force_xdp == '1') &&
                      access(core_.opt_.fast_object.c_str(), R_OK) == 0;
  if (punted) fast_.ensure(bridge_.router_mac());  // before the id: it takes port ids of its own
  uint16_t id = core_.new_port_id();
  PortRec& pr = core_.ports_[id];
  pr.network = kUplinkNetwork;
  pr.host_ifname = up.interface;
  pr.ifindex = rt.ifindex(up.interface);
  pr.bd = uplink_bd_;
  pr.mac = uplink_mac_;
  pr.ip = up.address.addr;
  pr.mtu = up.mtu;
  if (punted)
    fast_.add_uplink(id, pr);
  else
    core_.open_afxdp(id, pr, up.interface);
  uplink_port_ = id;
  LOG_INFO("uplink %s: %s/%u, %s, next hop %s (port %u, %s)", up.interface.c_str(), ipv4_to_string(up.address.addr).c_str(),
           up.address.len, mac_to_string(uplink_mac_).c_str(), up.gateway ? ipv4_to_string(up.gateway).c_str() : "none", id,
           punted ? "fast tier: TC, punted to its worker" : "AF_XDP");
}

void Nat::check(const Config&, const Plan& plan) const {
  if (!uplink_mac_) return;
  for (const auto& ep : plan.endpoints)
    for (const auto& a : ep.attachments)
      if (a.mac == uplink_mac_)
        throw ConfigError(core_.cfg_.path + ": endpoint '" + ep.name + "': mac " + mac_to_string(a.mac) + " is the uplink's own MAC");
}

void Nat::contribute(Snapshot& s) const {
  if (uplink_port_ < 0) return;
  const uint16_t up = uint16_t(uplink_port_);
  BdEntry& b = s.bds[uplink_bd_];
  b.local_ip = core_.cfg_.uplink->address.addr;  // the host, on its own segment
  b.router_mac = uplink_mac_;
  b.relay_names = true;  // macvlan endpoints asking at the host's address
  PortEntry& pe = s.ports[up];
  pe.port = core_.ports_[up].port.get();
  pe.bd = uplink_bd_;
  pe.owner = core_.owner(up);
  pe.max_frame = std::min(core_.cfg_.uplink->mtu, kAfxdpMaxMtu) + kEthHdrLen;
  b.ports.insert(b.ports.begin(), up);  // first, as in every snapshot: before the macvlan endpoints
  if (core_.ports_[up].kind == PortRec::Kind::kFast) {
    pe.fast = true;  // received through its worker's punt port (FastControl::contribute)
  } else {
    auto& rx = s.rx_ports[pe.owner];
    rx.insert(rx.begin(), up);  // polled first: before its worker's punt port and endpoints
  }
  L3Conf& l3 = s.l3;
  l3.enabled = true;
  l3.uplink_port = uint16_t(uplink_port_);
  l3.uplink_bd = uplink_bd_;
  l3.uplink_ip = core_.cfg_.uplink->address.addr;
  l3.gateway = core_.cfg_.uplink->gateway;
  l3.uplink_mac = uplink_mac_;
  const size_t nbd = core_.bd_name_.size();
  l3.allowed.assign(nbd * nbd, 0);
  for (const auto& n : core_.cfg_.networks) {
    if (n.driver != Driver::kBridge || !core_.bd_of_.count(n.name)) continue;
    l3.isolated.push_back({n.subnet.network(), n.subnet.mask()});
    l3.isolated_bd.push_back(core_.bd_of_.at(n.name));
    for (const auto& o : n.allow)  // symmetric
      if (core_.bd_of_.count(o)) {
        l3.allowed[size_t(core_.bd_of_.at(n.name)) * nbd + core_.bd_of_.at(o)] = 1;
        l3.allowed[size_t(core_.bd_of_.at(o)) * nbd + core_.bd_of_.at(n.name)] = 1;
      }
  }
  for (uint16_t id = 0; id < core_.ports_.size(); id++) {
    const PortRec& pr = core_.ports_[id];
    const NetworkConfig* n = pr.port ? core_.cfg_.network(pr.network) : nullptr;
    if (n && n->driver == Driver::kBridge) l3.neighbors.push_back({pr.ip, id, pr.bd, pr.mac});
  }
  std::sort(l3.neighbors.begin(), l3.neighbors.end(), [](auto& a, auto& b) { return a.ip < b.ip; });
  // Published ports: a direct [port] -> rule index per protocol, constant cost for any range.
  for (const auto& e : core_.cfg_.endpoints) {
    const EndpointRec* rec = e.publish.empty() ? nullptr : bridge_.endpoint(e.name);
    if (!rec || rec->ports.empty()) continue;
    uint16_t id = rec->ports[0];  // the first network's port
    const PortRec& pr = core_.ports_[id];
    const NetworkConfig* net = core_.cfg_.network(pr.network);
    for (const auto& p : e.publish) {
      l3.pub.push_back(PubRule{p.host_lo, p.ctr_lo, pr.ip, id, pr.bd, pr.mac, bridge_.router_mac(), net ? net->gateway : 0});
      auto& idx = p.proto == 6 ? l3.pub_tcp : l3.pub_udp;
      if (idx.empty()) idx.assign(65536, 0);
      for (uint32_t port = p.host_lo; port <= p.host_hi; port++) idx[port] = uint16_t(l3.pub.size());
    }
  }
}

void Nat::tick(uint32_t now) {
  if (ConnTrack* ct = core_.dp_->conntrack()) {
    ct->expire(now, [this](std::function<void()> fn) { core_.dp_->defer(std::move(fn)); });
    // Rate-limited: at most one line every 10 s while new flows are being refused.
    if (uint64_t full = ct->full_drops(); full != ct_full_reported_ && now - ct_full_logged_ms_ >= 10000) {
      LOG_WARN("conntrack full (%zu flows): %llu new flows refused so far; existing flows keep working (conntrack.size)",
               ct->capacity(), (unsigned long long)full);
      ct_full_reported_ = full;
      ct_full_logged_ms_ = now;
    }
  }
}

void Nat::release_port(uint16_t id, const PortRec&) {
  ConnTrack* ct = core_.dp_ ? core_.dp_->conntrack() : nullptr;
  if (!ct || int(id) == uplink_port_) return;
  ct->expire(
      now_ms(), [this](std::function<void()> fn) { core_.dp_->defer(std::move(fn)); },
      [id](const Flow& f) { return f.out[0].port == id || f.out[1].port == id; });
}

void Nat::stop() {
  if (uplink_port_ >= 0) {  // detach from the uplink; the interface is not ours to delete
    EndpointRec up;
    up.ports = {uint16_t(uplink_port_)};
    core_.release(up);
    uplink_port_ = -1;
  }
}

void Nat::views(ViewRegistry& r) {
  using view::col, view::table;
  r.entries.push_back({{"conntrack", "", "tracked connections and their translation",
                    {table("", {col("PROTO", "proto"), col("ORIGINAL (src > dst)", "original"),
                                col("TRANSLATED (src > dst)", "translated"), col("STATE", "state"),
                                col("IDLE(s)", "idle_ms", "ms_as_s")})
                         .or_else("no tracked connections")}},
                   0, [&] {
    json out = json::array();
    ConnTrack* ct = core_.dp_->conntrack();
    if (!ct) return out;
    uint32_t now = now_ms();
    ct->for_each([&](const Flow& f) {
      const FlowKey& o = f.orig;
      std::string proto = o.proto == 6 ? "tcp" : o.proto == 17 ? "udp" : o.proto == 1 ? "icmp" : o.proto == 47 ? "gre" : std::to_string(o.proto);
      uint8_t st = f.state.load(std::memory_order_relaxed);  // relaxed: display only
      auto ep = [&](uint32_t ip, uint16_t port) { return ipv4_to_string(ip) + ":" + std::to_string(o.proto == 1 ? 0 : port); };
      out.push_back({{"proto", proto},
                     {"original", ep(o.sip, o.sport) + " > " + ep(o.dip, o.dport)},
                     {"translated", ep(f.xsrc_ip, f.xsrc_port) + " > " + ep(f.xdst_ip, f.xdst_port)},
                     {"nat_port", f.xsrc_ip != o.sip && o.proto != 47 ? f.xsrc_port : 0},  // masqueraded: the port kept or allocated
                     {"state", o.proto == 6 ? tcp_state_name(st) : st ? "replied" : "unreplied"},
                     {"idle_ms", int32_t(now - f.last_seen.load(std::memory_order_relaxed)) < 0 ? 0 : now - f.last_seen.load(std::memory_order_relaxed)}});  // relaxed: display only
    });
    return out;
  }});
}

void Nat::counters(nlohmann::json& out) const {
  out["conntrack"] = nullptr;
  if (const ConnTrack* ct = core_.dp_->conntrack())
    out["conntrack"] = {{"flows", ct->count()}, {"capacity", ct->capacity()}, {"refused_full", ct->full_drops()},
                        {"early_drop", ct->early_drops()}, {"reopened", ct->reopened()}};
}

}  // namespace dpsw
