// The names the embedded DNS responder answers (issue 16), as the workers
// see them: part of the immutable Snapshot, built by the control side's DNS
// module (control/dns) from the endpoints in force, so an endpoint added,
// removed or renamed changes the answers with the next snapshot, never
// later. Read-only for workers: lookups are a binary search over sorted
// flat vectors, no allocation.
//
// Scope (as Docker's user-defined networks): an asker resolves the names of
// the endpoints that share a network with it. scope_of(port) lists the
// networks of the asking port's endpoint, the port's own network first; a
// name is answered from the first of them that has it, with the addresses
// it has there.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "dataplane/core/hash.h"

namespace dpsw {

struct DnsTable {
  // (network, lower-case name) -> an address. A name may have several (an
  // alias given to several endpoints): consecutive entries of one key.
  struct Name {
    uint64_t key;   // name_key(bd, name)
    uint32_t name;  // offset of the NUL-terminated lower-case name in pool
    uint32_t ip;    // host order
    uint16_t bd;
    bool rotate = false;  // a dnsrr service's backend: the answer's order rotates query by query
  };
  // (network, address) -> the name a reverse lookup answers ("web.frontend").
  struct Ptr {
    uint64_t key;   // bd << 32 | ip
    uint32_t name;  // offset in pool
  };
  std::vector<Name> names;           // sorted by key
  std::vector<Ptr> ptrs;             // sorted by key
  std::string pool;                  // NUL-terminated strings
  std::vector<uint32_t> scope;       // per port id: offset in scope_bds of [count, bd, bd, ...]; absent: its own network only
  std::vector<uint16_t> scope_bds;
  // Per bridge domain: the subnet it is authoritative for in reverse
  // lookups (an unknown address there is NXDOMAIN, not forwarded).
  std::vector<std::pair<uint32_t, uint32_t>> subnets;  // (network, mask), indexed by bd; mask 0: none
  uint32_t ttl = 600;
  uint64_t tcp_secret = 0;  // keys the TCP responder's initial sequence numbers (stage_dns_tcp.h); random per run
  std::vector<uint32_t> upstream;  // where the relay sends other names (dns_relay.h); empty: SERVFAIL

  static uint64_t name_key(uint16_t bd, std::string_view name) {
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ bd;
    for (unsigned char c : name) h = mix64(h ^ c);  // names are short, answers rare next to forwarding: simple is fine
    return h;
  }
  const char* str(uint32_t off) const { return pool.data() + off; }

  // The networks the asking port's endpoint is on, `own` (the port's) first.
  // Writes at most cap; returns the count.
  unsigned scope_of(uint16_t port, uint16_t own, uint16_t* out, unsigned cap) const {
    unsigned n = 0;
    if (cap) out[n++] = own;
    if (port < scope.size() && scope[port] != UINT32_MAX) {
      const uint16_t* s = scope_bds.data() + scope[port];
      for (unsigned i = 0; i < s[0] && n < cap; i++)
        if (s[1 + i] != own) out[n++] = s[1 + i];
    }
    return n;
  }

  // Addresses of `name` on network bd, into out (at most cap); returns the
  // count. A dnsrr service's are rotated by `rr` (a counter per asker's worker).
  unsigned lookup(uint16_t bd, std::string_view name, uint32_t* out, unsigned cap, uint64_t rr = 0) const {
    const uint64_t k = name_key(bd, name);
    auto it = std::lower_bound(names.begin(), names.end(), k, [](const Name& n, uint64_t key) { return n.key < key; });
    unsigned n = 0;
    bool rotate = false;
    for (; it != names.end() && it->key == k; ++it)
      if (it->bd == bd && name == str(it->name) && n < cap) {
        rotate |= it->rotate;
        out[n++] = it->ip;
      }
    if (rotate && n > 1) std::rotate(out, out + rr % n, out + n);
    return n;
  }

  // The name of address ip on network bd, or nullptr.
  const char* reverse(uint16_t bd, uint32_t ip) const {
    const uint64_t k = uint64_t(bd) << 32 | ip;
    auto it = std::lower_bound(ptrs.begin(), ptrs.end(), k, [](const Ptr& p, uint64_t key) { return p.key < key; });
    return it != ptrs.end() && it->key == k ? str(it->name) : nullptr;
  }

  bool in_subnet(uint16_t bd, uint32_t ip) const {
    return bd < subnets.size() && subnets[bd].second && (ip & subnets[bd].second) == subnets[bd].first;
  }
};

}  // namespace dpsw
