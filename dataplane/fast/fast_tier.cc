#include "dataplane/fast/fast_tier.h"

#include "dataplane/ports/bpf_object.h"
#include "bpf/dpsw_abi.h"

#include <arpa/inet.h>
#include <sys/mman.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace dpsw {

namespace {
// Layouts: bpf/dpsw_abi.h, shared with bpf/fast_l2.bpf.c.
using FastPortVal = dpsw_fast_port;
using FdbKey = dpsw_fdb_key;
using FdbVal = dpsw_fdb_val;
using StatsVal = dpsw_fast_stats;
using ConfVal = dpsw_fast_conf;

// The BPF key of a conntrack tuple: the packet's bytes (network order).
dpsw_nat_key nat_key(const FlowKey& k) {
  dpsw_nat_key n{};
  n.saddr = htonl(k.sip);
  n.daddr = htonl(k.dip);
  n.sport = htons(k.sport);
  n.dport = htons(k.dport);
  n.proto = k.proto;
  return n;
}

FdbKey fdb_key(uint16_t bd, Mac mac) {
  FdbKey k{};
  k.bd = bd;
  mac_to_bytes(mac, k.mac);
  return k;
}

// Our one filter on a clsact hook (handle 1, priority 1).
bpf_tc_opts our_filter(int prog_fd = 0) {
  bpf_tc_opts o{};
  o.sz = sizeof o;
  o.handle = 1;
  o.priority = 1;
  o.prog_fd = prog_fd;
  o.flags = prog_fd ? BPF_TC_F_REPLACE : 0;
  return o;
}

bpf_tc_hook ingress_hook(int ifindex) {
  bpf_tc_hook h{};
  h.sz = sizeof h;
  h.ifindex = ifindex;
  h.attach_point = BPF_TC_INGRESS;
  return h;
}
}  // namespace

FastTier::FastTier(const std::string& path, uint32_t fdb_entries, int nat_map_fd) : fdb_capacity_(fdb_entries) {
  obj_ = load_bpf_object(path, [&](bpf_object* o) {
    bpf_map* fdb = bpf_object__find_map_by_name(o, "dpsw_fast_fdb");
    if (!fdb) throw std::runtime_error(path + ": no map dpsw_fast_fdb");
    if (int e = bpf_map__set_max_entries(fdb, fdb_entries)) throw bpf_error("fast tier: sizing the fdb map", e);
    bpf_map* nat = bpf_object__find_map_by_name(o, "dpsw_fast_nat");
    if (!nat) throw std::runtime_error(path + ": no map dpsw_fast_nat");
    if (nat_map_fd >= 0)  // the XDP program's: it passes the replies up
      if (int e = bpf_map__reuse_fd(nat, nat_map_fd)) throw bpf_error("fast tier: sharing the routed-flow map", e);
  });
  auto prog = [&](const char* name) {
    bpf_program* p = bpf_object__find_program_by_name(obj_, name);
    return p ? bpf_program__fd(p) : -1;
  };
  ingress_fd_ = prog("dpsw_fast_ingress");
  punt_fd_ = prog("dpsw_fast_punt_rx");
  ports_map_ = bpf_object__find_map_fd_by_name(obj_, "dpsw_fast_ports");
  peer_map_ = bpf_object__find_map_fd_by_name(obj_, "dpsw_fast_peer");
  fdb_map_ = bpf_object__find_map_fd_by_name(obj_, "dpsw_fast_fdb");
  stats_map_ = bpf_object__find_map_fd_by_name(obj_, "dpsw_fast_stats");
  events_map_ = bpf_object__find_map_fd_by_name(obj_, "dpsw_fast_events");
  conf_map_ = bpf_object__find_map_fd_by_name(obj_, "dpsw_fast_conf");
  nat_map_ = bpf_object__find_map_fd_by_name(obj_, "dpsw_fast_nat");
  uplink_fd_ = prog("dpsw_fast_uplink_in");
  tunnels_map_ = bpf_object__find_map_fd_by_name(obj_, "dpsw_fast_tunnels");
  vni_map_ = bpf_object__find_map_fd_by_name(obj_, "dpsw_fast_vni");
  route_map_ = bpf_object__find_map_fd_by_name(obj_, "dpsw_fast_route");
  allow_map_ = bpf_object__find_map_fd_by_name(obj_, "dpsw_fast_allow");
  dns_map_ = bpf_object__find_map_fd_by_name(obj_, "dpsw_fast_dns");
  xdp_peers_map_ = bpf_object__find_map_fd_by_name(obj_, "dpsw_fast_xdp_peers");
  if (bpf_map* nat = bpf_object__find_map_by_name(obj_, "dpsw_fast_nat")) nat_capacity_ = bpf_map__max_entries(nat);
  const int share_map = bpf_object__find_map_fd_by_name(obj_, "dpsw_fast_punt_share");
  if (std::min({ingress_fd_, punt_fd_, uplink_fd_, ports_map_, peer_map_, fdb_map_, stats_map_, events_map_, conf_map_, nat_map_,
                share_map, tunnels_map_, vni_map_, route_map_, allow_map_, dns_map_, xdp_peers_map_}) < 0) {
    bpf_object__close(obj_);
    obj_ = nullptr;
    throw std::runtime_error(path + ": missing the fast tier's programs or maps");
  }
  // Each worker writes its punt share straight into the map (no syscall).
  share_len_ = (sizeof(dpsw_punt_share) * DPSW_MAX_WORKERS + 4095) & ~size_t(4095);
  void* m = mmap(nullptr, share_len_, PROT_READ | PROT_WRITE, MAP_SHARED, share_map, 0);
  if (m == MAP_FAILED) {
    const int e = errno;
    bpf_object__close(obj_);
    obj_ = nullptr;
    throw bpf_error("fast tier: mapping dpsw_fast_punt_share", -e);
  }
  share_ = static_cast<dpsw_punt_share*>(m);
}

FastTier::~FastTier() {
  detach_uplink();
  for (int ifindex : std::set<int>(attached_)) detach(ifindex);
  if (share_) munmap(share_, share_len_);
  if (obj_) bpf_object__close(obj_);
}

void FastTier::attach(int ifindex, int prog_fd, const std::string& ifname) {
  bpf_tc_hook h = ingress_hook(ifindex);
  int e = bpf_tc_hook_create(&h);  // the clsact qdisc
  if (e && e != -EEXIST) throw bpf_error("cannot add a clsact qdisc to " + ifname, e);
  attached_.insert(ifindex);
  bpf_tc_opts o = our_filter(prog_fd);
  if ((e = bpf_tc_attach(&h, &o))) throw bpf_error("cannot attach the fast tier's TC program to " + ifname, e);
}

void FastTier::detach(int ifindex) {
  if (!attached_.erase(ifindex)) return;
  bpf_tc_hook h = ingress_hook(ifindex);
  h.attach_point = bpf_tc_attach_point(BPF_TC_INGRESS | BPF_TC_EGRESS);  // removes the clsact qdisc
  bpf_tc_hook_destroy(&h);  // the link may be gone already: nothing to undo then
}

void FastTier::attach_punt(int ifindex, const std::string& ifname) { attach(ifindex, punt_fd_, ifname); }

void FastTier::add_port(int ifindex, const std::string& ifname, uint16_t port, uint16_t bd, int punt_ifindex, unsigned worker,
                        uint32_t mtu) {
  const uint32_t key = uint32_t(ifindex), id = port, zero_if = 0;
  const FastPortVal pv{port, bd, uint32_t(punt_ifindex), uint32_t(worker), mtu, 0, {}, {}, {}};
  // A reused id starts from zero (stats are per id).
  const int ncpu = std::max(libbpf_num_possible_cpus(), 1);
  std::vector<StatsVal> zero(size_t(ncpu), StatsVal{});
  if (int e = bpf_map_update_elem(stats_map_, &id, zero.data(), 0)) throw bpf_error("fast tier: stats map", e);
  if (int e = bpf_map_update_elem(ports_map_, &key, &pv, 0)) throw bpf_error("fast tier: ports map", e);
  if (int e = bpf_map_update_elem(peer_map_, &id, &key, 0)) {
    bpf_map_delete_elem(ports_map_, &key);
    throw bpf_error("fast tier: peer map", e);
  }
  ports_[port] = PortInfo{ifindex, bd};
  try {
    attach(ifindex, ingress_fd_, ifname);
  } catch (...) {
    bpf_map_update_elem(peer_map_, &id, &zero_if, 0);
    bpf_map_delete_elem(ports_map_, &key);
    ports_.erase(port);
    detach(ifindex);
    throw;
  }
}

void FastTier::set_mtu(uint16_t port, uint32_t mtu) {
  auto it = ports_.find(port);
  if (it == ports_.end()) return;
  const uint32_t key = uint32_t(it->second.ifindex);
  FastPortVal pv{};
  if (int e = bpf_map_lookup_elem(ports_map_, &key, &pv)) throw bpf_error("fast tier: ports map", e);
  pv.mtu = mtu;
  if (int e = bpf_map_update_elem(ports_map_, &key, &pv, BPF_EXIST)) throw bpf_error("fast tier: ports map", e);
}

void FastTier::set_service_ports(uint16_t port, const std::vector<SvcRange>& ranges) {
  auto it = ports_.find(port);
  if (it == ports_.end()) return;
  const uint32_t key = uint32_t(it->second.ifindex);
  FastPortVal pv{};
  if (int e = bpf_map_lookup_elem(ports_map_, &key, &pv)) throw bpf_error("fast tier: ports map", e);
  pv.nsvc = uint32_t(std::min<size_t>(ranges.size(), DPSW_SVC_RANGES));
  for (size_t i = 0; i < pv.nsvc; i++) {
    pv.svc_proto[i] = ranges.size() > DPSW_SVC_RANGES ? 255 : ranges[i].proto;  // more than fit: every TCP/UDP packet (dpsw sorts them out)
    pv.svc_lo[i] = ranges[i].lo;
    pv.svc_hi[i] = ranges[i].hi;
  }
  if (int e = bpf_map_update_elem(ports_map_, &key, &pv, BPF_EXIST)) throw bpf_error("fast tier: ports map", e);
}

void FastTier::drop_macs_of(uint16_t port) {
  for (auto f = fdb_.begin(); f != fdb_.end();) {
    if (f->second.port == port) {
      FdbKey k = fdb_key(f->first.first, f->first.second);
      bpf_map_delete_elem(fdb_map_, &k);
      f = fdb_.erase(f);
    } else {
      ++f;
    }
  }
}

void FastTier::remove_port(uint16_t port) {
  auto it = ports_.find(port);
  if (it == ports_.end()) return;
  drop_routes_to(port);
  // Nothing may redirect to it any more: its MACs first, then the port itself.
  drop_macs_of(port);
  if (xdp_peers_.erase(port)) {  // (a conf map that refuses: the count stays one too high, a lookup that finds nothing)
    try {
      write_conf();
    } catch (const std::exception&) {
    }
  }
  const uint32_t id = port, zero = 0, key = uint32_t(it->second.ifindex);
  bpf_map_update_elem(peer_map_, &id, &zero, 0);
  bpf_map_delete_elem(ports_map_, &key);
  bpf_map_delete_elem(xdp_peers_map_, &key);
  detach(it->second.ifindex);
  ports_.erase(it);
}

void FastTier::set_xdp_peer(uint16_t port, bool xdp) {
  auto it = ports_.find(port);
  if (it == ports_.end() || xdp == xdp_peer(port)) return;
  const uint32_t key = uint32_t(it->second.ifindex);
  const uint8_t one = 1;
  // Into the map before the count says to look (and out of it after): a
  // frame never finds the count set for a port the map does not hold yet.
  // A conf map that refuses leaves things as they were (the caller retries).
  if (xdp) {
    if (int e = bpf_map_update_elem(xdp_peers_map_, &key, &one, 0)) throw bpf_error("fast tier: xdp peer map", e);
    xdp_peers_.insert(port);
    try {
      write_conf();
    } catch (...) {
      xdp_peers_.erase(port);
      bpf_map_delete_elem(xdp_peers_map_, &key);
      throw;
    }
  } else {
    xdp_peers_.erase(port);
    try {
      write_conf();
    } catch (...) {
      xdp_peers_.insert(port);
      throw;
    }
    bpf_map_delete_elem(xdp_peers_map_, &key);
  }
}

void FastTier::add_mac(uint16_t bd, Mac mac, uint16_t port, bool planned) {
  FdbVal v{0, port, 0};
  if (auto p = ports_.find(port); p != ports_.end() && p->second.bd == bd) {
    v.ifindex = uint32_t(p->second.ifindex);
  } else if (auto t = tunnels_.find(port); t != tunnels_.end() && t->second.bd == bd) {  // behind a remote VTEP
    v.ifindex = uint32_t(t->second.uplink_ifindex);
    v.flags = DPSW_FDB_TUNNEL;
  } else if (uplink_punted_ && port == uplink_port_ && bd == uplink_bd_) {  // behind the uplink
    v.ifindex = uint32_t(uplink_ifindex_);
    v.flags = DPSW_FDB_EGRESS;
  } else {
    return;  // not a fast-tier port or tunnel of that network
  }
  FdbKey k = fdb_key(bd, mac);
  if (int e = bpf_map_update_elem(fdb_map_, &k, &v, 0)) throw bpf_error("fast tier: fdb map", e);
  fdb_[{bd, mac}] = FdbEntry{port, planned};
}

void FastTier::del_fdb(uint16_t bd, Mac mac) {
  FdbKey k = fdb_key(bd, mac);
  bpf_map_delete_elem(fdb_map_, &k);
  fdb_.erase({bd, mac});
}

void FastTier::sync_learned(const std::map<std::pair<uint16_t, Mac>, uint16_t>& learned) {
  for (auto it = fdb_.begin(); it != fdb_.end();) {
    auto next = std::next(it);
    if (!it->second.planned) {
      auto l = learned.find(it->first);
      if (l == learned.end() || l->second != it->second.port) del_fdb(it->first.first, it->first.second);
    }
    it = next;
  }
  for (const auto& [key, port] : learned) {
    auto f = fdb_.find(key);
    if (f != fdb_.end()) continue;  // present (a planned MAC always wins)
    try {
      add_mac(key.first, key.second, port, false);
    } catch (const std::exception&) {  // map full: the frames are punted, still delivered
      refused_++;
    }
  }
}

std::vector<std::pair<std::pair<uint16_t, Mac>, uint16_t>> FastTier::dump_fdb() const {
  std::vector<std::pair<std::pair<uint16_t, Mac>, uint16_t>> out;
  FdbKey k{}, next{};
  const FdbKey* cur = nullptr;
  while (bpf_map_get_next_key(fdb_map_, cur, &next) == 0) {
    FdbVal v{};
    if (bpf_map_lookup_elem(fdb_map_, &next, &v) == 0) out.push_back({{next.bd, mac_from_bytes(next.mac)}, v.port});
    k = next;
    cur = &k;
  }
  return out;
}

std::vector<FastTier::KernelPort> FastTier::dump_ports() const {
  std::vector<KernelPort> out;
  uint32_t k = 0, next = 0;
  const uint32_t* cur = nullptr;
  while (bpf_map_get_next_key(ports_map_, cur, &next) == 0) {
    FastPortVal v{};
    if (bpf_map_lookup_elem(ports_map_, &next, &v) == 0) out.push_back({int(next), v.port, v.bd, int(v.punt)});
    k = next;
    cur = &k;
  }
  return out;
}

FastTier::PortStats FastTier::stats(uint16_t port) const {
  PortStats t;
  const uint32_t id = port;
  std::vector<StatsVal> v(size_t(std::max(libbpf_num_possible_cpus(), 1)));
  if (bpf_map_lookup_elem(stats_map_, &id, v.data()) == 0)
    for (const StatsVal& s : v) {
      t.rx_packets += s.rx_packets;
      t.rx_bytes += s.rx_bytes;
      t.tx_packets += s.tx_packets;
      t.tx_bytes += s.tx_bytes;
      t.punt_share_drops += s.punt_share_drops;
      t.oversize += s.oversize;
    }
  return t;
}

FastTier::Events FastTier::events() const {
  uint64_t out[DPSW_EV_COUNT] = {};
  std::vector<uint64_t> v(size_t(std::max(libbpf_num_possible_cpus(), 1)));
  for (uint32_t k = 0; k < DPSW_EV_COUNT; k++)
    if (bpf_map_lookup_elem(events_map_, &k, v.data()) == 0)
      for (uint64_t x : v) out[k] += x;
  Events e;
  e.punted = out[DPSW_EV_PUNTED];
  e.no_port = out[DPSW_EV_NO_PORT];
  e.punt_bad_tag = out[DPSW_EV_PUNT_BAD_TAG];
  e.punt_no_peer = out[DPSW_EV_PUNT_NO_PEER];
  e.steered = out[DPSW_EV_STEERED];
  e.bad_src = out[DPSW_EV_BAD_SRC];
  e.punt_share = out[DPSW_EV_PUNT_SHARE];
  e.nat_forwarded = out[DPSW_EV_NAT_FORWARDED];
  e.nat_error = out[DPSW_EV_NAT_ERROR];
  e.vxlan_encap = out[DPSW_EV_VXLAN_ENCAP];
  e.vxlan_decap = out[DPSW_EV_VXLAN_DECAP];
  e.vxlan_error = out[DPSW_EV_VXLAN_ERROR];
  e.routed = out[DPSW_EV_ROUTED];
  e.dns_answered = out[DPSW_EV_DNS_ANSWERED];
  return e;
}

void FastTier::sync_routes(const std::map<uint32_t, RouteEntry>& routes,
                           const std::map<std::pair<uint16_t, uint16_t>, std::pair<uint32_t, uint32_t>>& allowed) {
  // Gone first (a pair no longer allowed, an address that moved or left), then new.
  for (auto it = allowed_.begin(); it != allowed_.end();) {
    auto w = allowed.find(it->first);
    if (w == allowed.end() || w->second != it->second) {
      const dpsw_allow_key k{it->first.first, it->first.second};
      bpf_map_delete_elem(allow_map_, &k);
      it = allowed_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto it = routes_.begin(); it != routes_.end();) {
    auto w = routes.find(it->first);
    if (w == routes.end() || !(w->second == it->second)) {
      const uint32_t k = htonl(it->first);
      bpf_map_delete_elem(route_map_, &k);
      it = routes_.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& [ip, r] : routes) {
    auto p = ports_.find(r.port);
    if (routes_.count(ip) || p == ports_.end()) continue;
    const uint32_t k = htonl(ip);
    dpsw_route_val v{};
    v.ifindex = uint32_t(p->second.ifindex);
    v.port = r.port;
    v.bd = r.bd;
    mac_to_bytes(r.mac, v.mac);
    v.mtu = uint16_t(std::min<uint32_t>(r.mtu, 0xffff));
    if (int e = bpf_map_update_elem(route_map_, &k, &v, 0)) throw bpf_error("fast tier: route map", e);
    routes_[ip] = r;
  }
  for (const auto& [pair, prefix] : allowed) {
    if (allowed_.count(pair)) continue;
    const dpsw_allow_key k{pair.first, pair.second};
    const dpsw_allow_val v{htonl(prefix.first), htonl(prefix.second)};
    if (int e = bpf_map_update_elem(allow_map_, &k, &v, 0)) throw bpf_error("fast tier: allow map", e);
    allowed_[pair] = prefix;
  }
}

void FastTier::drop_routes_to(uint16_t port) {
  for (auto it = routes_.begin(); it != routes_.end();) {
    if (it->second.port == port) {
      const uint32_t k = htonl(it->first);
      bpf_map_delete_elem(route_map_, &k);
      it = routes_.erase(it);
    } else {
      ++it;
    }
  }
}

void FastTier::put_tunnel(uint16_t port, const TunnelEntry& t) {
  const uint32_t id = port;
  dpsw_tunnel v{};
  v.vtep = htonl(t.vtep);
  v.local_ip = htonl(t.local_ip);
  v.vni = t.vni;
  v.uplink_ifindex = uint32_t(t.uplink_ifindex);
  mac_to_bytes(t.smac, v.smac);
  mac_to_bytes(t.dmac, v.dmac);
  v.uplink_port = t.uplink_port;
  v.mtu = t.mtu;
  auto old = tunnels_.find(port);
  if (old != tunnels_.end() && (old->second.vni != t.vni || old->second.vtep != t.vtep || old->second.bd != t.bd)) del_tunnel(port);
  if (!tunnels_.count(port)) {  // a reused id starts from zero (stats are per id)
    std::vector<StatsVal> zero(size_t(std::max(libbpf_num_possible_cpus(), 1)), StatsVal{});
    if (int e = bpf_map_update_elem(stats_map_, &id, zero.data(), 0)) throw bpf_error("fast tier: stats map", e);
  }
  // Encapsulation first (its MACs are added later), then what it may decapsulate.
  if (int e = bpf_map_update_elem(tunnels_map_, &id, &v, 0)) throw bpf_error("fast tier: tunnel map", e);
  const dpsw_vni_key vk{t.vni, htonl(t.vtep)};
  const dpsw_vni_val vv{port, t.bd};
  if (int e = bpf_map_update_elem(vni_map_, &vk, &vv, 0)) {
    if (!tunnels_.count(port)) bpf_map_delete_elem(tunnels_map_, &id);
    throw bpf_error("fast tier: VNI map", e);
  }
  tunnels_[port] = t;
}

void FastTier::del_tunnel(uint16_t port) {
  auto it = tunnels_.find(port);
  if (it == tunnels_.end()) return;
  drop_macs_of(port);  // nothing is encapsulated to it any more
  const dpsw_vni_key vk{it->second.vni, htonl(it->second.vtep)};
  bpf_map_delete_elem(vni_map_, &vk);
  const uint32_t id = port;
  bpf_map_delete_elem(tunnels_map_, &id);
  tunnels_.erase(it);
}

bool FastTier::nat_put(const FlowKey& k, const NatEntry& e) {
  const dpsw_nat_key key = nat_key(k);
  dpsw_nat_val v{};
  v.xsaddr = htonl(e.xsip);
  v.xdaddr = htonl(e.xdip);
  v.xsport = htons(e.xsport);
  v.xdport = htons(e.xdport);
  v.ifindex = uint32_t(e.ifindex);
  v.in_port = e.in_port;
  v.out_port = e.out_port;
  mac_to_bytes(e.smac, v.smac);
  mac_to_bytes(e.dmac, v.dmac);
  v.flags = e.peer ? DPSW_NAT_PEER : 0;
  if (int r = bpf_map_update_elem(nat_map_, &key, &v, BPF_ANY)) {
    if (r == -E2BIG || errno == E2BIG) return false;  // full
    throw bpf_error("fast tier: routed-flow map", r);
  }
  return true;
}

namespace {
dpsw_dns_key dns_key(uint16_t bd, const std::string& wire) {
  dpsw_dns_key k{};
  k.bd = bd;
  k.len = uint8_t(std::min<size_t>(wire.size(), DPSW_DNS_NAME_MAX));
  std::memcpy(k.name, wire.data(), k.len);
  return k;
}
}  // namespace

bool FastTier::dns_put(uint16_t bd, const std::string& wire, const DnsEntry& e) {
  if (wire.size() > DPSW_DNS_NAME_MAX) return false;
  const dpsw_dns_key k = dns_key(bd, wire);
  const dpsw_dns_val v{htonl(e.addr), htonl(e.gateway), e.ttl};
  return bpf_map_update_elem(dns_map_, &k, &v, BPF_ANY) == 0;
}

void FastTier::dns_del(uint16_t bd, const std::string& wire) {
  const dpsw_dns_key k = dns_key(bd, wire);
  bpf_map_delete_elem(dns_map_, &k);  // ENOENT: already gone
}

void FastTier::nat_del(const FlowKey& k) {
  const dpsw_nat_key key = nat_key(k);
  bpf_map_delete_elem(nat_map_, &key);  // ENOENT: already gone
}

uint64_t FastTier::nat_last_seen(const FlowKey& k, bool* closed) const {
  const dpsw_nat_key key = nat_key(k);
  dpsw_nat_val v{};
  if (bpf_map_lookup_elem(nat_map_, &key, &v) != 0) return 0;
  if (closed) *closed = *closed || (v.flags & DPSW_NAT_CLOSED);
  return v.last_seen;
}

bool FastTier::nat_has(const FlowKey& k) const {
  const dpsw_nat_key key = nat_key(k);
  dpsw_nat_val v{};
  return bpf_map_lookup_elem(nat_map_, &key, &v) == 0;
}

size_t FastTier::nat_count() const {
  size_t n = 0;
  dpsw_nat_key k{}, next{};
  for (void* cur = nullptr; bpf_map_get_next_key(nat_map_, cur, &next) == 0; cur = &k, n++) k = next;
  return n;
}

void FastTier::set_conf(uint32_t steer_per_ms, const std::vector<int>& steer_cores, Mac router_mac) {
  steer_per_ms_ = steer_per_ms;
  steer_cores_ = steer_cores;  // RPS's order: ascending, once each
  std::sort(steer_cores_.begin(), steer_cores_.end());
  steer_cores_.erase(std::unique(steer_cores_.begin(), steer_cores_.end()), steer_cores_.end());
  router_mac_ = router_mac;
  write_conf();
}

void FastTier::write_conf() {
  const uint32_t zero = 0;
  ConfVal c{};
  c.steer_per_ms = steer_per_ms_;
  const std::vector<int>& cores = steer_cores_;
  if (cores.size() <= DPSW_STEER_MAX_CPUS && (cores.empty() || (cores.front() >= 0 && cores.back() <= 0xffff))) {
    c.steer_ncpus = uint16_t(cores.size());
    for (size_t i = 0; i < cores.size(); i++) c.steer_cpu[i] = uint16_t(cores[i]);
  }
  c.uplink_ifindex = uint32_t(uplink_ifindex_);
  c.uplink_port = uplink_port_;
  mac_to_bytes(router_mac_, c.router_mac);
  mac_to_bytes(uplink_mac_, c.uplink_mac);
  c.uplink_punted = uplink_punted_;
  c.uplink_ip = htonl(uplink_ip_);
  const UplinkPeer& p = uplink_peer_;
  c.uplink_redirect_peer = uplink_into_peer();
  c.uplink_peer_mtu = uint16_t(std::min<uint32_t>(p.mtu, 0xffff));
  mac_to_bytes(p.mac, c.uplink_peer_mac);
  c.xdp_peers = uint32_t(xdp_peers_.size());
  if (int e = bpf_map_update_elem(conf_map_, &zero, &c, 0)) throw bpf_error("fast tier: conf map", e);
}

void FastTier::hook_uplink(int ifindex, const std::string& ifname, int prog_fd) {
  bpf_tc_hook h = ingress_hook(ifindex);
  int e = bpf_tc_hook_create(&h);
  if (e && e != -EEXIST) throw bpf_error("cannot add a clsact qdisc to " + ifname, e);
  uplink_made_qdisc_ = e == 0;
  bpf_tc_opts o = our_filter(prog_fd);
  if ((e = bpf_tc_attach(&h, &o))) {
    if (uplink_made_qdisc_) bpf_tc_hook_destroy(&h);
    throw bpf_error("cannot attach the fast tier's TC program to " + ifname, e);
  }
}

void FastTier::attach_uplink(int ifindex, const std::string& ifname, uint16_t port) {
  if (uplink_ifindex_) return;
  hook_uplink(ifindex, ifname, uplink_fd_);
  uplink_ifindex_ = ifindex;
  uplink_port_ = port;
  write_conf();
}

void FastTier::add_uplink(int ifindex, const std::string& ifname, uint16_t port, uint16_t bd, int punt_ifindex, unsigned worker,
                          uint32_t mtu, Mac mac, uint32_t ip) {
  if (uplink_ifindex_) throw std::logic_error("fast tier: the uplink is registered already");
  const uint32_t key = uint32_t(ifindex), id = port;
  const FastPortVal pv{port, bd, uint32_t(punt_ifindex), uint32_t(worker), mtu, 0, {}, {}, {}};
  const int ncpu = std::max(libbpf_num_possible_cpus(), 1);
  std::vector<StatsVal> zero(size_t(ncpu), StatsVal{});
  if (int e = bpf_map_update_elem(stats_map_, &id, zero.data(), 0)) throw bpf_error("fast tier: stats map", e);
  // Its conf (the MAC routed frames come to, where dpsw's frames for it go)
  // and map entries before the program: no frame of it is ever passed up.
  uplink_ifindex_ = ifindex;
  uplink_port_ = port;
  uplink_mac_ = mac;
  uplink_ip_ = ip;
  uplink_bd_ = bd;
  uplink_punted_ = true;
  try {
    write_conf();
    if (int e = bpf_map_update_elem(ports_map_, &key, &pv, 0)) throw bpf_error("fast tier: ports map", e);
    if (int e = bpf_map_update_elem(peer_map_, &id, &key, 0)) throw bpf_error("fast tier: peer map", e);
    hook_uplink(ifindex, ifname, ingress_fd_);
  } catch (...) {
    detach_uplink();  // whatever of it was done (it never throws)
    throw;
  }
}

void FastTier::set_uplink_peer(const UplinkPeer& p) {
  if (p == uplink_peer_) return;
  const UplinkPeer old = uplink_peer_;
  uplink_peer_ = p;
  try {
    write_conf();
  } catch (...) {
    uplink_peer_ = old;  // retried on the next call
    throw;
  }
}

void FastTier::detach_uplink() {
  if (!uplink_ifindex_) return;
  bpf_tc_hook h = ingress_hook(uplink_ifindex_);
  bpf_tc_opts o = our_filter();
  bpf_tc_detach(&h, &o);  // ours only; the link may be gone already
  if (uplink_made_qdisc_) {
    h.attach_point = bpf_tc_attach_point(BPF_TC_INGRESS | BPF_TC_EGRESS);
    bpf_tc_hook_destroy(&h);
  }
  while (!tunnels_.empty()) del_tunnel(tunnels_.begin()->first);  // they send out of it
  drop_macs_of(uplink_port_);  // so do the MACs behind it
  if (uplink_punted_) {
    const uint32_t key = uint32_t(uplink_ifindex_), id = uplink_port_, zero = 0;
    bpf_map_update_elem(peer_map_, &id, &zero, 0);
    bpf_map_delete_elem(ports_map_, &key);
  }
  uplink_ifindex_ = 0;
  uplink_port_ = 0;
  uplink_mac_ = 0;
  uplink_ip_ = 0;
  uplink_peer_ = {};
  uplink_punted_ = false;
  try {
    write_conf();
  } catch (const std::exception&) {  // teardown: nothing left to tell
  }
}

}  // namespace dpsw

namespace dpsw {
uint32_t* FastTier::punt_share(unsigned worker) { return worker < DPSW_MAX_WORKERS ? &share_[worker].per_ms : nullptr; }
}  // namespace dpsw
