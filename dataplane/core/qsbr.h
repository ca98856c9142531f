// Quiescent-state-based reclamation (QSBR), after DPDK's rte_rcu_qsbr.
//
// Workers call quiescent() once per poll-loop iteration, at a point where
// they hold no reference to shared snapshots. The control thread publishes a
// new snapshot with one atomic store, then retire()s the old one; it is
// deleted only after every online worker has passed a quiescent point that
// began after the retirement (a grace period). Workers never wait.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

namespace dpsw {

class Qsbr {
 public:
  explicit Qsbr(unsigned max_threads);

  // Worker side (thread id = worker index).
  void online(unsigned tid);
  void offline(unsigned tid);
  void quiescent(unsigned tid) {
    // acquire: after seeing token T we also see every pointer published before T.
    uint64_t t = token_.load(std::memory_order_acquire);
    // release: our reads of older snapshots happen before the writer sees t.
    threads_[tid].seen.store(t, std::memory_order_release);
  }

  // Control side.
  uint64_t start();                 // begin a grace period, returns its token
  bool passed(uint64_t token) const;  // has every online worker reported >= token?
  // start() + wait (control thread only). Spins for a moment, then sleeps
  // with a growing interval (up to kMaxSleepNs): a slow grace period does
  // not burn the control thread's core. Prefer retire() where the caller
  // need not wait.
  void synchronize();
  static constexpr int kSpins = 256;
  static constexpr long kFirstSleepNs = 20'000, kMaxSleepNs = 1'000'000;

  // Deferred work: fn runs (in a later reclaim(), on the control thread)
  // once a grace period started now has passed.
  void retire(std::function<void()> fn);
  void reclaim();                   // run what is safe to run now, oldest first

 private:
  struct alignas(64) ThreadState {
    std::atomic<uint64_t> seen{0};  // 0 = offline
  };
  std::atomic<uint64_t> token_{1};
  std::unique_ptr<ThreadState[]> threads_;
  unsigned n_;
  struct Retired {
    uint64_t token;
    std::function<void()> fn;
  };
  std::vector<Retired> retired_;  // control thread only
};

}  // namespace dpsw
