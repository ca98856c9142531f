// Stage 2: L2 learning and forwarding decision for a burst from one port.
// Learns source MACs (never blocking), looks destinations up in bulk.
// Exits per frame: kUnicast (out_port set), kFlood (broadcast, multicast,
// unknown unicast: to every other port of the same network), kDrop.
#pragma once

#include "dataplane/core/counters.h"
#include "dataplane/bridge/mac_table.h"

namespace dpsw::stage {

enum class FwdNext : uint8_t { kUnicast, kFlood, kDrop };

// src/dst: MACs from eth_input; valid[i] false for frames already dropped;
// handled[i] true for frames an earlier stage consumed (learned from, not
// forwarded). Writes next[i] and out_port[i] for valid, unhandled frames.
// learn false: the port's stations are known by configuration (macvlan).
// worker: the calling worker's id (the MAC table's count slot it writes).
inline void l2_fwd(MacTable& table, uint16_t bd, uint16_t in_port, bool learn, uint32_t now, uint16_t n,
                   const bool* valid, const bool* handled, const Mac* src, const Mac* dst, FwdNext* next,
                   uint16_t* out_port, Drop* drop, WorkerCounters& wc, unsigned worker) {
  // Learn each source once per burst (a burst from one port usually holds
  // a handful of stations; past 8 distinct ones the rest learn next burst).
  constexpr int kSeen = 8;
  Mac seen[kSeen];
  int nseen = 0;
  for (uint16_t i = 0; i < n && learn; i++) {
    if (!valid[i]) continue;
    bool dup = false;
    for (int j = 0; j < nseen; j++) dup |= seen[j] == src[i];
    if (dup) continue;
    if (nseen < kSeen) seen[nseen++] = src[i];
    auto r = table.learn(bd, src[i], in_port, now, worker);
    if (r == MacTable::Learn::kBusy || r == MacTable::Learn::kFull) wc.learn_skipped.add(1);
  }
  // Lookup known unicast destinations in bulk.
  uint64_t keys[kBurst];
  uint16_t idx[kBurst], ports[kBurst];
  uint16_t m = 0;
  for (uint16_t i = 0; i < n; i++) {
    if (!valid[i] || handled[i]) continue;
    if (mac_is_multicast(dst[i])) {
      next[i] = FwdNext::kFlood;
      continue;
    }
    keys[m] = MacTable::make_key(bd, dst[i]);
    idx[m++] = i;
  }
  if (m) table.lookup_bulk(keys, m, ports);
  for (uint16_t j = 0; j < m; j++) {
    uint16_t i = idx[j];
    if (ports[j] == kInvalidPort) {
      next[i] = FwdNext::kFlood;
    } else if (ports[j] == in_port) {
      next[i] = FwdNext::kDrop;
      drop[i] = Drop::kSamePort;
    } else {
      next[i] = FwdNext::kUnicast;
      out_port[i] = ports[j];
    }
  }
}

}  // namespace dpsw::stage
