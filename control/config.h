// dpsw configuration file (SPEC.md §3): parsing, validation and the
// resolved plan (addresses, MACs, interface names) derived from it.
//
// Every error names the file, the line and the key (`demo.yaml:12:
// networks[1].subnet: ...`) and is raised before anything is created.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "control/ipv4.h"
#include "dataplane/ether.h"

namespace dpsw {

struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class Driver { kBridge, kOverlay, kMacvlan };
enum class Mode { kBridge, kNone, kHost, kContainer };
enum class PortKind { kAfxdp, kVhost };

struct SwitchConfig {
  std::string name = "dpsw";          // instance name: prefix of namespaces and links
  std::vector<int> workers{1};        // cores
  std::string control_socket = "/run/dpsw/dpsw.sock";
  std::string state_dir = "/run/dpsw";
  uint32_t mac_table_size = 65536;
  uint32_t mac_aging_s = 300;
  uint32_t conntrack_size = 262144;
  bool idle_block = false;            // idle: poll (default) | block
  uint32_t idle_after_us = 200;       // with idle: block, block after this long without a frame
};

struct NetworkConfig {
  std::string name;
  Driver driver = Driver::kBridge;
  Ipv4Prefix subnet;
  uint32_t gateway = 0;
  std::optional<Ipv4Prefix> ip_range;
  bool internal = false;
  uint32_t mtu = 1500;
  int line = 0;
};

struct EndpointConfig {
  std::string name;
  std::vector<std::string> networks;
  Mode mode = Mode::kBridge;
  std::string container;              // with Mode::kContainer
  std::string netns;                  // adopt this namespace (path) instead of creating one
  PortKind port = PortKind::kAfxdp;
  std::optional<Mac> mac;
  std::optional<uint32_t> ip;
  int line = 0;
};

struct Config {
  std::string path;
  SwitchConfig sw;
  std::vector<NetworkConfig> networks;
  std::vector<EndpointConfig> endpoints;

  const NetworkConfig* network(const std::string& n) const;
  const EndpointConfig* endpoint(const std::string& n) const;
};

// Parse and validate. `origin` names the source in messages (the file path).
Config parse_config(const std::string& yaml_text, const std::string& origin);
Config load_config(const std::string& path);

// ---- The resolved plan: what the control plane will create ----

struct PlannedAttachment {   // one veth of one endpoint on one network
  std::string network;
  uint16_t bd = 0;           // index of the network
  std::string host_ifname;   // host end, driven by AF_XDP
  std::string ifname;        // container end: eth0, eth1, ...
  Mac mac = 0;
  uint32_t ip = 0;
  uint8_t prefix_len = 0;
  uint32_t gateway = 0;
  uint32_t mtu = 1500;
};

struct PlannedEndpoint {
  std::string name;
  Mode mode = Mode::kBridge;
  std::string netns_name;    // created namespace (/var/run/netns/<name>), empty if adopted/host
  std::string netns_path;    // path to open; empty for host mode
  bool create_netns = false;
  std::string joins;         // Mode::kContainer: endpoint whose namespace this one shares
  std::vector<PlannedAttachment> attachments;
};

struct Plan {
  std::vector<PlannedEndpoint> endpoints;
};

// Allocates addresses (IPAM), MACs and names. Throws ConfigError.
Plan make_plan(const Config& cfg);

// Host-side link name: <instance prefix>-<8 hex digits>, at most 15 bytes.
std::string host_ifname(const std::string& instance, const std::string& endpoint, const std::string& network);

}  // namespace dpsw
