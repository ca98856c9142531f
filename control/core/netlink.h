// Kernel plumbing for endpoints: network namespaces, veth pairs, addresses,
// routes and offload settings. Netlink goes through libnl-route-3; nothing
// here runs the `ip` command. Control thread only.
#pragma once

#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "dataplane/core/ether.h"

struct nl_sock;

namespace dpsw {

struct NetlinkError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Run fn with the calling thread inside the namespace at `ns_fd`, then come back.
void in_netns(int ns_fd, const std::function<void()>& fn);

namespace netns {
constexpr const char* kRunDir = "/var/run/netns";
void create(const std::string& name);   // like `ip netns add NAME`
void remove(const std::string& name);   // like `ip netns del NAME`; absent is fine
bool exists(const std::string& name);
int open_path(const std::string& path);  // O_RDONLY fd of a namespace file; throws
}  // namespace netns

// A route-netlink socket bound to one namespace (the current one by default).
class Rtnl {
 public:
  explicit Rtnl(int ns_fd = -1);
  ~Rtnl();
  Rtnl(const Rtnl&) = delete;
  Rtnl& operator=(const Rtnl&) = delete;

  int ifindex(const std::string& name);  // 0 when absent
  Mac link_mac(const std::string& name);  // throws when absent
  uint32_t link_mtu(const std::string& name);  // throws when absent
  bool link_lower_up(const std::string& name);  // its carrier (a veth: its peer is up); false when absent
  std::string link_kind(const std::string& name);  // "veth", "vxlan", ...; "" for a device without one (a NIC); throws when absent
  // A veth's other end, looked up in its own namespace (by the id the
  // kernel reports with `name`, IFLA_TARGET_NETNSID). Throws when `name` is
  // absent or a peer elsewhere cannot be read.
  struct VethPeer {
    bool elsewhere = false;  // in another namespace (the fields below are read only then)
    bool up = false;         // `name` itself is administratively up
    bool xdp = false;        // a native (driver) XDP program is attached to the peer: only the veth's transmit runs it
    Mac mac = 0;             // the peer's
    uint32_t mtu = 0;        // the peer's
  };
  VethPeer veth_peer(const std::string& name);
  // veth pair: `name` here, `peer` inside the namespace peer_ns_fd.
  void create_veth(const std::string& name, const std::string& alias, const std::string& peer, int peer_ns_fd,
                   Mac peer_mac, uint32_t mtu, uint32_t host_mtu = 0);  // host_mtu: `name`'s, 0 = mtu
  void set_up(const std::string& name, uint32_t mtu = 0);
  void set_alias(const std::string& name, const std::string& alias);
  void add_address(const std::string& name, uint32_t ip, uint8_t prefix_len);
  void add_default_route(uint32_t gateway);
  bool delete_link(const std::string& name);  // false when it did not exist
  // Names of links whose alias starts with prefix (stale links of a crashed run).
  std::vector<std::string> links_with_alias_prefix(const std::string& prefix);

 private:
  nl_sock* sk_ = nullptr;
};

// Offloads (SIOCETHTOOL) and sysctls of the namespace the thread is in.
void ethtool_set_tx_csum(const std::string& ifname, bool on);
void ethtool_set_tx_vlan(const std::string& ifname, bool on);  // 802.1Q tag insertion offload (txvlan)
// Receive Packet Steering: the cores that process what `ifname` receives
// (every rx queue's rps_cpus in sysfs).
void set_rps_cpus(const std::string& ifname, const std::vector<int>& cores);
void sysctl_write(const std::string& path, const std::string& value);  // relative to /proc/sys
std::string sysctl_read(const std::string& path);

}  // namespace dpsw
