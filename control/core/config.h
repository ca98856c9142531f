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

#include "control/core/ipv4.h"
#include "dataplane/core/ether.h"

namespace dpsw {

struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Where a network or endpoint definition came from, for error messages:
// "demo.yaml:12: networks[1].subnet: ..." for a file, or
// "dpswctl endpoint add: ip: ..." for a single item sent at run time.
struct ItemSource {
  std::string origin;                    // file path, or the command
  std::string path;                      // "networks[1]" in a file, "" for a single item
  int line = 0;                          // the item's first line (0: not from a file)
  std::map<std::string, int> key_lines;  // "subnet" / "networks[0]" -> line
  std::string where(const std::string& key) const;
};

enum class Driver { kBridge, kOverlay, kMacvlan };
const char* driver_name(Driver d);
enum class Mode { kBridge, kNone, kHost, kContainer };
enum class PortKind { kAfxdp, kVhost };
constexpr uint32_t kAfxdpMaxMtu = 3500;  // one 4 KiB UMEM frame per packet (no multi-buffer yet)
// A fast-tier endpoint's host veth: it takes any frame the container sends up
// to this (one longer than its network allows reaches dpsw and is dropped as
// `oversize`, counted), but no more than a container needs to attach an XDP
// program to its end: veth allows one only while the peer's MTU fits a page
// (~3500; a network with a larger MTU: the network's, and such programs need
// multi-buffer support).
inline uint32_t fast_host_mtu(uint32_t network_mtu) { return network_mtu > kAfxdpMaxMtu ? network_mtu : kAfxdpMaxMtu; }

struct SwitchConfig {
  std::string name = "dpsw";          // instance name: prefix of namespaces and links
  std::vector<int> workers{1};        // cores
  std::string control_socket = "/run/dpsw/dpsw.sock";
  std::string state_dir = "/run/dpsw";
  // Persisted networks and endpoints (added with persist: true) are kept in
  // persist_dir/<name>.persisted.json: on disk, so that Docker's networks
  // survive a reboot as Docker's own store does.
  std::string persist_dir = "/var/lib/dpsw";
  uint32_t mac_table_size = 65536;
  uint32_t mac_aging_s = 300;
  uint32_t conntrack_size = 262144;
  // conntrack.timeouts (seconds): established TCP, TCP opening/closing, UDP (after a reply: x4), ICMP
  uint32_t ct_tcp_established = 3600, ct_tcp_transitory = 60, ct_udp = 30, ct_icmp = 30;
  // The handshake (netfilter's SYN_SENT / SYN_RECV) and protocols other than TCP/UDP/ICMP (after a reply: x6).
  uint32_t ct_tcp_syn_sent = 120, ct_tcp_syn_recv = 60, ct_other = 30;
  // idle: poll | block; unset (auto, the default): block when the fast tier
  // is on (workers then see only punted frames), poll with fast_path: off.
  std::optional<bool> idle_block;
  bool blocks() const { return idle_block.value_or(fast_path); }
  uint32_t idle_after_us = 200;       // with idle: block, block after this long without a frame
  bool fast_path = true;              // fast_path: auto (default) | off, for every network (see fast_tier.h)
  // fast_path_steering: where the fast tier moves a flooding sender's receive
  // work (bpf/fast_l2.bpf.c). cores unset: the workers' cores when they block
  // when idle (they are dpsw's and otherwise asleep), none when they poll.
  std::optional<std::vector<int>> steer_cores;
  uint32_t steer_above_pps = 50000;   // per sending endpoint and CPU
  std::vector<int> steering_cores() const { return steer_cores.value_or(blocks() ? workers : std::vector<int>{}); }
  // control_cores: where the control thread (and every thread dpsw starts
  // but the workers) runs. Unset: the workers' cores when they block when
  // idle (dpsw's, otherwise asleep: its periodic work then never preempts
  // the containers' cores), else every allowed core but the polled ones.
  std::optional<std::vector<int>> control_cores;
};

// The host's way out (SPEC §3 `uplink`): an AF_XDP port on an existing
// interface, the host address on that segment, the next hop.
struct UplinkConfig {
  std::string interface;
  Ipv4Prefix address;     // host address and the segment's prefix
  uint32_t gateway = 0;   // 0: none
  uint32_t mtu = 1500;    // the interface's MTU, read at start (not a config key)
  ItemSource src;
};

struct NetworkConfig {
  std::string name;
  Driver driver = Driver::kBridge;
  Ipv4Prefix subnet;
  uint32_t gateway = 0;
  bool gateway_set = false;  // given explicitly (else derived)
  std::optional<Ipv4Prefix> ip_range;
  bool internal = false;
  uint32_t mtu = 1500;
  bool mtu_set = false;      // given explicitly (an overlay's default follows the uplink)
  std::vector<std::string> allow;  // bridge networks this one routes to and from (default: isolated)
  uint32_t vni = 0;                // overlay: VXLAN network identifier (1..16777215)
  std::vector<uint32_t> peers;     // overlay: remote VTEP addresses (order kept; not part of same_definition)
  bool fast_path = true;           // fast_path: auto | off (in-kernel tier for its AF_XDP endpoints)
  bool persist = false;            // added at runtime, kept across restarts and reloads (EndpointConfig::persist)
  ItemSource src;
  // Same network (reload keeps it and its endpoints): driver, subnet,
  // gateway, VNI, fast_path. Settings applied in place: ip_range, internal,
  // mtu, allow (and peers, compared on their own).
  bool same_definition(const NetworkConfig& o) const;
  bool same_settings(const NetworkConfig& o) const;
};

// publish: ["8080:80/tcp"], ["9000-9099:9000-9099/tcp"] (host ports on the uplink address)
struct Publish {
  uint8_t proto = 6;  // 6 tcp, 17 udp
  uint16_t host_lo = 0, host_hi = 0, ctr_lo = 0;
  bool operator==(const Publish&) const = default;
};
std::string publish_to_string(const Publish& p);

struct EndpointConfig {
  std::string name;
  std::vector<std::string> networks;
  Mode mode = Mode::kBridge;
  std::string container;              // with Mode::kContainer
  std::string netns;                  // adopt this namespace (path) instead of creating one
  PortKind port = PortKind::kAfxdp;
  std::string vhost_socket;           // with PortKind::kVhost
  bool vhost_client = false;          // vhost_mode: client (dpsw connects to the application's socket)
  std::optional<Mac> mac;
  std::optional<uint32_t> ip;
  std::vector<Publish> publish;
  std::string ifname;                 // its interface in the namespace (one network only; default eth0, eth1, ...)
  std::map<std::string, std::string> labels;  // free key/value pairs (service backends, the CNI plugin's attachment ids)
  std::vector<std::string> aliases;   // more DNS names on its networks (lower case; several endpoints may share one)
  bool fast_path = true;              // fast_path: auto | off
  // Added through the control socket with `persist: true` (the CNI plugin's
  // attachments): saved in state_dir, made again at the next start, kept by
  // `reload` (which applies the file's difference). Not valid in the file.
  bool persist = false;
  // The veth's container end is left in dpsw's own namespace, down and
  // without addresses, named by `ifname` (default dh + a hash), for a runtime
  // to move into its container and configure (Docker's remote driver). One network.
  bool handoff = false;
  ItemSource src;
  bool same_definition(const EndpointConfig& o) const;  // all but publish, labels and aliases (applied in place)
};

// dns: the embedded responder at every bridge network's gateway (issue 16).
struct DnsConfig {
  bool enabled = true;                 // enabled: false turns the responder off (port 53 of the gateway is then routed like any other)
  std::vector<uint32_t> upstream;      // where other names go; unset: the host's /etc/resolv.conf nameservers
  bool upstream_set = false;
  uint32_t ttl = 600;                  // of the answers (Docker's embedded DNS uses 600)
  bool resolv_conf = true;             // write /etc/netns/NAME/resolv.conf for the namespaces dpsw creates
  bool operator==(const DnsConfig&) const = default;
};

// services: a load-balanced virtual IP (Docker's service VIP and routing
// mesh), or DNS round robin over the backends (Docker's --endpoint-mode dnsrr).
struct ServiceConfig {
  std::string name;                    // its DNS name on its network
  std::string network;                 // a bridge network
  std::optional<uint32_t> vip;         // mode vip: default from the network's IPAM
  std::vector<Publish> ports;          // "80/tcp", "8000-8009/tcp", "80:8080/tcp" (VIP port(s) : backends' port(s)); Publish's host_* = the VIP's
  std::vector<std::string> backend_names;              // backends: [web1, web2] ...
  std::map<std::string, std::string> backend_labels;   // ... or backends: { labels: { app: web } } (every endpoint on the network with them)
  enum class Mode : uint8_t { kVip, kDnsrr } mode = Mode::kVip;
  std::vector<Publish> publish;        // "8081:80/tcp": host port(s) on the uplink -> the service's (VIP) port(s)
  // health_check: { port: 80, interval_s: 2 }: a backend that does not
  // accept a TCP connection there (tried from inside its namespace) leaves
  // the table until it does. port 0: none.
  uint16_t health_port = 0;
  uint32_t health_interval_s = 2;
  ItemSource src;
  bool operator==(const ServiceConfig& o) const {
    return name == o.name && network == o.network && vip == o.vip && ports == o.ports && backend_names == o.backend_names &&
           backend_labels == o.backend_labels && mode == o.mode && publish == o.publish && health_port == o.health_port &&
           health_interval_s == o.health_interval_s;
  }
};

// A DNS name as dpsw answers it (an endpoint's name, an alias): letters,
// digits, '-' and '_' in dot-separated labels of 1..63, at most 253 in all.
bool valid_dns_name(const std::string& s);

struct Config {
  std::string path;
  SwitchConfig sw;
  std::optional<UplinkConfig> uplink;
  DnsConfig dns;
  std::vector<ServiceConfig> services;
  std::vector<NetworkConfig> networks;
  std::vector<EndpointConfig> endpoints;

  const NetworkConfig* network(const std::string& n) const;
  const EndpointConfig* endpoint(const std::string& n) const;
  const ServiceConfig* service(const std::string& n) const;
};

// A configuration (file or dpswctl item) larger than this is refused before parsing.
constexpr size_t kMaxConfigBytes = 4u << 20;

// Parse and validate. `origin` names the source in messages (the file path).
Config parse_config(const std::string& yaml_text, const std::string& origin);
Config load_config(const std::string& path);

// One network or endpoint on its own (YAML or JSON text: the same keys as in
// the file), as dpswctl sends them. Checks the item alone; check_config()
// checks it against the rest.
NetworkConfig parse_network_item(const std::string& text, const std::string& origin);
EndpointConfig parse_endpoint_item(const std::string& text, const std::string& origin);
ServiceConfig parse_service_item(const std::string& text, const std::string& origin);

// Cross-item rules: unique names, non-overlapping subnets, known networks,
// valid container:NAME references, macvlan against the uplink. Throws ConfigError.
void check_config(const Config& cfg);
// Defaults that depend on other items (a macvlan network's gateway is the
// uplink's; an overlay network's MTU is the uplink's MTU - 50).
void resolve_defaults(Config& cfg);

// What changed between two configurations (reload applies only this).
// "changed" items are recreated (an endpoint keeps its namespace: only its
// interfaces are made anew); "updated" ones change in place.
struct ConfigDiff {
  std::vector<std::string> networks_added, networks_removed, networks_changed;
  std::vector<std::string> networks_updated;  // ip_range, internal, mtu, allow
  std::vector<std::string> endpoints_added, endpoints_removed, endpoints_changed;
  std::vector<std::string> endpoints_updated;  // publish
  std::vector<std::string> switch_changed;  // switch keys that differ (need a restart)
  std::vector<std::string> peers_changed;   // overlay networks whose peer list alone changed (applied in place)
  bool dns_changed = false;                 // the dns section (applied in place: the next snapshot)
  bool services_changed = false;            // the services section (applied in place: the next snapshot)
  bool empty() const;
};
ConfigDiff diff_configs(const Config& before, const Config& after);

// ---- The resolved plan: what the control plane will create ----

struct PlannedAttachment {   // one veth of one endpoint on one network
  std::string network;
  Driver driver = Driver::kBridge;
  uint16_t bd = 0;           // index of the network
  std::string host_ifname;   // host end, driven by AF_XDP
  std::string ifname;        // container end: eth0, eth1, ...
  Mac mac = 0;
  uint32_t ip = 0;
  uint8_t prefix_len = 0;
  uint32_t gateway = 0;
  uint32_t mtu = 1500;
  // Served by the in-kernel fast tier (an AF_XDP endpoint with fast_path
  // auto on the switch, its network and itself); else by AF_XDP alone.
  bool fast = false;
};

struct PlannedEndpoint {
  std::string name;
  Mode mode = Mode::kBridge;
  std::string netns_name;    // created namespace (/var/run/netns/<name>), empty if adopted/host
  std::string netns_path;    // path to open; empty for host mode
  bool create_netns = false;
  std::string joins;         // Mode::kContainer: endpoint whose namespace this one shares
  PortKind port = PortKind::kAfxdp;
  std::string vhost_socket;  // PortKind::kVhost: no namespace, no veth; one attachment
  bool vhost_client = false;
  std::vector<PlannedAttachment> attachments;
  bool handoff = false;      // EndpointConfig::handoff: no namespace of ours to open
};

struct PlannedService {
  std::string name, network;
  uint16_t bd = 0;    // index of the network
  uint32_t vip = 0;   // mode vip: its address (static, kept from the previous plan, or allocated); 0 for dnsrr
};

struct Plan {
  std::vector<PlannedEndpoint> endpoints;
  std::vector<PlannedService> services;
  const PlannedService* service(const std::string& n) const {
    for (const auto& s : services)
      if (s.name == n) return &s;
    return nullptr;
  }
};

// Allocates addresses (IPAM), MACs and names. Throws ConfigError. With
// `previous` (the plan in force), endpoints that keep their definition keep
// their addresses and MACs, so a change never renumbers untouched containers.
// reserved: addresses and MACs (of persisted endpoints, made again after
// the file's at start-up) that the plan's dynamic ones avoid; a static one of
// the file wins over a reservation.
struct Reservation {
  std::string network;
  uint32_t ip = 0;
  Mac mac = 0;
};
Plan make_plan(const Config& cfg, const Plan* previous = nullptr, const std::vector<Reservation>* reserved = nullptr);
// What of the plan in force a reload keeps as `previous`: every endpoint `d`
// neither changes nor removes (a changed one is planned from scratch).
Plan kept_plan(const Plan& current, const ConfigDiff& d);

// dpsw's own MACs (the router MAC of bridge and overlay networks, the punt veths) are
// 02:dd:xx:xx:xx:xx; no endpoint may use one.
constexpr Mac kDpswMacPrefix = 0x02dd00000000ULL, kDpswMacMask = 0xffff00000000ULL;
Mac router_mac(const std::string& instance);  // answers for bridge and overlay networks' gateways

// Host-side link name: <instance prefix>-<8 hex digits>, at most 15 bytes.
std::string host_ifname(const std::string& instance, const std::string& endpoint, const std::string& network);
// The name of a handoff endpoint's container end in dpsw's namespace (dh + 8 hex digits).
std::string handoff_ifname(const std::string& host_ifname);

}  // namespace dpsw
