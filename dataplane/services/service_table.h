// Services as the workers see them (issue 16): part of the immutable
// Snapshot, built by the control side's services module (control/services).
// A virtual IP's connections are spread over its backends by Maglev
// (maglev.h): the first packet of a connection picks a backend from the
// table by the hash of its tuple, and the connection's conntrack flow keeps
// it there (DNAT, the client's address kept) for its whole life, whatever
// later happens to the table. A backend's replies come back through dpsw
// (l3_local hands a backend port's packets from a service port to l3_route,
// which finds the flow and restores the VIP), so a client on the same
// network as its backend still sees the VIP answer.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "dataplane/core/ether.h"
#include "dataplane/core/hash.h"

namespace dpsw {

struct SvcPort {
  uint8_t proto = 6;              // 6 tcp, 17 udp
  uint16_t lo = 0, hi = 0;        // the VIP's ports
  uint16_t target = 0;            // the backends' port for lo (lo + k -> target + k)
};

struct ServiceBackend {
  uint32_t ip = 0;
  uint16_t port = 0;  // its dpsw port
  Mac mac = 0;
};

struct VipService {
  uint32_t vip = 0;
  uint16_t bd = 0;        // its network
  uint32_t gateway = 0;   // that network's gateway (the source of a backend reaching its own service)
  Mac router_mac = 0;
  std::vector<SvcPort> ports;
  std::vector<ServiceBackend> backends;
  std::shared_ptr<const std::vector<uint16_t>> table;  // Maglev: entry -> index into backends; null without backends

  // The backends' port for the VIP's (proto, port); 0: not one of the service's ports.
  uint16_t target(uint8_t proto, uint16_t port) const {
    for (const SvcPort& p : ports)
      if (p.proto == proto && port >= p.lo && port <= p.hi) return uint16_t(p.target + (port - p.lo));
    return 0;
  }
  // The backend a new connection with this tuple goes to (nullptr: none).
  const ServiceBackend* pick(uint32_t sip, uint32_t dip, uint16_t sport, uint16_t dport, uint8_t proto) const {
    if (!table || table->empty()) return nullptr;
    const uint64_t h = mix64((uint64_t(sip) << 32 | dip) ^ mix64(uint64_t(sport) << 24 | uint64_t(dport) << 8 | proto));
    return &backends[(*table)[h % table->size()]];
  }
};

struct ServiceTable {
  std::vector<VipService> vips;  // sorted by vip
  // Per port id: the service ports (proto, the backends' target ports) its
  // endpoint serves as a backend; its packets from them go to l3_route.
  std::vector<std::vector<SvcPort>> backend_ports;
  std::vector<uint16_t> down;  // backends' ports whose link is down (out of every table; the control side's, for DNS)
  std::vector<std::pair<uint32_t, uint16_t>> unhealthy;  // (index in the config's services, port): failed its health check (for DNS)

  const VipService* find(uint32_t vip) const {
    auto it = std::lower_bound(vips.begin(), vips.end(), vip, [](const VipService& v, uint32_t ip) { return v.vip < ip; });
    return it != vips.end() && it->vip == vip ? &*it : nullptr;
  }
  // Is a packet from port `port` with (proto, source port) a backend's reply to a service connection, maybe?
  bool from_backend(uint16_t port, uint8_t proto, uint16_t sport) const {
    if (port >= backend_ports.size()) return false;
    for (const SvcPort& p : backend_ports[port])
      if (p.proto == proto && sport >= p.target && sport <= p.target + (p.hi - p.lo)) return true;
    return false;
  }
};

}  // namespace dpsw
