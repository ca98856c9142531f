#include "control/core/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "control/bridge/ipam.h"
#include "dataplane/core/packet.h"

namespace dpsw {

namespace {

// Strict view of a YAML mapping: remembers which keys were read and rejects
// the rest, so a typo is an error, not a silently ignored setting.
class Map {
 public:
  Map(const YAML::Node& n, std::string where, const std::string& origin, bool lines = true)
      : n_(n), where_(std::move(where)), origin_(origin), lines_(lines) {
    if (!n.IsMap()) fail(n, where_.empty() ? "item" : where_, "expected a mapping");
    // yaml-cpp keeps both copies of a repeated key and n[key] returns the
    // first: a second value would be silently ignored.
    std::unordered_map<std::string, int> first;
    for (const auto& kv : n_) {
      if (!kv.first.IsScalar()) fail(kv.first, key("?"), "keys must be plain names");
      auto [it, fresh] = first.emplace(kv.first.Scalar(), kv.first.Mark().line + 1);
      if (!fresh)
        fail(kv.first, key(kv.first.Scalar()), "given twice" + (lines_ ? " (first at line " + std::to_string(it->second) + ")" : std::string()));
    }
  }
  YAML::Node get(const std::string& key) {
    seen_.insert(key);
    return n_[key];
  }
  std::string key(const std::string& k) const { return where_.empty() ? k : where_ + "." + k; }
  void finish() const {
    for (const auto& kv : n_) {
      std::string k = kv.first.as<std::string>();
      if (!seen_.count(k)) fail(kv.first, key(k), "unknown key");
    }
  }
  [[noreturn]] void fail(const YAML::Node& at, const std::string& key, const std::string& msg) const {
    throw ConfigError(origin_ + (lines_ ? ":" + std::to_string(at.Mark().line + 1) : std::string()) + ": " + key + ": " + msg);
  }
  const std::string& origin() const { return origin_; }
  bool lines() const { return lines_; }
  const std::string& where() const { return where_; }
  // Remember where each key (and each element of a list value) sits.
  ItemSource source() const {
    ItemSource src{origin_, where_, lines_ ? n_.Mark().line + 1 : 0, {}};
    if (!lines_) return src;
    for (const auto& kv : n_) {
      std::string k = kv.first.as<std::string>();
      src.key_lines[k] = kv.first.Mark().line + 1;
      if (kv.second.IsSequence())
        for (size_t i = 0; i < kv.second.size(); i++) src.key_lines[k + "[" + std::to_string(i) + "]"] = kv.second[i].Mark().line + 1;
    }
    return src;
  }

 private:
  YAML::Node n_;
  std::string where_;
  const std::string& origin_;
  bool lines_;
  std::set<std::string> seen_;
};

std::string scalar(Map& m, const YAML::Node& n, const std::string& key) {
  if (!n.IsScalar()) m.fail(n, key, "expected a single value");
  return n.Scalar();
}

uint64_t integer(Map& m, const YAML::Node& n, const std::string& key, uint64_t lo, uint64_t hi) {
  std::string s = scalar(m, n, key);
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(s.c_str(), &end, 10);
  if (s.empty() || *end || errno || s[0] == '-' || v < lo || v > hi)
    m.fail(n, key, "'" + s + "' is not a whole number in " + std::to_string(lo) + ".." + std::to_string(hi));
  return v;
}

bool boolean(Map& m, const YAML::Node& n, const std::string& key) {
  std::string s = scalar(m, n, key);
  if (s == "true" || s == "yes" || s == "on") return true;
  if (s == "false" || s == "no" || s == "off") return false;
  m.fail(n, key, "'" + s + "' is not true or false");
}

// fast_path: auto | off (the in-kernel tier, or AF_XDP for every frame).
bool fast_path(Map& m, const YAML::Node& n) {
  const std::string key = m.key("fast_path");
  std::string s = scalar(m, n, key);
  if (s != "auto" && s != "off") m.fail(n, key, "'" + s + "' is not one of auto, off");
  return s == "auto";
}

bool valid_name(const std::string& s, size_t max) {
  if (s.empty() || s.size() > max) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return std::isalnum((unsigned char)c) || c == '-' || c == '_' || c == '.'; }) &&
         std::isalnum((unsigned char)s[0]);
}

// A list of distinct core numbers (`workers`, `fast_path_steering.cores`, `control_cores`).
std::vector<int> cores(Map& m, const YAML::Node& v, const std::string& key, bool non_empty) {
  if (!v.IsSequence() || (non_empty && v.size() == 0))
    m.fail(v, key, non_empty ? "expected a non-empty list of core numbers" : "expected a list of core numbers");
  std::vector<int> out;
  for (size_t i = 0; i < v.size(); i++) {
    int c = int(integer(m, v[i], key + "[" + std::to_string(i) + "]", 0, 1023));
    if (std::count(out.begin(), out.end(), c)) m.fail(v[i], key, "core " + std::to_string(c) + " is listed twice");
    out.push_back(c);
  }
  return out;
}

void parse_switch(Map& top, const YAML::Node& n, SwitchConfig& sw) {
  Map m(n, "switch", top.origin());
  if (auto v = m.get("name")) {
    sw.name = scalar(m, v, m.key("name"));
    if (!valid_name(sw.name, 6) || sw.name.find('.') != std::string::npos)
      m.fail(v, m.key("name"), "'" + sw.name + "' must be 1-6 letters, digits, '-' or '_' (it prefixes link names)");
  }
  if (auto v = m.get("workers")) {
    if (v.IsSequence() && v.size() > 64) m.fail(v, m.key("workers"), "at most 64 workers");
    sw.workers = cores(m, v, m.key("workers"), true);
  }
  if (auto v = m.get("control_socket")) sw.control_socket = scalar(m, v, m.key("control_socket"));
  if (auto v = m.get("state_dir")) sw.state_dir = scalar(m, v, m.key("state_dir"));
  if (auto v = m.get("persist_dir")) {
    sw.persist_dir = scalar(m, v, m.key("persist_dir"));
    if (sw.persist_dir.empty() || sw.persist_dir[0] != '/') m.fail(v, m.key("persist_dir"), "'" + sw.persist_dir + "' is not an absolute path");
  }
  if (auto v = m.get("idle")) {
    std::string s = scalar(m, v, m.key("idle"));
    if (s != "poll" && s != "block" && s != "auto") m.fail(v, m.key("idle"), "'" + s + "' is not one of auto, poll, block");
    if (s != "auto") sw.idle_block = s == "block";
  }
  if (auto v = m.get("fast_path")) sw.fast_path = fast_path(m, v);
  if (auto v = m.get("fast_path_steering")) {
    Map t(v, m.key("fast_path_steering"), top.origin());
    if (auto c = t.get("cores")) sw.steer_cores = cores(t, c, t.key("cores"), false);
    if (auto p = t.get("above_pps")) sw.steer_above_pps = uint32_t(integer(t, p, t.key("above_pps"), 1000, 100000000));
    t.finish();
  }
  if (auto v = m.get("control_cores")) sw.control_cores = cores(m, v, m.key("control_cores"), true);
  if (auto v = m.get("idle_after_us")) sw.idle_after_us = uint32_t(integer(m, v, m.key("idle_after_us"), 0, 10000000));
  if (auto v = m.get("mac_table")) {
    Map t(v, m.key("mac_table"), top.origin());
    if (auto s = t.get("size")) sw.mac_table_size = uint32_t(integer(t, s, t.key("size"), 16, 16u << 20));
    if (auto s = t.get("aging_s")) sw.mac_aging_s = uint32_t(integer(t, s, t.key("aging_s"), 1, 1000000));
    t.finish();
  }
  if (auto v = m.get("conntrack")) {
    Map t(v, m.key("conntrack"), top.origin());
    if (auto s = t.get("size")) sw.conntrack_size = uint32_t(integer(t, s, t.key("size"), 16, 64u << 20));
    if (auto to = t.get("timeouts")) {
      Map tm(to, t.key("timeouts"), top.origin());
      auto sec = [&](const char* k, uint32_t* out) {
        if (auto x = tm.get(k)) *out = uint32_t(integer(tm, x, tm.key(k), 1, 864000));
      };
      sec("tcp_established", &sw.ct_tcp_established);
      sec("tcp_transitory", &sw.ct_tcp_transitory);
      sec("tcp_syn_sent", &sw.ct_tcp_syn_sent);
      sec("tcp_syn_recv", &sw.ct_tcp_syn_recv);
      sec("other", &sw.ct_other);
      sec("udp", &sw.ct_udp);
      sec("icmp", &sw.ct_icmp);
      tm.finish();
    }
    t.finish();
  }
  m.finish();
}

// The required `name` of a list item (network, endpoint).
std::string required_name(Map& m, const YAML::Node& item, YAML::Node* name_node) {
  *name_node = m.get("name");
  if (!*name_node) m.fail(item, m.key("name"), "required key missing");
  return scalar(m, *name_node, m.key("name"));
}

// A list of port mappings: "HOST[-HOST2]:CONTAINER[-CONTAINER2][/tcp|udp]"
// (publish:), or with `bare` false also "PORT[-PORT2][/tcp|udp]" meaning the
// same port(s) on both sides (a service's ports:).
std::vector<Publish> port_maps(Map& m, const YAML::Node& v, const std::string& name, bool need_colon) {
  if (!v.IsSequence()) m.fail(v, m.key(name), need_colon ? "expected a list like [\"8080:80/tcp\"]" : "expected a list like [\"80/tcp\"]");
  std::vector<Publish> out;
  for (size_t i = 0; i < v.size(); i++) {
    std::string key = m.key(name + "[" + std::to_string(i) + "]");
    std::string s = scalar(m, v[i], key);
    auto bad = [&] {
      m.fail(v[i], key, "'" + s + "' is not " + (need_colon ? "HOST[-HOST2]:CONTAINER[-CONTAINER2]" : "PORT[-PORT2][:TARGET[-TARGET2]]") +
                            "[/tcp|udp] with ports 1..65535");
    };
    Publish p;
    std::string body = s;
    if (auto slash = s.find('/'); slash != std::string::npos) {
      std::string proto = s.substr(slash + 1);
      body = s.substr(0, slash);
      if (proto == "tcp") p.proto = 6;
      else if (proto == "udp") p.proto = 17;
      else bad();
    }
    auto colon = body.find(':');
    if (colon == std::string::npos && need_colon) bad();
    auto range = [&](const std::string& r, uint16_t* lo, uint16_t* hi) {
      auto dash = r.find('-');
      auto num = [&](const std::string& x) {
        char* end = nullptr;
        unsigned long n = std::strtoul(x.c_str(), &end, 10);
        if (x.empty() || *end || n < 1 || n > 65535) bad();
        return uint16_t(n);
      };
      *lo = num(r.substr(0, dash));
      *hi = dash == std::string::npos ? *lo : num(r.substr(dash + 1));
      if (*hi < *lo) bad();
    };
    uint16_t chi;
    range(body.substr(0, colon), &p.host_lo, &p.host_hi);
    if (colon == std::string::npos) p.ctr_lo = p.host_lo, chi = p.host_hi;
    else range(body.substr(colon + 1), &p.ctr_lo, &chi);
    if (chi - p.ctr_lo != p.host_hi - p.host_lo)
      m.fail(v[i], key, "'" + s + "': the " + (need_colon ? "host and container" : "two") + " ranges must be the same length");
    out.push_back(p);
  }
  return out;
}

void parse_service(Map& m, const YAML::Node& n, ServiceConfig& svc) {
  svc.src = m.source();
  auto name = m.get("name");
  if (!name) m.fail(n, m.key("name"), "required key missing");
  svc.name = scalar(m, name, m.key("name"));
  if (!valid_dns_name(svc.name) || svc.name.size() > 63 || svc.name.find('.') != std::string::npos)
    m.fail(name, m.key("name"), "'" + svc.name + "' is not a service name (1 to 63 letters, digits, '-' or '_')");
  std::transform(svc.name.begin(), svc.name.end(), svc.name.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  auto net = m.get("network");
  if (!net) m.fail(n, m.key("network"), "required key missing");
  svc.network = scalar(m, net, m.key("network"));
  if (auto v = m.get("mode")) {
    std::string s = scalar(m, v, m.key("mode"));
    if (s == "vip") svc.mode = ServiceConfig::Mode::kVip;
    else if (s == "dnsrr") svc.mode = ServiceConfig::Mode::kDnsrr;
    else m.fail(v, m.key("mode"), "'" + s + "' is not one of vip, dnsrr");
  }
  if (auto v = m.get("vip")) {
    std::string s = scalar(m, v, m.key("vip"));
    auto a = ipv4_parse(s);
    if (!a) m.fail(v, m.key("vip"), "'" + s + "' is not an IPv4 address");
    if (svc.mode == ServiceConfig::Mode::kDnsrr) m.fail(v, m.key("vip"), "mode dnsrr has no virtual IP");
    svc.vip = *a;
  }
  if (auto v = m.get("ports")) svc.ports = port_maps(m, v, "ports", false);
  if (svc.mode == ServiceConfig::Mode::kVip && svc.ports.empty())
    m.fail(n, m.key("ports"), "mode vip needs ports (like [\"80/tcp\"]): connections to them are balanced");
  auto b = m.get("backends");
  if (!b) m.fail(n, m.key("backends"), "required key missing");
  if (b.IsSequence()) {
    for (size_t i = 0; i < b.size(); i++) {
      std::string e = scalar(m, b[i], m.key("backends[" + std::to_string(i) + "]"));
      if (std::count(svc.backend_names.begin(), svc.backend_names.end(), e))
        m.fail(b[i], m.key("backends[" + std::to_string(i) + "]"), "'" + e + "' is given twice");
      svc.backend_names.push_back(e);
    }
  } else if (b.IsMap()) {
    Map bm(b, m.key("backends"), m.origin(), m.lines());
    auto l = bm.get("labels");
    if (!l || !l.IsMap() || l.size() == 0) bm.fail(b, bm.key("labels"), "expected a list of endpoint names or { labels: { KEY: VALUE } }");
    for (auto it = l.begin(); it != l.end(); ++it) {
      const std::string k = scalar(bm, it->first, bm.key("labels"));
      svc.backend_labels[k] = scalar(bm, it->second, bm.key("labels." + k));
    }
    bm.finish();
  } else {
    m.fail(b, m.key("backends"), "expected a list of endpoint names or { labels: { KEY: VALUE } }");
  }
  if (auto v = m.get("health_check")) {
    Map hm(v, m.key("health_check"), m.origin(), m.lines());
    auto port = hm.get("port");
    if (port) svc.health_port = uint16_t(integer(hm, port, hm.key("port"), 1, 65535));
    else if (!svc.ports.empty() && svc.ports[0].proto == 6) svc.health_port = svc.ports[0].ctr_lo;  // the first (TCP) port's backends' port
    else hm.fail(v, hm.key("port"), "required without a TCP port in ports (the backends' port to connect to)");
    if (auto i = hm.get("interval_s")) svc.health_interval_s = uint32_t(integer(hm, i, hm.key("interval_s"), 1, 3600));
    hm.finish();
  }
  if (auto v = m.get("publish")) {
    if (svc.mode == ServiceConfig::Mode::kDnsrr) m.fail(v, m.key("publish"), "mode dnsrr has no virtual IP to publish (as Docker's)");
    svc.publish = port_maps(m, v, "publish", true);
    for (size_t i = 0; i < svc.publish.size(); i++) {
      const Publish& p = svc.publish[i];
      const bool served = std::any_of(svc.ports.begin(), svc.ports.end(), [&](const Publish& q) {
        return q.proto == p.proto && p.ctr_lo >= q.host_lo && p.ctr_lo + (p.host_hi - p.host_lo) <= q.host_hi;
      });
      if (!served) m.fail(v[i], m.key("publish[" + std::to_string(i) + "]"), "'" + publish_to_string(p) + "': the service has no such port in ports");
    }
  }
  m.finish();
}

void parse_network(Map& m, const YAML::Node& n, NetworkConfig& net) {
  net.src = m.source();
  YAML::Node name;
  net.name = required_name(m, n, &name);
  if (!valid_name(net.name, 64)) m.fail(name, m.key("name"), "'" + net.name + "' is not a valid network name");
  if (auto v = m.get("driver")) {
    std::string d = scalar(m, v, m.key("driver"));
    if (d == "bridge") net.driver = Driver::kBridge;
    else if (d == "overlay") net.driver = Driver::kOverlay;
    else if (d == "macvlan") net.driver = Driver::kMacvlan;
    else m.fail(v, m.key("driver"), "'" + d + "' is not one of bridge, overlay, macvlan");
  }
  auto subnet = m.get("subnet");
  if (!subnet) m.fail(n, m.key("subnet"), "required key missing");
  std::string s = scalar(m, subnet, m.key("subnet"));
  auto p = prefix_parse(s);
  if (!p) m.fail(subnet, m.key("subnet"), "'" + s + "' is not an IPv4 prefix like 172.20.0.0/24");
  if (p->len > 30) m.fail(subnet, m.key("subnet"), "'" + s + "' is too small (at most /30)");
  if (p->addr != p->network()) m.fail(subnet, m.key("subnet"), "'" + s + "' has host bits set (did you mean " + prefix_to_string({p->network(), p->len}) + "?)");
  net.subnet = *p;
  net.gateway = p->network() + 1;
  if (auto v = m.get("gateway")) {
    std::string g = scalar(m, v, m.key("gateway"));
    auto a = ipv4_parse(g);
    if (!a) m.fail(v, m.key("gateway"), "'" + g + "' is not an IPv4 address");
    if (!p->contains(*a) || *a == p->network() || *a == p->broadcast())
      m.fail(v, m.key("gateway"), g + " is not a host address of subnet " + s);
    net.gateway = *a;
    net.gateway_set = true;
  }
  if (auto v = m.get("ip_range")) {
    std::string r = scalar(m, v, m.key("ip_range"));
    auto rp = prefix_parse(r);
    if (!rp || rp->addr != rp->network()) m.fail(v, m.key("ip_range"), "'" + r + "' is not an IPv4 prefix without host bits");
    if (rp->len < p->len || !p->contains(rp->addr)) m.fail(v, m.key("ip_range"), r + " is not inside subnet " + s);
    net.ip_range = *rp;
  }
  if (auto v = m.get("internal")) {
    net.internal = boolean(m, v, m.key("internal"));
    if (net.internal && net.driver == Driver::kMacvlan)
      m.fail(v, m.key("internal"), "a macvlan network sits on the uplink's segment and cannot be internal");
  }
  if (auto v = m.get("mtu")) net.mtu = uint32_t(integer(m, v, m.key("mtu"), 576, 9000)), net.mtu_set = true;
  const bool overlay = net.driver == Driver::kOverlay;
  if (auto v = m.get("vni")) {
    if (!overlay) m.fail(v, m.key("vni"), "only valid with driver: overlay");
    net.vni = uint32_t(integer(m, v, m.key("vni"), 1, 16777215));
  } else if (overlay) {
    m.fail(n, m.key("vni"), "required key missing (driver overlay: the VXLAN network identifier, 1-16777215)");
  }
  if (auto v = m.get("peers")) {
    if (!overlay) m.fail(v, m.key("peers"), "only valid with driver: overlay");
    if (!v.IsSequence()) m.fail(v, m.key("peers"), "expected a list of IPv4 addresses (remote VTEPs)");
    std::unordered_set<uint32_t> seen_peers;
    for (size_t i = 0; i < v.size(); i++) {
      const std::string k = m.key("peers[" + std::to_string(i) + "]");
      std::string a = scalar(m, v[i], k);
      auto ip = ipv4_parse(a);
      if (!ip || *ip == 0 || (*ip >> 28) >= 14 || (*ip >> 24) == 127)
        m.fail(v[i], k, "'" + a + "' is not a unicast IPv4 address");
      if (!seen_peers.insert(*ip).second) m.fail(v[i], k, a + " is listed twice");
      net.peers.push_back(*ip);
    }
  }

  if (auto v = m.get("fast_path")) net.fast_path = fast_path(m, v);
  if (auto v = m.get("allow")) {
    if (!v.IsSequence()) m.fail(v, m.key("allow"), "expected a list of network names");
    for (size_t i = 0; i < v.size(); i++) net.allow.push_back(scalar(m, v[i], m.key("allow[" + std::to_string(i) + "]")));
  }
  if (auto v = m.get("persist")) {
    net.persist = boolean(m, v, m.key("persist"));
    if (!net.src.path.empty())
      m.fail(v, m.key("persist"), "only for networks added through the control socket (the file's networks are made at every start)");
  }
  m.finish();
}

void parse_endpoint(Map& m, const YAML::Node& n, EndpointConfig& ep) {
  ep.src = m.source();
  YAML::Node name;
  ep.name = required_name(m, n, &name);
  if (!valid_name(ep.name, 63) || ep.name.find('.') != std::string::npos || ep.name.find('_') != std::string::npos)
    m.fail(name, m.key("name"), "'" + ep.name + "' is not a valid DNS label (letters, digits, '-')");
  if (auto v = m.get("mode")) {
    std::string s = scalar(m, v, m.key("mode"));
    if (s == "bridge") ep.mode = Mode::kBridge;
    else if (s == "none") ep.mode = Mode::kNone;
    else if (s == "host") ep.mode = Mode::kHost;
    else if (s.rfind("container:", 0) == 0 && s.size() > 10) ep.mode = Mode::kContainer, ep.container = s.substr(10);
    else m.fail(v, m.key("mode"), "'" + s + "' is not one of bridge, none, host, container:NAME");
  }
  if (auto v = m.get("networks")) {
    if (!v.IsSequence()) m.fail(v, m.key("networks"), "expected a list of network names");
    std::unordered_set<std::string> seen_nets;
    for (size_t i = 0; i < v.size(); i++) {
      std::string nn = scalar(m, v[i], m.key("networks[" + std::to_string(i) + "]"));
      if (!seen_nets.insert(nn).second) m.fail(v[i], m.key("networks"), "network '" + nn + "' is listed twice");
      ep.networks.push_back(nn);
    }
    if (ep.mode != Mode::kBridge && !ep.networks.empty())
      m.fail(v, m.key("networks"), "an endpoint in mode none, host or container:NAME has no networks of its own");
  }
  if (ep.mode == Mode::kBridge && ep.networks.empty()) m.fail(n, m.key("networks"), "a bridge-mode endpoint needs at least one network");
  if (auto v = m.get("netns")) {
    ep.netns = scalar(m, v, m.key("netns"));
    if (ep.netns.empty() || ep.netns[0] != '/') m.fail(v, m.key("netns"), "'" + ep.netns + "' is not an absolute path");
    if (ep.mode == Mode::kHost || ep.mode == Mode::kContainer) m.fail(v, m.key("netns"), "not allowed with mode host or container:NAME");
  }
  if (auto v = m.get("port")) {
    std::string s = scalar(m, v, m.key("port"));
    if (s == "afxdp") ep.port = PortKind::kAfxdp;
    else if (s == "vhost") ep.port = PortKind::kVhost;
    else m.fail(v, m.key("port"), "'" + s + "' is not one of afxdp, vhost");
  }
  if (auto v = m.get("vhost_socket")) {
    if (ep.port != PortKind::kVhost) m.fail(v, m.key("vhost_socket"), "only valid with port: vhost");
    ep.vhost_socket = scalar(m, v, m.key("vhost_socket"));
    if (ep.vhost_socket.empty() || ep.vhost_socket[0] != '/' || ep.vhost_socket.size() > 100)
      m.fail(v, m.key("vhost_socket"), "'" + ep.vhost_socket + "' is not an absolute path of at most 100 bytes");
  }
  if (auto v = m.get("vhost_mode")) {
    std::string s = scalar(m, v, m.key("vhost_mode"));
    if (ep.port != PortKind::kVhost) m.fail(v, m.key("vhost_mode"), "only valid with port: vhost");
    if (s != "server" && s != "client") m.fail(v, m.key("vhost_mode"), "'" + s + "' is not one of server, client");
    ep.vhost_client = s == "client";
  }
  if (ep.port == PortKind::kVhost) {
    if (ep.vhost_socket.empty()) m.fail(n, m.key("vhost_socket"), "required with port: vhost");
    if (ep.mode != Mode::kBridge) m.fail(n, m.key("port"), "port: vhost needs mode bridge");
    if (ep.networks.size() != 1) m.fail(n, m.key("networks"), "a vhost endpoint attaches to exactly one network");
    if (!ep.netns.empty()) m.fail(n, m.key("netns"), "not valid with port: vhost (the application has no namespace of ours)");
  }
  if (auto v = m.get("fast_path")) {
    ep.fast_path = fast_path(m, v);
    if (ep.mode == Mode::kHost || ep.mode == Mode::kContainer) m.fail(v, m.key("fast_path"), "not valid with mode host or container:NAME (no port of its own)");
  }
  if (auto v = m.get("mac")) {
    std::string s = scalar(m, v, m.key("mac"));
    auto mac = mac_parse(s);
    if (!mac) m.fail(v, m.key("mac"), "'" + s + "' is not a MAC address like 02:42:ac:14:00:0a");
    if (mac_is_multicast(*mac) || *mac == 0) m.fail(v, m.key("mac"), s + " is not a unicast MAC address");
    if (ep.mode != Mode::kBridge) m.fail(v, m.key("mac"), "only valid with mode bridge");
    ep.mac = *mac;
  }
  if (auto v = m.get("ip")) {
    std::string s = scalar(m, v, m.key("ip"));
    auto a = ipv4_parse(s);
    if (!a) m.fail(v, m.key("ip"), "'" + s + "' is not an IPv4 address");
    if (ep.mode != Mode::kBridge) m.fail(v, m.key("ip"), "only valid with mode bridge");
    ep.ip = *a;
  }
  if (auto v = m.get("publish")) {
    if (ep.mode != Mode::kBridge) m.fail(v, m.key("publish"), "only valid with mode bridge");
    ep.publish = port_maps(m, v, "publish", true);
  }
  if (auto v = m.get("ifname")) {
    ep.ifname = scalar(m, v, m.key("ifname"));
    // What the kernel takes as a link name (dev_valid_name): 1..15 bytes, no '/', ':' or white space, not . or ..
    const bool ok = !ep.ifname.empty() && ep.ifname.size() < 16 && ep.ifname != "." && ep.ifname != ".." &&
                    std::none_of(ep.ifname.begin(), ep.ifname.end(), [](char c) { return c == '/' || c == ':' || std::isspace((unsigned char)c) || !std::isprint((unsigned char)c); });
    if (!ok) m.fail(v, m.key("ifname"), "'" + ep.ifname + "' is not an interface name (1 to 15 printable bytes, no '/', ':' or spaces)");
    if (ep.mode != Mode::kBridge || ep.port != PortKind::kAfxdp) m.fail(v, m.key("ifname"), "only valid with mode bridge and port afxdp");
    if (ep.networks.size() != 1) m.fail(v, m.key("ifname"), "only valid with exactly one network (the others would be eth1, ...)");
  }
  if (auto v = m.get("handoff")) {
    ep.handoff = boolean(m, v, m.key("handoff"));
    if (ep.handoff && (ep.mode != Mode::kBridge || ep.port != PortKind::kAfxdp || !ep.netns.empty() || ep.networks.size() != 1))
      m.fail(v, m.key("handoff"), "only for a bridge-mode afxdp endpoint on exactly one network, without netns");
  }
  if (auto v = m.get("persist")) {
    ep.persist = boolean(m, v, m.key("persist"));
    if (!ep.src.path.empty())
      m.fail(v, m.key("persist"), "only for endpoints added through the control socket (the file's endpoints are made at every start)");
    if (ep.persist && ep.mode != Mode::kBridge) m.fail(v, m.key("persist"), "only valid with mode bridge");
  }
  if (auto v = m.get("aliases")) {
    if (!v.IsSequence()) m.fail(v, m.key("aliases"), "expected a list of names like [www]");
    for (size_t i = 0; i < v.size(); i++) {
      const std::string key = m.key("aliases[" + std::to_string(i) + "]");
      std::string a = scalar(m, v[i], key);
      if (!valid_dns_name(a)) m.fail(v[i], key, "'" + a + "' is not a DNS name (labels of 1 to 63 letters, digits, '-' or '_', separated by dots; 253 bytes at most)");
      std::transform(a.begin(), a.end(), a.begin(), [](unsigned char c) { return char(std::tolower(c)); });
      if (std::count(ep.aliases.begin(), ep.aliases.end(), a)) m.fail(v[i], key, "'" + a + "' is given twice");
      ep.aliases.push_back(a);
    }
  }
  if (auto v = m.get("labels")) {
    if (!v.IsMap()) m.fail(v, m.key("labels"), "expected a map like { app: web }");
    for (auto it = v.begin(); it != v.end(); ++it) {
      const std::string k = scalar(m, it->first, m.key("labels"));
      const std::string key = m.key("labels." + k);
      const bool ok = !k.empty() && k.size() <= 253 && std::all_of(k.begin(), k.end(), [](char c) {
        return std::isalnum((unsigned char)c) || c == '-' || c == '_' || c == '.' || c == '/';
      });
      if (!ok) m.fail(it->first, m.key("labels"), "'" + k + "' is not a label key (1 to 253 of letters, digits, '-', '_', '.', '/')");
      std::string val = scalar(m, it->second, key);
      if (val.size() > 1024 || std::any_of(val.begin(), val.end(), [](char c) { return (unsigned char)c < 0x20 || c == 0x7f; }))
        m.fail(it->second, key, "a label value is at most 1024 bytes with no control characters");
      if (!ep.labels.emplace(k, val).second) m.fail(it->first, key, "given twice");
    }
  }
  m.finish();
}

}  // namespace

bool valid_dns_name(const std::string& s) {
  if (s.empty() || s.size() > 253) return false;
  size_t label = 0;
  for (char c : s) {
    if (c == '.') {
      if (!label) return false;
      label = 0;
      continue;
    }
    if (!(std::isalnum((unsigned char)c) || c == '-' || c == '_') || ++label > 63) return false;
  }
  return label > 0;
}

const NetworkConfig* Config::network(const std::string& n) const {
  for (auto& x : networks)
    if (x.name == n) return &x;
  return nullptr;
}
const ServiceConfig* Config::service(const std::string& n) const {
  for (auto& x : services)
    if (x.name == n) return &x;
  return nullptr;
}
const EndpointConfig* Config::endpoint(const std::string& n) const {
  for (auto& x : endpoints)
    if (x.name == n) return &x;
  return nullptr;
}

namespace {
// A top-level list of items (networks, endpoints, services), each parsed by `parse`.
template <typename T>
void parse_list(Map& top, const std::string& key, const std::string& origin, void (*parse)(Map&, const YAML::Node&, T&), std::vector<T>& out) {
  auto v = top.get(key);
  if (!v) return;
  if (!v.IsSequence()) top.fail(v, key, "expected a list");
  for (size_t i = 0; i < v.size(); i++) {
    Map m(v[i], key + "[" + std::to_string(i) + "]", origin);
    T item;
    parse(m, v[i], item);
    out.push_back(std::move(item));
  }
}
}  // namespace

Config parse_config(const std::string& text, const std::string& origin) {
  if (text.size() > kMaxConfigBytes)
    throw ConfigError(origin + ": the file is " + std::to_string(text.size()) + " bytes; dpsw reads at most " +
                      std::to_string(kMaxConfigBytes) + " (" + std::to_string(kMaxConfigBytes >> 20) + " MiB)");
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw ConfigError(origin + ":" + std::to_string(e.mark.line + 1) + ": not valid YAML: " + e.msg);
  }
  Config cfg;
  cfg.path = origin;
  if (!root || root.IsNull()) throw ConfigError(origin + ":1: the file is empty");
  Map top(root, "", origin);
  if (auto v = top.get("switch")) parse_switch(top, v, cfg.sw);
  if (auto v = top.get("uplink")) {
    Map m(v, "uplink", origin);
    UplinkConfig up;
    up.src = m.source();
    auto port = m.get("port");
    if (!port) m.fail(v, "uplink.port", "required key missing");
    Map pm(port, "uplink.port", origin);
    auto kind = pm.get("kind");
    std::string k = kind ? scalar(pm, kind, "uplink.port.kind") : "afxdp";
    if (k == "dpdk") pm.fail(kind, "uplink.port.kind", "kind 'dpdk' is not supported by this version of dpsw yet (afxdp)");
    if (k != "afxdp") pm.fail(kind, "uplink.port.kind", "'" + k + "' is not one of afxdp, dpdk");
    auto ifn = pm.get("interface");
    if (!ifn) pm.fail(port, "uplink.port.interface", "required key missing");
    up.interface = scalar(pm, ifn, "uplink.port.interface");
    if (up.interface.empty() || up.interface.size() > 15 || up.interface.find('/') != std::string::npos)
      pm.fail(ifn, "uplink.port.interface", "'" + up.interface + "' is not an interface name");
    pm.finish();
    auto addr = m.get("address");
    if (!addr) m.fail(v, "uplink.address", "required key missing");
    std::string as = scalar(m, addr, "uplink.address");
    auto ap = prefix_parse(as);
    if (!ap || ap->len > 30 || ap->addr == ap->network() || ap->addr == ap->broadcast())
      m.fail(addr, "uplink.address", "'" + as + "' is not a host address with its prefix, like 198.51.100.10/24");
    if (ap->len < 16) m.fail(addr, "uplink.address", "the uplink's segment must be /16 or smaller (got /" + std::to_string(ap->len) + ")");
    up.address = *ap;
    if (auto g = m.get("gateway")) {
      std::string gs = scalar(m, g, "uplink.gateway");
      auto ga = ipv4_parse(gs);
      if (!ga || !ap->contains(*ga) || *ga == ap->addr || *ga == ap->network() || *ga == ap->broadcast())
        m.fail(g, "uplink.gateway", "'" + gs + "' is not another host address of " + prefix_to_string({ap->network(), ap->len}));
      up.gateway = *ga;
    }
    m.finish();
    cfg.uplink = up;
  }
  if (auto v = top.get("dns")) {
    Map m(v, "dns", origin);
    if (auto e = m.get("enabled")) cfg.dns.enabled = boolean(m, e, "dns.enabled");
    if (auto u = m.get("upstream")) {
      if (!u.IsSequence()) m.fail(u, "dns.upstream", "expected a list of IPv4 addresses like [192.0.2.53]");
      if (u.size() > 8) m.fail(u, "dns.upstream", "at most 8 servers");
      for (size_t i = 0; i < u.size(); i++) {
        const std::string key = "dns.upstream[" + std::to_string(i) + "]";
        std::string a = scalar(m, u[i], key);
        auto ip = ipv4_parse(a);
        if (!ip || *ip == 0 || (*ip >> 24) == 127 || (*ip >> 28) >= 14) m.fail(u[i], key, "'" + a + "' is not a unicast IPv4 address outside 127/8");
        cfg.dns.upstream.push_back(*ip);
      }
      cfg.dns.upstream_set = true;
    }
    if (auto t = m.get("ttl")) cfg.dns.ttl = uint32_t(integer(m, t, "dns.ttl", 0, 86400));
    if (auto r = m.get("resolv_conf")) cfg.dns.resolv_conf = boolean(m, r, "dns.resolv_conf");
    m.finish();
  }
  parse_list(top, "networks", origin, &parse_network, cfg.networks);
  parse_list(top, "endpoints", origin, &parse_endpoint, cfg.endpoints);
  parse_list(top, "services", origin, &parse_service, cfg.services);
  resolve_defaults(cfg);
  check_config(cfg);
  top.finish();
  return cfg;
}

Config load_config(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw ConfigError(path + ": cannot read the file");
  // Read at most one byte past the limit: a huge file is refused unread.
  std::string text(kMaxConfigBytes + 1, '\0');
  f.read(text.data(), std::streamsize(text.size()));
  text.resize(size_t(f.gcount()));
  if (text.size() > kMaxConfigBytes) {
    f.seekg(0, std::ios::end);
    throw ConfigError(path + ": the file is " + std::to_string(static_cast<long long>(f.tellg())) + " bytes; dpsw reads at most " +
                      std::to_string(kMaxConfigBytes) + " (" + std::to_string(kMaxConfigBytes >> 20) + " MiB)");
  }
  return parse_config(text, path);
}

std::string host_ifname(const std::string& instance, const std::string& endpoint, const std::string& network) {
  uint32_t h = 2166136261u;  // FNV-1a
  for (char c : endpoint + "/" + network) h = (h ^ uint8_t(c)) * 16777619u;
  char buf[16];
  std::snprintf(buf, sizeof buf, "%.6s-%08x", instance.c_str(), h);
  return buf;
}

std::string handoff_ifname(const std::string& host_ifname) {
  uint32_t h = 2166136261u;  // FNV-1a of the host end's name (itself unique on the machine)
  for (char c : host_ifname + "/handoff") h = (h ^ uint8_t(c)) * 16777619u;
  char buf[16];
  std::snprintf(buf, sizeof buf, "dh%08x", h);
  return buf;
}

std::string ItemSource::where(const std::string& key) const {
  auto it = key_lines.find(key);
  if (it == key_lines.end()) it = key_lines.find(key.substr(0, key.find('[')));
  int l = it != key_lines.end() ? it->second : line;
  return origin + (l ? ":" + std::to_string(l) : std::string()) + ": " + (path.empty() ? key : path + "." + key) + ": ";
}

namespace {
YAML::Node load_item(const std::string& text, const std::string& origin) {
  try {
    return YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw ConfigError(origin + ": not valid YAML/JSON: " + e.msg);
  }
}
}  // namespace

namespace {
template <typename T>
T parse_item(const std::string& text, const std::string& origin, void (*parse)(Map&, const YAML::Node&, T&)) {
  YAML::Node n = load_item(text, origin);
  Map m(n, "", origin, false);
  T item;
  parse(m, n, item);
  return item;
}
}  // namespace

NetworkConfig parse_network_item(const std::string& text, const std::string& origin) {
  return parse_item<NetworkConfig>(text, origin, &parse_network);
}

EndpointConfig parse_endpoint_item(const std::string& text, const std::string& origin) {
  return parse_item<EndpointConfig>(text, origin, &parse_endpoint);
}

ServiceConfig parse_service_item(const std::string& text, const std::string& origin) {
  return parse_item<ServiceConfig>(text, origin, &parse_service);
}

const char* driver_name(Driver d) {
  switch (d) {
    case Driver::kBridge: return "bridge";
    case Driver::kOverlay: return "overlay";
    case Driver::kMacvlan: return "macvlan";
  }
  return "?";
}

void resolve_defaults(Config& cfg) {
  for (auto& n : cfg.networks) {
    if (n.driver == Driver::kMacvlan && !n.gateway_set && cfg.uplink && cfg.uplink->gateway) n.gateway = cfg.uplink->gateway;
    // VXLAN adds 50 bytes that the underlay must carry.
    // (The uplink is an AF_XDP port too: it carries at most kAfxdpMaxMtu whatever the interface says.)
    if (n.driver == Driver::kOverlay && !n.mtu_set && cfg.uplink)
      n.mtu = std::max<uint32_t>(576, std::min(cfg.uplink->mtu, kAfxdpMaxMtu) - 50);
  }
}

namespace {
// Interval overlap among many items in O(n log n): sorted by start, each
// interval is compared with the furthest-reaching one before it. `report`
// gets the pair (later in file order first).
struct Span {
  uint64_t lo, hi;
  size_t order;  // file order of the item (for which one the error names)
  size_t item;   // caller's index
};
template <typename Report>
void find_overlap(std::vector<Span> v, Report report) {
  std::sort(v.begin(), v.end(), [](const Span& a, const Span& b) { return a.lo != b.lo ? a.lo < b.lo : a.order < b.order; });
  const Span* reach = nullptr;
  const Span* found[2] = {nullptr, nullptr};
  for (const auto& x : v) {
    if (reach && x.lo <= reach->hi) {
      const Span* later = x.order > reach->order ? &x : reach;
      const Span* earlier = later == &x ? reach : &x;
      if (!found[0] || later->order < found[0]->order) found[0] = later, found[1] = earlier;
    }
    if (!reach || x.hi > reach->hi) reach = &x;
  }
  if (found[0]) report(found[0]->item, found[1]->item);
}
}  // namespace

void check_config(const Config& cfg) {
  // Every check here is linear (or n log n) in the size of the file: a
  // config of thousands of items is checked in well under a second.
  std::unordered_map<std::string, size_t> net_index;
  const NetworkConfig* macvlan = nullptr;
  std::unordered_map<uint32_t, size_t> vnis;
  for (size_t i = 0; i < cfg.networks.size(); i++) {
    const auto& net = cfg.networks[i];
    if (auto [it, fresh] = net_index.emplace(net.name, i); !fresh) {
      const auto& o = cfg.networks[it->second];
      throw ConfigError(net.src.where("name") + "network '" + net.name + "' is defined twice" +
                        (o.src.line ? " (first at line " + std::to_string(o.src.line) + ")" : ""));
    }
  }
  auto network = [&](const std::string& n) -> const NetworkConfig* {
    auto it = net_index.find(n);
    return it == net_index.end() ? nullptr : &cfg.networks[it->second];
  };
  std::vector<Span> subnets;
  for (size_t i = 0; i < cfg.networks.size(); i++) {
    const auto& net = cfg.networks[i];
    if (net.driver == Driver::kMacvlan) {
      if (!cfg.uplink) throw ConfigError(net.src.where("driver") + "driver macvlan needs an uplink (its endpoints sit on the uplink's segment)");
      Ipv4Prefix seg{cfg.uplink->address.network(), cfg.uplink->address.len};
      if (net.subnet.addr != seg.addr || net.subnet.len != seg.len)
        throw ConfigError(net.src.where("subnet") + "a macvlan network's subnet must be the uplink's, " + prefix_to_string(seg));
      if (macvlan) throw ConfigError(net.src.where("driver") + "only one macvlan network per uplink ('" + macvlan->name + "' is one)");
      macvlan = &net;
    }
    if (net.driver == Driver::kOverlay) {
      if (!cfg.uplink)
        throw ConfigError(net.src.where("driver") + "driver overlay needs an uplink (its address is the local VXLAN tunnel endpoint)");
      for (size_t j = 0; j < net.peers.size(); j++) {
        if (net.peers[j] == cfg.uplink->address.addr)
          throw ConfigError(net.src.where("peers[" + std::to_string(j) + "]") + ipv4_to_string(net.peers[j]) +
                            " is this host's own uplink address (list the other hosts)");
        if (net.peers[j] == cfg.uplink->address.network() || net.peers[j] == cfg.uplink->address.broadcast())
          throw ConfigError(net.src.where("peers[" + std::to_string(j) + "]") + ipv4_to_string(net.peers[j]) + " is the " +
                            (net.peers[j] == cfg.uplink->address.network() ? "network" : "broadcast") + " address of the uplink's segment " +
                            prefix_to_string({cfg.uplink->address.network(), cfg.uplink->address.len}));
      }
      if (!cfg.uplink->gateway)
        for (size_t j = 0; j < net.peers.size(); j++)
          if (!cfg.uplink->address.contains(net.peers[j]))
            throw ConfigError(net.src.where("peers[" + std::to_string(j) + "]") + ipv4_to_string(net.peers[j]) +
                              " is not on the uplink's segment and the uplink has no gateway to reach it");
      if (auto [it, fresh] = vnis.emplace(net.vni, i); !fresh)
        throw ConfigError(net.src.where("vni") + "VNI " + std::to_string(net.vni) + " is already used by network '" +
                          cfg.networks[it->second].name + "'");
    }
    for (size_t j = 0; j < net.allow.size(); j++) {
      const NetworkConfig* o = network(net.allow[j]);
      if (!o) throw ConfigError(net.src.where("allow[" + std::to_string(j) + "]") + "unknown network '" + net.allow[j] + "'");
      if (o == &net || o->driver != Driver::kBridge || net.driver != Driver::kBridge)
        throw ConfigError(net.src.where("allow[" + std::to_string(j) + "]") + "routing is allowed only between two different bridge networks");
    }
    if (net.driver == Driver::kMacvlan) {
    } else if (cfg.uplink && net.subnet.overlaps(cfg.uplink->address)) {
      throw ConfigError(net.src.where("subnet") + prefix_to_string(net.subnet) + " overlaps the uplink's subnet " +
                        prefix_to_string({cfg.uplink->address.network(), cfg.uplink->address.len}));
    }
    subnets.push_back({net.subnet.network(), net.subnet.broadcast(), i, i});
  }
  find_overlap(subnets, [&](size_t later, size_t earlier) {
    const auto &net = cfg.networks[later], &o = cfg.networks[earlier];
    throw ConfigError(net.src.where("subnet") + prefix_to_string(net.subnet) + " overlaps network '" + o.name + "' (" +
                      prefix_to_string(o.subnet) + ")");
  });

  std::unordered_map<std::string, size_t> ep_index, sockets;
  std::vector<Span> published[2];  // tcp, udp: host port ranges
  struct PubOf {
    const ItemSource* src;
    std::string key;    // "publish[1]"
    Publish p;
    std::string owner;  // "endpoint 'web'", "service 'api'"
    size_t item;        // the endpoint's or service's index, for "the same" messages
  };
  std::vector<PubOf> pub_of;  // Span.item -> where it comes from
  size_t ports = cfg.uplink ? 1 : 0;  // ports dpsw will drive (the fast tier's punt ports come on top: one per worker)
  for (const auto& net : cfg.networks) ports += net.peers.size();
  ports += cfg.sw.workers.size();
  for (size_t i = 0; i < cfg.endpoints.size(); i++) {
    const auto& ep = cfg.endpoints[i];
    if (!ep_index.emplace(ep.name, i).second) throw ConfigError(ep.src.where("name") + "endpoint '" + ep.name + "' is defined twice");
    if (!ep.vhost_socket.empty() && ep.vhost_socket == cfg.sw.control_socket)
      throw ConfigError(ep.src.where("vhost_socket") + ep.vhost_socket + " is the control socket (switch.control_socket)");
    if (!ep.vhost_socket.empty())
      if (auto [it, fresh] = sockets.emplace(ep.vhost_socket, i); !fresh)
        throw ConfigError(ep.src.where("vhost_socket") + ep.vhost_socket + " is already the socket of endpoint '" +
                          cfg.endpoints[it->second].name + "'");
    ports += ep.networks.size();
    if (ports > kMaxPorts)
      throw ConfigError(ep.src.where("networks") + "too many ports: with this endpoint dpsw would drive more than " +
                        std::to_string(kMaxPorts) + " (endpoint attachments, tunnels, the uplink and one punt port per worker)");
    for (size_t j = 0; j < ep.networks.size(); j++) {
      const NetworkConfig* net = network(ep.networks[j]);
      if (!net) throw ConfigError(ep.src.where("networks[" + std::to_string(j) + "]") + "unknown network '" + ep.networks[j] + "'");
      if (ep.port == PortKind::kAfxdp && net->mtu > kAfxdpMaxMtu)
        throw ConfigError(ep.src.where("networks[" + std::to_string(j) + "]") + "network '" + net->name + "' has mtu " +
                          std::to_string(net->mtu) + "; AF_XDP ports carry at most " + std::to_string(kAfxdpMaxMtu) +
                          " (use port: vhost for jumbo frames)");
    }
    if (!ep.publish.empty()) {
      if (!cfg.uplink) throw ConfigError(ep.src.where("publish") + "published ports need an uplink (they live on its address)");
      const NetworkConfig* net = network(ep.networks.at(0));
      if (net->driver != Driver::kBridge || net->internal)
        throw ConfigError(ep.src.where("publish") + "ports are published from the endpoint's first network, and '" + net->name +
                          "' is " + (net->internal ? "internal" : "not a bridge network"));
      for (size_t k = 0; k < ep.publish.size(); k++) {
        const Publish& p = ep.publish[k];
        published[p.proto == 6 ? 0 : 1].push_back({p.host_lo, p.host_hi, pub_of.size(), pub_of.size()});
        pub_of.push_back({&ep.src, "publish[" + std::to_string(k) + "]", p, "endpoint '" + ep.name + "'", i});
      }
    }
  }
  std::unordered_map<std::string, size_t> svc_index;
  for (size_t i = 0; i < cfg.services.size(); i++) {
    const ServiceConfig& svc = cfg.services[i];
    if (auto [it, fresh] = svc_index.emplace(svc.name, i); !fresh)
      throw ConfigError(svc.src.where("name") + "service '" + svc.name + "' is defined twice");
    if (ep_index.count(svc.name))
      throw ConfigError(svc.src.where("name") + "'" + svc.name + "' is already an endpoint's name (services and endpoints share the DNS names)");
    const NetworkConfig* net = network(svc.network);
    if (!net) throw ConfigError(svc.src.where("network") + "unknown network '" + svc.network + "'");
    if (net->driver != Driver::kBridge)
      throw ConfigError(svc.src.where("network") + "services live on bridge networks ('" + svc.network + "' is " + driver_name(net->driver) + ")");
    if (svc.mode == ServiceConfig::Mode::kVip && !cfg.uplink)
      throw ConfigError(svc.src.where("name") + "mode vip needs an uplink (the connection table that keeps each connection on its backend "
                        "comes with it); without one, use mode: dnsrr");
    if (!svc.publish.empty()) {
      if (!cfg.uplink) throw ConfigError(svc.src.where("publish") + "published ports need an uplink (they live on its address)");
      if (net->internal) throw ConfigError(svc.src.where("publish") + "network '" + net->name + "' is internal");
      for (size_t k = 0; k < svc.publish.size(); k++) {
        const Publish& p = svc.publish[k];
        published[p.proto == 6 ? 0 : 1].push_back({p.host_lo, p.host_hi, pub_of.size(), pub_of.size()});
        pub_of.push_back({&svc.src, "publish[" + std::to_string(k) + "]", p, "service '" + svc.name + "'", cfg.endpoints.size() + i});
      }
    }
  }
  for (auto& spans : published)
    find_overlap(spans, [&](size_t later, size_t earlier) {
      const PubOf &a = pub_of[later], &b = pub_of[earlier];
      throw ConfigError(a.src->where(a.key) + publish_to_string(a.p) + " overlaps " + publish_to_string(b.p) +
                        (a.item == b.item ? " (listed earlier for the same " + a.owner.substr(0, a.owner.find(' ')) + ")" : " of " + b.owner));
    });
  for (const auto& ep : cfg.endpoints) {
    if (ep.mode != Mode::kContainer) continue;
    auto it = ep_index.find(ep.container);
    if (it == ep_index.end()) throw ConfigError(ep.src.where("mode") + "unknown endpoint '" + ep.container + "' in container:" + ep.container);
    const auto* t = &cfg.endpoints[it->second];
    if (t->mode == Mode::kContainer || t->mode == Mode::kHost)
      throw ConfigError(ep.src.where("mode") + "endpoint '" + ep.container + "' has no namespace of its own to join (mode " +
                        (t->mode == Mode::kHost ? "host" : "container") + ")");
  }
}

bool NetworkConfig::same_definition(const NetworkConfig& o) const {
  return name == o.name && driver == o.driver && subnet.addr == o.subnet.addr && subnet.len == o.subnet.len &&
         gateway == o.gateway && vni == o.vni && fast_path == o.fast_path;
}

bool NetworkConfig::same_settings(const NetworkConfig& o) const {
  return ip_range.has_value() == o.ip_range.has_value() &&
         (!ip_range || (ip_range->addr == o.ip_range->addr && ip_range->len == o.ip_range->len)) && internal == o.internal &&
         mtu == o.mtu && allow == o.allow;
}

bool EndpointConfig::same_definition(const EndpointConfig& o) const {
  return name == o.name && networks == o.networks && mode == o.mode && container == o.container && netns == o.netns &&
         port == o.port && vhost_socket == o.vhost_socket && vhost_client == o.vhost_client && mac == o.mac && ip == o.ip &&
         fast_path == o.fast_path && ifname == o.ifname && handoff == o.handoff;
}

std::string publish_to_string(const Publish& p) {
  auto r = [](uint16_t lo, uint16_t hi) { return lo == hi ? std::to_string(lo) : std::to_string(lo) + "-" + std::to_string(hi); };
  return r(p.host_lo, p.host_hi) + ":" + r(p.ctr_lo, uint16_t(p.ctr_lo + (p.host_hi - p.host_lo))) + (p.proto == 6 ? "/tcp" : "/udp");
}

bool ConfigDiff::empty() const {
  return networks_added.empty() && networks_removed.empty() && networks_changed.empty() && networks_updated.empty() &&
         endpoints_added.empty() && endpoints_removed.empty() && endpoints_changed.empty() && endpoints_updated.empty() &&
         switch_changed.empty() && peers_changed.empty() && !dns_changed && !services_changed;
}

ConfigDiff diff_configs(const Config& a, const Config& b) {
  ConfigDiff d;
  const SwitchConfig &x = a.sw, &y = b.sw;
  if (x.name != y.name) d.switch_changed.push_back("name");
  if (x.workers != y.workers) d.switch_changed.push_back("workers");
  if (x.control_socket != y.control_socket) d.switch_changed.push_back("control_socket");
  if (x.persist_dir != y.persist_dir) d.switch_changed.push_back("persist_dir");
  if (x.state_dir != y.state_dir) d.switch_changed.push_back("state_dir");
  if (x.mac_table_size != y.mac_table_size) d.switch_changed.push_back("mac_table.size");
  if (x.mac_aging_s != y.mac_aging_s) d.switch_changed.push_back("mac_table.aging_s");
  if (x.conntrack_size != y.conntrack_size) d.switch_changed.push_back("conntrack.size");
  if (x.ct_tcp_established != y.ct_tcp_established || x.ct_tcp_transitory != y.ct_tcp_transitory || x.ct_udp != y.ct_udp ||
      x.ct_icmp != y.ct_icmp || x.ct_tcp_syn_sent != y.ct_tcp_syn_sent || x.ct_tcp_syn_recv != y.ct_tcp_syn_recv ||
      x.ct_other != y.ct_other)
    d.switch_changed.push_back("conntrack.timeouts");
  if (x.idle_block != y.idle_block) d.switch_changed.push_back("idle");
  if (x.idle_after_us != y.idle_after_us) d.switch_changed.push_back("idle_after_us");
  if (x.fast_path != y.fast_path) d.switch_changed.push_back("fast_path");
  if (x.steer_cores != y.steer_cores || x.steer_above_pps != y.steer_above_pps) d.switch_changed.push_back("fast_path_steering");
  if (x.control_cores != y.control_cores) d.switch_changed.push_back("control_cores");
  auto same_uplink = [](const std::optional<UplinkConfig>& u, const std::optional<UplinkConfig>& v) {
    if (u.has_value() != v.has_value()) return false;
    return !u || (u->interface == v->interface && u->address.addr == v->address.addr && u->address.len == v->address.len &&
                  u->gateway == v->gateway);
  };
  if (!same_uplink(a.uplink, b.uplink)) d.switch_changed.push_back("uplink");
  d.dns_changed = !(a.dns == b.dns);
  d.services_changed = a.services != b.services;
  auto index = [](const auto& items) {
    std::unordered_map<std::string, const std::remove_cvref_t<decltype(items[0])>*> m;
    for (const auto& x : items) m.emplace(x.name, &x);
    return m;
  };
  const auto a_nets = index(a.networks), b_nets = index(b.networks);
  const auto a_eps = index(a.endpoints), b_eps = index(b.endpoints);
  std::unordered_set<std::string> changed_nets;
  for (const auto& n : a.networks) {
    auto m = b_nets.find(n.name);
    if (m == b_nets.end()) {
      d.networks_removed.push_back(n.name);
    } else if (!n.same_definition(*m->second)) {
      d.networks_changed.push_back(n.name);
      changed_nets.insert(n.name);
    } else {
      if (!n.same_settings(*m->second)) d.networks_updated.push_back(n.name);
      if (n.peers != m->second->peers) d.peers_changed.push_back(n.name);
    }
  }
  for (const auto& n : b.networks)
    if (!a_nets.count(n.name)) d.networks_added.push_back(n.name);
  for (const auto& e : a.endpoints) {
    auto f = b_eps.find(e.name);
    if (f == b_eps.end()) {
      d.endpoints_removed.push_back(e.name);
      continue;
    }
    bool changed = !e.same_definition(*f->second) ||
                   std::any_of(e.networks.begin(), e.networks.end(), [&](const std::string& n) { return changed_nets.count(n) > 0; });
    if (changed) d.endpoints_changed.push_back(e.name);
    else if (e.publish != f->second->publish || e.labels != f->second->labels || e.aliases != f->second->aliases)
      d.endpoints_updated.push_back(e.name);
  }
  for (const auto& e : b.endpoints)
    if (!a_eps.count(e.name)) d.endpoints_added.push_back(e.name);
  return d;
}

Mac router_mac(const std::string& instance) {
  uint32_t h = 2166136261u;  // FNV-1a of the instance name: stable, local, unicast
  for (char c : instance) h = (h ^ uint8_t(c)) * 16777619u;
  return kDpswMacPrefix | h;
}

Plan kept_plan(const Plan& current, const ConfigDiff& d) {
  auto in = [](const std::vector<std::string>& v, const std::string& x) { return std::find(v.begin(), v.end(), x) != v.end(); };
  Plan keep;
  for (const auto& ep : current.endpoints)
    if (!in(d.endpoints_changed, ep.name) && !in(d.endpoints_removed, ep.name)) keep.endpoints.push_back(ep);
  keep.services = current.services;  // a service keeps its virtual IP while it stays on its network
  return keep;
}

Plan make_plan(const Config& cfg, const Plan* previous, const std::vector<Reservation>* reserved) {
  Plan plan;
  std::vector<Ipam> ipam;
  std::unordered_map<std::string, uint16_t> bd_index;
  for (auto& n : cfg.networks) {
    bd_index.emplace(n.name, uint16_t(ipam.size()));
    ipam.emplace_back(n.subnet, n.gateway, n.ip_range);
    if (n.driver == Driver::kMacvlan && cfg.uplink) ipam.back().reserve(cfg.uplink->address.addr);  // the host's own
  }
  auto bd_of = [&](const std::string& n) { return bd_index.at(n); };
  std::unordered_map<std::string, const EndpointConfig*> ep_index;
  for (auto& ep : cfg.endpoints) ep_index.emplace(ep.name, &ep);
  // Every MAC in the plan is unique (switch-wide, as the fast tier's and the
  // MAC table's static entries need): the owner of each, for messages.
  std::unordered_map<Mac, std::string> macs;
  // Addresses that stay: attachments of the previous plan whose endpoint and
  // network are still there (the caller replans changed endpoints from scratch
  // by leaving them out of `previous`).
  std::map<std::pair<std::string, std::string>, const PlannedAttachment*> kept;
  if (previous)
    for (const auto& pe : previous->endpoints) {
      auto e = ep_index.find(pe.name);
      if (e == ep_index.end()) continue;
      const EndpointConfig* ep = e->second;
      for (const auto& a : pe.attachments) {
        if (!bd_index.count(a.network) || std::find(ep->networks.begin(), ep->networks.end(), a.network) == ep->networks.end()) continue;
        if (ipam[bd_of(a.network)].reserve(a.ip) != Ipam::Reserve::kOk) continue;
        kept[{pe.name, a.network}] = &a;
        macs.emplace(a.mac, pe.name);
      }
    }
  auto is_kept = [&](const EndpointConfig& ep, size_t i) { return kept.count({ep.name, ep.networks[i]}) > 0; };
  // Services' virtual IPs, kept from the previous plan or static: before the
  // endpoints' static addresses (an endpoint may not take a service's VIP);
  // the others are allocated after the endpoints' (below).
  std::map<std::string, uint32_t> vips;
  for (const auto& svc : cfg.services) {
    if (svc.mode != ServiceConfig::Mode::kVip || !bd_index.count(svc.network)) continue;
    const PlannedService* was = previous ? previous->service(svc.name) : nullptr;
    const uint32_t want = svc.vip ? *svc.vip : was && was->network == svc.network ? was->vip : 0;
    if (!want) continue;
    const NetworkConfig& net = cfg.networks[bd_of(svc.network)];
    switch (ipam[bd_of(svc.network)].reserve(want)) {
      case Ipam::Reserve::kOk:
        vips[svc.name] = want;
        break;
      case Ipam::Reserve::kOutsideSubnet:
        throw ConfigError(svc.src.where("vip") + ipv4_to_string(want) + " is not in subnet " + prefix_to_string(net.subnet) + " of network '" + net.name + "'");
      case Ipam::Reserve::kReserved:
        throw ConfigError(svc.src.where("vip") + ipv4_to_string(want) + " is the network, broadcast or gateway address of network '" + net.name + "'");
      case Ipam::Reserve::kInUse:
        if (svc.vip) throw ConfigError(svc.src.where("vip") + ipv4_to_string(want) + " is already used on network '" + net.name + "'");
        break;  // a kept one an endpoint's static address took: allocated anew below
    }
  }
  // Static addresses and MACs next, so dynamic ones never take them (Docker does the same).
  for (auto& ep : cfg.endpoints) {
    if (ep.networks.empty() || is_kept(ep, 0)) continue;
    if (ep.mac) {
      if ((*ep.mac & kDpswMacMask) == kDpswMacPrefix)
        throw ConfigError(ep.src.where("mac") + mac_to_string(*ep.mac) + " is in 02:dd:00:00:00:00/16, which dpsw keeps for its own MACs");
      if (auto [it, fresh] = macs.emplace(*ep.mac, ep.name); !fresh)
        throw ConfigError(ep.src.where("mac") + mac_to_string(*ep.mac) + " is already the MAC of endpoint '" + it->second + "'");
    }
    if (!ep.ip) continue;
    const NetworkConfig& net = cfg.networks[bd_of(ep.networks[0])];
    switch (ipam[bd_of(net.name)].reserve(*ep.ip)) {
      case Ipam::Reserve::kOk: break;
      case Ipam::Reserve::kOutsideSubnet:
        throw ConfigError(ep.src.where("ip") + ipv4_to_string(*ep.ip) + " is not in subnet " + prefix_to_string(net.subnet) + " of network '" + net.name + "'");
      case Ipam::Reserve::kReserved:
        throw ConfigError(ep.src.where("ip") + ipv4_to_string(*ep.ip) + " is the network, broadcast or gateway address of network '" + net.name + "'");
      case Ipam::Reserve::kInUse: {
        for (const auto& [svc, vip] : vips)
          if (vip == *ep.ip && cfg.service(svc) && cfg.service(svc)->network == net.name)
            throw ConfigError(ep.src.where("ip") + ipv4_to_string(*ep.ip) + " is the virtual IP of service '" + svc + "' on network '" + net.name + "'");
        throw ConfigError(ep.src.where("ip") + ipv4_to_string(*ep.ip) + " is already used by another endpoint on network '" + net.name + "'");
      }
    }
  }
  if (reserved)  // after the static ones (which win), before any dynamic one
    for (const auto& r : *reserved) {
      if (r.mac) macs.emplace(r.mac, "(persisted)");  // switch-wide, whatever its network
      if (r.ip && bd_index.count(r.network)) ipam[bd_of(r.network)].reserve(r.ip);
    }
  for (auto& ep : cfg.endpoints) {
    PlannedEndpoint pe;
    pe.name = ep.name;
    pe.mode = ep.mode;
    pe.port = ep.port;
    pe.vhost_socket = ep.vhost_socket;
    pe.vhost_client = ep.vhost_client;
    if (ep.mode == Mode::kContainer || ep.port == PortKind::kVhost) {
      pe.joins = ep.container;
    } else if (ep.handoff) {
      pe.handoff = true;  // the container end stays in dpsw's namespace
    } else if (ep.mode != Mode::kHost) {
      if (ep.netns.empty()) {
        pe.netns_name = cfg.sw.name + "-" + ep.name;
        pe.netns_path = "/var/run/netns/" + pe.netns_name;
        pe.create_netns = true;
      } else {
        pe.netns_path = ep.netns;
      }
    }
    for (size_t i = 0; i < ep.networks.size(); i++) {
      const NetworkConfig& net = cfg.networks[bd_of(ep.networks[i])];
      PlannedAttachment a;
      a.network = net.name;
      a.bd = bd_of(net.name);
      a.host_ifname = ep.port == PortKind::kVhost ? ep.vhost_socket : host_ifname(cfg.sw.name, ep.name, net.name);
      a.ifname = ep.port == PortKind::kVhost ? ""
                 : !ep.ifname.empty()         ? ep.ifname
                 : ep.handoff                 ? handoff_ifname(a.host_ifname)
                                              : "eth" + std::to_string(i);
      a.prefix_len = net.subnet.len;
      a.gateway = net.gateway;
      a.mtu = net.mtu;
      a.driver = net.driver;
      a.fast = ep.port == PortKind::kAfxdp && cfg.sw.fast_path && net.fast_path && ep.fast_path;
      if (auto k = kept.find({ep.name, net.name}); k != kept.end()) {
        a.ip = k->second->ip;
        a.mac = k->second->mac;
        pe.attachments.push_back(a);
        continue;
      }
      if (i == 0 && ep.ip) {
        a.ip = *ep.ip;
      } else {
        auto ip = ipam[a.bd].allocate();
        if (!ip) throw ConfigError(ep.src.where("networks") + "no free address left in network '" + net.name + "' (" + prefix_to_string(net.ip_range ? *net.ip_range : net.subnet) + ")");
        a.ip = *ip;
      }
      if (i == 0 && ep.mac) {
        a.mac = *ep.mac;  // reserved above
      } else {
        // Docker's scheme: 02:42 followed by the IPv4 address (subnets never
        // overlap, so this is unique unless a static MAC took it).
        a.mac = 0x0242ULL << 32 | a.ip;
        while (!macs.emplace(a.mac, ep.name).second) a.mac += 1ULL << 32;
      }
      pe.attachments.push_back(a);
    }
    plan.endpoints.push_back(std::move(pe));
  }
  for (const auto& svc : cfg.services) {
    if (!bd_index.count(svc.network)) continue;
    PlannedService ps{svc.name, svc.network, bd_of(svc.network), 0};
    if (svc.mode == ServiceConfig::Mode::kVip) {
      if (auto it = vips.find(svc.name); it != vips.end()) {
        ps.vip = it->second;
      } else {
        const NetworkConfig& net = cfg.networks[ps.bd];
        auto ip = ipam[ps.bd].allocate();
        if (!ip) throw ConfigError(svc.src.where("network") + "no free address left in network '" + net.name + "' for the service's virtual IP");
        ps.vip = *ip;
      }
    }
    plan.services.push_back(ps);
  }
  return plan;
}

}  // namespace dpsw
