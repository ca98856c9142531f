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
  void synchronize();               // start() + wait (control thread only)

  // Deferred deletion: fn runs once a grace period started now has passed.
  void retire(std::function<void()> fn);
  void reclaim();                   // run what is safe to run now

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
