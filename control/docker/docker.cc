#include "control/docker/docker.h"

#include <set>

namespace dpsw::docker {

using nlohmann::json;

namespace {
// dpsw refused a request: its message goes to Docker as the call's Err.
struct Refused : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// The request is not one Docker sends: Err too.
struct BadRequest : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// The daemon could not be reached.
struct Unreachable : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string id_of(const json& b, const char* key) {
  if (!b.is_object() || !b.contains(key) || !b[key].is_string() || b[key].get<std::string>().empty())
    throw BadRequest(std::string(key) + " is missing");
  return b[key].get<std::string>();
}

std::string short_id(const std::string& id) {
  std::string s;
  for (char c : id)
    if (std::isalnum((unsigned char)c) && s.size() < 12) s += char(std::tolower((unsigned char)c));
  return s;
}

std::string strip_len(const std::string& cidr) { return cidr.substr(0, cidr.find('/')); }

const json& opt(const json& b, const char* key) {
  static const json none;
  if (b.is_object() && b.contains("Options") && b["Options"].is_object() && b["Options"].contains(key)) return b["Options"][key];
  return none;
}

bool truthy(const json& v) { return (v.is_boolean() && v.get<bool>()) || (v.is_string() && (v == "true" || v == "1")); }
}  // namespace

std::string network_name(const std::string& id) { return "dk-" + short_id(id); }
std::string endpoint_name(const std::string& id) { return "dk-" + short_id(id); }

json Driver::call(const json& req) {
  json r;
  try {
    r = ctl_(req);
  } catch (const std::exception& e) {
    throw Unreachable(e.what());
  }
  if (!r.value("ok", false)) throw Refused(r.value("error", std::string("request refused")));
  return r.value("result", json());
}

json Driver::endpoint(const std::string& name) {
  try {
    json r = call({{"v", 1}, {"cmd", "show"}, {"args", {"endpoints", name}}});
    return r.is_array() && !r.empty() ? r[0] : json();
  } catch (const Refused& e) {
    if (std::string(e.what()).find("unknown endpoint") != std::string::npos) return json();
    throw;
  }
}

json Driver::handle(const std::string& method, const json& body) {
  try {
    if (method == "Plugin.Activate") return {{"Implements", {"NetworkDriver"}}};
    if (method == "NetworkDriver.GetCapabilities") return {{"Scope", "local"}, {"ConnectivityScope", "local"}};
    if (method == "NetworkDriver.CreateNetwork") return create_network(body);
    if (method == "NetworkDriver.DeleteNetwork") return delete_network(body);
    if (method == "NetworkDriver.CreateEndpoint") return create_endpoint(body);
    if (method == "NetworkDriver.DeleteEndpoint") return delete_endpoint(body);
    if (method == "NetworkDriver.EndpointOperInfo") return {{"Value", json::object()}};
    if (method == "NetworkDriver.Join") return join(body);
    if (method == "NetworkDriver.Leave") return json::object();  // Docker moves the interface back; DeleteEndpoint removes it
    if (method == "NetworkDriver.ProgramExternalConnectivity") return program_external(body);
    if (method == "NetworkDriver.RevokeExternalConnectivity") return revoke_external(body);
    if (method == "NetworkDriver.DiscoverNew" || method == "NetworkDriver.DiscoverDelete" || method == "NetworkDriver.AllocateNetwork" ||
        method == "NetworkDriver.FreeNetwork")
      return json::object();  // nothing to learn or allocate for a local-scope driver
  } catch (const Refused& e) {
    return {{"Err", std::string("dpsw: ") + e.what()}};
  } catch (const BadRequest& e) {
    return {{"Err", "dpsw-docker: " + method + ": " + e.what()}};
  } catch (const Unreachable& e) {
    return {{"Err", std::string("dpsw is not serving: ") + e.what()}};
  } catch (const std::exception& e) {  // a field of the wrong type, a malformed answer
    return {{"Err", "dpsw-docker: " + method + ": " + e.what()}};
  }
  throw UnknownMethod(method);
}

json Driver::create_network(const json& b) {
  const std::string id = id_of(b, "NetworkID");
  if (truthy(opt(b, "com.docker.network.enable_ipv6")) || (b.contains("IPv6Data") && b["IPv6Data"].is_array() && !b["IPv6Data"].empty()))
    throw BadRequest("IPv6: dpsw networks are IPv4 only (for now)");
  if (!b.contains("IPv4Data") || !b["IPv4Data"].is_array() || b["IPv4Data"].size() != 1)
    throw BadRequest("IPv4Data: dpsw takes exactly one IPv4 pool per network (--subnet)");
  const json& v4 = b["IPv4Data"][0];
  if (!v4.contains("Pool") || !v4["Pool"].is_string()) throw BadRequest("IPv4Data[0].Pool is missing");
  json spec = {{"name", network_name(id)}, {"subnet", v4["Pool"]}, {"persist", true}};
  if (v4.contains("Gateway") && v4["Gateway"].is_string() && !v4["Gateway"].get<std::string>().empty())
    spec["gateway"] = strip_len(v4["Gateway"].get<std::string>());
  if (truthy(opt(b, "com.docker.network.internal"))) spec["internal"] = true;
  // -o dpsw.KEY=VALUE: the network keys a Docker user may set.
  if (const json& g = opt(b, "com.docker.network.generic"); g.is_object()) {
    for (const auto& [k, v] : g.items()) {
      if (k.rfind("dpsw.", 0) != 0) continue;  // Docker's own options
      const std::string key = k.substr(5);
      const std::string val = v.is_string() ? v.get<std::string>() : v.dump();
      if (key == "mtu") {
        try {
          spec["mtu"] = std::stoi(val);
        } catch (const std::exception&) {
          throw BadRequest("-o dpsw.mtu=" + val + ": not a number");
        }
      } else if (key == "internal") {
        if (val != "true" && val != "false") throw BadRequest("-o dpsw.internal=" + val + ": true or false");
        spec["internal"] = val == "true";
      } else if (key == "fast_path" || key == "ip_range") {
        spec[key] = val;
      } else {
        throw BadRequest("-o " + k + ": unknown (dpsw takes dpsw.mtu, dpsw.internal, dpsw.fast_path, dpsw.ip_range)");
      }
    }
  }
  try {
    call({{"v", 1}, {"cmd", "network"}, {"args", {"add"}}, {"spec", spec}});
  } catch (const Refused&) {
    // Replayed: the same network is there already.
    for (const auto& n : call({{"v", 1}, {"cmd", "show"}, {"args", {"networks"}}}))
      if (n.value("name", "") == spec["name"] && n.value("subnet", "") == spec["subnet"]) return json::object();
    throw;
  }
  return json::object();
}

// A request whose refusal "unknown ..." means the work is done already
// (Docker replays deletions after its own restart): any other refusal is an Err.
json Driver::call_gone_ok(const json& req, const char* unknown) {
  try {
    call(req);
  } catch (const Refused& e) {
    if (std::string(e.what()).find(unknown) == std::string::npos) throw;
  }
  return json::object();
}

json Driver::delete_network(const json& b) {
  return call_gone_ok({{"v", 1}, {"cmd", "network"}, {"args", {"del", network_name(id_of(b, "NetworkID"))}}}, "unknown network");
}

json Driver::create_endpoint(const json& b) {
  const std::string nid = id_of(b, "NetworkID"), eid = id_of(b, "EndpointID");
  const json iface = b.contains("Interface") && b["Interface"].is_object() ? b["Interface"] : json::object();
  auto field = [&](const char* k) { return iface.contains(k) && iface[k].is_string() ? iface[k].get<std::string>() : std::string(); };
  if (!field("AddressIPv6").empty()) throw BadRequest("Interface.AddressIPv6: dpsw networks are IPv4 only (for now)");
  const std::string name = endpoint_name(eid), mac = field("MacAddress");
  json spec = {{"name", name},
               {"networks", {network_name(nid)}},
               {"handoff", true},
               {"persist", true},
               {"labels", {{kLabelEndpoint, eid}, {kLabelNetwork, nid}}}};
  if (!field("Address").empty()) spec["ip"] = strip_len(field("Address"));
  if (!mac.empty()) spec["mac"] = mac;
  json ep;
  try {
    ep = call({{"v", 1}, {"cmd", "endpoint"}, {"args", {"add"}}, {"spec", spec}});
  } catch (const Refused&) {
    ep = endpoint(name);  // replayed?
    if (ep.is_null() || !ep.contains("labels") || ep["labels"].value(kLabelEndpoint, "") != eid) throw;
  }
  // Docker takes only what it did not give: a MAC when it gave none.
  json out = json::object();
  if (mac.empty()) out["MacAddress"] = ep["attachments"][0]["mac"];
  return {{"Interface", out}};
}

json Driver::delete_endpoint(const json& b) {
  return call_gone_ok({{"v", 1}, {"cmd", "endpoint"}, {"args", {"del", endpoint_name(id_of(b, "EndpointID"))}}}, "unknown endpoint");
}

json Driver::join(const json& b) {
  const std::string eid = id_of(b, "EndpointID");
  json ep = endpoint(endpoint_name(eid));
  if (ep.is_null()) throw BadRequest("unknown endpoint " + eid);
  const json& a = ep["attachments"][0];
  // A gateway, always: without one Docker adds its own docker_gwbridge
  // interface and publishes ports there, around dpsw.
  return {{"InterfaceName", {{"SrcName", a["ifname"]}, {"DstPrefix", "eth"}}},
          {"Gateway", a["gateway"]},
          {"StaticRoutes", json::array()},
          {"DisableGatewayService", false}};
}

json Driver::program_external(const json& b) {
  const std::string name = endpoint_name(id_of(b, "EndpointID"));
  const json& pm = opt(b, "com.docker.network.portmap");
  if (!pm.is_array() || pm.empty()) return json::object();
  struct Want {
    std::string proto;
    int port, host;
  };
  std::vector<Want> want;
  for (const auto& p : pm) {
    if (!p.is_object()) throw BadRequest("com.docker.network.portmap: expected objects");
    const int proto = p.value("Proto", 6);
    if (proto != 6 && proto != 17) throw BadRequest("publishing protocol " + std::to_string(proto) + ": dpsw publishes tcp and udp");
    const std::string host_ip = p.value("HostIP", "");
    if (!host_ip.empty() && host_ip != "0.0.0.0" && host_ip != "::")
      throw BadRequest("-p " + host_ip + ":...: dpsw publishes on its uplink's address only");
    if (host_ip == "::") continue;  // Docker asks for both families; dpsw's uplink is IPv4
    want.push_back({proto == 17 ? "udp" : "tcp", p.value("Port", 0), p.value("HostPort", 0)});
  }
  // HostPort 0: the next port of Docker's ephemeral range that no endpoint publishes; on a race, the next.
  std::set<std::pair<std::string, int>> used;
  for (const auto& e : call({{"v", 1}, {"cmd", "show"}, {"args", {"endpoints"}}}))
    for (const auto& s : e.value("publish", json::array())) {
      const std::string t = s.get<std::string>();
      const std::string proto = t.substr(t.find('/') + 1);
      const std::string hosts = t.substr(0, t.find(':'));
      const int lo = std::stoi(hosts.substr(0, hosts.find('-')));
      const int hi = hosts.find('-') == std::string::npos ? lo : std::stoi(hosts.substr(hosts.find('-') + 1));
      for (int x = lo; x <= hi; x++) used.insert({proto, x});
    }
  int next = 49153;
  for (int attempt = 0;; attempt++) {
    json publish = json::array();
    for (auto w : want) {
      if (w.host == 0) {
        while (used.count({w.proto, next}) && next < 65535) next++;
        w.host = next++;
      }
      publish.push_back(std::to_string(w.host) + ":" + std::to_string(w.port) + "/" + w.proto);
    }
    try {
      call({{"v", 1}, {"cmd", "endpoint"}, {"args", {"update"}}, {"spec", {{"name", name}, {"publish", publish}}}});
      return json::object();
    } catch (const Refused& e) {
      if (attempt >= 8 || std::string(e.what()).find("overlaps") == std::string::npos ||
          std::none_of(want.begin(), want.end(), [](const Want& w) { return w.host == 0; }))
        throw;
    }
  }
}

json Driver::revoke_external(const json& b) {
  return call_gone_ok(
      {{"v", 1}, {"cmd", "endpoint"}, {"args", {"update"}}, {"spec", {{"name", endpoint_name(id_of(b, "EndpointID"))}, {"publish", json::array()}}}},
      "unknown endpoint");
}

}  // namespace dpsw::docker
