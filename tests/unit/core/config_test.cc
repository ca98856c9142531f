#include "control/core/config.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>

#include "control/bridge/ipam.h"

namespace dpsw {
namespace {

#define UPLINK "uplink:\n  port: { kind: afxdp, interface: up0 }\n  address: 198.51.100.10/24\n  gateway: 198.51.100.1\n"


const char* kGood = R"(
switch:
  name: t1
  workers: [0]
  control_socket: /tmp/x.sock
  mac_table: { size: 1000, aging_s: 30 }
networks:
  - name: front
    subnet: 172.20.0.0/24
  - name: back
    driver: bridge
    subnet: 172.21.0.0/24
    gateway: 172.21.0.254
    ip_range: 172.21.0.128/25
    internal: true
    mtu: 1400
endpoints:
  - name: web
    networks: [front]
    ip: 172.20.0.10
    mac: 02:00:00:00:00:01
  - name: api
    networks: [front, back]
  - name: side
    mode: container:web
  - name: lonely
    mode: none
  - name: hosty
    mode: host
)";

TEST(Config, ParsesEveryDocumentedKey) {
  Config c = parse_config(kGood, "good.yaml");
  EXPECT_EQ(c.sw.name, "t1");
  EXPECT_EQ(c.sw.workers, std::vector<int>{0});
  EXPECT_EQ(c.sw.mac_table_size, 1000u);
  EXPECT_EQ(c.sw.mac_aging_s, 30u);
  ASSERT_EQ(c.networks.size(), 2u);
  EXPECT_EQ(ipv4_to_string(c.networks[0].gateway), "172.20.0.1");  // default: first address
  EXPECT_EQ(ipv4_to_string(c.networks[1].gateway), "172.21.0.254");
  EXPECT_TRUE(c.networks[1].internal);
  EXPECT_EQ(c.networks[1].mtu, 1400u);
  ASSERT_EQ(c.endpoints.size(), 5u);
  EXPECT_EQ(c.endpoints[2].mode, Mode::kContainer);
  EXPECT_EQ(c.endpoints[2].container, "web");
  EXPECT_EQ(c.endpoints[3].mode, Mode::kNone);
  EXPECT_EQ(c.endpoints[4].mode, Mode::kHost);
}

TEST(Config, VhostEndpoints) {
  Config c = parse_config(
      "networks:\n  - name: j\n    subnet: 10.0.0.0/24\n    mtu: 9000\nendpoints:\n"
      "  - name: vm\n    networks: [j]\n    port: vhost\n    vhost_socket: /run/dpsw/vm.sock\n"
      "  - name: app\n    networks: [j]\n    port: vhost\n    vhost_socket: /run/app.sock\n    vhost_mode: client\n",
      "v.yaml");
  EXPECT_EQ(c.endpoints[0].port, PortKind::kVhost);
  EXPECT_FALSE(c.endpoints[0].vhost_client);
  EXPECT_TRUE(c.endpoints[1].vhost_client);
  Plan p = make_plan(c);
  EXPECT_TRUE(p.endpoints[0].netns_path.empty());  // no namespace, no veth
  EXPECT_FALSE(p.endpoints[0].create_netns);
  EXPECT_EQ(p.endpoints[0].vhost_socket, "/run/dpsw/vm.sock");
  ASSERT_EQ(p.endpoints[0].attachments.size(), 1u);
  EXPECT_EQ(p.endpoints[0].attachments[0].mtu, 9000u);
  EXPECT_EQ(ipv4_to_string(p.endpoints[0].attachments[0].ip), "10.0.0.2");  // reserved for the application
}

TEST(Config, UplinkAndMacvlan) {
  Config c = parse_config(UPLINK "networks:\n  - name: lan\n    driver: macvlan\n    subnet: 198.51.100.0/24\n"
                                 "endpoints:\n  - name: m1\n    networks: [lan]\n  - name: m2\n    networks: [lan]\n    ip: 198.51.100.10\n",
                          "u.yaml");
  ASSERT_TRUE(c.uplink.has_value());
  EXPECT_EQ(c.uplink->interface, "up0");
  EXPECT_EQ(ipv4_to_string(c.uplink->address.addr), "198.51.100.10");
  EXPECT_EQ(c.networks[0].driver, Driver::kMacvlan);
  EXPECT_EQ(ipv4_to_string(c.networks[0].gateway), "198.51.100.1");  // the uplink's next hop
  try {
    make_plan(c);
    FAIL() << "the host's own address was handed to an endpoint";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("198.51.100.10 is already used"), std::string::npos) << e.what();
  }
  c.endpoints.pop_back();
  Plan p = make_plan(c);
  EXPECT_EQ(ipv4_to_string(p.endpoints[0].attachments[0].ip), "198.51.100.2");
  EXPECT_TRUE(p.endpoints[0].create_netns);  // a container like any other, on the uplink's segment
  // Changing the uplink needs a restart.
  Config d = c;
  d.uplink->gateway = *ipv4_parse("198.51.100.2");
  EXPECT_EQ(diff_configs(c, d).switch_changed, std::vector<std::string>{"uplink"});
}

TEST(Config, OverlayNetworks) {
  Config c = parse_config(UPLINK "networks:\n  - name: ov1\n    driver: overlay\n    vni: 4096\n    subnet: 10.10.0.0/24\n"
                                 "    ip_range: 10.10.0.128/25\n    peers: [198.51.100.11, 203.0.113.7]\n"
                                 "  - name: ov2\n    driver: overlay\n    vni: 4097\n    subnet: 10.11.0.0/24\n    mtu: 1400\n"
                                 "endpoints:\n  - name: a\n    networks: [ov1]\n",
                          "o.yaml");
  const NetworkConfig& n = c.networks[0];
  EXPECT_EQ(n.driver, Driver::kOverlay);
  EXPECT_EQ(n.vni, 4096u);
  EXPECT_EQ(n.peers, (std::vector<uint32_t>{*ipv4_parse("198.51.100.11"), *ipv4_parse("203.0.113.7")}));
  EXPECT_EQ(n.mtu, 1450u) << "uplink MTU - 50";
  EXPECT_EQ(c.networks[1].mtu, 1400u) << "explicit";
  EXPECT_TRUE(c.networks[1].peers.empty());
  c.uplink->mtu = 3000;  // what the daemon reads from the interface
  resolve_defaults(c);
  EXPECT_EQ(c.networks[0].mtu, 2950u);
  EXPECT_EQ(c.networks[1].mtu, 1400u);
  Plan p = make_plan(c);
  EXPECT_EQ(ipv4_to_string(p.endpoints[0].attachments[0].ip), "10.10.0.128") << "ip_range splits a subnet between hosts";
  EXPECT_EQ(p.endpoints[0].attachments[0].mtu, 2950u);
  // A peer list change alone is applied in place; a VNI change recreates the network.
  Config d = c;
  d.networks[0].peers.pop_back();
  auto diff = diff_configs(c, d);
  EXPECT_EQ(diff.peers_changed, std::vector<std::string>{"ov1"});
  EXPECT_TRUE(diff.networks_changed.empty());
  EXPECT_TRUE(diff.endpoints_changed.empty());
  EXPECT_FALSE(diff.empty());
  d.networks[0].vni = 5;
  EXPECT_EQ(diff_configs(c, d).networks_changed, std::vector<std::string>{"ov1"});
}

TEST(Config, DefaultsWhenSwitchIsOmitted) {
  Config c = parse_config("networks:\n  - name: n\n    subnet: 10.1.0.0/16\n", "d.yaml");
  EXPECT_EQ(c.sw.name, "dpsw");
  EXPECT_EQ(c.sw.workers, std::vector<int>{1});
  EXPECT_EQ(c.sw.control_socket, "/run/dpsw/dpsw.sock");
  EXPECT_EQ(c.sw.mac_table_size, 65536u);
  EXPECT_EQ(c.sw.mac_aging_s, 300u);
  EXPECT_EQ(c.networks[0].mtu, 1500u);
}

TEST(Config, PlanAllocatesAddressesMacsAndNames) {
  Config c = parse_config(kGood, "good.yaml");
  Plan p = make_plan(c);
  ASSERT_EQ(p.endpoints.size(), 5u);
  auto& web = p.endpoints[0];
  EXPECT_EQ(web.netns_name, "t1-web");
  EXPECT_TRUE(web.create_netns);
  EXPECT_EQ(ipv4_to_string(web.attachments[0].ip), "172.20.0.10");
  EXPECT_EQ(mac_to_string(web.attachments[0].mac), "02:00:00:00:00:01");
  auto& api = p.endpoints[1];
  ASSERT_EQ(api.attachments.size(), 2u);
  EXPECT_EQ(ipv4_to_string(api.attachments[0].ip), "172.20.0.2");    // lowest free, gateway skipped
  EXPECT_EQ(ipv4_to_string(api.attachments[1].ip), "172.21.0.128");  // from ip_range
  EXPECT_EQ(mac_to_string(api.attachments[0].mac), "02:42:ac:14:00:02");
  EXPECT_EQ(api.attachments[0].ifname, "eth0");
  EXPECT_EQ(api.attachments[1].ifname, "eth1");
  EXPECT_EQ(api.attachments[1].mtu, 1400u);
  EXPECT_LE(api.attachments[0].host_ifname.size(), 15u);
  EXPECT_EQ(api.attachments[0].host_ifname.rfind("t1-", 0), 0u);
  EXPECT_NE(api.attachments[0].host_ifname, api.attachments[1].host_ifname);
  EXPECT_EQ(p.endpoints[2].joins, "web");
  EXPECT_TRUE(p.endpoints[2].attachments.empty());
  EXPECT_TRUE(p.endpoints[3].create_netns);  // none: own namespace, loopback only
  EXPECT_TRUE(p.endpoints[3].attachments.empty());
  EXPECT_TRUE(p.endpoints[4].netns_path.empty());  // host: nothing
}

struct Bad {
  const char* yaml;
  const char* error;  // expected message, exactly
};

class ConfigErrors : public ::testing::TestWithParam<Bad> {};

TEST_P(ConfigErrors, NameFileLineAndKey) {
  try {
    Config c = parse_config(GetParam().yaml, "bad.yaml");
    make_plan(c);
    FAIL() << "accepted a bad config";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), GetParam().error);
  }
}

const char* kNets = "networks:\n  - name: a\n    subnet: 10.0.0.0/29\n";

INSTANTIATE_TEST_SUITE_P(
    All, ConfigErrors,
    ::testing::Values(
        Bad{"", "bad.yaml:1: the file is empty"},
        Bad{"switch: [1, 2", "bad.yaml:1: not valid YAML: end of sequence flow not found"},
        Bad{"swtich: {}\n", "bad.yaml:1: swtich: unknown key"},
        Bad{"switch:\n  workers: [1]\n  colour: red\n", "bad.yaml:3: switch.colour: unknown key"},
        Bad{"switch:\n  workers: [one]\n", "bad.yaml:2: switch.workers[0]: 'one' is not a whole number in 0..1023"},
        Bad{"switch:\n  workers: [1, 1]\n", "bad.yaml:2: switch.workers: core 1 is listed twice"},
        Bad{"switch:\n  workers: []\n", "bad.yaml:2: switch.workers: expected a non-empty list of core numbers"},
        Bad{"switch:\n  name: much-too-long\n", "bad.yaml:2: switch.name: 'much-too-long' must be 1-6 letters, digits, '-' or '_' (it prefixes link names)"},
        Bad{"switch:\n  mac_table: { size: 0 }\n", "bad.yaml:2: switch.mac_table.size: '0' is not a whole number in 16..16777216"},
        Bad{"networks:\n  - subnet: 10.0.0.0/24\n", "bad.yaml:2: networks[0].name: required key missing"},
        Bad{"networks:\n  - name: a\n", "bad.yaml:2: networks[0].subnet: required key missing"},
        Bad{"networks:\n  - name: a\n    subnet: 10.0.0.0/33\n", "bad.yaml:3: networks[0].subnet: '10.0.0.0/33' is not an IPv4 prefix like 172.20.0.0/24"},
        Bad{"networks:\n  - name: a\n    subnet: 10.0.0.5/24\n", "bad.yaml:3: networks[0].subnet: '10.0.0.5/24' has host bits set (did you mean 10.0.0.0/24?)"},
        Bad{"networks:\n  - name: a\n    subnet: 10.0.0.0/24\n    gateway: 10.0.1.1\n", "bad.yaml:4: networks[0].gateway: 10.0.1.1 is not a host address of subnet 10.0.0.0/24"},
        Bad{"networks:\n  - name: a\n    subnet: 10.0.0.0/24\n    ip_range: 10.0.1.0/25\n", "bad.yaml:4: networks[0].ip_range: 10.0.1.0/25 is not inside subnet 10.0.0.0/24"},
        Bad{"networks:\n  - name: a\n    subnet: 10.0.0.0/24\n    driver: token-ring\n", "bad.yaml:4: networks[0].driver: 'token-ring' is not one of bridge, overlay, macvlan"},
        Bad{"networks:\n  - name: a\n    subnet: 10.0.0.0/24\n    internal: maybe\n", "bad.yaml:4: networks[0].internal: 'maybe' is not true or false"},
        Bad{"networks:\n  - name: a\n    subnet: 10.0.0.0/24\n  - name: a\n    subnet: 10.1.0.0/24\n", "bad.yaml:4: networks[1].name: network 'a' is defined twice (first at line 2)"},
        Bad{"networks:\n  - name: a\n    subnet: 10.0.0.0/16\n  - name: b\n    subnet: 10.0.5.0/24\n", "bad.yaml:5: networks[1].subnet: 10.0.5.0/24 overlaps network 'a' (10.0.0.0/16)"},
        Bad{"networks:\n  - name: a\n    subnet: 10.0.0.0/24\nendpoints:\n  - name: e\n    networks: [b]\n", "bad.yaml:6: endpoints[0].networks[0]: unknown network 'b'"},
        Bad{"endpoints:\n  - name: e\n", "bad.yaml:2: endpoints[0].networks: a bridge-mode endpoint needs at least one network"},
        Bad{"endpoints:\n  - name: Not_A_Label\n    mode: none\n", "bad.yaml:2: endpoints[0].name: 'Not_A_Label' is not a valid DNS label (letters, digits, '-')"},
        Bad{"endpoints:\n  - name: e\n    mode: sideways\n", "bad.yaml:3: endpoints[0].mode: 'sideways' is not one of bridge, none, host, container:NAME"},
        Bad{"endpoints:\n  - name: e\n    mode: container:ghost\n", "bad.yaml:3: endpoints[0].mode: unknown endpoint 'ghost' in container:ghost"},
        Bad{"endpoints:\n  - name: h\n    mode: host\n  - name: e\n    mode: container:h\n", "bad.yaml:5: endpoints[1].mode: endpoint 'h' has no namespace of its own to join (mode host)"},
        Bad{"endpoints:\n  - name: e\n    mode: none\n  - name: e\n    mode: none\n", "bad.yaml:4: endpoints[1].name: endpoint 'e' is defined twice"},
        Bad{"endpoints:\n  - name: e\n    mode: none\n    netns: relative/path\n", "bad.yaml:4: endpoints[0].netns: 'relative/path' is not an absolute path"},
        Bad{"networks:\n  - name: a\n    subnet: 10.0.0.0/24\nendpoints:\n  - name: e\n    networks: [a]\n    mac: 01:00:5e:00:00:01\n", "bad.yaml:7: endpoints[0].mac: 01:00:5e:00:00:01 is not a unicast MAC address"},
        Bad{"networks:\n  - name: a\n    subnet: 10.0.0.0/24\nendpoints:\n  - name: e\n    networks: [a]\n    ip: 10.0.0.300\n", "bad.yaml:7: endpoints[0].ip: '10.0.0.300' is not an IPv4 address"},
        // The interface name in the namespace, and labels (the CNI plugin's and services').
        Bad{"networks:\n  - name: a\n    subnet: 10.0.0.0/24\nendpoints:\n  - name: e\n    networks: [a]\n    ifname: a/b\n", "bad.yaml:7: endpoints[0].ifname: 'a/b' is not an interface name (1 to 15 printable bytes, no '/', ':' or spaces)"},
        Bad{"networks:\n  - name: a\n    subnet: 10.0.0.0/24\nendpoints:\n  - name: e\n    networks: [a]\n    ifname: abcdefghijklmnop\n", "bad.yaml:7: endpoints[0].ifname: 'abcdefghijklmnop' is not an interface name (1 to 15 printable bytes, no '/', ':' or spaces)"},
        Bad{"networks:\n  - name: a\n    subnet: 10.0.0.0/24\n  - name: b\n    subnet: 10.1.0.0/24\nendpoints:\n  - name: e\n    networks: [a, b]\n    ifname: net1\n", "bad.yaml:9: endpoints[0].ifname: only valid with exactly one network (the others would be eth1, ...)"},
        Bad{"networks:\n  - name: a\n    subnet: 10.0.0.0/24\nendpoints:\n  - name: e\n    networks: [a]\n    persist: true\n", "bad.yaml:7: endpoints[0].persist: only for endpoints added through the control socket (the file's endpoints are made at every start)"},
        Bad{"networks:\n  - name: a\n    subnet: 10.0.0.0/24\nendpoints:\n  - name: e\n    networks: [a]\n    labels: [x]\n", "bad.yaml:7: endpoints[0].labels: expected a map like { app: web }"},
        Bad{"networks:\n  - name: a\n    subnet: 10.0.0.0/24\nendpoints:\n  - name: e\n    networks: [a]\n    labels: { \"a b\": x }\n", "bad.yaml:7: endpoints[0].labels: 'a b' is not a label key (1 to 253 of letters, digits, '-', '_', '.', '/')"},
        Bad{"networks:\n  - name: a\n    subnet: 10.0.0.0/24\nendpoints:\n  - name: e\n    networks: [a]\n    labels: { app: [1] }\n", "bad.yaml:7: endpoints[0].labels.app: expected a single value"},
        // DNS: aliases and the dns section.
        Bad{"networks:\n  - name: a\n    subnet: 10.0.0.0/24\nendpoints:\n  - name: e\n    networks: [a]\n    aliases: [\"a..b\"]\n", "bad.yaml:7: endpoints[0].aliases[0]: 'a..b' is not a DNS name (labels of 1 to 63 letters, digits, '-' or '_', separated by dots; 253 bytes at most)"},
        Bad{"networks:\n  - name: a\n    subnet: 10.0.0.0/24\nendpoints:\n  - name: e\n    networks: [a]\n    aliases: [www, WWW]\n", "bad.yaml:7: endpoints[0].aliases[1]: 'www' is given twice"},
        Bad{"networks:\n  - name: a\n    subnet: 10.0.0.0/24\nendpoints:\n  - name: e\n    networks: [a]\n    aliases: www\n", "bad.yaml:7: endpoints[0].aliases: expected a list of names like [www]"},
        Bad{"dns:\n  upstream: [127.0.0.53]\n", "bad.yaml:2: dns.upstream[0]: '127.0.0.53' is not a unicast IPv4 address outside 127/8"},
        Bad{"dns:\n  upstream: 192.0.2.1\n", "bad.yaml:2: dns.upstream: expected a list of IPv4 addresses like [192.0.2.53]"},
        Bad{"dns:\n  ttl: -1\n", "bad.yaml:2: dns.ttl: '-1' is not a whole number in 0..86400"},
        Bad{"dns:\n  forward: yes\n", "bad.yaml:2: dns.forward: unknown key"},
        Bad{"networks:\n  - name: a\n    subnet: 10.0.0.0/24\nendpoints:\n  - name: e\n    networks: [a]\n    port: vhost\n", "bad.yaml:5: endpoints[0].vhost_socket: required with port: vhost"},
        Bad{"networks:\n  - name: a\n    subnet: 10.0.0.0/24\nendpoints:\n  - name: e\n    networks: [a]\n    vhost_socket: /x.sock\n", "bad.yaml:7: endpoints[0].vhost_socket: only valid with port: vhost"},
        Bad{"networks:\n  - name: a\n    subnet: 10.0.0.0/24\nendpoints:\n  - name: e\n    networks: [a]\n    port: vhost\n    vhost_socket: rel.sock\n", "bad.yaml:8: endpoints[0].vhost_socket: 'rel.sock' is not an absolute path of at most 100 bytes"},
        Bad{"networks:\n  - name: a\n    subnet: 10.0.0.0/24\nendpoints:\n  - name: e\n    networks: [a]\n    port: vhost\n    vhost_socket: /v.sock\n    vhost_mode: both\n", "bad.yaml:9: endpoints[0].vhost_mode: 'both' is not one of server, client"},
        Bad{"networks:\n  - name: a\n    subnet: 10.0.0.0/24\n  - name: b\n    subnet: 10.1.0.0/24\nendpoints:\n  - name: e\n    networks: [a, b]\n    port: vhost\n    vhost_socket: /v.sock\n", "bad.yaml:7: endpoints[0].networks: a vhost endpoint attaches to exactly one network"},
        Bad{"networks:\n  - name: a\n    subnet: 10.0.0.0/24\nendpoints:\n  - name: e\n    networks: [a]\n    port: vhost\n    vhost_socket: /v.sock\n  - name: f\n    networks: [a]\n    port: vhost\n    vhost_socket: /v.sock\n", "bad.yaml:12: endpoints[1].vhost_socket: /v.sock is already the socket of endpoint 'e'"},
        Bad{"networks:\n  - name: j\n    subnet: 10.0.0.0/24\n    mtu: 9000\nendpoints:\n  - name: e\n    networks: [j]\n", "bad.yaml:7: endpoints[0].networks[0]: network 'j' has mtu 9000; AF_XDP ports carry at most 3500 (use port: vhost for jumbo frames)"},
        Bad{"uplink:\n  address: 198.51.100.10/24\n", "bad.yaml:2: uplink.port: required key missing"},
        Bad{"uplink:\n  port: { kind: afxdp, interface: up0 }\n  address: 198.51.100.0/24\n", "bad.yaml:3: uplink.address: '198.51.100.0/24' is not a host address with its prefix, like 198.51.100.10/24"},
        Bad{"uplink:\n  port: { kind: afxdp, interface: up0 }\n  address: 198.51.100.10/24\n  gateway: 198.51.101.1\n", "bad.yaml:4: uplink.gateway: '198.51.101.1' is not another host address of 198.51.100.0/24"},
        Bad{"uplink:\n  port: { kind: dpdk, interface: up0 }\n  address: 198.51.100.10/24\n", "bad.yaml:2: uplink.port.kind: kind 'dpdk' is not supported by this version of dpsw yet (afxdp)"},
        Bad{"networks:\n  - name: m\n    driver: macvlan\n    subnet: 198.51.100.0/24\n", "bad.yaml:3: networks[0].driver: driver macvlan needs an uplink (its endpoints sit on the uplink's segment)"},
        Bad{UPLINK "networks:\n  - name: m\n    driver: macvlan\n    subnet: 198.51.100.0/25\n", "bad.yaml:8: networks[0].subnet: a macvlan network's subnet must be the uplink's, 198.51.100.0/24"},
        Bad{UPLINK "networks:\n  - name: m\n    driver: macvlan\n    subnet: 198.51.100.0/24\n  - name: n\n    driver: macvlan\n    subnet: 198.51.100.0/24\n", "bad.yaml:10: networks[1].driver: only one macvlan network per uplink ('m' is one)"},
        Bad{UPLINK "networks:\n  - name: b\n    subnet: 198.51.100.128/25\n", "bad.yaml:7: networks[0].subnet: 198.51.100.128/25 overlaps the uplink's subnet 198.51.100.0/24"},
        Bad{UPLINK "networks:\n  - name: m\n    driver: macvlan\n    subnet: 198.51.100.0/24\n    internal: true\n", "bad.yaml:9: networks[0].internal: a macvlan network sits on the uplink's segment and cannot be internal"},
        Bad{"networks:\n  - name: o\n    driver: overlay\n    vni: 5\n    subnet: 10.0.0.0/24\n", "bad.yaml:3: networks[0].driver: driver overlay needs an uplink (its address is the local VXLAN tunnel endpoint)"},
        Bad{UPLINK "networks:\n  - name: o\n    driver: overlay\n    subnet: 10.0.0.0/24\n", "bad.yaml:6: networks[0].vni: required key missing (driver overlay: the VXLAN network identifier, 1-16777215)"},
        Bad{UPLINK "networks:\n  - name: o\n    driver: overlay\n    vni: 16777216\n    subnet: 10.0.0.0/24\n", "bad.yaml:8: networks[0].vni: '16777216' is not a whole number in 1..16777215"},
        Bad{UPLINK "networks:\n  - name: o\n    vni: 7\n    subnet: 10.0.0.0/24\n", "bad.yaml:7: networks[0].vni: only valid with driver: overlay"},
        Bad{UPLINK "networks:\n  - name: o\n    peers: [198.51.100.11]\n    subnet: 10.0.0.0/24\n", "bad.yaml:7: networks[0].peers: only valid with driver: overlay"},
        Bad{UPLINK "networks:\n  - name: o\n    driver: overlay\n    vni: 7\n    subnet: 10.0.0.0/24\n    peers: [198.51.100.11, 224.0.0.1]\n", "bad.yaml:10: networks[0].peers[1]: '224.0.0.1' is not a unicast IPv4 address"},
        Bad{UPLINK "networks:\n  - name: o\n    driver: overlay\n    vni: 7\n    subnet: 10.0.0.0/24\n    peers: [198.51.100.11, 198.51.100.11]\n", "bad.yaml:10: networks[0].peers[1]: 198.51.100.11 is listed twice"},
        Bad{UPLINK "networks:\n  - name: o\n    driver: overlay\n    vni: 7\n    subnet: 10.0.0.0/24\n    peers: [198.51.100.10]\n", "bad.yaml:10: networks[0].peers[0]: 198.51.100.10 is this host's own uplink address (list the other hosts)"},
        Bad{UPLINK "networks:\n  - name: o\n    driver: overlay\n    vni: 7\n    subnet: 10.0.0.0/24\n  - name: p\n    driver: overlay\n    vni: 7\n    subnet: 10.1.0.0/24\n", "bad.yaml:12: networks[1].vni: VNI 7 is already used by network 'o'"},
        Bad{"networks:\n  - name: a\n    subnet: 10.0.0.0/24\n    allow: [zz]\n", "bad.yaml:4: networks[0].allow[0]: unknown network 'zz'"},
        Bad{"networks:\n  - name: a\n    subnet: 10.0.0.0/24\n    allow: [a]\n", "bad.yaml:4: networks[0].allow[0]: routing is allowed only between two different bridge networks"},
        Bad{"networks:\n  - name: j\n    subnet: 10.0.0.0/24\n    mtu: 9001\n", "bad.yaml:4: networks[0].mtu: '9001' is not a whole number in 576..9000"},
        Bad{"switch:\n  fast_path: on\n", "bad.yaml:2: switch.fast_path: 'on' is not one of auto, off"},
        Bad{"networks:\n  - name: a\n    subnet: 10.0.0.0/24\n    fast_path: yes\n", "bad.yaml:4: networks[0].fast_path: 'yes' is not one of auto, off"},
        Bad{"switch:\n  idle: sleep\n", "bad.yaml:2: switch.idle: 'sleep' is not one of auto, poll, block"},
        Bad{"switch:\n  fast_path_steering: { cores: [1, 1] }\n", "bad.yaml:2: switch.fast_path_steering.cores: core 1 is listed twice"},
        Bad{"switch:\n  fast_path_steering: { cores: 1 }\n", "bad.yaml:2: switch.fast_path_steering.cores: expected a list of core numbers"},
        Bad{"switch:\n  fast_path_steering: { above_pps: 10 }\n", "bad.yaml:2: switch.fast_path_steering.above_pps: '10' is not a whole number in 1000..100000000"},
        Bad{"switch:\n  fast_path_steering: { core: [1] }\n", "bad.yaml:2: switch.fast_path_steering.core: unknown key"},
        Bad{"switch:\n  control_cores: []\n", "bad.yaml:2: switch.control_cores: expected a non-empty list of core numbers"},
        Bad{"switch:\n  control_cores: [0, 0]\n", "bad.yaml:2: switch.control_cores: core 0 is listed twice"},
        Bad{"switch:\n  workers: []\n", "bad.yaml:2: switch.workers: expected a non-empty list of core numbers"},
        Bad{"endpoints:\n  - name: h\n    mode: host\n    fast_path: off\n", "bad.yaml:4: endpoints[0].fast_path: not valid with mode host or container:NAME (no port of its own)"},
        Bad{UPLINK "networks:\n  - name: o\n    driver: overlay\n    vni: 7\n    subnet: 10.0.0.0/24\n    peers: [198.51.100.255]\n",
            "bad.yaml:10: networks[0].peers[0]: 198.51.100.255 is the broadcast address of the uplink's segment 198.51.100.0/24"},
        Bad{UPLINK "networks:\n  - name: o\n    driver: overlay\n    vni: 7\n    subnet: 10.0.0.0/24\n    peers: [198.51.100.0]\n",
            "bad.yaml:10: networks[0].peers[0]: 198.51.100.0 is the network address of the uplink's segment 198.51.100.0/24"},
        Bad{"switch:\n  control_socket: /run/x.sock\nnetworks:\n  - name: a\n    subnet: 10.0.0.0/24\nendpoints:\n  - name: e\n    networks: [a]\n    port: vhost\n    vhost_socket: /run/x.sock\n",
            "bad.yaml:10: endpoints[0].vhost_socket: /run/x.sock is the control socket (switch.control_socket)"},
        // Repeated keys are errors, at any depth (yaml-cpp would keep the first silently).
        Bad{"switch:\n  name: a\n  name: b\n", "bad.yaml:3: switch.name: given twice (first at line 2)"},
        Bad{"networks:\n  - name: a\n    subnet: 10.0.0.0/24\n    subnet: 10.9.0.0/24\n", "bad.yaml:4: networks[0].subnet: given twice (first at line 3)"},
        Bad{"switch: {}\nswitch: {}\n", "bad.yaml:2: switch: given twice (first at line 1)"},
        // One host port published twice by one endpoint.
        Bad{UPLINK "networks:\n  - name: a\n    subnet: 10.0.0.0/24\nendpoints:\n  - name: e\n    networks: [a]\n    publish: [\"8080:80/tcp\", \"8080:81/tcp\"]\n",
            "bad.yaml:11: endpoints[0].publish[1]: 8080:81/tcp overlaps 8080:80/tcp (listed earlier for the same endpoint)"},
        Bad{UPLINK "networks:\n  - name: a\n    subnet: 10.0.0.0/24\nendpoints:\n  - name: e\n    networks: [a]\n    publish: [\"9000-9010:9000-9010/udp\"]\n  - name: f\n    networks: [a]\n    publish: [\"9005:53/udp\"]\n",
            "bad.yaml:14: endpoints[1].publish[0]: 9005:53/udp overlaps 9000-9010:9000-9010/udp of endpoint 'e'"},
        // Duplicate MACs: static ones (with or without a static address), and dpsw's own range.
        Bad{"networks:\n  - name: a\n    subnet: 10.0.0.0/24\nendpoints:\n  - name: e\n    networks: [a]\n    mac: 02:00:00:00:00:01\n  - name: f\n    networks: [a]\n    mac: 02:00:00:00:00:01\n",
            "bad.yaml:10: endpoints[1].mac: 02:00:00:00:00:01 is already the MAC of endpoint 'e'"},
        Bad{"networks:\n  - name: a\n    subnet: 10.0.0.0/24\nendpoints:\n  - name: e\n    networks: [a]\n    mac: 02:dd:12:34:56:78\n",
            "bad.yaml:7: endpoints[0].mac: 02:dd:12:34:56:78 is in 02:dd:00:00:00:00/16, which dpsw keeps for its own MACs"},
        // Plan-time errors name the line of the key at fault.
        Bad{"networks:\n  - name: a\n    subnet: 10.0.0.0/24\nendpoints:\n  - name: e\n    networks: [a]\n    ip: 10.1.0.5\n", "bad.yaml:7: endpoints[0].ip: 10.1.0.5 is not in subnet 10.0.0.0/24 of network 'a'"},
        Bad{"networks:\n  - name: a\n    subnet: 10.0.0.0/24\nendpoints:\n  - name: e\n    networks: [a]\n    ip: 10.0.0.1\n", "bad.yaml:7: endpoints[0].ip: 10.0.0.1 is the network, broadcast or gateway address of network 'a'"},
        Bad{"networks:\n  - name: a\n    subnet: 10.0.0.0/24\nendpoints:\n  - name: e\n    networks: [a]\n    ip: 10.0.0.9\n  - name: f\n    networks: [a]\n    ip: 10.0.0.9\n", "bad.yaml:10: endpoints[1].ip: 10.0.0.9 is already used by another endpoint on network 'a'"},
        Bad{"networks:\n  - name: a\n    subnet: 10.0.0.0/30\nendpoints:\n  - name: e\n    networks: [a]\n  - name: f\n    networks: [a]\n", "bad.yaml:8: endpoints[1].networks: no free address left in network 'a' (10.0.0.0/30)"}));

TEST(Config, FastPathIsChosenBySwitchNetworkAndEndpoint) {
  const char* y = R"(
networks:
  - name: a
    subnet: 10.0.0.0/24
  - name: slow
    subnet: 10.1.0.0/24
    fast_path: off
endpoints:
  - name: e
    networks: [a, slow]
  - name: f
    networks: [a]
    fast_path: off
  - name: v
    networks: [a]
    port: vhost
    vhost_socket: /v.sock
)";
  Config c = parse_config(y, "t.yaml");
  Plan p = make_plan(c);
  EXPECT_TRUE(p.endpoints[0].attachments[0].fast);    // default: auto everywhere
  EXPECT_FALSE(p.endpoints[0].attachments[1].fast);   // network off
  EXPECT_FALSE(p.endpoints[1].attachments[0].fast);   // endpoint off
  EXPECT_FALSE(p.endpoints[2].attachments[0].fast);   // vhost: not an AF_XDP endpoint
  Config off = parse_config(std::string("switch:\n  fast_path: off\n") + y, "t.yaml");
  EXPECT_FALSE(make_plan(off).endpoints[0].attachments[0].fast);
  ConfigDiff d = diff_configs(c, off);
  EXPECT_EQ(d.switch_changed, std::vector<std::string>{"fast_path"});
  Config net_off = c;
  net_off.networks[0].fast_path = false;
  EXPECT_EQ(diff_configs(c, net_off).networks_changed, std::vector<std::string>{"a"});
}

TEST(Config, IdleAndSteeringDefaultsFollowTheFastTier) {
  Config c = parse_config("switch:\n  workers: [1, 3]\n", "t.yaml");
  EXPECT_TRUE(c.sw.blocks());  // the fast tier on: workers only see punted frames
  EXPECT_EQ(c.sw.steering_cores(), (std::vector<int>{1, 3}));
  EXPECT_EQ(c.sw.steer_above_pps, 50000u);
  Config off = parse_config("switch:\n  fast_path: off\n", "t.yaml");
  EXPECT_FALSE(off.sw.blocks());  // every frame through the workers: poll
  EXPECT_TRUE(off.sw.steering_cores().empty());
  Config poll = parse_config("switch:\n  idle: poll\n", "t.yaml");
  EXPECT_FALSE(poll.sw.blocks());
  EXPECT_TRUE(poll.sw.steering_cores().empty());  // never onto a busy-polled core by default
  Config set = parse_config("switch:\n  idle: poll\n  fast_path_steering: { cores: [0], above_pps: 20000 }\n", "t.yaml");
  EXPECT_EQ(set.sw.steering_cores(), std::vector<int>{0});
  EXPECT_EQ(set.sw.steer_above_pps, 20000u);
  Config none = parse_config("switch:\n  fast_path_steering: { cores: [] }\n", "t.yaml");
  EXPECT_TRUE(none.sw.steering_cores().empty());
  EXPECT_EQ(diff_configs(c, set).switch_changed, (std::vector<std::string>{"workers", "idle", "fast_path_steering"}));
  EXPECT_FALSE(c.sw.control_cores);  // unset: placed by the daemon (the workers' cores when they block, else the others)
  Config ctl = parse_config("switch:\n  workers: [1, 3]\n  control_cores: [0, 2]\n", "t.yaml");
  EXPECT_EQ(ctl.sw.control_cores, (std::vector<int>{0, 2}));
  EXPECT_EQ(diff_configs(c, ctl).switch_changed, std::vector<std::string>{"control_cores"});
  EXPECT_TRUE(parse_config("switch:\n  idle: auto\n", "t.yaml").sw.blocks());
}

// The message of the ConfigError fn() throws ("accepted" if none).
template <typename F>
std::string err(F fn) {
  try {
    fn();
  } catch (const ConfigError& e) {
    return std::string(e.what());
  }
  return std::string("accepted");
}

TEST(ConfigItem, PersistIsForRuntimeItemsOnly) {
  EXPECT_TRUE(parse_endpoint_item("{name: w, networks: [x], persist: true}", "endpoint add").persist);
  EXPECT_TRUE(parse_network_item("{name: x, subnet: 10.9.0.0/24, persist: true}", "network add").persist);
  EXPECT_EQ(err([] { parse_endpoint_item("{name: w, mode: none, persist: true}", "endpoint add"); }),
            "endpoint add: persist: only valid with mode bridge");
  EXPECT_EQ(err([] { parse_config("networks:\n  - name: a\n    subnet: 10.0.0.0/24\n    persist: true\n", "f.yaml"); }),
            "f.yaml:4: networks[0].persist: only for networks added through the control socket (the file's networks are made at every start)");
  EXPECT_EQ(err([] { parse_config("switch:\n  persist_dir: rel\n", "f.yaml"); }), "f.yaml:2: switch.persist_dir: 'rel' is not an absolute path");
}

TEST(ConfigPlan, ReservedAddressesAndMacsAreLeftFreeButStaticOnesWin) {
  Config c = parse_config("networks:\n  - name: a\n    subnet: 10.0.0.0/24\nendpoints:\n  - name: e\n    networks: [a]\n"
                          "  - name: f\n    networks: [a]\n    ip: 10.0.0.3\n", "r.yaml");
  std::vector<Reservation> r = {{"a", ipv4_parse("10.0.0.2").value(), 0x0242ULL << 32 | ipv4_parse("10.0.0.4").value()},
                                {"a", ipv4_parse("10.0.0.3").value(), 0}, {"gone", 1, 0}};
  Plan p = make_plan(c, nullptr, &r);
  EXPECT_EQ(ipv4_to_string(p.endpoints[0].attachments[0].ip), "10.0.0.4");  // .2 reserved, .3 static
  EXPECT_NE(p.endpoints[0].attachments[0].mac, 0x0242ULL << 32 | ipv4_parse("10.0.0.4").value());  // that MAC is reserved too
  EXPECT_EQ(ipv4_to_string(p.endpoints[1].attachments[0].ip), "10.0.0.3");  // the file's static address wins
}

TEST(ConfigItem, SingleItemsUseTheFileSchemaAndNameTheCommand) {
  NetworkConfig n = parse_network_item(R"({"name": "x", "subnet": "10.9.0.0/24", "internal": true})", "dpswctl network add");
  EXPECT_EQ(n.name, "x");
  EXPECT_TRUE(n.internal);
  EndpointConfig e = parse_endpoint_item("{name: w, networks: [x], ip: 10.9.0.5}", "dpswctl endpoint add");
  EXPECT_EQ(e.networks, std::vector<std::string>{"x"});
  EXPECT_EQ(err([] { parse_network_item(R"({"name": "x"})", "dpswctl network add"); }),
            "dpswctl network add: subnet: required key missing");
  EXPECT_EQ(err([] { parse_network_item(R"({"name": "x", "subnet": "10.9.0.0/24", "colour": 1})", "dpswctl network add"); }),
            "dpswctl network add: colour: unknown key");
  EXPECT_EQ(err([] { parse_endpoint_item(R"({"name": "w", "networks": ["x"], "ip": "nope"})", "dpswctl endpoint add"); }),
            "dpswctl endpoint add: ip: 'nope' is not an IPv4 address");
  EXPECT_EQ(err([] { parse_endpoint_item("[1, 2]", "dpswctl endpoint add"); }), "dpswctl endpoint add: item: expected a mapping");
  // Checked against the rest of the configuration.
  Config c = parse_config(kGood, "good.yaml");
  c.endpoints.push_back(parse_endpoint_item("{name: w, networks: [nowhere]}", "dpswctl endpoint add"));
  EXPECT_EQ(err([&] { check_config(c); }), "dpswctl endpoint add: networks[0]: unknown network 'nowhere'");
  c.endpoints.back() = parse_endpoint_item("{name: web, networks: [front]}", "dpswctl endpoint add");
  EXPECT_EQ(err([&] { check_config(c); }), "dpswctl endpoint add: name: endpoint 'web' is defined twice");
  c.endpoints.pop_back();
  c.networks.push_back(parse_network_item("{name: n2, subnet: 172.20.0.128/25}", "dpswctl network add"));
  EXPECT_EQ(err([&] { check_config(c); }), "dpswctl network add: subnet: 172.20.0.128/25 overlaps network 'front' (172.20.0.0/24)");
  c.networks.back() = parse_network_item("{name: n2, subnet: 10.77.0.0/24}", "dpswctl network add");
  c.endpoints.push_back(parse_endpoint_item("{name: w, networks: [n2], ip: 10.77.0.1}", "dpswctl endpoint add"));
  EXPECT_EQ(err([&] { make_plan(c); }), "dpswctl endpoint add: ip: 10.77.0.1 is the network, broadcast or gateway address of network 'n2'");
}

std::string sub(std::string t, const std::string& from, const std::string& to) {
  auto at = t.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  return t.replace(at, from.size(), to);
}

TEST(ConfigDiffTest, RepresentativePairs) {
  Config a = parse_config(kGood, "a.yaml");
  EXPECT_TRUE(diff_configs(a, a).empty());

  // One endpoint added, one removed.
  Config b = parse_config(sub(kGood, "  - name: lonely\n    mode: none\n", "  - name: fresh\n    networks: [back]\n"), "b.yaml");
  ConfigDiff d = diff_configs(a, b);
  EXPECT_EQ(d.endpoints_added, std::vector<std::string>{"fresh"});
  EXPECT_EQ(d.endpoints_removed, std::vector<std::string>{"lonely"});
  EXPECT_TRUE(d.endpoints_changed.empty());
  EXPECT_TRUE(d.networks_changed.empty());

  // A network's MTU changes: applied in place, no endpoint is recreated.
  d = diff_configs(a, parse_config(sub(kGood, "mtu: 1400", "mtu: 1300"), "c.yaml"));
  EXPECT_EQ(d.networks_updated, std::vector<std::string>{"back"});
  EXPECT_TRUE(d.networks_changed.empty() && d.endpoints_changed.empty());
  EXPECT_TRUE(d.endpoints_added.empty() && d.endpoints_removed.empty());

  // Its gateway changes: the network and every endpoint on it are recreated, others are not.
  d = diff_configs(a, parse_config(sub(kGood, "gateway: 172.21.0.254", "gateway: 172.21.0.253"), "c2.yaml"));
  EXPECT_EQ(d.networks_changed, std::vector<std::string>{"back"});
  EXPECT_EQ(d.endpoints_changed, std::vector<std::string>{"api"});

  // allow and internal are applied in place too; published ports change no endpoint's interfaces.
  d = diff_configs(a, parse_config(sub(sub(kGood, "internal: true", "internal: false\n    allow: [front]"), "mac: 02:00:00:00:00:01",
                                       "mac: 02:00:00:00:00:01\n    publish: [\"8080:80/tcp\"]") + UPLINK, "c3.yaml"));
  EXPECT_EQ(d.networks_updated, std::vector<std::string>{"back"});
  EXPECT_EQ(d.endpoints_updated, std::vector<std::string>{"web"});
  EXPECT_TRUE(d.networks_changed.empty() && d.endpoints_changed.empty());

  // Labels change no interface either; the interface's name does.
  d = diff_configs(a, parse_config(sub(kGood, "mac: 02:00:00:00:00:01", "mac: 02:00:00:00:00:01\n    labels: { app: web }"), "c4.yaml"));
  EXPECT_EQ(d.endpoints_updated, std::vector<std::string>{"web"});
  EXPECT_TRUE(d.endpoints_changed.empty());
  Config f = parse_config(sub(kGood, "mac: 02:00:00:00:00:01", "mac: 02:00:00:00:00:01\n    ifname: net0"), "c5.yaml");
  EXPECT_EQ(diff_configs(a, f).endpoints_changed, std::vector<std::string>{"web"});
  EXPECT_EQ(make_plan(f).endpoints[0].attachments[0].ifname, "net0");

  // An endpoint's own definition changes (static IP).
  d = diff_configs(a, parse_config(sub(kGood, "ip: 172.20.0.10", "ip: 172.20.0.11"), "d.yaml"));
  EXPECT_EQ(d.endpoints_changed, std::vector<std::string>{"web"});

  // A network added, and a switch key that needs a restart.
  std::string t = sub(sub(kGood, "workers: [0]", "workers: [1]"), "endpoints:", "  - name: extra\n    subnet: 10.50.0.0/16\nendpoints:");
  d = diff_configs(a, parse_config(t, "e.yaml"));
  EXPECT_EQ(d.networks_added, std::vector<std::string>{"extra"});
  EXPECT_EQ(d.switch_changed, std::vector<std::string>{"workers"});
}

TEST(ConfigPlan, UntouchedEndpointsKeepTheirAddresses) {
  const char* two = "networks:\n  - name: n\n    subnet: 10.0.0.0/24\nendpoints:\n"
                    "  - name: a\n    networks: [n]\n  - name: b\n    networks: [n]\n  - name: c\n    networks: [n]\n";
  Config c1 = parse_config(two, "1.yaml");
  Plan p1 = make_plan(c1);
  EXPECT_EQ(ipv4_to_string(p1.endpoints[2].attachments[0].ip), "10.0.0.4");
  // Remove a: from scratch c would be renumbered to .3; with the plan in force it stays .4.
  Config c2 = c1;
  c2.endpoints.erase(c2.endpoints.begin());
  EXPECT_EQ(ipv4_to_string(make_plan(c2).endpoints[1].attachments[0].ip), "10.0.0.3");
  Plan p2 = make_plan(c2, &p1);
  EXPECT_EQ(ipv4_to_string(p2.endpoints[0].attachments[0].ip), "10.0.0.3");
  EXPECT_EQ(ipv4_to_string(p2.endpoints[1].attachments[0].ip), "10.0.0.4");
  EXPECT_EQ(p2.endpoints[1].attachments[0].mac, p1.endpoints[2].attachments[0].mac);
  // A newcomer takes the freed address, not one in use.
  c2.endpoints.push_back(parse_endpoint_item("{name: d, networks: [n]}", "add"));
  Plan p3 = make_plan(c2, &p2);
  EXPECT_EQ(ipv4_to_string(p3.endpoints[2].attachments[0].ip), "10.0.0.2");
  // A static address that an untouched endpoint holds is refused, not stolen.
  c2.endpoints.back() = parse_endpoint_item("{name: d, networks: [n], ip: 10.0.0.4}", "add");
  EXPECT_THROW(make_plan(c2, &p2), ConfigError);
}

TEST(ConfigPlan, GeneratedMacsAvoidStaticOnes) {
  // e's generated MAC would be 02:42 + its address (10.0.0.2); f claims exactly that statically.
  const char* y = "networks:\n  - name: n\n    subnet: 10.0.0.0/24\nendpoints:\n"
                  "  - name: e\n    networks: [n]\n  - name: f\n    networks: [n]\n    mac: 02:42:0a:00:00:02\n";
  Plan p = make_plan(parse_config(y, "m.yaml"));
  EXPECT_EQ(mac_to_string(p.endpoints[1].attachments[0].mac), "02:42:0a:00:00:02");
  EXPECT_NE(p.endpoints[0].attachments[0].mac, p.endpoints[1].attachments[0].mac);
  // At run time: an endpoint added with a MAC that a running endpoint holds is refused.
  Config c = parse_config("networks:\n  - name: n\n    subnet: 10.0.0.0/24\nendpoints:\n  - name: e\n    networks: [n]\n", "r.yaml");
  Plan p1 = make_plan(c);
  c.endpoints.push_back(parse_endpoint_item("{name: x, networks: [n], mac: " + mac_to_string(p1.endpoints[0].attachments[0].mac) + "}", "endpoint add"));
  try {
    make_plan(c, &p1);
    FAIL() << "accepted a duplicate MAC";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), "endpoint add: mac: 02:42:0a:00:00:02 is already the MAC of endpoint 'e'");
  }
}

TEST(Config, HugeInputIsRefusedBeforeParsing) {
  std::string big = "# " + std::string(kMaxConfigBytes, 'x') + "\n";
  try {
    parse_config(big, "big.yaml");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), "big.yaml: the file is " + std::to_string(big.size()) + " bytes; dpsw reads at most 4194304 (4 MiB)");
  }
}

// Validation and planning grow linearly with the file (they were quadratic:
// a 10 MB file took minutes). Compares two sizes measured in the same run,
// 8x apart: linear work takes ~8x as long, quadratic 64x. Endpoints with
// ports are capped by kMaxPorts, so the bulk are networks and endpoints
// without ports of their own (mode none, container:NAME).
TEST(Config, CheckingGrowsLinearly) {
  auto make = [](int n) {
    std::string y = "networks:\n";
    for (int i = 0; i < n; i++)
      y += "  - name: n" + std::to_string(i) + "\n    subnet: 10." + std::to_string(i >> 8) + "." + std::to_string(i & 255) + ".0/24\n";
    y += "endpoints:\n";
    for (int i = 0; i < 300; i++) {
      char mac[32];
      std::snprintf(mac, sizeof mac, "02:00:00:00:%02x:%02x", i >> 8, i & 255);
      y += "  - name: p" + std::to_string(i) + "\n    networks: [n" + std::to_string(i) + "]\n    mac: " + mac + "\n";
    }
    for (int i = 0; i < n; i++)
      y += "  - name: e" + std::to_string(i) + "\n    mode: none\n  - name: c" + std::to_string(i) + "\n    mode: container:e" +
           std::to_string(i) + "\n";
    return y;
  };
  auto seconds = [&](int n) {
    std::string y = make(n);
    double best = 1e9;
    for (int r = 0; r < 2; r++) {
      auto t0 = std::chrono::steady_clock::now();
      Config c = parse_config(y, "big.yaml");
      Plan p = make_plan(c);
      EXPECT_EQ(p.endpoints.size(), size_t(300 + 2 * n));
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return best;
  };
  double small = seconds(500), large = seconds(4000);
  EXPECT_LT(large / small, 24.0) << "n=500: " << small << " s, n=4000: " << large << " s";
}

TEST(Config, TooManyPortsIsAConfigError) {
  std::string y = "networks:\n  - name: n\n    subnet: 10.0.0.0/8\nendpoints:\n";
  for (int i = 0; i < 1100; i++) y += "  - name: e" + std::to_string(i) + "\n    networks: [n]\n";
  try {
    parse_config(y, "many.yaml");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("endpoints[1023].networks: too many ports"), std::string::npos) << e.what();
  }
}

TEST(Config, ConntrackTimeouts) {
  Config c = parse_config("switch:\n  conntrack:\n    timeouts: { tcp_syn_sent: 20, tcp_syn_recv: 10, other: 45 }\n", "t.yaml");
  EXPECT_EQ(c.sw.ct_tcp_syn_sent, 20u);
  EXPECT_EQ(c.sw.ct_tcp_syn_recv, 10u);
  EXPECT_EQ(c.sw.ct_other, 45u);
  EXPECT_EQ(c.sw.ct_tcp_established, 3600u);
  EXPECT_EQ(diff_configs(parse_config("switch: {}\n", "a.yaml"), c).switch_changed, std::vector<std::string>{"conntrack.timeouts"});
}

TEST(Config, DnsSectionAndAliases) {
  Config c = parse_config("dns:\n  upstream: [192.0.2.53, 198.51.100.1]\n  ttl: 30\nnetworks:\n  - name: a\n    subnet: 10.0.0.0/24\n"
                          "endpoints:\n  - name: e\n    networks: [a]\n    aliases: [WWW, api.internal]\n", "t.yaml");
  EXPECT_EQ(c.dns.upstream, (std::vector<uint32_t>{0xc0000235, 0xc6336401}));
  EXPECT_TRUE(c.dns.upstream_set && c.dns.enabled && c.dns.resolv_conf);
  EXPECT_EQ(c.dns.ttl, 30u);
  EXPECT_EQ(c.endpoints[0].aliases, (std::vector<std::string>{"www", "api.internal"})) << "lower case";
  Config d = parse_config("networks:\n  - name: a\n    subnet: 10.0.0.0/24\nendpoints:\n  - name: e\n    networks: [a]\n", "u.yaml");
  EXPECT_FALSE(d.dns.upstream_set);
  EXPECT_EQ(d.dns.ttl, 600u);
  // Both change in place: aliases update the endpoint, the dns section is its own.
  ConfigDiff x = diff_configs(d, c);
  EXPECT_EQ(x.endpoints_updated, std::vector<std::string>{"e"});
  EXPECT_TRUE(x.endpoints_changed.empty() && x.switch_changed.empty());
  EXPECT_TRUE(x.dns_changed);
  EXPECT_FALSE(x.empty());
}

TEST(Config, Services) {
  const std::string base = "uplink:\n  port: { interface: up0 }\n  address: 198.51.100.10/24\n"
                           "networks:\n  - name: a\n    subnet: 10.0.0.0/24\n  - name: i\n    subnet: 10.1.0.0/24\n    internal: true\n"
                           "endpoints:\n  - name: w1\n    networks: [a]\n    labels: { app: web }\n  - name: w2\n    networks: [a]\n";
  Config c = parse_config(base + "services:\n  - name: Web\n    network: a\n    ports: [\"80/tcp\", \"8000-8001:9000-9001/udp\"]\n"
                                 "    backends: { labels: { app: web } }\n    publish: [\"8081:80/tcp\"]\n"
                                 "  - name: rr\n    network: a\n    mode: dnsrr\n    backends: [w1, w2]\n", "s.yaml");
  ASSERT_EQ(c.services.size(), 2u);
  const ServiceConfig& w = c.services[0];
  EXPECT_EQ(w.name, "web");
  EXPECT_EQ(w.mode, ServiceConfig::Mode::kVip);
  ASSERT_EQ(w.ports.size(), 2u);
  EXPECT_EQ(w.ports[0], (Publish{6, 80, 80, 80}));
  EXPECT_EQ(w.ports[1], (Publish{17, 8000, 8001, 9000}));
  EXPECT_EQ(w.backend_labels.at("app"), "web");
  EXPECT_EQ(c.services[1].backend_names, (std::vector<std::string>{"w1", "w2"}));
  EXPECT_EQ(w.health_port, 0) << "no health check unless asked";
  Config h = parse_config(base + "services:\n  - name: h\n    network: a\n    ports: [\"80:8080/tcp\"]\n    backends: [w1]\n"
                                 "    health_check: { interval_s: 5 }\n", "h.yaml");
  EXPECT_EQ(h.services[0].health_port, 8080) << "the first TCP port's backends' port";
  EXPECT_EQ(h.services[0].health_interval_s, 5u);
  // The plan: a VIP from IPAM (after the endpoints'), none for dnsrr; kept by the next plan.
  Plan p = make_plan(c);
  ASSERT_EQ(p.services.size(), 2u);
  EXPECT_EQ(p.services[0].vip, 0x0a000004u) << "10.0.0.2 and .3 are the endpoints'";
  EXPECT_EQ(p.services[1].vip, 0u);
  Config c2 = parse_config(base + "  - name: w3\n    networks: [a]\n    ip: 10.0.0.5\nservices:\n  - name: web\n    network: a\n"
                                  "    ports: [\"80/tcp\"]\n    backends: [w1]\n", "s2.yaml");
  EXPECT_EQ(make_plan(c2, &p).services[0].vip, 0x0a000004u) << "kept";
  EXPECT_TRUE(diff_configs(c, c2).services_changed);
  EXPECT_FALSE(diff_configs(c, c).services_changed);
  auto bad = [&](const std::string& svc, const std::string& want) {
    try {
      Config x = parse_config(base + "services:\n" + svc, "b.yaml");
      make_plan(x);
      ADD_FAILURE() << "accepted: " << svc;
    } catch (const ConfigError& e) {
      EXPECT_EQ(std::string(e.what()), want);
    }
  };
  bad("  - name: s\n    network: a\n    backends: [w1]\n", "b.yaml:17: services[0].ports: mode vip needs ports (like [\"80/tcp\"]): connections to them are balanced");
  bad("  - name: s\n    network: zz\n    ports: [80]\n    backends: [w1]\n", "b.yaml:18: services[0].network: unknown network 'zz'");
  bad("  - name: w1\n    network: a\n    ports: [80]\n    backends: [w1]\n", "b.yaml:17: services[0].name: 'w1' is already an endpoint's name (services and endpoints share the DNS names)");
  bad("  - name: s\n    network: a\n    mode: dnsrr\n    vip: 10.0.0.9\n    backends: [w1]\n", "b.yaml:20: services[0].vip: mode dnsrr has no virtual IP");
  {  // a static VIP wins over a dynamic endpoint address, as a static endpoint address does
    Plan q = make_plan(parse_config(base + "services:\n  - name: s\n    network: a\n    ports: [80]\n    vip: 10.0.0.2\n    backends: [w1]\n", "v.yaml"));
    EXPECT_EQ(q.services[0].vip, 0x0a000002u);
    EXPECT_EQ(q.endpoints[0].attachments[0].ip, 0x0a000003u);
  }
  bad("  - name: s\n    network: a\n    ports: [80]\n    vip: 10.0.0.1\n    backends: [w1]\n", "b.yaml:20: services[0].vip: 10.0.0.1 is the network, broadcast or gateway address of network 'a'");
  bad("  - name: s\n    network: a\n    ports: [80]\n    backends: { app: web }\n", "b.yaml:20: services[0].backends.labels: expected a list of endpoint names or { labels: { KEY: VALUE } }");
  bad("  - name: s\n    network: a\n    ports: [\"80/tcp\"]\n    backends: [w1]\n    publish: [\"81:81/tcp\"]\n", "b.yaml:21: services[0].publish[0]: '81:81/tcp': the service has no such port in ports");
  bad("  - name: s\n    network: i\n    ports: [\"80/tcp\"]\n    backends: [w1]\n    publish: [\"81:80/tcp\"]\n", "b.yaml:21: services[0].publish: network 'i' is internal");
  bad("  - name: s\n    network: a\n    ports: [\"80/tcp\"]\n    backends: [w1]\n  - name: s\n    network: a\n    ports: [80]\n    backends: [w2]\n", "b.yaml:21: services[1].name: service 's' is defined twice");
  bad("  - name: s\n    network: a\n    ports: [\"80/tcp\"]\n    backends: [w1]\n    publish: [\"81:80/tcp\"]\n  - name: t\n    network: a\n    ports: [\"80-81/tcp\"]\n    backends: [w2]\n    publish: [\"80-81:80-81/tcp\"]\n",
      "b.yaml:26: services[1].publish[0]: 80-81:80-81/tcp overlaps 81:80/tcp of service 's'");
}

TEST(Config, MissingFileIsNamed) {
  try {
    load_config("/nonexistent/dpsw.yaml");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), "/nonexistent/dpsw.yaml: cannot read the file");
  }
}

TEST(Ipam, AllocatesLowestFreeSkippingReservedAddresses) {
  Ipam ipam(*prefix_parse("10.0.0.0/29"), *ipv4_parse("10.0.0.1"), std::nullopt);
  EXPECT_EQ(ipam.free_count(), 5u);  // 8 - network - broadcast - gateway
  EXPECT_EQ(ipam.reserve(*ipv4_parse("10.0.0.3")), Ipam::Reserve::kOk);
  EXPECT_EQ(ipv4_to_string(*ipam.allocate()), "10.0.0.2");
  EXPECT_EQ(ipv4_to_string(*ipam.allocate()), "10.0.0.4");
  EXPECT_EQ(ipv4_to_string(*ipam.allocate()), "10.0.0.5");
  EXPECT_EQ(ipv4_to_string(*ipam.allocate()), "10.0.0.6");
  EXPECT_FALSE(ipam.allocate().has_value());  // exhausted
  ipam.release(*ipv4_parse("10.0.0.5"));
  EXPECT_EQ(ipv4_to_string(*ipam.allocate()), "10.0.0.5");
}

TEST(Ipam, ReserveRejectsBadAddresses) {
  Ipam ipam(*prefix_parse("10.0.0.0/24"), *ipv4_parse("10.0.0.1"), std::nullopt);
  EXPECT_EQ(ipam.reserve(*ipv4_parse("10.0.1.5")), Ipam::Reserve::kOutsideSubnet);
  EXPECT_EQ(ipam.reserve(*ipv4_parse("10.0.0.0")), Ipam::Reserve::kReserved);
  EXPECT_EQ(ipam.reserve(*ipv4_parse("10.0.0.255")), Ipam::Reserve::kReserved);
  EXPECT_EQ(ipam.reserve(*ipv4_parse("10.0.0.1")), Ipam::Reserve::kReserved);
  EXPECT_EQ(ipam.reserve(*ipv4_parse("10.0.0.7")), Ipam::Reserve::kOk);
  EXPECT_EQ(ipam.reserve(*ipv4_parse("10.0.0.7")), Ipam::Reserve::kInUse);
}

TEST(Ipam, RangeLimitsAllocation) {
  Ipam ipam(*prefix_parse("10.0.0.0/24"), *ipv4_parse("10.0.0.1"), prefix_parse("10.0.0.252/30"));
  EXPECT_EQ(ipv4_to_string(*ipam.allocate()), "10.0.0.252");
  EXPECT_EQ(ipv4_to_string(*ipam.allocate()), "10.0.0.253");
  EXPECT_EQ(ipv4_to_string(*ipam.allocate()), "10.0.0.254");
  EXPECT_FALSE(ipam.allocate().has_value());  // .255 is the broadcast address
}

TEST(Ipv4, ParsesStrictly) {
  EXPECT_FALSE(ipv4_parse("1.2.3").has_value());
  EXPECT_FALSE(ipv4_parse("1.2.3.4.5").has_value());
  EXPECT_FALSE(ipv4_parse("01.2.3.4").has_value());
  EXPECT_FALSE(ipv4_parse("1.2.3.4 ").has_value());
  EXPECT_EQ(ipv4_to_string(*ipv4_parse("198.51.100.10")), "198.51.100.10");
  EXPECT_EQ(mac_parse("02:42:AC:14:00:0a").value(), 0x0242ac14000aULL);
  EXPECT_FALSE(mac_parse("02:42:ac:14:00").has_value());
  EXPECT_FALSE(mac_parse("02-42-ac-14-00-0a").has_value());
}

}  // namespace
}  // namespace dpsw
