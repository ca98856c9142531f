// Fair punting: one endpoint cannot starve the others' punted traffic.
//
// The fast tier (bpf/fast_l2.bpf.c) punts what it cannot forward itself -
// ARP, broadcast, unknown destinations, routed, NAT and published traffic -
// through one punt veth per worker into ONE AF_XDP ring. When that ring fills
// (a container floods, or the worker gets only part of its core) the kernel
// drops whatever arrives next, whoever sent it: a flood from one container
// would take every other port's punted frames down with it. The worker's
// round-robin over ports cannot help; the frames are lost before it sees them.
//
// So the decision is made in front of the ring, in the TC program, from a
// number this class computes: while the punt port is congested, each port
// may punt at most `share` frames per ~1 ms window; the rest of a port's
// frames are dropped there and counted per port (Drop::kPuntShare). A port
// below its share (the victim) loses nothing; the flooder keeps its share.
//
// The control loop, once per kIntervalMs, from what the worker saw:
//   congested (backlog above half the ring, or the ring lost frames):
//     no share yet: share = frames drained per ms / active ports (the
//       capacity the worker showed, split evenly: max-min fair);
//     otherwise: share -= share / 4 (still too much);
//   not congested, and a port reached its share: share += share / 8 + 1
//     (probe for the capacity the worker has now);
//   not congested and nobody near the share for kCalmIntervals: share = 0,
//     no limit (light traffic never pays for fairness). An idle worker
//     blocks in epoll and decides only when it wakes (at the latest after
//     its block timeout): the time it slept counts as calm.
// The share never falls below kMinShare, so a port always gets some through.
//
// Threading: a Worker owns one PuntShare (for the one punt port it polls);
// every method is called by that worker only. No allocation after
// construction, no locks; frame() is a counter increment.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>

#include "dataplane/core/packet.h"

namespace dpsw {

class PuntShare {
 public:
  static constexpr uint32_t kIntervalMs = 10;
  static constexpr uint32_t kMinShare = 8;  // frames per ms a port may always punt
  static constexpr uint32_t kCalmIntervals = 100;

  // A frame punted by `port` was received (port < kMaxPorts).
  void frame(uint16_t port) {
    if (count_[port]++ == 0) active_[nactive_++] = port;
    total_++;
  }
  // After a burst: frames still waiting in the port's rx ring.
  void backlog(uint32_t waiting) { max_backlog_ = std::max(max_backlog_, waiting); }
  // Whether the interval saw a backlog at all (only then is it worth a
  // syscall to read the ring's drop counter).
  bool saw_backlog() const { return max_backlog_ != 0; }

  // End of an interval of `ms` milliseconds: ring = the rx ring's size,
  // dropped = the ring's cumulative drop counter (unchanged if not read).
  // Returns the share to publish (frames per ms per port; 0 = no limit).
  uint32_t decide(uint32_t ms, uint32_t ring, uint64_t dropped) {
    ms = std::max<uint32_t>(ms, 1);
    const bool lost = dropped != dropped_;
    dropped_ = dropped;
    const bool congested = lost || max_backlog_ > ring / 2;
    uint64_t top = 0;
    for (uint16_t i = 0; i < nactive_; i++) {
      top = std::max<uint64_t>(top, count_[active_[i]]);
      count_[active_[i]] = 0;
    }
    const uint64_t per_ms = total_ / ms;
    const uint16_t active = std::max<uint16_t>(nactive_, 1);
    nactive_ = 0;
    total_ = 0;
    max_backlog_ = 0;
    if (congested) {
      calm_ = 0;
      share_ = std::max<uint32_t>(kMinShare, share_ ? share_ - share_ / 4 : uint32_t(std::min<uint64_t>(per_ms / active, UINT32_MAX)));
    } else if (share_) {
      if (top * 8 >= uint64_t(share_) * ms * 7) {  // someone is at the share: probe upwards
        calm_ = 0;
        share_ += share_ / 8 + 1;
      } else if ((calm_ += std::max<uint32_t>(1, ms / kIntervalMs)) >= kCalmIntervals) {  // a worker that slept counts its sleep
        share_ = 0;
        calm_ = 0;
        return 0;
      }
    }
    return share_;
  }
  uint32_t share() const { return share_; }

 private:
  std::array<uint32_t, kMaxPorts> count_{};  // frames per port this interval
  std::array<uint16_t, kMaxPorts> active_{};  // ports with count_ > 0
  uint16_t nactive_ = 0;
  uint64_t total_ = 0;
  uint32_t max_backlog_ = 0;
  uint64_t dropped_ = 0;
  uint32_t share_ = 0;
  uint32_t calm_ = 0;
};

// Publishing a share to the BPF side (a memory-mapped map value).
inline void publish_punt_share(uint32_t* slot, uint32_t share) {
  // relaxed: a lone value the TC program reads whenever it runs; nothing else is ordered with it.
  std::atomic_ref<uint32_t>(*slot).store(share, std::memory_order_relaxed);
}
inline uint32_t read_punt_share(uint32_t* slot) {
  // relaxed: a statistic for `show fast`.
  return std::atomic_ref<uint32_t>(*slot).load(std::memory_order_relaxed);
}

}  // namespace dpsw
