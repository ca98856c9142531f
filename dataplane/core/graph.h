// The packet graph: the nodes a burst from one port runs through, and the
// edges between them, in one place. Static: the edge table is resolved at
// compile time, every emit(i, Next::kX, arg) in a node becomes a direct,
// inlined call (or an index pushed onto the next batch node's Frame); no
// virtual call, allocation, lock or exception.
//
// Nodes (node.h says what one is): run() feeds every frame of the burst, in
// order, to the entry (the first node); per-frame nodes run inline, in the
// loop of the node that emits to them, so eth_input -> l3_local -> l3_route
// (or -> tx, -> drop) is ONE pass over the burst, one frame at a time (order
// kept: a route sees the ARP learned from the frames before it, tx queues
// fill in frame order). Batch nodes run once per burst, after that pass, over
// the indices pushed onto their Frame, in the order of DPSW_NODES (edges into
// a batch node go down the list: checked below). Only l2_fwd is one: its
// MAC lookup is a bulk step over the burst.
//
//   eth_input --kL2--> l3_local --kNotLocal--> l2_fwd* --kUnicast--> output --kTx-----> tx
//     |                  |                       |                     ^   \--kTunnel--> vxlan_output
//     \--kDrop--> drop   |--kReply--> tx         |--kFlood--> flood ---+ kOut
//                        |--kDns--> dns (answers, relays: tx) --kRoute--> l3_route --kL2--> l2_fwd
//                        |--kRoute--> l3_route   |              \--kTx--> tx
//                        |              |--kOut--> tx
//                        |              \--kDrop--> drop
//                        \--kDrop--> drop        \--kDrop--> drop
//
//   * batch node (once per burst, over an index list); the others run per
//   frame, inline (docs/ARCHITECTURE.md "The packet graph")
//
// Adding a node: its file node_<name>.h (a struct: Next, kExits, kBatch,
// run), its #include and line in DPSW_NODES, its edges in DPSW_EDGES, and
// an edge of an existing node pointing to it. The compiler checks that
// every exit of every node has exactly one edge.
#pragma once

#include <cstddef>
#include <utility>

#include "dataplane/core/node.h"
#include "dataplane/core/node_drop.h"
#include "dataplane/bridge/node_eth_input.h"
#include "dataplane/bridge/node_flood.h"
#include "dataplane/bridge/node_l2_fwd.h"
#include "dataplane/dns/node_dns.h"
#include "dataplane/nat/node_l3_local.h"
#include "dataplane/nat/node_l3_route.h"
#include "dataplane/core/node_output.h"
#include "dataplane/core/node_tx.h"
#include "dataplane/overlay/node_vxlan_output.h"

namespace dpsw::graph {

// Registration: (struct, name). Batch nodes run in this order.
#define DPSW_NODES(X)              \
  X(EthInput, "eth_input")         \
  X(L3Local, "l3_local")           \
  X(L3Route, "l3_route")           \
  X(Dns, "dns")                    \
  X(L2Fwd, "l2_fwd")               \
  X(Flood, "flood")                \
  X(Output, "output")              \
  X(VxlanOutput, "vxlan_output")   \
  X(Tx, "tx")                      \
  X(Discard, "drop")

// Edges: (from, exit of from::Next, to).
#define DPSW_EDGES(X)              \
  X(EthInput, kL2, L3Local)        \
  X(EthInput, kDrop, Discard)      \
  X(L3Local, kNotLocal, L2Fwd)     \
  X(L3Local, kReply, Tx)           \
  X(L3Local, kRoute, L3Route)      \
  X(L3Local, kDrop, Discard)       \
  X(L3Local, kDns, Dns)            \
  X(Dns, kRoute, L3Route)          \
  X(L3Route, kOut, Tx)             \
  X(L3Route, kDrop, Discard)       \
  X(L3Route, kL2, L2Fwd)           \
  X(L2Fwd, kUnicast, Output)       \
  X(L2Fwd, kFlood, Flood)          \
  X(L2Fwd, kDrop, Discard)         \
  X(Flood, kTx, Tx)                \
  X(Flood, kOut, Output)           \
  X(Output, kTx, Tx)               \
  X(Output, kTunnel, VxlanOutput)

enum class NodeId : uint8_t {
#define DPSW_NODE_ID(n, name) n,
  DPSW_NODES(DPSW_NODE_ID)
#undef DPSW_NODE_ID
  kCount
};
constexpr size_t kNodes = size_t(NodeId::kCount);

inline constexpr const char* kNodeNames[kNodes] = {
#define DPSW_NODE_NAME(n, name) name,
    DPSW_NODES(DPSW_NODE_NAME)
#undef DPSW_NODE_NAME
};

// Where frames are counted outside the nodes: the graph's entry (forward:
// a port that is in no network), the uplink's VXLAN decapsulation before it,
// the punt port's tag, and the kernel tier (bpf/). With kNodeNames, the
// names the drop-reason table's `nodes` column may use (a unit test checks).
inline constexpr const char* kEntryPoints[] = {"forward", "vxlan_input", "punt", "fast_tier"};

template <NodeId>
struct NodeOf;
template <class N>
inline constexpr NodeId kIdOf = NodeId::kCount;
#define DPSW_NODE_MAP(n, name)                 \
  template <>                                  \
  struct NodeOf<NodeId::n> {                   \
    using type = n;                            \
  };                                           \
  template <>                                  \
  inline constexpr NodeId kIdOf<n> = NodeId::n;
DPSW_NODES(DPSW_NODE_MAP)
#undef DPSW_NODE_MAP

struct Edge {
  NodeId from;
  uint8_t exit;
  NodeId to;
};
inline constexpr Edge kEdges[] = {
#define DPSW_EDGE(from, exit, to) Edge{NodeId::from, uint8_t(from::Next::exit), NodeId::to},
    DPSW_EDGES(DPSW_EDGE)
#undef DPSW_EDGE
};

// Where exit e of node `from` leads (kCount: nowhere).
constexpr NodeId edge(NodeId from, uint8_t e) {
  for (const Edge& x : kEdges)
    if (x.from == from && x.exit == e) return x.to;
  return NodeId::kCount;
}

namespace check {
constexpr unsigned kExits[kNodes] = {
#define DPSW_NODE_EXITS(n, name) n::kExits,
    DPSW_NODES(DPSW_NODE_EXITS)
#undef DPSW_NODE_EXITS
};
constexpr bool kBatch[kNodes] = {
#define DPSW_NODE_BATCH(n, name) n::kBatch,
    DPSW_NODES(DPSW_NODE_BATCH)
#undef DPSW_NODE_BATCH
};
// Every exit of every node has exactly one edge; no edge from an exit that does not exist.
constexpr bool exits_complete() {
  for (size_t n = 0; n < kNodes; n++)
    for (unsigned e = 0; e < kExits[n]; e++) {
      unsigned k = 0;
      for (const Edge& x : kEdges) k += size_t(x.from) == n && x.exit == e;
      if (k != 1) return false;
    }
  for (const Edge& x : kEdges)
    if (x.exit >= kExits[size_t(x.from)]) return false;
  return true;
}
// Batch nodes run once each, in list order, after the entry pass: an edge
// into a batch node must come from earlier in the list (from the entry pass,
// a batch node, or a per-frame node one of them reaches).
constexpr bool batch_order() {
  for (const Edge& x : kEdges)
    if (kBatch[size_t(x.to)] && size_t(x.to) <= size_t(x.from)) return false;
  return true;
}
// A batch node's slot among the Frames (only batch nodes have one).
constexpr size_t batch_slot(size_t k) {
  size_t j = 0;
  for (size_t n = 0; n < k; n++) j += kBatch[n];
  return j;
}
}  // namespace check
static_assert(check::exits_complete(), "every exit of every node needs exactly one edge in DPSW_EDGES");
static_assert(check::batch_order(), "an edge into a batch node must go down the DPSW_NODES list");
constexpr size_t kBatchNodes = check::batch_slot(kNodes);

// Frames waiting for the batch nodes during one run (indices only: the
// Packets stay in the Burst), one per batch node.
struct Frames {
  Frame f[kBatchNodes > 0 ? kBatchNodes : 1];
};

template <NodeId To>
[[gnu::always_inline]] inline void enter(Ctx& c, Frames& fs, uint16_t i, uint16_t arg);

// What a node of type N calls to pass frame i on through its exit e.
template <class N>
struct Emit {
  Ctx& c;
  Frames& fs;
  [[gnu::always_inline]] void operator()(uint16_t i, typename N::Next e, uint16_t arg) const {
    go(i, e, arg, std::make_index_sequence<N::kExits>{});
  }

 private:
  template <size_t... E>
  [[gnu::always_inline]] void go(uint16_t i, typename N::Next e, uint16_t arg, std::index_sequence<E...>) const {
    (void)((size_t(e) == E && (enter<edge(kIdOf<N>, uint8_t(E))>(c, fs, i, arg), true)) || ...);
  }
};

template <NodeId To>
[[gnu::always_inline]] inline void enter(Ctx& c, Frames& fs, uint16_t i, uint16_t arg) {
  using N = typename NodeOf<To>::type;
  if constexpr (N::kBatch) fs.f[check::batch_slot(size_t(To))].push(i);
  else N::run(c, i, arg, Emit<N>{c, fs});
}

template <size_t... I>
[[gnu::always_inline]] inline void run_batch(Ctx& c, Frames& fs, std::index_sequence<I...>) {
  auto one = [&]<size_t K>(std::integral_constant<size_t, K>) {
    using N = typename NodeOf<NodeId(K)>::type;
    if constexpr (N::kBatch) N::run(c, fs.f[check::batch_slot(K)], Emit<N>{c, fs});
  };
  (one(std::integral_constant<size_t, I>{}), ...);
}

// Forward c's burst: every frame enters the first node, in order (one pass:
// the per-frame nodes it reaches run inline); then every batch node runs
// once (even on an empty Frame: l2_fwd learns from frames consumed before it).
[[gnu::always_inline]] inline void run(Ctx& c) {
  Frames fs;
  for (uint16_t i = 0; i < c.n; i++) enter<NodeId(0)>(c, fs, i, 0);
  run_batch(c, fs, std::make_index_sequence<kNodes>{});
}

}  // namespace dpsw::graph
