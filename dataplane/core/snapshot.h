// Immutable forwarding state shared by workers.
//
// The control thread builds a new Snapshot for every change, publishes it
// with one release store (Dataplane::publish) and retires the old one
// through QSBR. Workers load the pointer once per loop iteration and never
// modify what it points to.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dataplane/core/ether.h"
#include "dataplane/core/packet.h"
#include "dataplane/dns/dns_table.h"
#include "dataplane/services/service_table.h"
#include "dataplane/ports/port.h"

namespace dpsw {

struct PortEntry {
  Port* port = nullptr;       // nullptr: id unused
  uint16_t bd = 0;            // network (bridge domain) the port is attached to
  uint16_t owner = 0;         // worker that polls and transmits on it
  uint32_t max_frame = 1514;  // network MTU + Ethernet header
  // A VXLAN tunnel port (overlay network): port == nullptr, frames to it are
  // encapsulated to `vtep` with `vni` and sent out of the uplink; frames
  // decapsulated from `vtep` with `vni` enter the pipeline as received on it.
  uint32_t vtep = 0;  // remote VTEP address; 0: not a tunnel
  uint32_t vni = 0;
  // A fast-tier endpoint (fast_port.h): its frames arrive on a punt port,
  // tagged with its id; `owner` is that punt port's owner.
  bool fast = false;
  bool punt = false;  // a punt port of the fast tier: in no network, frames enter as their tag's port
  // A punt port: where its owner publishes the per-port punt share for the
  // TC program (FastTier::punt_share, punt_share.h); nullptr: none.
  uint32_t* punt_share = nullptr;
  bool endpoint = false;  // an endpoint's port: may not announce dpsw's own address (eth_input)
  bool svc_backend = false;  // a service's backend: its packets from a service port go to l3_route (ServiceTable::backend_ports)
  bool learn = true;      // false: its frames teach the MAC table nothing (macvlan: the kernel's does not learn either)
};

// Where a decapsulated frame enters: (vni << 32 | remote VTEP) -> tunnel port.
struct TunnelKey {
  uint64_t key;
  uint16_t port;
  static uint64_t make(uint32_t vni, uint32_t vtep) { return uint64_t(vni) << 32 | vtep; }
};

struct BdEntry {
  std::string name;
  std::vector<uint16_t> ports;  // flood list: every port of the network
  uint32_t local_ip = 0;        // dpsw's own address here (gateway / uplink address); 0: none
  Mac router_mac = 0;           // the MAC that answers for local_ip
  uint32_t subnet = 0, mask = 0;  // a bridge network's subnet: the only sources it may route from (mask 0: not checked)
  bool nat = false;             // a bridge network whose traffic may leave through the uplink (not internal)
  bool has_tunnels = false;     // the flood list holds tunnel ports (set by Dataplane::publish)
  bool dns = false;             // UDP to local_ip:53 goes to the DNS responder (dataplane/dns)
  bool dns_relay = false;       // the uplink's segment: upstream answers to the DNS relay's ports go to it too
  // Its askers' names not ours may be relayed upstream (control decides: a
  // bridge or overlay network that is not internal — Docker's overlay
  // containers reach out through another network — and the uplink's segment,
  // for macvlan endpoints asking at the host's address).
  bool relay_names = false;
  std::vector<uint32_t> vips;   // services' virtual IPs on this network: ARP and ICMP echo answered like local_ip's
  // An overlay's gateway: every host's dpsw answers it (ARP, ICMP echo, DNS)
  // for its own endpoints, as Docker's per-host overlay bridge does; frames
  // from tunnels never reach it, and nothing sent to it is routed.
  bool local_only = false;
};

// A published port range (`publish: ["8080-8089:80-89/tcp"]`) of one endpoint.
struct PubRule {
  uint16_t host_lo = 0, ctr_lo = 0;  // first host port, first container port
  uint32_t ip = 0;                    // the container's address
  uint16_t port = 0;                  // its port id
  uint16_t bd = 0;                    // its network
  Mac mac = 0;                        // its MAC
  Mac router_mac = 0;                 // dpsw's MAC on that network
  uint32_t gateway = 0;               // that network's gateway (hairpin source)
  int32_t service = -1;               // a service's published port: index into Snapshot::services.vips (ctr_lo: the VIP's port); ip/port/mac unused
};

// Routing between container networks and the uplink (absent without an uplink).
struct L3Conf {
  bool enabled = false;
  uint16_t uplink_port = kInvalidPort;
  uint16_t uplink_bd = 0;
  uint32_t uplink_ip = 0, gateway = 0;
  Mac uplink_mac = 0;
  std::vector<std::pair<uint32_t, uint32_t>> isolated;  // (network, mask) of every bridge network: never routed between...
  std::vector<uint16_t> isolated_bd;                     // ...the bridge domain of each...
  std::vector<uint8_t> allowed;                          // ...unless allowed[src_bd * bds + dst_bd] (`allow:`)
  struct Neighbor {
    uint32_t ip;
    uint16_t port, bd;
    Mac mac;
  };
  std::vector<Neighbor> neighbors;  // every bridge endpoint, sorted by ip: where routed traffic goes
  std::vector<PubRule> pub;
  std::vector<uint16_t> pub_tcp, pub_udp;  // 65536 entries each (or empty): 1 + index into pub, 0 = none
};

struct Snapshot {
  uint64_t generation = 0;
  std::vector<PortEntry> ports;                  // indexed by port id (< kMaxPorts)
  std::vector<BdEntry> bds;                      // indexed by bd
  std::vector<std::vector<uint16_t>> rx_ports;  // per worker: ports it polls
  std::vector<uint8_t> can_block;                // per worker: every rx port has a wait_fd (set by publish)
  L3Conf l3;
  std::vector<TunnelKey> tunnels;                // sorted by key; empty without overlay networks
  DnsTable dns;                                  // the DNS responder's names (control/dns)
  ServiceTable services;                         // services' virtual IPs and backends (control/services)

  // A port in use: a real one or a tunnel.
  const PortEntry* port(uint16_t id) const {
    return id < ports.size() && (ports[id].port || ports[id].vtep) ? &ports[id] : nullptr;
  }
};

}  // namespace dpsw
