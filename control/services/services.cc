#include "control/services/services.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

#include "control/core/ipv4.h"
#include "control/core/log.h"
#include "control/core/netlink.h"
#include "dataplane/services/maglev.h"

namespace dpsw {

namespace {
using json = nlohmann::json;
}

std::vector<uint16_t> service_backends(const Core& core, const Snapshot& s, const ServiceConfig& svc, const std::set<uint16_t>* down) {
  auto bd = core.bd_of_.find(svc.network);
  if (bd == core.bd_of_.end()) return {};
  std::vector<std::pair<std::string, uint16_t>> found;
  for (size_t id = 0; id < core.ports_.size() && id < s.ports.size(); id++) {
    const PortRec& pr = core.ports_[id];
    if (!s.ports[id].endpoint || pr.bd != bd->second || !pr.ip || (down && down->count(uint16_t(id)))) continue;
    bool match = false;
    if (!svc.backend_names.empty()) {
      match = std::count(svc.backend_names.begin(), svc.backend_names.end(), pr.endpoint) > 0;
    } else if (const EndpointConfig* e = core.cfg_.endpoint(pr.endpoint)) {
      match = std::all_of(svc.backend_labels.begin(), svc.backend_labels.end(), [&](const auto& kv) {
        auto it = e->labels.find(kv.first);
        return it != e->labels.end() && it->second == kv.second;
      });
    }
    if (match) found.emplace_back(pr.endpoint, uint16_t(id));
  }
  std::sort(found.begin(), found.end());
  std::vector<uint16_t> out;
  for (const auto& f : found) out.push_back(f.second);
  return out;
}

void Services::reload_check(Reload& r) const {
  if (r.diff.services_changed) r.applied["services"] = json::array({"changed"});
}

void Services::contribute(Snapshot& s) const {
  const Config& cfg = core_.cfg_;
  ServiceTable& st = s.services;
  st.backend_ports.assign(s.ports.size(), {});
  std::vector<std::pair<const ServiceConfig*, VipService>> vips;
  std::map<std::string, Cached> keep;
  for (const ServiceConfig& svc : cfg.services) {
    const PlannedService* ps = core_.plan_.service(svc.name);
    const NetworkConfig* net = cfg.network(svc.network);
    auto bd = core_.bd_of_.find(svc.network);
    if (svc.mode != ServiceConfig::Mode::kVip || !ps || !ps->vip || !net || bd == core_.bd_of_.end() || bd->second >= s.bds.size()) continue;
    VipService v;
    v.vip = ps->vip;
    v.bd = bd->second;
    v.gateway = net->gateway;
    v.router_mac = s.bds[v.bd].router_mac;
    for (const Publish& p : svc.ports) v.ports.push_back(SvcPort{p.proto, p.host_lo, p.host_hi, p.ctr_lo});
    std::vector<uint64_t> keys;
    for (uint16_t id : service_backends(core_, s, svc, &down_)) {
      if (unhealthy_.count({svc.name, id})) continue;  // failed its health check
      const PortRec& pr = core_.ports_[id];
      v.backends.push_back(ServiceBackend{pr.ip, id, pr.mac});
      keys.push_back(Maglev::key_of(pr.endpoint.c_str()));
      s.ports[id].svc_backend = true;
      for (const SvcPort& sp : v.ports) st.backend_ports[id].push_back(sp);
    }
    Cached c;
    if (auto it = tables_.find(svc.name); it != tables_.end() && it->second.keys == keys) c = it->second;
    else if (!keys.empty()) c = Cached{keys, std::make_shared<const std::vector<uint16_t>>(Maglev::build(keys))};
    v.table = c.table;
    keep[svc.name] = c;
    s.bds[v.bd].vips.push_back(v.vip);
    vips.emplace_back(&svc, std::move(v));
  }
  tables_ = std::move(keep);  // the services gone take their tables with them
  for (size_t id = 0; id < st.backend_ports.size(); id++) {
    auto& now = st.backend_ports[id];
    auto f = former_.find(uint16_t(id));
    if (!s.ports[id].endpoint) {  // its endpoint is gone (or going): nothing to keep
      if (f != former_.end()) former_.erase(f);
      continue;
    }
    if (!now.empty()) {  // remembered for when it stops being one
      std::vector<SvcPort>& keep_ranges = former_[uint16_t(id)];
      for (const SvcPort& p : now)
        if (std::none_of(keep_ranges.begin(), keep_ranges.end(), [&](const SvcPort& q) { return q.proto == p.proto && q.target == p.target && q.hi - q.lo == p.hi - p.lo; }))
          keep_ranges.push_back(p);
    }
    if (f != former_.end() || former_.count(uint16_t(id))) {
      for (const SvcPort& p : former_[uint16_t(id)])
        if (std::none_of(now.begin(), now.end(), [&](const SvcPort& q) { return q.proto == p.proto && q.target == p.target && q.hi - q.lo == p.hi - p.lo; }))
          now.push_back(p);
      s.ports[id].svc_backend = true;
    }
  }
  st.down.assign(down_.begin(), down_.end());
  for (size_t i = 0; i < cfg.services.size(); i++)
    for (const auto& u : unhealthy_)
      if (u.first == cfg.services[i].name) st.unhealthy.emplace_back(uint32_t(i), u.second);
  std::sort(vips.begin(), vips.end(), [](const auto& a, const auto& b) { return a.second.vip < b.second.vip; });
  for (auto& [svc, v] : vips) {
    const int32_t index = int32_t(st.vips.size());
    for (const Publish& p : svc->publish) {  // ingress: host port(s) on the uplink -> the VIP's port(s) -> a backend
      L3Conf& l3 = s.l3;
      l3.pub.push_back(PubRule{p.host_lo, p.ctr_lo, v.vip, 0, v.bd, 0, v.router_mac, v.gateway, index});
      auto& idx = p.proto == 6 ? l3.pub_tcp : l3.pub_udp;
      if (idx.empty()) idx.assign(65536, 0);
      for (uint32_t port = p.host_lo; port <= p.host_hi; port++) idx[port] = uint16_t(l3.pub.size());
    }
    st.vips.push_back(std::move(v));
  }
}

bool Services::probe(uint16_t port, uint16_t tcp_port) const {
  const PortRec& pr = core_.ports_[port];
  auto ep = std::find_if(core_.plan_.endpoints.begin(), core_.plan_.endpoints.end(), [&](const auto& e) { return e.name == pr.endpoint; });
  if (ep == core_.plan_.endpoints.end() || ep->netns_path.empty()) return true;  // no namespace of ours to look from (a runtime's): healthy
  bool ok = false;
  try {
    Fd ns(netns::open_path(ep->netns_path));
    in_netns(ns.fd, [&] {
      Fd s(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
      if (s.fd < 0) return;
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(tcp_port);
      a.sin_addr.s_addr = htonl(pr.ip);
      if (connect(s.fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
        ok = true;
        return;
      }
      if (errno != EINPROGRESS) return;
      pollfd p{s.fd, POLLOUT, 0};
      int err = 0;
      socklen_t len = sizeof err;
      ok = poll(&p, 1, 200) == 1 && getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;  // its own address: at once
    });
  } catch (const std::exception&) {
  }
  return ok;
}

void Services::health(uint32_t now, bool* changed) {
  const Snapshot& s = core_.dp_->snapshot();
  std::set<std::pair<std::string, uint16_t>> bad;
  for (const ServiceConfig& svc : core_.cfg_.services) {
    if (!svc.health_port) continue;
    auto last = probed_ms_.find(svc.name);
    if (last != probed_ms_.end() && now - last->second < svc.health_interval_s * 1000) {  // not due: as last time
      for (const auto& u : unhealthy_)
        if (u.first == svc.name) bad.insert(u);
      continue;
    }
    probed_ms_[svc.name] = now;
    for (uint16_t id : service_backends(core_, s, svc, &down_))
      if (!probe(id, svc.health_port)) bad.insert({svc.name, id});
  }
  for (const auto& u : bad)
    if (!unhealthy_.count(u)) LOG_INFO("services: %s: backend %s failed its health check: out of the table", u.first.c_str(), core_.ports_[u.second].endpoint.c_str());
  for (const auto& u : unhealthy_)
    if (!bad.count(u) && u.second < core_.ports_.size())
      LOG_INFO("services: %s: backend %s passes its health check again", u.first.c_str(), core_.ports_[u.second].endpoint.c_str());
  if (bad != unhealthy_) {
    unhealthy_ = std::move(bad);
    *changed = true;
  }
}

void Services::tick(uint32_t now) {
  if (core_.cfg_.services.empty() || now - checked_ms_ < 1000) return;
  checked_ms_ = now;
  // Every port that is (or would be) some service's backend: its host end's
  // carrier says whether the container's end is up.
  const Snapshot& s = core_.dp_->snapshot();
  std::set<uint16_t> down;
  Rtnl rt;
  for (const ServiceConfig& svc : core_.cfg_.services)
    for (uint16_t id : service_backends(core_, s, svc)) {
      const PortRec& pr = core_.ports_[id];
      if ((pr.kind == PortRec::Kind::kAfxdp || pr.kind == PortRec::Kind::kFast) && !rt.link_lower_up(pr.host_ifname)) down.insert(id);
    }
  bool changed = false;
  health(now, &changed);
  if (down == down_ && !changed) return;
  for (uint16_t id : down)
    if (!down_.count(id)) LOG_INFO("services: backend %s: its link is down, out of its services' tables", core_.ports_[id].endpoint.c_str());
  for (uint16_t id : down_)
    if (!down.count(id) && id < core_.ports_.size()) LOG_INFO("services: backend %s: its link is up again", core_.ports_[id].endpoint.c_str());
  down_ = std::move(down);
  core_.publish_snapshot();
}

json Services::add(const ServiceConfig& svc) {
  if (core_.cfg_.service(svc.name)) throw ConfigError("service add: service '" + svc.name + "' exists");
  Config next = core_.cfg_;
  next.services.push_back(svc);
  check_config(next);
  Plan np = make_plan(next, &core_.plan_);  // every endpoint keeps its address, every service its VIP
  core_.check_modules(next, np);
  core_.cfg_ = std::move(next);
  core_.plan_ = std::move(np);
  core_.publish_snapshot();
  const PlannedService* ps = core_.plan_.service(svc.name);
  LOG_INFO("service %s added%s%s", svc.name.c_str(), ps && ps->vip ? ": VIP " : "", ps && ps->vip ? ipv4_to_string(ps->vip).c_str() : "");
  return {{"service", svc.name}, {"vip", ps && ps->vip ? ipv4_to_string(ps->vip) : ""}};
}

json Services::del(const std::string& name) {
  if (!core_.cfg_.service(name)) throw ConfigError("service del: unknown service '" + name + "'");
  auto gone = [&](auto& v) { v.erase(std::remove_if(v.begin(), v.end(), [&](const auto& x) { return x.name == name; }), v.end()); };
  gone(core_.cfg_.services);
  gone(core_.plan_.services);
  core_.publish_snapshot();  // its VIP stops answering; its connections keep their backends until they end
  LOG_INFO("service %s removed", name.c_str());
  return {{"service", name}};
}

void Services::verbs(VerbRegistry& r) {
  r.add("service add", [this](const VerbRegistry::Request& q) { return add(parse_service_item(q.spec(), "service add")); });
  r.add("service del", [this](const VerbRegistry::Request& q) { return del(q.name()); });
}

void Services::views(ViewRegistry& r) {
  using view::col, view::table;
  r.entries.push_back({{"services", "", "services: virtual IP or DNS round robin, their ports and backends",
                        {table("", {col("NAME", "name"), col("NETWORK", "network"), col("MODE", "mode"), col("VIP", "vip"),
                                    col("PORTS", "ports"), col("BACKENDS", "backends")})
                             .or_else("no services")}},
                       0, [&] {
                         json out = json::array();
                         const Snapshot& s = core_.dp_->snapshot();
                         for (const ServiceConfig& svc : core_.cfg_.services) {
                           const PlannedService* ps = core_.plan_.service(svc.name);
                           std::string ports, backends;
                           for (const Publish& p : svc.ports) {
                             const std::string r = std::to_string(p.host_lo) + (p.host_hi != p.host_lo ? "-" + std::to_string(p.host_hi) : "");
                             ports += (ports.empty() ? "" : ",") + r + (p.ctr_lo != p.host_lo ? "->" + std::to_string(p.ctr_lo) : "") +
                                      (p.proto == 6 ? "/tcp" : "/udp");
                           }
                           json list = json::array();
                           for (uint16_t id : service_backends(core_, s, svc, &down_)) {
                             if (unhealthy_.count({svc.name, id})) continue;  // in the table only when healthy
                             list.push_back({{"endpoint", core_.ports_[id].endpoint}, {"ip", ipv4_to_string(core_.ports_[id].ip)}});
                             backends += (backends.empty() ? "" : ",") + core_.ports_[id].endpoint;
                           }
                           out.push_back({{"name", svc.name}, {"network", svc.network},
                                          {"mode", svc.mode == ServiceConfig::Mode::kVip ? "vip" : "dnsrr"},
                                          {"vip", ps && ps->vip ? ipv4_to_string(ps->vip) : "-"}, {"ports", ports.empty() ? "-" : ports},
                                          {"backends", backends.empty() ? "-" : backends}, {"backend_list", list}});
                         }
                         return out;
                       }});
}

}  // namespace dpsw
