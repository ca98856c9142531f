// Per-worker, per-port counters.
//
// Each worker owns one WorkerCounters block (cache-line aligned, allocated
// before the worker starts). Only that worker writes it; the control thread
// reads it and sums across workers when asked. Fields are std::atomic so the
// cross-thread read is defined, but the owner only does relaxed load + relaxed
// store (a plain mov on x86): no locked instruction on the fast path.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string_view>

#include "dataplane/core/packet.h"

namespace dpsw {

// Why a frame was dropped: the ONE table of drop reasons. The enum, the
// name in counters and JSON, the nodes that count it (packet-graph nodes,
// dataplane/core/graph.h, or its entry points), its meaning, and the docs
// (tests/unit/core/drop_reasons_test.cc checks README.md lists each and that
// every node named exists) all come from here: adding a reason is one line.
#define DPSW_DROP_REASONS(X)                                                                                                                     \
  X(kRunt, "runt", "eth_input", "shorter than an Ethernet header")                                                                               \
  X(kOversize, "oversize", "eth_input fast_tier", "longer than the port's network MTU allows")                                                   \
  X(kBadSrcMac, "bad_src_mac", "eth_input fast_tier", "multicast/broadcast/zero source MAC, or dpsw's own")                                      \
  X(kSamePort, "same_port", "l2_fwd", "destination is the port it came in on (filtered)")                                                        \
  X(kNoNetwork, "no_network", "forward tx vxlan_output", "input port is not attached to a network (being removed)")                              \
  X(kTxFull, "tx_full", "tx", "destination port's tx ring had no room")                                                                          \
  X(kHandoffFull, "handoff_full", "tx", "cross-worker ring to the destination's worker full, or all our handoff buffers in flight")              \
  X(kNoRoute, "no_route", "l3_local l3_route vxlan_output", "sent to dpsw's router MAC, but nothing routes it (yet)")                            \
  X(kBadIp, "bad_ip", "l3_local l3_route", "IPv4 header malformed or truncated")                                                                 \
  X(kTtl, "ttl", "l3_route", "TTL expired on the way through dpsw")                                                                              \
  X(kIsolated, "isolated", "l3_route", "between two container networks (Docker's inter-network isolation)")                                      \
  X(kInternal, "internal", "l3_route", "from an internal network towards the outside")                                                           \
  X(kNoFlow, "no_flow", "l3_route", "arrived at the uplink address with no connection to belong to")                                             \
  X(kArpMiss, "arp_miss", "l3_route vxlan_output", "next hop on the uplink not resolved yet (ARP sent)")                                         \
  X(kCtFull, "ct_full", "l3_route", "connection table or NAT ports exhausted: new flow refused")                                                 \
  X(kCtInvalid, "ct_invalid", "l3_route", "a TCP segment matching no connection that opens none: not a SYN or a bare ACK (a FIN or RST from inside is picked up while there is room)") \
  X(kCtBusy, "ct_busy", "l3_route", "a new flow's tuple not yet out of the table (a flow it replaces, or a busy bucket): the sender's retry goes through") \
  X(kVxlanBad, "vxlan_bad", "vxlan_input", "VXLAN to us, malformed: outer IPv4 header, truncated, fragmented, I flag clear")                     \
  X(kVxlanVni, "vxlan_vni", "vxlan_input", "VXLAN with a VNI no overlay network uses")                                                           \
  X(kVxlanPeer, "vxlan_peer", "vxlan_input", "VXLAN from an address that is not a peer of the VNI's network")                                    \
  X(kTooBig, "too_big", "vxlan_output", "encapsulated, the frame would exceed the underlay MTU (IPv4 with DF: ICMP sent back)")                  \
  X(kSplitHorizon, "split_horizon", "l2_fwd", "from one tunnel towards another (peers form a full mesh: never relayed)")                         \
  X(kPuntTag, "punt_tag", "punt", "on the punt port: no 802.1Q tag naming a fast-tier port (see fast_port.h)")                                   \
  X(kArpSpoof, "arp_spoof", "eth_input", "an endpoint (or a tunnel, on an overlay) announced dpsw's own address in ARP")                         \
  X(kVxlanFragment, "vxlan_fragment", "vxlan_input", "an outer-fragmented VXLAN packet (first fragment; not reassembled)")                       \
  X(kBadCsum, "bad_csum", "l3_local l3_route", "to be routed or answered by dpsw: IPv4 header checksum (or an echo's ICMP checksum) wrong")      \
  X(kMartian, "martian", "l3_local l3_route", "to be routed: source or destination in 0/8, 127/8, 224/4 (multicast), 240/4 (incl. broadcast)")   \
  X(kFragNoFlow, "frag_no_flow", "l3_route", "an IPv4 fragment after the first whose datagram's first fragment matched no flow (or came later)") \
  X(kNatClash, "nat_clash", "l3_route", "another protocol (GRE, ...) masqueraded by address only: another endpoint holds (protocol, remote)")    \
  X(kWrongIngress, "wrong_ingress", "l3_route", "a flow's tuple from a port the flow does not come from (another network reusing it)")           \
  X(kSpoofedSrc, "spoofed_src", "l3_route", "to be routed from a container: source address not on its network")                                  \
  X(kFromMacvlan, "from_macvlan", "l3_route", "to be routed from a macvlan endpoint: dpsw serves it published ports on the host address only")   \
  X(kPuntShare, "punt_share", "fast_tier", "fast tier: punted while the punt port was congested, beyond the port's fair share (punt_share.h)") \
  X(kDnsBad, "dns_bad", "dns", "to dpsw's DNS responder: not a query (a response, or shorter than a DNS header); never answered")

enum class Drop : uint8_t {
#define DPSW_DROP_ENUM(id, name, nodes, text) id,
  DPSW_DROP_REASONS(DPSW_DROP_ENUM)
#undef DPSW_DROP_ENUM
  kCount
};
constexpr size_t kDropReasons = size_t(Drop::kCount);

struct DropReason {
  std::string_view name;   // in counters, JSON and dpswctl
  std::string_view nodes;  // where it is counted: packet-graph nodes (graph.h) or entry points (kEntryPoints there)
  std::string_view text;   // what it means
};
inline constexpr std::array<DropReason, kDropReasons> kDropReasonTable = {{
#define DPSW_DROP_INFO(id, name, nodes, text) DropReason{name, nodes, text},
    DPSW_DROP_REASONS(DPSW_DROP_INFO)
#undef DPSW_DROP_INFO
}};
constexpr std::string_view drop_reason_name(Drop d) { return d < Drop::kCount ? kDropReasonTable[size_t(d)].name : "?"; }

// Single-writer counter: relaxed load/store, never read-modify-write.
struct Counter {
  std::atomic<uint64_t> v{0};
  void add(uint64_t n) { v.store(v.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
  uint64_t get() const { return v.load(std::memory_order_relaxed); }  // any thread: monotonic snapshot
};

struct PortCounters {
  Counter rx_packets, rx_bytes, tx_packets, tx_bytes;
  Counter flood_packets;  // copies sent because of broadcast/multicast/unknown unicast
  std::array<Counter, kDropReasons> drops;
};

struct alignas(64) WorkerCounters {
  Counter loops;        // poll-loop iterations
  Counter busy_loops;   // iterations that moved at least one frame
  Counter busy_cycles;  // TSC cycles spent in those iterations
  Counter idle_cycles;  // TSC cycles spent in empty polls
  Counter sleeps;       // times the worker blocked waiting for traffic (idle: block)
  Counter learn_skipped;  // MAC learning deferred (bucket busy or table full)
  // The embedded DNS responder (dataplane/dns): queries it took, how each
  // ended (answered here with records, NODATA, NXDOMAIN, an error rcode, or
  // forwarded upstream), and the forwarded ones' outcome.
  struct Dns {
    Counter queries, answered, nodata, nxdomain, errors, forwarded, relayed, upstream_timeouts, servfail;
  } dns;
  std::array<PortCounters, kMaxPorts> ports;
};

// A count that several threads change (e.g. table occupancy: workers add,
// the control thread removes), each through its own slot: one cache line
// per writer, changed only by that writer with relaxed load + store (no
// locked instruction, no line shared between writers), read as the sum.
// A slot may go negative (its writer removes what another added); only the
// sum means anything. The sum is read relaxed, slot by slot: it is a
// statistic or an approximate bound, not a synchronisation point.
class SlotCount {
 public:
  explicit SlotCount(unsigned writers) : n_(writers), slots_(new Slot[writers]) {}
  unsigned writers() const { return n_; }
  void add(unsigned writer, int64_t d) {
    std::atomic<int64_t>& v = slots_[writer].v;
    v.store(v.load(std::memory_order_relaxed) + d, std::memory_order_relaxed);  // relaxed: single writer, a count
  }
  int64_t slot(unsigned writer) const { return slots_[writer].v.load(std::memory_order_relaxed); }  // relaxed: a count
  // Never below 0 (slots read at slightly different moments may briefly say so).
  uint64_t sum() const {
    int64_t t = 0;
    for (unsigned i = 0; i < n_; i++) t += slots_[i].v.load(std::memory_order_relaxed);  // relaxed: a count
    return t > 0 ? uint64_t(t) : 0;
  }

 private:
  struct alignas(64) Slot {
    std::atomic<int64_t> v{0};
  };
  unsigned n_;
  std::unique_ptr<Slot[]> slots_;
};

}  // namespace dpsw
