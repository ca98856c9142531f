#include "dataplane/qsbr.h"

#include <immintrin.h>

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
  while (!passed(t)) _mm_pause();
}

void Qsbr::retire(std::function<void()> fn) { retired_.push_back({start(), std::move(fn)}); }

void Qsbr::reclaim() {
  size_t kept = 0;
  for (auto& r : retired_) {
    if (passed(r.token)) {
      r.fn();
    } else {
      retired_[kept++] = std::move(r);
    }
  }
  retired_.resize(kept);
}

}  // namespace dpsw
