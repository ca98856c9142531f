// Neighbours on the uplink's segment (IPv4 -> MAC), learned from ARP seen on
// the uplink. Direct-mapped by host index (the segment is /16 or longer), one
// atomic word per entry: readers (any worker) and the writer (the uplink
// port's worker) never wait. Misses are recorded in a small want-list that
// the uplink's worker turns into ARP requests (rate-limited).
//
// Entries are re-validated as the kernel's neighbour states do (REACHABLE ->
// STALE -> PROBE -> FAILED): an entry used more than kRefreshMs after its
// last ARP confirmation is still used but probed (broadcast request, at most
// every kProbeEveryMs); if no answer comes within kFailMs of the first probe
// it is dropped (traffic waits for ARP again, a tunnel through it is down).
// A neighbour whose MAC changed is thus followed within ~kRefreshMs.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>

#include "dataplane/core/ether.h"

namespace dpsw {

class ArpCache;
// Learn the sender of any Ethernet/IPv4 ARP frame (request or reply).
inline void arp_learn(const uint8_t* f, uint32_t len, ArpCache& c);

class ArpCache {
 public:
  static constexpr uint32_t kRefreshMs = 5000, kFailMs = 3000, kProbeEveryMs = 500;

  ArpCache(uint32_t network, uint8_t prefix_len)
      : net_(network), mask_(prefix_len ? ~uint32_t(0) << (32 - prefix_len) : 0),
        entries_(new std::atomic<uint64_t>[size_t(~mask_) + 1]), seen_(new std::atomic<uint32_t>[size_t(~mask_) + 1]) {
    for (size_t i = 0; i <= ~mask_; i++) {
      entries_[i].store(0, std::memory_order_relaxed);  // relaxed: not shared yet
      seen_[i].store(0, std::memory_order_relaxed);
    }
    for (auto& w : want_) w.store(0, std::memory_order_relaxed);
  }
  bool on_segment(uint32_t ip) const { return (ip & mask_) == net_; }
  // The uplink's worker advances the cache's clock (ms) on every pass.
  void tick(uint32_t now) { now_.store(now, std::memory_order_relaxed); }  // relaxed: a coarse clock, no ordering
  // Data path: 0 when unknown, off the segment or failed; a stale entry is
  // returned and queued for a probe.
  Mac lookup(uint32_t ip) {
    Mac m = peek(ip);
    if (m && age(ip) >= kRefreshMs) want(ip);
    return m;
  }
  // The same answer without side effects (views: a tunnel's link state).
  Mac peek(uint32_t ip) const {
    if (!on_segment(ip)) return 0;
    // relaxed: one word carries the whole answer (MAC | valid bit).
    uint64_t v = entries_[ip & ~mask_].load(std::memory_order_relaxed);
    return v >> 63 ? v & 0xffffffffffffULL : 0;
  }
  void learn(uint32_t ip, Mac mac) {
    if (!on_segment(ip) || mac_is_multicast(mac) || !mac) return;
    uint64_t v = (1ULL << 63) | mac;
    auto& e = entries_[ip & ~mask_];
    // relaxed: a confirmation time read on its own (a reader may pair an old
    // MAC with a new time for one lookup; the next one sees both).
    seen_[ip & ~mask_].store(now_.load(std::memory_order_relaxed), std::memory_order_relaxed);
    if (e.load(std::memory_order_relaxed) != v) e.store(v, std::memory_order_relaxed);  // relaxed: see peek()
  }
  // Any worker: ask for ip to be resolved. Bounded, lossy (a full list drops the wish).
  void want(uint32_t ip) {
    for (auto& w : want_) {
      uint32_t cur = w.load(std::memory_order_relaxed);  // relaxed: a hint list, duplicates are harmless
      if (cur == ip) return;
      if (cur == 0 && w.compare_exchange_strong(cur, ip, std::memory_order_relaxed)) return;
    }
  }
  // Uplink worker: visit wanted IPs still unresolved or stale (at most every
  // kProbeEveryMs each); freshly confirmed ones leave the list; a stale one
  // unanswered kFailMs after its first probe is dropped.
  template <typename F>
  void for_each_wanted(F&& fn) {
    const uint32_t now = now_.load(std::memory_order_relaxed);  // relaxed: our own store
    for (size_t i = 0; i < kWant; i++) {
      uint32_t ip = want_[i].load(std::memory_order_relaxed);  // relaxed: a hint list
      if (!ip) continue;
      const bool known = peek(ip) != 0;
      if (known && age(ip) < kRefreshMs) {  // confirmed
        want_[i].store(0, std::memory_order_relaxed);
        first_[i] = last_[i] = 0;
        continue;
      }
      if (known && first_[i] && now - first_[i] >= kFailMs)
        entries_[ip & ~mask_].store(0, std::memory_order_relaxed);  // FAILED; relaxed: see peek() (this worker is the writer)
      if (!last_[i] || now - last_[i] >= kProbeEveryMs) {
        last_[i] = now | 1;  // never 0 once sent
        if (!first_[i]) first_[i] = last_[i];
        fn(ip);
      }
    }
  }

 private:
  static constexpr size_t kWant = 32;
  uint32_t age(uint32_t ip) const {
    int32_t d = int32_t(now_.load(std::memory_order_relaxed) - seen_[ip & ~mask_].load(std::memory_order_relaxed));  // relaxed: see learn()
    return d < 0 ? 0 : uint32_t(d);
  }
  uint32_t net_, mask_;
  std::unique_ptr<std::atomic<uint64_t>[]> entries_;
  std::unique_ptr<std::atomic<uint32_t>[]> seen_;  // ms of the last confirmation
  std::atomic<uint32_t> now_{0};
  std::atomic<uint32_t> want_[kWant];
  uint32_t first_[kWant] = {}, last_[kWant] = {};  // uplink worker only: when each wanted IP was first / last asked for
};

inline void arp_learn(const uint8_t* f, uint32_t len, ArpCache& c) {
  if (len < 14 + 28 || load_be16(f + 12) != kEtherTypeArp) return;
  const uint8_t* a = f + 14;
  if (load_be16(a) != 1 || load_be16(a + 2) != kEtherTypeIpv4 || a[4] != 6 || a[5] != 4) return;
  uint32_t ip = uint32_t(a[14]) << 24 | uint32_t(a[15]) << 16 | uint32_t(a[16]) << 8 | a[17];
  c.learn(ip, mac_from_bytes(a + 8));
}

// An ARP request for `target` from (mac, ip), into a 60-byte buffer.
inline void arp_request(uint8_t* f, Mac mac, uint32_t ip, uint32_t target) {
  std::memset(f, 0, 60);
  mac_to_bytes(0xffffffffffffULL, f);
  mac_to_bytes(mac, f + 6);
  store_be16(f + 12, kEtherTypeArp);
  uint8_t* a = f + 14;
  store_be16(a, 1), store_be16(a + 2, kEtherTypeIpv4), a[4] = 6, a[5] = 4, store_be16(a + 6, 1);
  mac_to_bytes(mac, a + 8);
  for (int i = 0; i < 4; i++) a[14 + i] = uint8_t(ip >> (24 - 8 * i)), a[24 + i] = uint8_t(target >> (24 - 8 * i));
}

}  // namespace dpsw
