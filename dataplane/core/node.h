// What a node of the packet graph (graph.h) sees: the burst being forwarded
// and the worker's services, in one context per burst from one input port.
//
// A node is a struct in its own file (node_*.h) with:
//   using Next = ...;                // its named exits (an enum, from 0)
//   static constexpr bool kBatch;    // true: runs once per burst over a Frame
//   batch:      template <class Emit> static void run(Ctx&, const Frame&, Emit&&);
//   per packet: template <class Emit> static void run(Ctx&, uint16_t i, uint16_t arg, Emit&&);
// Per-frame nodes are the rule: they run inline in the loop of the node
// that emits to them, so a chain of them is one pass over the burst (the
// code of the old hand-written loop). A batch node is for a real bulk step
// (l2_fwd's bulk MAC lookup) and costs an index store per frame. run() is
// always_inline, and no node hands the Ctx to an out-of-line call (pass the
// services it needs instead): the Ctx then stays in registers.
// and calls emit(i, Next::kX, arg) for every frame it passes on (any number
// of times: a flood fans out). Where kX leads is not the node's business:
// the edge table in graph.h says, at compile time. `arg` is what the next
// node needs besides the frame (a destination port, a drop reason).
#pragma once

#include <cstdint>

#include "dataplane/nat/arp_cache.h"
#include "dataplane/core/burst.h"
#include "dataplane/nat/conntrack.h"
#include "dataplane/core/counters.h"
#include "dataplane/bridge/mac_table.h"
#include "dataplane/core/snapshot.h"
#include "dataplane/core/stage_tx.h"
#include "dataplane/dns/dns_relay.h"

namespace dpsw::graph {

// Indices (into Ctx's frames) waiting for one batch node.
struct Frame {
  uint16_t n = 0;
  uint16_t idx[kBurst];
  void push(uint16_t i) { idx[n++] = i; }
};

// What every node declares (by deriving from it): its exits (an enum, its
// stage's where it wraps one), how many, and whether it is a batch node.
enum class NoExit : uint8_t {};  // a node that ends a frame's path (tx, drop)
template <class NextEnum, unsigned Exits, bool Batch = false>
struct Node {
  using Next = NextEnum;
  static constexpr unsigned kExits = Exits;
  static constexpr bool kBatch = Batch;
};

// Per-frame state nodes hand on (index i < n). Apart from Ctx, in a local
// of its own: these arrays go to out-of-line lookups, and a Ctx whose address
// escaped that way would be reloaded from memory after every store of the tx
// stage (every flood copy).
struct Lanes {
  bool valid[kBurst];    // passed eth_input
  bool handled[kBurst];  // consumed before L2 forwarding (answered, routed, dropped there)
  Mac src[kBurst], dst[kBurst];
};

struct Ctx {
  Ctx(const Snapshot& s, stage::TxStage& tx, WorkerCounters& wc, MacTable& macs, ConnTrack* ct, ArpCache* arp, DnsRelay* relay,
      BurstArena& arena, uint16_t& ip_id, unsigned worker, uint32_t now, uint16_t in_port, const PortEntry& in,
      const BdEntry& bd, PortCounters& pc, Burst& b, uint16_t first, uint16_t n, Lanes& lane)
      : s(s), tx(tx), wc(wc), macs(macs), ct(ct), arp(arp), relay(relay), arena(arena), ip_id(ip_id), worker(worker), now(now),
        in_port(in_port), in(in), bd(bd), pc(pc), b(b), first(first), n(n),
        from_uplink(in_port == s.l3.uplink_port), lane(lane) {}  // per-frame arrays: written by the nodes
  Ctx(const Ctx&) = delete;
  // The worker's services.
  const Snapshot& s;
  stage::TxStage& tx;
  WorkerCounters& wc;
  MacTable& macs;
  ConnTrack* ct;     // null without L3
  ArpCache* arp;     // null without L3
  DnsRelay* relay;   // null without L3: the DNS responder's upstream relay
  BurstArena& arena; // encapsulation scratch
  uint16_t& ip_id;   // outer IPv4 identification
  unsigned worker;
  uint32_t now;
  // The burst: frames b[first, first + n), all received on in_port.
  uint16_t in_port;
  const PortEntry& in;
  const BdEntry& bd;
  PortCounters& pc;
  Burst& b;
  uint16_t first, n;
  bool from_uplink;  // l3_local completes partial checksums and (with L3) learns ARP from every such frame
  Packet& pkt(uint16_t i) { return b[uint16_t(first + i)]; }
  uint16_t slot(uint16_t i) const { return uint16_t(first + i); }  // b's index, for TxStage::enqueue
  Lanes& lane;  // per-frame state nodes hand on
  uint64_t flooded = 0;  // copies made by flooding
};

}  // namespace dpsw::graph
