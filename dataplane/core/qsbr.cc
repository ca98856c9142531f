#include "dataplane/core/qsbr.h"

#include <immintrin.h>
#include <time.h>

#include <algorithm>

namespace dpsw {

Qsbr::Qsbr(unsigned max_threads) : threads_(new ThreadState[max_threads]), n_(max_threads) {}

void Qsbr::online(unsigned tid) {
  // seq_cst: the thread must be visible as online before it reads any snapshot.
  threads_[tid].seen.store(token_.load(std::memory_order_seq_cst), std::memory_order_seq_cst);
}

void Qsbr::offline(unsigned tid) {
  // release: reads of snapshots done while online happen before going offline.
  threads_[tid].seen.store(0, std::memory_order_release);
}

uint64_t Qsbr::start() {
  // seq_cst: orders the snapshot pointer store (made before) with the token bump.
  return token_.fetch_add(1, std::memory_order_seq_cst) + 1;
}

bool Qsbr::passed(uint64_t token) const {
  for (unsigned i = 0; i < n_; i++) {
    // acquire: pairs with quiescent()'s release so the worker's old reads are done.
    uint64_t s = threads_[i].seen.load(std::memory_order_acquire);
    if (s != 0 && s < token) return false;
  }
  return true;
}

void Qsbr::synchronize() {
  uint64_t t = start();
  // A polling worker passes a quiescent point within one loop iteration
  // (microseconds): spin briefly for that. Past it (a long burst, a
  // descheduled worker) sleep, doubling the interval up to 1 ms, so a slow
  // grace period costs the control thread a few wake-ups, not a core.
  for (int i = 0; i < kSpins; i++) {
    if (passed(t)) return;
    _mm_pause();
  }
  long ns = kFirstSleepNs;
  while (!passed(t)) {
    timespec ts{0, ns};
    nanosleep(&ts, nullptr);
    ns = std::min(ns * 2, kMaxSleepNs);
  }
}

void Qsbr::retire(std::function<void()> fn) { retired_.push_back({start(), std::move(fn)}); }

void Qsbr::reclaim() {
  // Taken out before any runs: a deferred fn may itself retire() more work.
  std::vector<std::function<void()>> ready;
  size_t kept = 0;
  for (auto& r : retired_) {
    if (passed(r.token)) {
      ready.push_back(std::move(r.fn));
    } else {
      retired_[kept++] = std::move(r);
    }
  }
  retired_.resize(kept);
  for (auto& fn : ready) fn();  // in the order retired
}

}  // namespace dpsw
