// Per-worker memory of IPv4 fragments' flows, for NAT without reassembly.
//
// Only a datagram's first fragment carries the L4 header (ports, echo id),
// so only it can be matched to a flow. When it is, the route stage remembers
// (source, destination, protocol, IP id) -> the flow key it was matched by;
// later fragments of the same datagram (same four fields, RFC 791's
// reassembly key) look the flow up again by that key and get the same
// address rewrite (IP header only: the L4 checksum, which covers the whole
// datagram, was updated in the first fragment by the same delta).
//
// All fragments of a datagram arrive on one port, so on one worker: the table
// is that worker's alone (no atomics). It stores keys, never Flow pointers:
// a flow may expire between fragments, and the lookup by key is what makes
// that safe. Bounded: kSets x kWays entries, each valid for kLifetimeMs;
// a full set replaces its oldest entry. Fragments arriving before their
// first fragment find nothing and are dropped (`frag_no_flow`); Linux senders
// emit fragments in order and one port keeps that order.
#pragma once

#include <cstdint>
#include <cstring>

#include "dataplane/nat/conntrack.h"
#include "dataplane/core/hash.h"

namespace dpsw {

class FragTable {
 public:
  static constexpr uint32_t kSets = 256, kWays = 4;
  static constexpr uint32_t kLifetimeMs = 5000;

  FragTable() { std::memset(static_cast<void*>(e_), 0, sizeof e_); }

  void remember(uint32_t sip, uint32_t dip, uint16_t id, uint8_t proto, const FlowKey& key, uint32_t now) {
    Entry* set = e_ + set_of(sip, dip, id, proto) * kWays;
    Entry* victim = set;
    for (uint32_t w = 0; w < kWays; w++) {
      Entry& x = set[w];
      if (x.used && x.sip == sip && x.dip == dip && x.id == id && x.proto == proto) {
        victim = &x;
        break;
      }
      if (!x.used || age_of(now, x.born) >= kLifetimeMs) {
        victim = &x;
        continue;
      }
      if (victim->used && age_of(now, x.born) > age_of(now, victim->born)) victim = &x;  // the oldest goes
    }
    *victim = Entry{sip, dip, id, proto, 1, now, key};
  }

  // The key the datagram's first fragment was matched by, or nullptr.
  const FlowKey* lookup(uint32_t sip, uint32_t dip, uint16_t id, uint8_t proto, uint32_t now) const {
    const Entry* set = e_ + set_of(sip, dip, id, proto) * kWays;
    for (uint32_t w = 0; w < kWays; w++) {
      const Entry& x = set[w];
      if (x.used && x.sip == sip && x.dip == dip && x.id == id && x.proto == proto && age_of(now, x.born) < kLifetimeMs)
        return &x.key;
    }
    return nullptr;
  }

 private:
  struct Entry {
    uint32_t sip, dip;
    uint16_t id;
    uint8_t proto, used;
    uint32_t born;  // ms
    FlowKey key;
  };
  static uint32_t set_of(uint32_t sip, uint32_t dip, uint16_t id, uint8_t proto) {
    return uint32_t(mix64(uint64_t(sip) << 32 ^ dip ^ uint64_t(id) << 8 ^ proto) % kSets);
  }
  Entry e_[kSets * kWays];
};

}  // namespace dpsw
