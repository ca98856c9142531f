#include "control/dns/dns.h"

#include <dirent.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>

#include "control/core/ipv4.h"
#include "control/core/log.h"
#include "control/services/services.h"

namespace dpsw {

namespace {
using json = nlohmann::json;

constexpr char kNetnsEtc[] = "/etc/netns";

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return s;
}

std::string marker(const std::string& instance) { return "# Written by dpsw (instance " + instance + ")"; }

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Written whole or not at all: a temporary file renamed over the target.
bool write_file(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".dpsw-tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    if (!(f << text) || !f.flush()) return false;
  }
  return rename(tmp.c_str(), path.c_str()) == 0;
}
}  // namespace

std::vector<uint32_t> Dns::nameservers(const std::string& text) {
  std::vector<uint32_t> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream l(line);
    std::string key, addr;
    if (!(l >> key >> addr) || key != "nameserver") continue;
    auto ip = ipv4_parse(addr);
    if (ip && *ip && (*ip >> 24) != 127 && !std::count(out.begin(), out.end(), *ip)) out.push_back(*ip);
  }
  return out;
}

std::string Dns::resolv_conf(const std::string& instance, uint32_t gateway) {
  return marker(instance) + ": the DNS responder at this namespace's network gateway (a macvlan endpoint's: the host address; an overlay endpoint's: its overlay's gateway).\nnameserver " + ipv4_to_string(gateway) +
         "\noptions ndots:0\n";
}

uint64_t Dns::random_secret() {
  uint64_t s = 0;
  if (getrandom(&s, sizeof s, 0) != sizeof s) s = uint64_t(time(nullptr)) ^ uint64_t(getpid()) << 32;
  return s;
}

std::string Dns::netns_dir(const std::string& netns) const { return std::string(kNetnsEtc) + "/" + netns; }

void Dns::start() {
  // A run of this instance that did not stop cleanly may have left files for
  // namespaces that are gone now (the journal removed them): ours by their
  // first line.
  DIR* d = opendir(kNetnsEtc);
  if (!d) return;
  const std::string mine = marker(core_.cfg_.sw.name) + ":";
  std::vector<std::string> stale;
  while (dirent* e = readdir(d)) {
    const std::string n = e->d_name;
    if (n == "." || n == "..") continue;
    const std::string text = read_file(netns_dir(n) + "/resolv.conf");
    if (text.compare(0, mine.size(), mine) == 0) stale.push_back(n);
  }
  closedir(d);
  for (const auto& n : stale) {
    written_[n] = "";
    remove_file(n);
  }
}

void Dns::remove_file(const std::string& netns) {
  auto it = written_.find(netns);
  if (it == written_.end()) return;
  const std::string dir = netns_dir(netns);
  unlink((dir + "/resolv.conf").c_str());
  rmdir(dir.c_str());  // only if empty: another file there is not ours
  written_.erase(it);
}

void Dns::apply() {
  const DnsConfig& c = core_.cfg_.dns;
  if (c.upstream_set) {
    upstream_ = c.upstream;
    return;
  }
  // The host's, as Docker takes them: /etc/resolv.conf, or behind a local
  // stub (systemd-resolved's 127.0.0.53, not reachable from the uplink) the
  // servers it uses itself.
  std::vector<uint32_t> found = nameservers(read_file("/etc/resolv.conf"));
  if (found.empty()) found = nameservers(read_file("/run/systemd/resolve/resolv.conf"));
  if (found.empty() && c.enabled && core_.cfg_.uplink && found != upstream_)
    LOG_WARN("dns: no upstream server (the host's resolv.conf lists none outside 127/8; set dns.upstream): names other than the "
             "endpoints' are answered SERVFAIL");
  upstream_ = std::move(found);
}

void Dns::reload_check(Reload& r) const {
  if (r.diff.dns_changed) r.applied["dns"] = nlohmann::json::array({"settings"});
}

void Dns::contribute(Snapshot& s) const {
  const Config& cfg = core_.cfg_;
  DnsTable& t = s.dns;
  t.ttl = cfg.dns.ttl;
  t.tcp_secret = tcp_secret_;
  if (!cfg.dns.enabled) return;
  // The relay: other names go upstream through the uplink (its answers
  // come back to the uplink's address, on its segment).
  if (const int up = core_.uplink_bd(); up >= 0 && size_t(up) < s.bds.size() && !upstream_.empty()) {
    t.upstream = upstream_;
    s.bds[size_t(up)].dns_relay = true;
  }
  // The networks whose endpoints have names, and where they ask:
  //  * bridge: the gateway, dpsw's address there;
  //  * macvlan (on the uplink's segment): the host's address, dpsw's too;
  //  * overlay: names for the endpoints on this host, asked at the overlay's
  //    gateway (each host's dpsw answers it for its own endpoints) or at a
  //    bridge network's the asker is also on.
  // Reverse names of a bridge subnet's unused addresses are NXDOMAIN; not an
  // overlay's (the other hosts' endpoints are there) nor a macvlan one's
  // (the uplink's segment: outside hosts), which are relayed.
  t.subnets.assign(s.bds.size(), {0, 0});
  std::vector<bool> named(s.bds.size(), false);
  const int up = core_.uplink_bd();
  for (const NetworkConfig& n : cfg.networks) {
    auto b = core_.bd_of_.find(n.name);
    if (b == core_.bd_of_.end() || b->second >= s.bds.size()) continue;
    BdEntry& bd = s.bds[b->second];
    const bool answers = bd.local_ip && (n.driver != Driver::kMacvlan || int(b->second) == up);
    if (!answers) continue;
    named[b->second] = true;
    bd.dns = true;
    // A macvlan subnet is the uplink's segment, with outside hosts on it: their reverse names are relayed.
    if (n.driver == Driver::kBridge) t.subnets[b->second] = {n.subnet.network(), n.subnet.mask()};
  }
  // Every endpoint's ports on those networks: its names there, and its scope.
  std::map<std::string, std::vector<uint16_t>> by_endpoint;
  for (size_t id = 0; id < core_.ports_.size() && id < s.ports.size(); id++) {
    const PortRec& pr = core_.ports_[id];
    // An endpoint's port in this snapshot (the bridge module's part): one
    // being removed may keep its record a while, never its names.
    if (!s.ports[id].endpoint || pr.endpoint.empty() || !pr.ip || pr.bd >= s.bds.size() || !named[pr.bd]) continue;
    by_endpoint[pr.endpoint].push_back(uint16_t(id));
  }
  auto add_str = [&](const std::string& str) {
    const uint32_t off = uint32_t(t.pool.size());
    t.pool.append(str).push_back('\0');
    return off;
  };
  t.scope.assign(core_.ports_.size(), UINT32_MAX);
  for (const auto& [ep, ids] : by_endpoint) {
    std::vector<std::string> names{lower(ep)};
    if (const EndpointConfig* e = cfg.endpoint(ep))
      for (const auto& a : e->aliases)
        if (!std::count(names.begin(), names.end(), a)) names.push_back(a);
    const uint32_t scope = uint32_t(t.scope_bds.size());
    t.scope_bds.push_back(0);
    for (uint16_t id : ids) {
      const PortRec& pr = core_.ports_[id];
      const std::string net = lower(pr.network);
      for (const auto& n : names)
        for (const std::string& full : {n, n + "." + net})
          t.names.push_back({DnsTable::name_key(pr.bd, full), add_str(full), pr.ip, pr.bd});
      t.ptrs.push_back({uint64_t(pr.bd) << 32 | pr.ip, add_str(names[0] + "." + net)});
      if (!std::count(t.scope_bds.begin() + scope + 1, t.scope_bds.end(), pr.bd)) {
        t.scope_bds.push_back(pr.bd);
        t.scope_bds[scope]++;
      }
      t.scope[id] = scope;
    }
  }
  // Services: a VIP's name answers the VIP (and its reverse name the
  // service); a dnsrr service's answers its backends, rotated.
  for (size_t si = 0; si < cfg.services.size(); si++) {
    const ServiceConfig& svc = cfg.services[si];
    auto bd = core_.bd_of_.find(svc.network);
    if (bd == core_.bd_of_.end() || bd->second >= s.bds.size() || !s.bds[bd->second].dns) continue;
    const std::string net = lower(svc.network);
    auto add = [&](uint32_t ip, bool rotate) {
      for (const std::string& full : {svc.name, svc.name + "." + net})
        t.names.push_back({DnsTable::name_key(bd->second, full), add_str(full), ip, bd->second, rotate});
    };
    if (svc.mode == ServiceConfig::Mode::kVip) {
      const PlannedService* ps = core_.plan_.service(svc.name);
      if (!ps || !ps->vip) continue;
      add(ps->vip, false);
      t.ptrs.push_back({uint64_t(bd->second) << 32 | ps->vip, add_str(svc.name + "." + net)});
    } else {
      const std::set<uint16_t> down(s.services.down.begin(), s.services.down.end());  // (services contribute before us)
      for (uint16_t id : service_backends(core_, s, svc, &down))
        if (std::find(s.services.unhealthy.begin(), s.services.unhealthy.end(), std::pair<uint32_t, uint16_t>(uint32_t(si), id)) ==
            s.services.unhealthy.end())  // failed its health check: not answered either
          add(core_.ports_[id].ip, true);
    }
  }
  // Sorted by key; an alias held by several endpoints keeps its addresses in
  // address order (stable answers).
  std::sort(t.names.begin(), t.names.end(), [](const DnsTable::Name& a, const DnsTable::Name& b) {
    return a.key != b.key ? a.key < b.key : a.ip < b.ip;
  });
  std::sort(t.ptrs.begin(), t.ptrs.end(), [](const DnsTable::Ptr& a, const DnsTable::Ptr& b) { return a.key < b.key; });
}

void Dns::published() {
  const Config& cfg = core_.cfg_;
  std::map<std::string, std::string> want;  // namespace -> resolv.conf
  // Endpoints with a port in the snapshot just published (one being removed
  // is still planned until its links are gone: its file goes first).
  const Snapshot& s = core_.dp_->snapshot();
  std::set<std::string> live;
  for (size_t id = 0; id < core_.ports_.size() && id < s.ports.size(); id++)
    if (s.ports[id].endpoint) live.insert(core_.ports_[id].endpoint);
  if (cfg.dns.enabled && cfg.dns.resolv_conf)
    for (const auto& ep : core_.plan_.endpoints) {
      if (!ep.create_netns || ep.netns_name.empty() || !live.count(ep.name)) continue;
      // Its first bridge network's gateway, else (a macvlan endpoint) the
      // host's address, else its first overlay's gateway.
      uint32_t server = 0, overlay = 0;
      for (const auto& a : ep.attachments) {
        const NetworkConfig* n = cfg.network(a.network);
        if (!n) continue;
        if (n->driver == Driver::kBridge) {
          server = n->gateway;
          break;
        }
        if (n->driver == Driver::kMacvlan && !server && cfg.uplink) server = cfg.uplink->address.addr;
        if (n->driver == Driver::kOverlay && !overlay) overlay = n->gateway;
      }
      if (!server) server = overlay;
      if (server) want[ep.netns_name] = resolv_conf(cfg.sw.name, server);
    }
  for (auto it = written_.begin(); it != written_.end();) {
    const std::string ns = (it++)->first;  // remove_file() erases it
    if (!want.count(ns)) remove_file(ns);
  }
  const std::string mine = marker(cfg.sw.name) + ":";
  for (const auto& [ns, text] : want) {
    auto it = written_.find(ns);
    if (it != written_.end() && it->second == text) continue;
    const std::string dir = netns_dir(ns);
    if (it == written_.end() && access((dir + "/resolv.conf").c_str(), F_OK) == 0 &&
        read_file(dir + "/resolv.conf").compare(0, mine.size(), mine) != 0) {  // the user's own: left alone
      if (foreign_.insert(ns).second) LOG_WARN("dns: %s/resolv.conf is not dpsw's: left as it is", dir.c_str());
      continue;
    }
    mkdir(kNetnsEtc, 0755);
    mkdir(dir.c_str(), 0755);
    if (!write_file(dir + "/resolv.conf", text)) {
      LOG_WARN("dns: cannot write %s/resolv.conf: %s", dir.c_str(), strerror(errno));
      continue;
    }
    written_[ns] = text;
  }
}

void Dns::stop() {
  while (!written_.empty()) remove_file(written_.begin()->first);
}

void Dns::views(ViewRegistry& r) {
  using view::col, view::table;
  r.entries.push_back({{"dns", "", "names the DNS responder answers (each network's, at its gateway)",
                        {table("", {col("NAME", "name"), col("NETWORK", "network"), col("ADDRESS", "address")})
                             .or_else("no names (dns disabled, or no endpoint on a bridge, macvlan or overlay network)")}},
                       0, [&] {
                         json out = json::array();
                         const Snapshot& s = core_.dp_->snapshot();
                         std::vector<std::tuple<std::string, std::string, std::string>> rows;
                         for (const auto& n : s.dns.names)
                           rows.emplace_back(s.dns.str(n.name), n.bd < s.bds.size() ? s.bds[n.bd].name : "?", ipv4_to_string(n.ip));
                         std::sort(rows.begin(), rows.end());
                         for (const auto& [name, net, ip] : rows) out.push_back({{"name", name}, {"network", net}, {"address", ip}});
                         return out;
                       }});
}

void Dns::counters(json& out) const {
  uint64_t q = 0, a = 0, nd = 0, nx = 0, err = 0, fw = 0, rl = 0, to = 0, sf = 0;
  for (unsigned w = 0; w < core_.dp_->workers(); w++) {
    const WorkerCounters::Dns& d = core_.dp_->worker(w).counters().dns;
    q += d.queries.get(), a += d.answered.get(), nd += d.nodata.get(), nx += d.nxdomain.get(), err += d.errors.get();
    fw += d.forwarded.get(), rl += d.relayed.get(), to += d.upstream_timeouts.get(), sf += d.servfail.get();
  }
  // The kernel tier's answers (plain A queries for names it holds: the fast
  // module, before this one, has written its counters) count as answers too.
  uint64_t k = 0;
  if (auto f = out.find("fast_tier"); f != out.end() && f->is_object()) k = f->value("dns_answered", uint64_t(0));
  out["dns"] = {{"queries", q + k}, {"answered", a + k}, {"answered_in_kernel", k}, {"nodata", nd}, {"nxdomain", nx}, {"errors", err},
                {"forwarded", fw}, {"relayed", rl}, {"upstream_timeouts", to}, {"servfail", sf}};
}

}  // namespace dpsw
