#include "control/fast/fast_control.h"

#include <unistd.h>

#include "control/core/log.h"
#include "control/core/netlink.h"
#include "dataplane/fast/fast_port.h"
#include "dataplane/fast/punt_share.h"

namespace dpsw {

using nlohmann::json;

FastControl::~FastControl() = default;

void FastControl::preflight_objects() const {
  bool fast = false;
  for (const auto& ep : core_.plan_.endpoints)
    for (const auto& a : ep.attachments) fast |= a.fast;
  if (fast && access(core_.opt_.fast_object.c_str(), R_OK) != 0)
    throw ConfigError("BPF object " + core_.opt_.fast_object + " (the fast tier) is not readable; it is looked for next to --bpf-object");
}

void FastControl::ensure(Mac router_mac) {
  if (fast_) return;
  auto ft = std::make_unique<FastTier>(core_.opt_.fast_object, core_.cfg_.sw.mac_table_size + kMaxPorts,
                                       core_.xdp_ ? core_.xdp_->nat_map_fd() : -1);
  std::vector<Punt> punts(core_.dp_->workers());
  auto undo = [&] {
    for (auto& p : punts) core_.release(p.rec);
  };
  try {
    Rtnl rt;
    for (unsigned w = 0; w < punts.size(); w++) {
      // A punt veth pair per worker: `near` (the fast tier redirects punted
      // frames out of it, and delivers what dpsw sends back) <-> `far` (the
      // worker's AF_XDP punt port).
      Punt& pu = punts[w];
      const std::string tag = core_.cfg_.sw.name.substr(0, 6) + "-punt", near = tag + std::to_string(w), far = tag + "x" + std::to_string(w);
      core_.journal_->record("link", near);
      rt.create_veth(near, core_.journal_->alias_tag() + "(punt " + std::to_string(w) + ")", far, -1, 0x02dd00000001ULL + w, kAfxdpMaxMtu);
      pu.rec.links.push_back(near);
      for (const auto& l : {near, far}) sysctl_write("net/ipv6/conf/" + l + "/disable_ipv6", "1");
      // dpsw reads frames as they are: the kernel must finish checksums (and,
      // since XDP on `far` turns TSO off on `near`, segment GSO frames) and
      // write the port tag into the frame rather than into metadata.
      ethtool_set_tx_csum(near, false);
      ethtool_set_tx_vlan(near, false);
      rt.set_up(far);
      rt.set_up(near);
      pu.port = core_.new_port_id();
      PortRec& pr = core_.ports_[pu.port];
      pr.network = "(fast tier)";
      pr.host_ifname = far;
      pr.ifindex = rt.ifindex(far);
      pr.mtu = kAfxdpMaxMtu;
      auto port = std::make_unique<AfxdpPort>(far, AfxdpPort::Options{});
      int fd = port->fd();
      pr.port = std::move(port);
      pr.kind = PortRec::Kind::kPunt;  // only once it has a port (kNone: "port not set yet")
      pu.rec.ports.push_back(pu.port);
      core_.xdp_->bind_socket(pr.ifindex, pu.port, fd);
      core_.xdp_->attach(pr.ifindex, far);
      pu.near_ifindex = rt.ifindex(near);
      ft->attach_punt(pu.near_ifindex, near);
      LOG_INFO("fast tier: worker %u punts through %s <-> %s (port %u)", w, near.c_str(), far.c_str(), pu.port);
    }
    // Steering's other half: the RPS mask of the punt veths' near ends is
    // where a flooding sender's frames are delivered (bpf/fast_l2.bpf.c).
    const std::vector<int> steer = core_.cfg_.sw.steering_cores();
    if (!steer.empty())
      for (const auto& p : punts) set_rps_cpus(p.rec.links.front(), steer);
    ft->set_conf(steer.empty() ? 0 : std::max<uint32_t>(1, core_.cfg_.sw.steer_above_pps / 1000), steer, router_mac);
  } catch (...) {
    undo();
    throw;
  }
  fast_ = std::move(ft);
  punts_ = std::move(punts);
}

void FastControl::add_port(uint16_t id, PortRec& pr) {
  // No XDP here (it would turn the container's TSO off): the TC program
  // forwards between containers and punts the rest to the punt port.
  const Punt& pu = punts_[core_.owner(id)];  // the worker that would own the port
  pr.port = std::make_unique<FastPort>(pr.host_ifname, core_.ports_[pu.port].port.get(), id);
  pr.kind = PortRec::Kind::kFast;
  fast_->add_port(pr.ifindex, pr.host_ifname, id, pr.bd, pu.near_ifindex, core_.owner(id), pr.mtu);
  fast_->add_mac(pr.bd, pr.mac, id, true);
}

void FastControl::add_uplink(uint16_t id, PortRec& pr) {
  const Punt& pu = punts_[core_.owner(id)];
  pr.port = std::make_unique<FastPort>(pr.host_ifname, core_.ports_[pu.port].port.get(), id);
  pr.kind = PortRec::Kind::kFast;
  fast_->add_uplink(pr.ifindex, pr.host_ifname, id, pr.bd, pu.near_ifindex, core_.owner(id), pr.mtu, pr.mac, pr.ip);
  journal_uplink(pr.host_ifname);
  check_uplink_peer();
}

void FastControl::check_uplink_peer() {
  // Frames out of the uplink go straight into its peer only while that peer
  // is in another namespace, without XDP, and the uplink is up (see
  // FastTier::set_uplink_peer); the user may change any of it, so this is
  // looked at again on every tick.
  if (!fast_ || !fast_->uplink_punted()) return;
  const uint16_t up = fast_->uplink_port();
  if (up >= core_.ports_.size()) return;
  const std::string& ifname = core_.ports_[up].host_ifname;
  FastTier::UplinkPeer p;
  try {
    const Rtnl::VethPeer v = Rtnl().veth_peer(ifname);
    p = {v.elsewhere, v.up, v.xdp, v.mac, v.mtu};
    peer_error_logged_ = false;
  } catch (const std::exception& e) {  // unreadable: the veth's way, which always works
    if (!peer_error_logged_) LOG_WARN("fast tier: uplink %s: its peer: %s", ifname.c_str(), e.what());
    peer_error_logged_ = true;
  }
  const bool was = fast_->uplink_into_peer();
  try {
    fast_->set_uplink_peer(p);
  } catch (const std::exception& e) {
    LOG_WARN("fast tier: uplink %s: %s", ifname.c_str(), e.what());
  }
  if (fast_->uplink_into_peer() != was)
    LOG_INFO("fast tier: uplink %s: frames out of it %s", ifname.c_str(),
             fast_->uplink_into_peer() ? "to its peer's MAC go into the peer directly (another namespace)"
                                       : "are transmitted by the veth");
}

void FastControl::check_xdp_peers() {
  // A container may attach an XDP program to its interface at any time (an
  // AF_XDP application, a filter): frames into it must then go through the
  // host veth's transmit, the only path that runs it. Read in the
  // container's namespace (IFLA_XDP of the veth's peer), a few ports a tick:
  // each is seen again within (ports / kXdpChecksPerTick) ticks.
  if (!fast_) return;
  const size_t n = core_.ports_.size();
  if (!n) return;
  std::unique_ptr<Rtnl> rt;
  const size_t from = xdp_cursor_ % n;
  for (size_t i = 0, seen = 0; i < n && seen < kXdpChecksPerTick; i++) {
    const size_t id = (from + i) % n;
    xdp_cursor_ = id + 1;  // the next tick goes on from here
    const PortRec& pr = core_.ports_[id];
    if (pr.kind != PortRec::Kind::kFast || (fast_->uplink_punted() && id == fast_->uplink_port())) continue;
    seen++;
    bool xdp = false;
    try {
      if (!rt) rt = std::make_unique<Rtnl>();
      const Rtnl::VethPeer v = rt->veth_peer(pr.host_ifname);
      xdp = v.elsewhere && v.xdp;
    } catch (const std::exception&) {  // unreadable (going away): as it was
      xdp = fast_->xdp_peer(uint16_t(id));
      rt.reset();  // a reply left unread would confuse the next request: a fresh socket
    }
    if (xdp == fast_->xdp_peer(uint16_t(id))) continue;
    try {
      fast_->set_xdp_peer(uint16_t(id), xdp);
      LOG_INFO("fast tier: %s (%s): its interface %s an XDP program: frames into it %s", pr.host_ifname.c_str(),
               pr.endpoint.c_str(), xdp ? "has" : "no longer has",
               xdp ? "go through the veth (which runs it)" : "go straight into it");
    } catch (const std::exception& e) {
      LOG_WARN("fast tier: %s: %s", pr.host_ifname.c_str(), e.what());
    }
  }
}

void FastControl::journal_uplink(const std::string& ifname) {
  // The user's interface: after a crash, the next start removes our filter
  // (and the qdisc, if we made it) rather than leave it punting to punt veths that are gone.
  core_.journal_->record("tc-filter", ifname);
  if (fast_->uplink_made_qdisc()) core_.journal_->record("tc-qdisc", ifname);
}

void FastControl::remove_port(uint16_t id) { release_port(id, core_.ports_[id]); }

void FastControl::release_port(uint16_t id, const PortRec& pr) {
  if (!fast_) return;
  drop_nat_of(id);  // the uplink's too: nothing is redirected to a port that goes
  if (fast_->uplink_punted() && fast_->uplink_ifindex() == pr.ifindex) fast_->detach_uplink();
  if (fast_->has_tunnel(id)) fast_->del_tunnel(id);  // a tunnel that goes: nothing encapsulated to or accepted from it
  if (pr.kind == PortRec::Kind::kFast) fast_->remove_port(id);
}

void FastControl::set_mtu(uint16_t id, uint32_t mtu) {
  if (fast_ && core_.ports_[id].kind == PortRec::Kind::kFast) fast_->set_mtu(id, mtu);
}

void FastControl::sync_tunnels() {
  ArpCache* arp = core_.dp_->arp();
  if (!fast_->uplink_punted() || !arp) return;
  // The overlay networks' tunnels in the published snapshot whose next hop
  // dpsw has resolved: the kernel tier encapsulates to them and
  // decapsulates from them. A tunnel that left the snapshot goes (its MACs first).
  const Snapshot& s = core_.dp_->snapshot();
  std::map<uint16_t, FastTier::TunnelEntry> want;
  for (const TunnelKey& tk : s.tunnels) {
    const PortEntry* pe = s.port(tk.port);
    if (!pe || !pe->vtep) continue;
    const uint32_t nh = arp->on_segment(pe->vtep) ? pe->vtep : s.l3.gateway;
    const Mac dmac = nh ? arp->lookup(nh) : 0;
    if (!dmac) continue;  // dpsw's own path resolves it first
    want[tk.port] = {pe->vtep, s.l3.uplink_ip, pe->vni, fast_->uplink_ifindex(), s.l3.uplink_mac, dmac, s.l3.uplink_port, pe->bd,
                     uint16_t(pe->max_frame - kEthHdrLen)};
  }
  std::vector<uint16_t> gone;
  for (const auto& [id, t] : fast_->tunnels())
    if (!want.count(id)) gone.push_back(id);
  for (uint16_t id : gone) fast_->del_tunnel(id);
  for (const auto& [id, t] : want) {
    auto have = fast_->tunnels().find(id);
    if (have == fast_->tunnels().end() || !(have->second == t)) fast_->put_tunnel(id, t);
  }
}

void FastControl::sync_routes() {
  // Routing between allowed bridge networks, from the published snapshot:
  // every fast-tier endpoint's address, and the allowed pairs with the
  // source network's prefix (what dpsw's own path checks).
  const Snapshot& s = core_.dp_->snapshot();
  std::map<uint32_t, FastTier::RouteEntry> routes;
  std::map<std::pair<uint16_t, uint16_t>, std::pair<uint32_t, uint32_t>> allowed;
  const L3Conf& l3 = s.l3;
  if (l3.enabled) {
    for (const auto& n : l3.neighbors)
      if (fast_->has_port(n.port) && n.ip) routes[n.ip] = {n.port, n.bd, n.mac, s.ports[n.port].max_frame - kEthHdrLen};
    const size_t nbd = s.bds.size();
    for (size_t i = 0; i < l3.isolated.size(); i++)
      for (size_t j = 0; j < l3.isolated.size(); j++) {
        const uint16_t from = l3.isolated_bd[i], to = l3.isolated_bd[j];
        if (from >= nbd || !s.bds[from].nat) continue;  // an internal network routes nowhere, allowed or not (as l3_route)
        if (from != to && size_t(from) * nbd + to < l3.allowed.size() && l3.allowed[size_t(from) * nbd + to])
          allowed[{from, to}] = l3.isolated[i];
      }
  }
  fast_->sync_routes(routes, allowed);
}

void FastControl::sync_fast_macs() {
  if (!fast_) return;
  try {
    sync_routes();
  } catch (const std::exception& e) {  // a map that refuses: routed traffic stays on the punted path
    if (!route_error_logged_) LOG_WARN("fast tier: routes: %s", e.what());
    route_error_logged_ = true;
  }
  try {
    sync_tunnels();
  } catch (const std::exception& e) {  // a map that refuses: the overlay stays on the punted path
    if (!tunnel_error_logged_) LOG_WARN("fast tier: VXLAN tunnels: %s", e.what());
    tunnel_error_logged_ = true;
  }
  std::map<std::pair<uint16_t, Mac>, uint16_t> learned;
  // Established entries only: a flood of random source MACs churns tentative
  // entries in the MAC table and never reaches the kernel map. Behind
  // endpoints, the tunnels the kernel tier serves and a punted uplink (for
  // the macvlan endpoints on its segment).
  core_.dp_->macs().for_each([&](const MacTable::Entry& e) {
    if (!e.established || e.is_static || e.port >= core_.ports_.size() || core_.ports_[e.port].bd != e.bd) return;
    const PortRec::Kind k = core_.ports_[e.port].kind;
    if ((k == PortRec::Kind::kFast && (fast_->has_port(e.port) || (fast_->uplink_punted() && e.port == fast_->uplink_port()))) ||
        (k == PortRec::Kind::kTunnel && fast_->has_tunnel(e.port)))
      learned[{e.bd, e.mac}] = e.port;
  });
  fast_->sync_learned(learned);
  if (uint64_t r = fast_->fdb_refused(); r != fast_refused_reported_) {
    LOG_WARN("fast tier: fdb map full (%u entries): %llu learned MACs left to the punted path", fast_->fdb_capacity(),
             (unsigned long long)r);
    fast_refused_reported_ = r;
  }
}

void FastControl::tick(uint32_t now) {
  sync_fast_macs();
  refresh_nat(now);
  check_uplink_peer();
  check_xdp_peers();
}

void FastControl::tick_done(uint32_t) {
  try {
    sync_nat();
  } catch (const std::exception& e) {  // a map that refuses: the flows stay on the punted path, dpsw keeps running
    if (!nat_error_logged_) LOG_WARN("fast tier: routed flows: %s", e.what());
    nat_error_logged_ = true;
  }
}

void FastControl::refresh_nat(uint32_t now) {
  ConnTrack* ct = core_.dp_->conntrack();
  // Once a second (a flow's last_seen moves at most that often; its
  // shortest timeout here is 30 s): two lookups per flow.
  if (!fast_ || !ct || now - nat_refreshed_ < 1000) return;
  nat_refreshed_ = now;
  for (auto it = nat_.begin(); it != nat_.end();) {
    NatState& st = it->second;
    // Packets the kernel forwarded since the last tick (either way) keep the flow alive.
    bool closed = false;
    const uint64_t ls = st.out.ifindex ? fast_->nat_last_seen(st.key, &closed) : 0;
    const uint64_t lr = st.back.ifindex ? fast_->nat_last_seen(st.reply, &closed) : 0;
    bool reply = false;
    Flow* f = ct->find(st.key, &reply);
    // Closed by the kernel tier, yet the same flow is still established here
    // two refreshes (a second) later (the FIN or RST never moved it: lost on
    // the punted path, or an entry made for a flow that reused a recycled
    // record): out, so that the next sync installs it afresh rather than
    // leave it punted for good.
    const bool stuck = closed && f && f == st.flow &&
                       f->state.load(std::memory_order_relaxed) == uint8_t(TcpState::kEstablished);  // relaxed: a hint, re-read every tick
    if (stuck && st.closed_seen) {
      nat_remove(st);
      it = nat_.erase(it);
      continue;
    }
    st.closed_seen = stuck;
    ++it;
    if (ls == st.last_seen && lr == st.last_seen_back) continue;
    st.last_seen = ls;
    st.last_seen_back = lr;
    if (f) {
      ConnTrack::seen(*f, now);
      // A UDP flow the kernel carried a reply of is "replied", as if dpsw had
      // seen it (its longer timeout): relaxed, a monotonic ageing hint as the workers write it.
      if (lr && f->orig.proto == 17 && !f->state.load(std::memory_order_relaxed)) f->state.store(1, std::memory_order_relaxed);
    }
  }
}

namespace {
std::pair<uint64_t, uint64_t> packed(const FlowKey& k) {
  return {uint64_t(k.sip) << 32 | k.dip, uint64_t(k.sport) << 24 | uint64_t(k.dport) << 8 | k.proto};
}
}  // namespace

void FastControl::nat_remove(const NatState& st) {
  if (st.out.ifindex) fast_->nat_del(st.key);  // the way out first: no packet is sent on whose answer has no entry
  if (st.back.ifindex) fast_->nat_del(st.reply);
}

void FastControl::drop_nat_of(uint16_t port) {
  for (auto it = nat_.begin(); it != nat_.end();) {
    if (it->second.out.in_port == port || it->second.out.out_port == port) {
      nat_remove(it->second);
      it = nat_.erase(it);
    } else {
      ++it;
    }
  }
}

void FastControl::sync_nat() {
  ConnTrack* ct = core_.dp_->conntrack();
  ArpCache* arp = core_.dp_->arp();
  if (!fast_ || !ct || !arp) return;
  const Snapshot& s = core_.dp_->snapshot();
  const uint16_t up = s.l3.uplink_port;
  if (up >= core_.ports_.size() || !core_.ports_[up].used()) {
    nat_ready_ = false;
    ct->set_announcing(false);
    return;
  }
  if (!fast_->uplink_ifindex() && !uplink_tried_ && core_.xdp_) {  // an AF_XDP (NIC) uplink: its XDP program passes the flows' packets up to our TC filter
    uplink_tried_ = true;
    try {
      fast_->attach_uplink(core_.ports_[up].ifindex, core_.ports_[up].host_ifname, up);
      journal_uplink(core_.ports_[up].host_ifname);
      core_.xdp_->set_uplink(core_.ports_[up].ifindex, up);
    } catch (const std::exception& e) {
      LOG_WARN("fast tier: routed flows' packets from the uplink stay on the punted path: %s", e.what());
    }
  }
  nat_ready_ = true;
  ct->set_announcing(true);
  std::map<std::pair<uint64_t, uint64_t>, NatWant> want;
  ct->for_each([&](const Flow& f) {
    NatWant w;
    if (nat_want(f, &w)) want[packed(f.orig)] = w;
  });
  // Gone or changed (or now another flow's: a reopened tuple): out of the kernel first, the way out before the way back.
  for (auto it = nat_.begin(); it != nat_.end();) {
    auto w = want.find(it->first);
    if (w == want.end() || w->second.flow != it->second.flow || !(w->second.out == it->second.out) ||
        !(w->second.back == it->second.back)) {
      nat_remove(it->second);
      it = nat_.erase(it);
    } else {
      ++it;
    }
  }
  if (nat_.size() < nat_full_at_) nat_full_at_ = 0;  // room again
  for (auto& [k, w] : want) nat_install(w);
}

bool FastControl::nat_want(const Flow& f, NatWant* w) const {
  ArpCache* arp = core_.dp_->arp();
  const Snapshot& s = core_.dp_->snapshot();
  const uint16_t up = s.l3.uplink_port;
  if (!arp || up >= core_.ports_.size() || !core_.ports_[up].used()) return false;
  // Where the kernel tier can take a flow's packets in (TC ingress) and send
  // them out: a fast-tier endpoint both ways (delivered with
  // bpf_redirect_peer); the uplink out always (bpf_redirect), in once its TC
  // program is attached.
  const bool uplink_in = fast_->uplink_ifindex() != 0;
  auto fast_port = [&](uint16_t p) {
    return p < core_.ports_.size() && core_.ports_[p].kind == PortRec::Kind::kFast && fast_->has_port(p);
  };
  auto can_in = [&](uint16_t p) { return p == up ? uplink_in : fast_port(p); };
  auto can_out = [&](uint16_t p) { return p == up || fast_port(p); };
  // A direction's next hop: the flow's own MAC, or (towards the uplink)
  // resolved as dpsw's own path does; 0: not yet (dpsw's path resolves it first).
  auto next_hop = [&](const FlowOut& o, uint32_t dst) -> Mac {
    if (o.dst_mac) return o.dst_mac;
    const uint32_t nh = arp->on_segment(dst) ? dst : s.l3.gateway;
    return nh ? arp->lookup(nh) : 0;  // a stale entry is queued for a probe
  };
  // What the kernel should hold: every established (TCP) or UDP flow
  // between two ports the kernel tier serves: masquerade out of
  // the uplink, published ports (DNAT) in from it, hairpin between two
  // fast-tier endpoints. A flow's original direction arrives where its
  // replies go (out[1]) and leaves through out[0]. A direction the kernel
  // cannot take in stays on the punted path (ifindex 0).
  const uint8_t st = f.state.load(std::memory_order_relaxed);  // relaxed: a snapshot of the state, re-read every tick
  // TCP once established (dpsw sees its handshake and every SYN/FIN/RST
  // anyway); UDP from its first packet (a stream one way, a flood, never
  // needs dpsw again: the kernel marks it replied, refresh_nat() reads that).
  if (f.orig.proto == 6 ? st != uint8_t(TcpState::kEstablished) : f.orig.proto != 17) return false;
  const uint16_t a = f.out[1].port, b = f.out[0].port;  // the original direction: a -> b
  if (!can_out(a) || !can_out(b) || (!can_in(a) && !can_in(b))) return false;
  const Mac to_b = next_hop(f.out[0], f.xdst_ip), to_a = next_hop(f.out[1], f.orig.sip);
  if (!to_a || !to_b) return false;
  *w = NatWant{&f, {}, {}};
  w->out = {a, b, f.xsrc_ip, f.xdst_ip, f.xsrc_port, f.xdst_port, core_.ports_[b].ifindex, f.out[0].src_mac, to_b, b != up};
  w->back = {b, a, f.orig.dip, f.orig.sip, f.orig.dport, f.orig.sport, core_.ports_[a].ifindex, f.out[1].src_mac, to_a, a != up};
  if (!can_in(a)) w->out.ifindex = 0;
  if (!can_in(b)) w->back.ifindex = 0;
  return true;
}

void FastControl::nat_install(const NatWant& w) {
  const auto k = packed(w.flow->orig);
  if (nat_.count(k) || nat_full_at_) return;
  // The way back before the way out: no reply of a packet the kernel
  // sent can arrive before its entry.
  const bool back = !w.back.ifindex || fast_->nat_put(w.flow->reply, w.back);
  if (back && (!w.out.ifindex || fast_->nat_put(w.flow->orig, w.out))) {
    nat_[k] = {w.flow->orig, w.flow->reply, w.out, w.back, 0, 0, w.flow, false};
  } else {
    if (back && w.back.ifindex) fast_->nat_del(w.flow->reply);
    nat_refused_++;
    nat_full_at_ = std::max<size_t>(nat_.size(), 1);
  }
}

void FastControl::between_ticks(uint32_t now) {
  ConnTrack* ct = core_.dp_->conntrack();
  if (!fast_ || !ct || !nat_ready_) return;
  if (announced_at_ && now - announced_at_ > 1000) announced_at_ = 0;
  try {
    // Bounded: a flood of new UDP flows waits for the tick's sync like before.
    ct->take_announced(256, [&](const Flow& f) {
      NatWant w;
      if (!nat_want(f, &w)) return;
      announced_at_ = now ? now : 1;
      // The kernel holds one of its tuples already: a stale entry (another
      // flow's reply tuple on a recycled NAT port, say) that only the
      // tick's sync, which removes before it installs, may replace.
      if ((w.back.ifindex && fast_->nat_has(f.reply)) || (w.out.ifindex && fast_->nat_has(f.orig))) return;
      nat_install(w);
    });
  } catch (const std::exception& e) {  // a map that refuses: as sync_nat()
    if (!nat_error_logged_) LOG_WARN("fast tier: routed flows: %s", e.what());
    nat_error_logged_ = true;
  }
}

namespace {
// "web.frontend" -> "\3web\10frontend\0"; empty when it cannot be one.
std::string dns_wire(std::string_view name) {
  std::string w;
  size_t at = 0;
  while (at <= name.size()) {
    const size_t dot = std::min(name.find('.', at), name.size());
    if (dot == at || dot - at > 63) return {};
    w += char(dot - at);
    w.append(name.substr(at, dot - at));
    at = dot + 1;
  }
  w += '\0';
  return w;
}
}  // namespace

// The names the kernel tier may answer alone: one address on its network
// (several, or a dnsrr service's rotation, are dpsw's), a network whose
// gateway serves DNS, a name short enough for the map. The snapshot is
// already in force, so dpsw answers the same at once; the map follows here.
void FastControl::sync_dns() {
  const Snapshot& s = core_.dp_->snapshot();
  const DnsTable& t = s.dns;
  std::map<std::pair<uint16_t, std::string>, FastTier::DnsEntry> want;
  for (size_t i = 0; i < t.names.size();) {
    size_t j = i + 1;
    while (j < t.names.size() && t.names[j].key == t.names[i].key) j++;
    const DnsTable::Name& n = t.names[i];
    // (A macvlan endpoint asks the host's address on the uplink's segment: the worker answers those.)
    if (j - i == 1 && !n.rotate && n.bd < s.bds.size() && s.bds[n.bd].dns && s.bds[n.bd].local_ip &&
        !(s.l3.enabled && n.bd == s.l3.uplink_bd)) {
      std::string w = dns_wire(t.str(n.name));
      if (!w.empty() && w.size() <= DPSW_DNS_NAME_MAX) want[{n.bd, std::move(w)}] = {n.ip, s.bds[n.bd].local_ip, t.ttl};
    }
    i = j;
  }
  for (auto it = dns_.begin(); it != dns_.end();) {
    auto w = want.find(it->first);
    if (w == want.end() || !(w->second == it->second)) {
      fast_->dns_del(it->first.first, it->first.second);
      it = dns_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& [k, e] : want) {
    if (dns_.count(k)) continue;
    if (fast_->dns_put(k.first, k.second, e)) {
      dns_[k] = e;
    } else if (!dns_full_logged_) {  // the name stays dpsw's to answer
      LOG_WARN("fast tier: DNS name map full (%u names): the others are answered by dpsw's worker", unsigned(dns_.size()));
      dns_full_logged_ = true;
    }
  }
}

void FastControl::published() {
  if (!fast_) return;
  sync_dns();
  const Snapshot& s = core_.dp_->snapshot();
  std::map<uint16_t, std::vector<FastTier::SvcRange>> want;
  for (size_t id = 0; id < s.services.backend_ports.size(); id++) {
    if (s.services.backend_ports[id].empty() || !fast_->has_port(uint16_t(id))) continue;
    auto& r = want[uint16_t(id)];
    for (const SvcPort& p : s.services.backend_ports[id]) {
      FastTier::SvcRange x{p.proto, p.target, uint16_t(p.target + (p.hi - p.lo))};
      if (std::find(r.begin(), r.end(), x) == r.end()) r.push_back(x);
    }
  }
  try {
    for (const auto& [id, ranges] : svc_ports_)
      if (!want.count(id) && fast_->has_port(id)) fast_->set_service_ports(id, {});
    for (const auto& [id, ranges] : want)
      if (auto it = svc_ports_.find(id); it == svc_ports_.end() || it->second != ranges) fast_->set_service_ports(id, ranges);
    svc_ports_ = std::move(want);
  } catch (const std::exception& e) {
    LOG_WARN("fast tier: service backends' ports: %s", e.what());
  }
}

void FastControl::contribute(Snapshot& s) const {
  for (uint16_t w = 0; w < punts_.size(); w++) {  // in no network: frames enter as their tag's port
    PortEntry& pe = s.ports[punts_[w].port];
    pe.port = core_.ports_[punts_[w].port].port.get();
    pe.bd = kInvalidPort;
    pe.owner = w;
    pe.max_frame = kAfxdpMaxMtu + kEthHdrLen + 4;
    pe.punt = true;
    pe.punt_share = fast_->punt_share(w);
    // Polled before the endpoints (the bridge module's, already in rx) and
    // right after the uplink, if this worker owns it (NAT's, put in front later).
    auto& rx = s.rx_ports[w];
    rx.insert(rx.begin(), punts_[w].port);
  }
}

void FastControl::stop() {
  if (ConnTrack* ct = core_.dp_ ? core_.dp_->conntrack() : nullptr) ct->set_announcing(false);
  nat_ready_ = false;
  nat_.clear();  // the maps go with the objects
  dns_.clear();
  svc_ports_.clear();
  dns_full_logged_ = false;
  if (fast_) fast_->detach_uplink();
  if (core_.xdp_) {
    try {
      core_.xdp_->set_uplink(0);
    } catch (const std::exception&) {  // teardown: nothing left to tell
    }
  }
  for (auto& p : punts_) core_.release(p.rec);  // after every FastPort that sends through them
  punts_.clear();
  fast_.reset();
}

json FastControl::events() const {
  const FastTier::Events ev = fast_->events();
  return json{{"punted", ev.punted}, {"dropped_no_port", ev.no_port}, {"punt_bad_tag", ev.punt_bad_tag},
              {"punt_no_peer", ev.punt_no_peer}, {"steered", ev.steered}, {"dropped_bad_src_mac", ev.bad_src},
              {"dropped_punt_share", ev.punt_share}, {"nat_forwarded", ev.nat_forwarded}, {"nat_errors", ev.nat_error},
              {"vxlan_encapsulated", ev.vxlan_encap}, {"vxlan_decapsulated", ev.vxlan_decap}, {"vxlan_errors", ev.vxlan_error},
              {"routed", ev.routed}, {"dns_answered", ev.dns_answered}};
}

void FastControl::views(ViewRegistry& r) {
  using view::col, view::line, view::pick, view::table;
  r.entries.push_back({{"fast", "", "the in-kernel fast tier, read back from its BPF maps",
                    {line("fast tier: not in use (no endpoint has fast_path: auto)").only_if("!enabled"),
                     table("fdb", {col("NETWORK", "network"), col("MAC", "mac"), col("PORT", "port"), col("ENDPOINT", "endpoint"),
                                   pick("SOURCE", {{"planned", "endpoint"}, {"", "learned"}})})
                         .only_if("enabled"),
                     line("{ports:count} fast-tier ports, {punt_ports:count} punt ports; punted {events.punted}, "
                          "dropped (no port) {events.dropped_no_port}, punt tag errors {events.punt_bad_tag}/{events.punt_no_peer}, "
                          "bad source MAC {events.dropped_bad_src_mac}, over a port's punt share {events.dropped_punt_share}; "
                          "routed packets forwarded in the kernel {events.nat_forwarded}")
                         .only_if("enabled"),
                     table("punt_ports", {col("WORKER", "worker"), col("PUNT PORT", "name"), col("NEAR END", "near"),
                                          col("SHARE(frames/ms/port)", "share_per_ms")})
                         .only_if("enabled"),
                     line("uplink {uplink.name}: frames out of it to its peer's MAC {uplink.peer.mac} go into the peer directly")
                         .only_if("enabled uplink.into_peer"),
                     line("uplink {uplink.name}: frames out of it are transmitted by the veth (peer in another namespace: "
                          "{uplink.peer.elsewhere}, with XDP: {uplink.peer.xdp}; up: {uplink.up})")
                         .only_if("enabled uplink.name !uplink.into_peer"),
                     line("steering: off (a flooding sender's frames are delivered on its own core)").only_if("enabled !steering.cores"),
                     line("steering: to cores {steering.cores} above {steering.above_pps} frames/s per sender and CPU; "
                          "steered {events.steered}")
                         .only_if("enabled steering.cores")}},
                   0, [&] {
    json out = {{"enabled", fast_ != nullptr}, {"ports", json::array()}, {"fdb", json::array()}, {"punt_ports", json::array()}};
    if (!fast_) return out;
    auto net = [&](uint16_t b) { return b < core_.bd_name_.size() ? core_.bd_name_[b] : std::string("?"); };
    auto name = [&](uint16_t p) { return p < core_.ports_.size() && core_.ports_[p].used() ? core_.ports_[p].host_ifname : std::to_string(p); };
    for (const auto& kp : fast_->dump_ports())
      out["ports"].push_back({{"ifindex", kp.ifindex}, {"port", kp.port}, {"name", name(kp.port)}, {"network", net(kp.bd)},
                              {"endpoint", kp.port < core_.ports_.size() ? core_.ports_[kp.port].endpoint : ""}, {"punt_ifindex", kp.punt},
                              {"via_veth", fast_->xdp_peer(kp.port)}});  // its interface has XDP: frames into it through the veth
    for (const auto& [key, port] : fast_->dump_fdb())
      out["fdb"].push_back({{"network", net(key.first)}, {"mac", mac_to_string(key.second)}, {"port", name(port)},
                            {"endpoint", port < core_.ports_.size() ? core_.ports_[port].endpoint : ""}, {"planned", fast_->is_planned(key.first, key.second)}});
    for (unsigned w = 0; w < punts_.size(); w++)
      out["punt_ports"].push_back({{"worker", w}, {"name", core_.ports_[punts_[w].port].host_ifname}, {"near", punts_[w].rec.links.front()},
                                   {"port", punts_[w].port}, {"share_per_ms", read_punt_share(fast_->punt_share(w))}});
    out["steering"] = {{"cores", core_.cfg_.sw.steering_cores()}, {"above_pps", core_.cfg_.sw.steer_above_pps}};
    if (fast_->uplink_punted()) {
      const FastTier::UplinkPeer& p = fast_->uplink_peer();
      out["uplink"] = {{"name", name(fast_->uplink_port())}, {"into_peer", fast_->uplink_into_peer()},
                       {"peer", {{"elsewhere", p.elsewhere}, {"xdp", p.xdp}, {"mac", p.mac ? mac_to_string(p.mac) : ""}, {"mtu", p.mtu}}},
                       {"up", p.up}};
    }
    out["events"] = events();
    return out;
  }});

}

nlohmann::json FastControl::port_counters(uint16_t id, Dataplane::PortTotals& t) const {
  // Fast-tier ports, and the uplink (routed flows the kernel tier sent out or took in there).
  if (!fast_ || (core_.ports_[id].kind != PortRec::Kind::kFast && !fast_->has_tunnel(id) &&
                 !(fast_->uplink_ifindex() && core_.ports_[id].ifindex == fast_->uplink_ifindex())))
    return nullptr;
  // The frames the kernel tier forwarded (or dropped) itself count too.
  const FastTier::PortStats f = fast_->stats(id);
  t.rx_packets += f.rx_packets;
  t.rx_bytes += f.rx_bytes;
  t.tx_packets += f.tx_packets;
  t.tx_bytes += f.tx_bytes;
  t.drops[size_t(Drop::kPuntShare)] += f.punt_share_drops;
  t.drops[size_t(Drop::kOversize)] += f.oversize;
  return {{"fast_tier", {{"rx_packets", f.rx_packets}, {"rx_bytes", f.rx_bytes}, {"tx_packets", f.tx_packets},
                         {"tx_bytes", f.tx_bytes}}}};  // ...of which in the kernel
}

void FastControl::mac_row(const MacTable::Entry& e, nlohmann::json& row) const {
  row["fast_tier"] = fast_ && fast_->has_mac(e.bd, e.mac);  // the kernel tier forwards on it too (`show fast`)
}

void FastControl::counters(nlohmann::json& out) const {
  out["fast_tier"] = nullptr;
  if (!fast_) return;
  nlohmann::json f = events();
  f["fdb_entries"] = fast_->fdb_size();
  f["fdb_capacity"] = fast_->fdb_capacity();
  f["fdb_refused"] = fast_->fdb_refused();
  f["nat_flows"] = nat_.size();
  f["nat_capacity"] = fast_->nat_capacity();
  f["nat_refused"] = nat_refused_;
  f["nat_replies_passed"] = core_.xdp_ ? core_.xdp_->nat_passed() : 0;  // by the uplink's XDP program
  f["nat_kernel_entries"] = fast_->nat_count();  // read back from the map (both ways of each flow)
  f["vxlan_tunnels"] = fast_->tunnels().size();   // tunnels the kernel tier encapsulates to
  f["routes"] = fast_->route_count();              // endpoints the kernel tier routes to between allowed networks
  out["fast_tier"] = f;
}

}  // namespace dpsw
