// The CNI plugin's logic (spec 1.1, https://www.cni.dev/docs/spec/), apart
// from its I/O so that unit tests drive it: the network configuration it
// accepts, how a (container id, interface) pair becomes a dpsw endpoint, the
// control-socket requests of each verb, and results and errors written in the
// version the runtime asked for. dpsw_cni.cc is the executable around it.
//
// One attachment = one dpsw endpoint named by cni_endpoint_name(), carrying
// labels with the full container id, interface name and CNI network name:
// DEL and GC find it by those, never by the namespace (which may be gone).
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace dpsw::cni {

// CNI's well-known error codes (spec: "Error"); 100+ are this plugin's own.
enum Code : int {
  kIncompatibleVersion = 1,
  kUnsupportedField = 2,
  kUnknownContainer = 3,
  kInvalidEnv = 4,
  kIoFailure = 5,
  kDecodeFailure = 6,
  kInvalidConfig = 7,
  kTryAgainLater = 11,
  kNotAvailable = 50,
  kDpswRefused = 100,       // the daemon refused the request (its message says why)
  kAttachmentExists = 101,  // ADD of a (container, interface) already attached
  kInterfaceMismatch = 102, // CHECK: the container's interface is missing or differs
};

struct Error : std::runtime_error {
  int code;
  std::string details;
  Error(int c, const std::string& msg, std::string det = "") : std::runtime_error(msg), code(c), details(std::move(det)) {}
};

// Versions this plugin reads and writes; the newest is what it speaks when
// the configuration names none (VERSION only: other verbs require one).
const std::vector<std::string>& supported_versions();
bool version_supported(const std::string& v);

// The error object of the spec, in `version` (the config's, when it could be read).
nlohmann::json error_json(const std::string& version, const Error& e);

struct PortMapping {
  uint16_t host_port, container_port;
  std::string protocol;  // tcp | udp
};

// What the runtime gave: the network configuration (stdin) and the CNI_* variables.
struct Invocation {
  std::string command;       // ADD DEL CHECK STATUS GC VERSION
  std::string container_id;  // CNI_CONTAINERID
  std::string netns;         // CNI_NETNS
  std::string ifname;        // CNI_IFNAME
  std::string args;          // CNI_ARGS (K=V;K=V)

  std::string version;       // cniVersion
  std::string name;          // the CNI network's name
  std::string network;       // the dpsw network ("network"; default: the CNI network's name)
  std::string socket = "/run/dpsw/dpsw.sock";
  double timeout_s = 30;
  std::optional<std::string> ip;   // runtimeConfig.ips, args.cni.ips or CNI_ARGS IP=
  std::optional<std::string> mac;  // runtimeConfig.mac or CNI_ARGS MAC=
  std::vector<PortMapping> port_mappings;
  std::optional<std::vector<std::pair<std::string, std::string>>> valid_attachments;  // GC: (container id, ifname)
  nlohmann::json prev_result;  // CHECK (and DEL) in 1.x
};

// Parses stdin and the environment for `command`. Throws Error with the
// spec's code: 6 (not JSON), 1 (version), 7 (a key is wrong), 4 (a variable
// missing or malformed), 2 (a field this plugin does not support).
Invocation parse_invocation(const std::string& command, const std::string& stdin_text,
                            const std::map<std::string, std::string>& env);

// The dpsw endpoint of one attachment: "cni-" + up to 12 characters of the
// container id + "-" + a hash of the full id and the interface (a DNS label).
std::string endpoint_name(const std::string& container_id, const std::string& ifname);

// Label keys an attachment's endpoint carries.
inline constexpr const char* kLabelContainer = "cni.dpsw/container-id";
inline constexpr const char* kLabelIfname = "cni.dpsw/ifname";
inline constexpr const char* kLabelNetwork = "cni.dpsw/network";

// The `endpoint add` spec of ADD.
nlohmann::json add_spec(const Invocation& inv);

// True when dpsw's endpoint (an item of `show endpoints`) is this attachment.
bool is_attachment(const nlohmann::json& endpoint, const Invocation& inv);

// The ADD result from dpsw's endpoint (`endpoint add`'s answer), in inv.version.
// host_mac: the host end's MAC ("" when unknown).
nlohmann::json add_result(const Invocation& inv, const nlohmann::json& endpoint, const std::string& host_mac);

// GC: the names of the endpoints (of `show endpoints`) this CNI network owns
// that are not among inv.valid_attachments.
std::vector<std::string> stale_endpoints(const Invocation& inv, const nlohmann::json& endpoints);

}  // namespace dpsw::cni
