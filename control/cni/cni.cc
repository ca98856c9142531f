#include "control/cni/cni.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <set>

namespace dpsw::cni {

using nlohmann::json;

const std::vector<std::string>& supported_versions() {
  static const std::vector<std::string> v = {"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"};
  return v;
}

bool version_supported(const std::string& v) {
  const auto& s = supported_versions();
  return std::find(s.begin(), s.end(), v) != s.end();
}

json error_json(const std::string& version, const Error& e) {
  json j = {{"cniVersion", version_supported(version) ? version : supported_versions().back()}, {"code", e.code}, {"msg", e.what()}};
  if (!e.details.empty()) j["details"] = e.details;
  return j;
}

namespace {
// 0.x results carry ips[].version; 1.x interfaces may carry an MTU (1.1).
bool pre_1_0(const std::string& v) { return v.rfind("0.", 0) == 0; }

// a < b, both supported versions (their order in supported_versions()).
bool version_before(const std::string& a, const std::string& b) {
  const auto& s = supported_versions();
  return std::find(s.begin(), s.end(), a) < std::find(s.begin(), s.end(), b);
}

std::string str_key(const json& j, const std::string& key, bool required) {
  if (!j.contains(key)) {
    if (required) throw Error(kInvalidConfig, "network configuration: '" + key + "' is required");
    return "";
  }
  if (!j[key].is_string() || j[key].get<std::string>().empty())
    throw Error(kInvalidConfig, "network configuration: '" + key + "' must be a non-empty string");
  return j[key].get<std::string>();
}

bool valid_container_id(const std::string& s) {
  // The spec: alphanumeric, may contain underscores, periods and hyphens.
  return !s.empty() && s.size() <= 1024 &&
         std::all_of(s.begin(), s.end(), [](char c) { return std::isalnum((unsigned char)c) || c == '_' || c == '.' || c == '-'; });
}

bool valid_ifname(const std::string& s) {
  return !s.empty() && s.size() < 16 && s != "." && s != ".." && std::all_of(s.begin(), s.end(), [](char c) {
           return c != '/' && c != ':' && std::isgraph((unsigned char)c);
         });
}

// One IPv4 address out of "A.B.C.D[/len]" (the ips capability, CNI_ARGS IP=).
std::string ipv4_of(const std::string& what, const std::string& v) {
  const std::string addr = v.substr(0, v.find('/'));
  unsigned a, b, c, d;
  char tail;
  if (addr.find(':') != std::string::npos)
    throw Error(kUnsupportedField, what + ": " + v + ": dpsw networks are IPv4 only (for now)");
  if (std::sscanf(addr.c_str(), "%u.%u.%u.%u%c", &a, &b, &c, &d, &tail) != 4 || a > 255 || b > 255 || c > 255 || d > 255)
    throw Error(kInvalidConfig, what + ": '" + v + "' is not an IPv4 address");
  return addr;
}

void take_ips(Invocation& inv, const json& ips, const std::string& what) {
  if (!ips.is_array()) throw Error(kInvalidConfig, what + ": expected a list of addresses");
  for (const auto& x : ips) {
    if (!x.is_string()) throw Error(kInvalidConfig, what + ": expected a list of addresses");
    std::string a = ipv4_of(what, x.get<std::string>());
    if (inv.ip && *inv.ip != a) throw Error(kUnsupportedField, what + ": one IPv4 address per attachment (got " + *inv.ip + " and " + a + ")");
    inv.ip = a;
  }
}

uint16_t port_number(const json& m, const char* key, size_t i) {
  const std::string what = "runtimeConfig.portMappings[" + std::to_string(i) + "]." + key;
  if (!m.contains(key) || !m[key].is_number_integer()) throw Error(kInvalidConfig, what + ": a port number is required");
  const auto v = m[key].get<int64_t>();
  if (v < 1 || v > 65535) throw Error(kInvalidConfig, what + ": " + std::to_string(v) + " is not a port (1..65535)");
  return uint16_t(v);
}
}  // namespace

Invocation parse_invocation(const std::string& command, const std::string& stdin_text, const std::map<std::string, std::string>& env) {
  Invocation inv;
  inv.command = command;
  auto var = [&](const char* k) {
    auto it = env.find(k);
    return it == env.end() ? std::string() : it->second;
  };
  json conf;
  try {
    conf = json::parse(stdin_text);
  } catch (const std::exception& e) {
    if (command == "VERSION" && stdin_text.find_first_not_of(" \t\r\n") == std::string::npos) conf = json::object();
    else throw Error(kDecodeFailure, "the network configuration on stdin is not JSON", e.what());
  }
  if (!conf.is_object()) throw Error(kDecodeFailure, "the network configuration on stdin is not a JSON object");
  if (conf.contains("cniVersion")) {
    if (!conf["cniVersion"].is_string()) throw Error(kInvalidConfig, "network configuration: 'cniVersion' must be a string");
    inv.version = conf["cniVersion"].get<std::string>();
  }
  if (command == "VERSION") return inv;  // anything else is not read
  if (inv.version.empty()) throw Error(kInvalidConfig, "network configuration: 'cniVersion' is required");
  if (!version_supported(inv.version)) {
    std::string all;
    for (const auto& v : supported_versions()) all += (all.empty() ? "" : ", ") + v;
    throw Error(kIncompatibleVersion, "CNI version " + inv.version + " is not supported", "supported: " + all);
  }
  static const std::set<std::string> kCommands = {"ADD", "DEL", "CHECK", "STATUS", "GC"};
  if (!kCommands.count(command))
    throw Error(kInvalidEnv, command.empty() ? "CNI_COMMAND is not set" : "CNI_COMMAND '" + command + "' is not a CNI verb");
  // Verbs newer than the configuration's version do not exist for it (as libcni's skel answers).
  const std::string since = command == "CHECK" ? "0.4.0" : command == "STATUS" || command == "GC" ? "1.1.0" : "";
  if (!since.empty() && version_before(inv.version, since))
    throw Error(kIncompatibleVersion, command + " needs cniVersion " + since + " or later (the configuration says " + inv.version + ")");

  inv.name = str_key(conf, "name", true);
  inv.network = str_key(conf, "network", false);
  if (inv.network.empty()) inv.network = inv.name;  // a CNI network named as its dpsw network
  if (auto s = str_key(conf, "socket", false); !s.empty()) {
    if (s[0] != '/') throw Error(kInvalidConfig, "network configuration: 'socket' must be an absolute path");
    inv.socket = s;
  }
  if (conf.contains("timeout")) {
    if (!conf["timeout"].is_number() || !(conf["timeout"].get<double>() > 0 && conf["timeout"].get<double>() <= 600))
      throw Error(kInvalidConfig, "network configuration: 'timeout' must be seconds in (0, 600]");
    inv.timeout_s = conf["timeout"].get<double>();
  }
  if (conf.contains("ipam")) {
    const json& ipam = conf["ipam"];
    if (!ipam.is_object()) throw Error(kInvalidConfig, "network configuration: 'ipam' must be an object");
    if (ipam.contains("type"))
      throw Error(kUnsupportedField, "network configuration: ipam.type: dpsw assigns addresses itself, from its network's ip_range",
                  "leave 'ipam' out; ask for an address with the 'ips' capability, args.cni.ips or CNI_ARGS IP=");
    for (auto& [k, v] : ipam.items()) {
      if (k != "ip") throw Error(kUnsupportedField, "network configuration: ipam." + k + " is not supported (only ipam.ip)");
      if (!v.is_string()) throw Error(kInvalidConfig, "network configuration: ipam.ip must be an address");
      inv.ip = ipv4_of("ipam.ip", v.get<std::string>());
    }
  }
  if (conf.contains("args")) {
    const json& a = conf["args"];
    if (a.is_object() && a.contains("cni") && a["cni"].is_object() && a["cni"].contains("ips")) take_ips(inv, a["cni"]["ips"], "args.cni.ips");
  }
  if (conf.contains("runtimeConfig")) {
    const json& rc = conf["runtimeConfig"];
    if (!rc.is_object()) throw Error(kInvalidConfig, "runtimeConfig must be an object");
    if (rc.contains("ips")) take_ips(inv, rc["ips"], "runtimeConfig.ips");
    if (rc.contains("mac")) {
      if (!rc["mac"].is_string()) throw Error(kInvalidConfig, "runtimeConfig.mac must be a MAC address");
      inv.mac = rc["mac"].get<std::string>();
    }
    if (rc.contains("portMappings")) {
      const json& pm = rc["portMappings"];
      if (!pm.is_array()) throw Error(kInvalidConfig, "runtimeConfig.portMappings must be a list");
      for (size_t i = 0; i < pm.size(); i++) {
        const json& m = pm[i];
        if (!m.is_object()) throw Error(kInvalidConfig, "runtimeConfig.portMappings[" + std::to_string(i) + "] must be an object");
        PortMapping p{port_number(m, "hostPort", i), port_number(m, "containerPort", i), "tcp"};
        if (m.contains("protocol")) {
          if (!m["protocol"].is_string()) throw Error(kInvalidConfig, "runtimeConfig.portMappings[" + std::to_string(i) + "].protocol must be tcp or udp");
          p.protocol = m["protocol"].get<std::string>();
          std::transform(p.protocol.begin(), p.protocol.end(), p.protocol.begin(), [](char c) { return char(std::tolower((unsigned char)c)); });
          if (p.protocol != "tcp" && p.protocol != "udp")
            throw Error(kUnsupportedField, "runtimeConfig.portMappings[" + std::to_string(i) + "].protocol: '" + p.protocol + "' (dpsw publishes tcp and udp)");
        }
        if (m.contains("hostIP") && m["hostIP"].is_string()) {
          const std::string h = m["hostIP"].get<std::string>();
          if (!h.empty() && h != "0.0.0.0")
            throw Error(kUnsupportedField, "runtimeConfig.portMappings[" + std::to_string(i) + "].hostIP " + h +
                                               ": dpsw publishes on its uplink's address only");
        }
        inv.port_mappings.push_back(p);
      }
    }
  }
  for (const char* key : {"cni.dev/valid-attachments", "cni.dev/attachments"}) {
    if (!conf.contains(key) || inv.valid_attachments) continue;
    const json& va = conf[key];
    if (!va.is_array()) throw Error(kInvalidConfig, std::string(key) + " must be a list");
    inv.valid_attachments.emplace();
    for (const auto& a : va) {
      if (!a.is_object() || !a.contains("containerID") || !a["containerID"].is_string() || !a.contains("ifname") || !a["ifname"].is_string())
        throw Error(kInvalidConfig, std::string(key) + ": every item needs containerID and ifname");
      inv.valid_attachments->emplace_back(a["containerID"].get<std::string>(), a["ifname"].get<std::string>());
    }
  }
  if (conf.contains("prevResult")) {
    if (!conf["prevResult"].is_object()) throw Error(kInvalidConfig, "prevResult must be an object");
    inv.prev_result = conf["prevResult"];
  }
  if (command == "CHECK" && inv.prev_result.is_null())
    throw Error(kInvalidConfig, "CHECK needs prevResult (the result of ADD) in the configuration");

  // The environment (ADD, DEL, CHECK act on one attachment).
  inv.container_id = var("CNI_CONTAINERID");
  inv.netns = var("CNI_NETNS");
  inv.ifname = var("CNI_IFNAME");
  inv.args = var("CNI_ARGS");
  if (command == "ADD" || command == "DEL" || command == "CHECK") {
    if (!valid_container_id(inv.container_id))
      throw Error(kInvalidEnv, inv.container_id.empty() ? "CNI_CONTAINERID is not set"
                                                        : "CNI_CONTAINERID '" + inv.container_id + "' is not letters, digits, '_', '.', '-'");
    if (!valid_ifname(inv.ifname))
      throw Error(kInvalidEnv, inv.ifname.empty() ? "CNI_IFNAME is not set" : "CNI_IFNAME '" + inv.ifname + "' is not an interface name");
    if (command != "DEL" && (inv.netns.empty() || inv.netns[0] != '/'))
      throw Error(kInvalidEnv, inv.netns.empty() ? "CNI_NETNS is not set" : "CNI_NETNS '" + inv.netns + "' is not an absolute path");
    // CNI_ARGS: K=V;K=V. IP= and MAC= as the reference plugins read them; other keys are the runtime's.
    for (size_t a = 0, b; a < inv.args.size(); a = b + 1) {
      b = inv.args.find(';', a);
      if (b == std::string::npos) b = inv.args.size();
      const std::string kv = inv.args.substr(a, b - a);
      if (kv.empty()) continue;
      const auto eq = kv.find('=');
      if (eq == std::string::npos) throw Error(kInvalidEnv, "CNI_ARGS: '" + kv + "' is not KEY=VALUE");
      const std::string k = kv.substr(0, eq), v = kv.substr(eq + 1);
      if (k == "IP") {
        std::string ip = ipv4_of("CNI_ARGS IP", v);
        if (inv.ip && *inv.ip != ip) throw Error(kUnsupportedField, "CNI_ARGS IP=" + ip + " differs from the address asked elsewhere (" + *inv.ip + ")");
        inv.ip = ip;
      } else if (k == "MAC") {
        inv.mac = v;
      }
    }
  }
  if (command == "GC" && !inv.valid_attachments)
    throw Error(kInvalidConfig, "GC needs cni.dev/valid-attachments (the attachments to keep)");
  return inv;
}

std::string endpoint_name(const std::string& container_id, const std::string& ifname) {
  uint64_t h = 14695981039346656037ull;  // FNV-1a 64 of "id/ifname"
  for (char c : container_id + "/" + ifname) h = (h ^ uint8_t(c)) * 1099511628211ull;
  std::string prefix;
  for (char c : container_id)
    if (std::isalnum((unsigned char)c) && prefix.size() < 12) prefix += char(std::tolower((unsigned char)c));
  char hex[9];
  std::snprintf(hex, sizeof hex, "%08x", uint32_t(h ^ (h >> 32)));
  return "cni-" + (prefix.empty() ? std::string() : prefix + "-") + hex;
}

json add_spec(const Invocation& inv) {
  json spec = {{"name", endpoint_name(inv.container_id, inv.ifname)},
               {"networks", {inv.network}},
               {"netns", inv.netns},
               {"ifname", inv.ifname},
               {"persist", true},  // made again when dpsw restarts, kept by its reloads
               {"labels", {{kLabelContainer, inv.container_id}, {kLabelIfname, inv.ifname}, {kLabelNetwork, inv.name}}}};
  if (inv.ip) spec["ip"] = *inv.ip;
  if (inv.mac) spec["mac"] = *inv.mac;
  if (!inv.port_mappings.empty()) {
    json pub = json::array();
    for (const auto& p : inv.port_mappings)
      pub.push_back(std::to_string(p.host_port) + ":" + std::to_string(p.container_port) + "/" + p.protocol);
    spec["publish"] = pub;
  }
  return spec;
}

namespace {
std::string label(const json& ep, const char* key) {
  if (!ep.contains("labels") || !ep["labels"].is_object() || !ep["labels"].contains(key) || !ep["labels"][key].is_string()) return "";
  return ep["labels"][key].get<std::string>();
}
}  // namespace

bool is_attachment(const json& ep, const Invocation& inv) {
  return label(ep, kLabelContainer) == inv.container_id && label(ep, kLabelIfname) == inv.ifname && label(ep, kLabelNetwork) == inv.name;
}

json add_result(const Invocation& inv, const json& ep, const std::string& host_mac) {
  const json& a = ep.at("attachments").at(0);
  json host = {{"name", a.at("host_ifname")}};
  if (!host_mac.empty()) host["mac"] = host_mac;
  json ctr = {{"name", a.at("ifname")}, {"mac", a.at("mac")}, {"sandbox", inv.netns}};
  if (inv.version == "1.1.0") ctr["mtu"] = a.at("mtu");
  json ip = {{"address", a.at("ip")}, {"gateway", a.at("gateway")}, {"interface", 1}};
  if (pre_1_0(inv.version)) ip["version"] = "4";
  // Chained after another plugin: its result, with ours added (interface indexes shifted).
  json out = inv.prev_result.is_object() ? inv.prev_result : json::object();
  for (const char* k : {"interfaces", "ips", "routes"})
    if (!out.contains(k) || !out[k].is_array()) out[k] = json::array();
  if (!out.contains("dns") || !out["dns"].is_object()) out["dns"] = json::object();
  ip["interface"] = out["interfaces"].size() + 1;
  out["interfaces"].push_back(host);
  out["interfaces"].push_back(ctr);
  out["ips"].push_back(ip);
  if (a.value("default_route", false)) out["routes"].push_back({{"dst", "0.0.0.0/0"}, {"gw", a.at("gateway")}});
  out["cniVersion"] = inv.version;
  return out;
}

std::vector<std::string> stale_endpoints(const Invocation& inv, const json& endpoints) {
  std::set<std::pair<std::string, std::string>> keep;
  if (inv.valid_attachments) keep.insert(inv.valid_attachments->begin(), inv.valid_attachments->end());
  std::vector<std::string> out;
  for (const auto& ep : endpoints) {
    if (label(ep, kLabelNetwork) != inv.name || label(ep, kLabelContainer).empty()) continue;
    if (!keep.count({label(ep, kLabelContainer), label(ep, kLabelIfname)})) out.push_back(ep.value("name", ""));
  }
  return out;
}

}  // namespace dpsw::cni
