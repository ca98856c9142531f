// Neighbours on the uplink's segment (IPv4 -> MAC), learned from ARP seen on
// the uplink. Direct-mapped by host index (the segment is /16 or longer), one
// atomic word per entry: readers (any worker) and the writer (the uplink
// port's worker) never wait. Misses are recorded in a small want-list that
// the uplink's worker turns into ARP requests (rate-limited).
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>

#include "dataplane/ether.h"

namespace dpsw {

class ArpCache;
// Learn the sender of any Ethernet/IPv4 ARP frame (request or reply).
inline void arp_learn(const uint8_t* f, uint32_t len, ArpCache& c);

class ArpCache {
 public:
  ArpCache(uint32_t network, uint8_t prefix_len)
      : net_(network), mask_(prefix_len ? ~uint32_t(0) << (32 - prefix_len) : 0),
        entries_(new std::atomic<uint64_t>[size_t(~mask_) + 1]) {
    for (size_t i = 0; i <= ~mask_; i++) entries_[i].store(0, std::memory_order_relaxed);  // relaxed: not shared yet
    for (auto& w : want_) w.store(0, std::memory_order_relaxed);
  }
  bool on_segment(uint32_t ip) const { return (ip & mask_) == net_; }
  // 0 when unknown (or off the segment).
  Mac lookup(uint32_t ip) const {
    if (!on_segment(ip)) return 0;
    // relaxed: one word carries the whole answer (MAC | valid bit).
    uint64_t v = entries_[ip & ~mask_].load(std::memory_order_relaxed);
    return v >> 63 ? v & 0xffffffffffffULL : 0;
  }
  void learn(uint32_t ip, Mac mac) {
    if (!on_segment(ip) || mac_is_multicast(mac) || !mac) return;
    uint64_t v = (1ULL << 63) | mac;
    auto& e = entries_[ip & ~mask_];
    if (e.load(std::memory_order_relaxed) != v) e.store(v, std::memory_order_relaxed);  // relaxed: see lookup()
  }
  // Any worker: ask for ip to be resolved. Bounded, lossy (a full list drops the wish).
  void want(uint32_t ip) {
    for (auto& w : want_) {
      uint32_t cur = w.load(std::memory_order_relaxed);  // relaxed: a hint list, duplicates are harmless
      if (cur == ip) return;
      if (cur == 0 && w.compare_exchange_strong(cur, ip, std::memory_order_relaxed)) return;
    }
  }
  // Uplink worker: visit wanted IPs still unresolved; resolved ones leave the list.
  template <typename F>
  void for_each_wanted(F&& fn) {
    for (auto& w : want_) {
      uint32_t ip = w.load(std::memory_order_relaxed);
      if (!ip) continue;
      if (lookup(ip)) w.store(0, std::memory_order_relaxed);
      else fn(ip);
    }
  }

 private:
  uint32_t net_, mask_;
  std::unique_ptr<std::atomic<uint64_t>[]> entries_;
  std::atomic<uint32_t> want_[32];
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
