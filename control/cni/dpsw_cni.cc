// dpsw-cni: the CNI plugin (spec 1.1; 0.3.0 to 1.1.0). A thin client of the
// daemon's control socket: each attachment is one dpsw endpoint in the
// runtime's namespace (control/cni/cni.h). Results and errors go to stdout
// as the spec says, diagnostics to stderr; the exit status is 0 or the
// error's code.
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netpacket/packet.h>
#include <arpa/inet.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include "control/cni/cni.h"
#include "control/core/ctl_client.h"

extern char** environ;

namespace {

using nlohmann::json;
using namespace dpsw::cni;

constexpr size_t kMaxStdin = 16u << 20;

// One request to the daemon. Unreachable -> `unreachable_code` (11: try
// again later; STATUS says 50: not available). A refusal is returned when
// `refusal` is non-null, else thrown as kDpswRefused.
json call(const Invocation& inv, const json& req, int unreachable_code, std::string* refusal = nullptr) {
  json resp;
  try {
    resp = dpsw::ctl_call(inv.socket, req, inv.timeout_s);
  } catch (const dpsw::CtlError& e) {
    if (e.kind == dpsw::CtlError::Kind::kUsage) throw Error(kInvalidConfig, std::string("network configuration: socket: ") + e.what());
    throw Error(unreachable_code, std::string("dpsw is not serving: ") + e.what());
  }
  if (resp.value("ok", false)) return resp.value("result", json());
  const std::string err = resp.value("error", std::string("request refused"));
  if (refusal) {
    *refusal = err;
    return json();
  }
  throw Error(kDpswRefused, "dpsw: " + err);
}

json show(const std::string& view, const std::vector<std::string>& args) {
  json a = json::array({view});
  for (const auto& x : args) a.push_back(x);
  return {{"v", 1}, {"cmd", "show"}, {"args", a}};
}

// The attachment's endpoint, or null when dpsw has none by that name.
json find_endpoint(const Invocation& inv, const std::string& name, int unreachable_code) {
  std::string refused;
  json r = call(inv, show("endpoints", {name}), unreachable_code, &refused);
  if (!refused.empty()) {
    if (refused.find("unknown endpoint") != std::string::npos) return json();
    throw Error(kDpswRefused, "dpsw: " + refused);
  }
  return r.is_array() && !r.empty() ? r[0] : json();
}

std::string read_mac(const std::string& ifname) {
  std::ifstream f("/sys/class/net/" + ifname + "/address");
  std::string mac;
  std::getline(f, mac);
  return mac;
}

void del_endpoint(const Invocation& inv, const std::string& name) {
  std::string refused;
  call(inv, {{"v", 1}, {"cmd", "endpoint"}, {"args", {"del", name}}}, kTryAgainLater, &refused);
  if (!refused.empty() && refused.find("unknown endpoint") == std::string::npos) throw Error(kDpswRefused, "dpsw: " + refused);
}

int add(const Invocation& inv) {
  const std::string name = endpoint_name(inv.container_id, inv.ifname);
  if (json ep = find_endpoint(inv, name, kTryAgainLater); !ep.is_null())
    throw Error(kAttachmentExists, "container " + inv.container_id + " already has " + inv.ifname + " attached (dpsw endpoint " + name + ")",
                "DEL it first");
  json ep = call(inv, {{"v", 1}, {"cmd", "endpoint"}, {"args", {"add"}}, {"spec", add_spec(inv)}}, kTryAgainLater);
  const json& a = ep.at("attachments").at(0);
  std::cout << add_result(inv, ep, read_mac(a.at("host_ifname").get<std::string>())).dump(2) << "\n";
  return 0;
}

int del(const Invocation& inv) {
  const std::string name = endpoint_name(inv.container_id, inv.ifname);
  json ep = find_endpoint(inv, name, kTryAgainLater);
  if (ep.is_null() || !is_attachment(ep, inv)) return 0;  // unknown, or deleted already: nothing to do
  del_endpoint(inv, name);
  return 0;
}

// The container's interface as the kernel has it: MAC and IPv4 addresses.
struct Seen {
  bool found = false;
  std::string mac;
  std::vector<std::string> addrs;
};

Seen look_inside(const Invocation& inv) {
  const int ns = open(inv.netns.c_str(), O_RDONLY | O_CLOEXEC);
  if (ns < 0) throw Error(kInterfaceMismatch, "CNI_NETNS " + inv.netns + " cannot be opened (the container is gone?)");
  const int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  if (self < 0 || setns(ns, CLONE_NEWNET) < 0) {
    close(ns);
    if (self >= 0) close(self);
    throw Error(kIoFailure, "cannot enter the namespace " + inv.netns);
  }
  close(ns);
  Seen s;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) == 0) {
    for (ifaddrs* i = list; i; i = i->ifa_next) {
      if (!i->ifa_addr || inv.ifname != i->ifa_name) continue;
      s.found = true;
      if (i->ifa_addr->sa_family == AF_PACKET) {
        auto* ll = reinterpret_cast<sockaddr_ll*>(i->ifa_addr);
        char buf[18];
        std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", ll->sll_addr[0], ll->sll_addr[1], ll->sll_addr[2], ll->sll_addr[3],
                      ll->sll_addr[4], ll->sll_addr[5]);
        s.mac = buf;
      } else if (i->ifa_addr->sa_family == AF_INET) {
        char buf[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, buf, sizeof buf);
        s.addrs.push_back(buf);
      }
    }
    freeifaddrs(list);
  }
  const bool back = setns(self, CLONE_NEWNET) == 0;
  close(self);
  if (!back) throw Error(kIoFailure, "cannot return to the plugin's own namespace");
  return s;
}

int check(const Invocation& inv) {
  const std::string name = endpoint_name(inv.container_id, inv.ifname);
  json ep = find_endpoint(inv, name, kTryAgainLater);
  if (ep.is_null() || !is_attachment(ep, inv))
    throw Error(kUnknownContainer, "dpsw has no attachment of " + inv.ifname + " for container " + inv.container_id + " on network " + inv.name);
  const json& a = ep.at("attachments").at(0);
  const std::string want_mac = a.at("mac"), cidr = a.at("ip");
  const std::string want_ip = cidr.substr(0, cidr.find('/'));
  if (ep.value("netns", "") != inv.netns)
    throw Error(kInterfaceMismatch, "the attachment is in namespace " + ep.value("netns", "") + ", not " + inv.netns);
  Seen s = look_inside(inv);
  if (!s.found) throw Error(kInterfaceMismatch, "interface " + inv.ifname + " is missing in " + inv.netns);
  if (s.mac != want_mac) throw Error(kInterfaceMismatch, "interface " + inv.ifname + " has MAC " + s.mac + ", dpsw gave it " + want_mac);
  if (std::find(s.addrs.begin(), s.addrs.end(), want_ip) == s.addrs.end())
    throw Error(kInterfaceMismatch, "interface " + inv.ifname + " has lost its address " + cidr);
  // The runtime's record of the ADD must match what dpsw has: the addresses
  // of our interface (other plugins of a chain may have added others).
  const json& prev = inv.prev_result;
  if (prev.contains("ips") && prev["ips"].is_array() && prev.contains("interfaces") && prev["interfaces"].is_array())
    for (const auto& ip : prev["ips"]) {
      if (!ip.is_object() || !ip.contains("interface") || !ip["interface"].is_number_unsigned()) continue;
      const size_t i = ip["interface"].get<size_t>();
      if (i >= prev["interfaces"].size() || !prev["interfaces"][i].is_object()) continue;
      const json& itf = prev["interfaces"][i];
      if (itf.value("name", "") == inv.ifname && itf.value("sandbox", "") == inv.netns && ip.value("address", "") != cidr)
        throw Error(kInterfaceMismatch, "prevResult gives " + ip.value("address", "?") + ", dpsw has " + cidr);
    }
  return 0;
}

int status(const Invocation& inv) {
  json nets = call(inv, show("networks", {}), kNotAvailable);
  for (const auto& n : nets)
    if (n.value("name", "") == inv.network) return 0;
  throw Error(kNotAvailable, "dpsw has no network '" + inv.network + "'");
}

int gc(const Invocation& inv) {
  json eps = call(inv, show("endpoints", {}), kTryAgainLater);
  std::string failed;
  for (const auto& name : stale_endpoints(inv, eps)) {
    try {
      del_endpoint(inv, name);
      std::cerr << "dpsw-cni: GC removed " << name << "\n";
    } catch (const Error& e) {
      failed += std::string(failed.empty() ? "" : "; ") + name + ": " + e.what();
    }
  }
  if (!failed.empty()) throw Error(kDpswRefused, "GC could not remove every stale attachment", failed);
  return 0;
}

}  // namespace

int main() {
  signal(SIGPIPE, SIG_IGN);
  std::map<std::string, std::string> env;
  for (char** e = environ; *e; e++) {
    std::string kv = *e;
    if (auto eq = kv.find('='); eq != std::string::npos && kv.rfind("CNI_", 0) == 0) env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  const std::string command = env.count("CNI_COMMAND") ? env["CNI_COMMAND"] : "";
  std::string text;
  {
    char buf[65536];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, stdin)) > 0) {
      text.append(buf, n);
      if (text.size() > kMaxStdin) break;
    }
  }
  std::string version;  // errors are written in the config's version when it has a readable one
  try {
    json j = json::parse(text);
    if (j.is_object() && j.contains("cniVersion") && j["cniVersion"].is_string()) version = j["cniVersion"];
  } catch (const std::exception&) {
  }
  try {
    if (text.size() > kMaxStdin) throw Error(kDecodeFailure, "the network configuration on stdin is larger than 16 MiB");
    const Invocation inv = parse_invocation(command, text, env);
    if (command == "VERSION") {
      std::cout << json({{"cniVersion", version_supported(inv.version) ? inv.version : supported_versions().back()},
                         {"supportedVersions", supported_versions()}})
                       .dump()
                << "\n";
      return 0;
    }
    if (command == "ADD") return add(inv);
    if (command == "DEL") return del(inv);
    if (command == "CHECK") return check(inv);
    if (command == "STATUS") return status(inv);
    return gc(inv);  // parse_invocation accepts no other verb
  } catch (const Error& e) {
    std::cout << error_json(version, e).dump() << "\n";
    std::cerr << "dpsw-cni: " << command << ": " << e.what() << (e.details.empty() ? "" : " (" + e.details + ")") << "\n";
    return e.code < 256 ? e.code : 1;
  } catch (const std::exception& e) {
    std::cout << error_json(version, Error(kIoFailure, e.what())).dump() << "\n";
    std::cerr << "dpsw-cni: " << command << ": " << e.what() << "\n";
    return kIoFailure;
  }
}
