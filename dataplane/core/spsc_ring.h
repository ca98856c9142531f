// Bounded single-producer/single-consumer ring (Lamport queue with cached
// indices). Used for cross-worker handoff and for the in-memory port.
// Exactly one thread may call the producer methods and exactly one thread
// the consumer methods; no locks, no allocation after construction.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace dpsw {

template <typename T>
class SpscRing {
 public:
  explicit SpscRing(size_t capacity_pow2)
      : mask_(capacity_pow2 - 1), slots_(std::make_unique<T[]>(capacity_pow2)) {}

  size_t capacity() const { return mask_ + 1; }

  // Producer: slot to fill, or nullptr when full. Call push() to publish it.
  T* producer_slot() {
    size_t h = head_.load(std::memory_order_relaxed);  // own index
    if (h - tail_cache_ > mask_) {
      // acquire: the consumer finished reading the slot before moving tail.
      tail_cache_ = tail_.load(std::memory_order_acquire);
      if (h - tail_cache_ > mask_) return nullptr;
    }
    return &slots_[h & mask_];
  }
  void push() {
    // release: the slot contents are visible before the consumer sees the index.
    head_.store(head_.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  }
  // Producer: running counts of slots pushed and of slots the consumer has
  // popped (the slots in between are still the consumer's), and the slot at
  // a running position. For a producer that reclaims what it lent along
  // with each slot once the consumer is done with it.
  size_t produced() const { return head_.load(std::memory_order_relaxed); }  // relaxed: own index
  size_t consumed() {
    // acquire: the consumer finished with the slots (and what they point to) before moving tail.
    tail_cache_ = tail_.load(std::memory_order_acquire);
    return tail_cache_;
  }
  T& at(size_t pos) { return slots_[pos & mask_]; }

  // Consumer: number of readable slots (up to max), starting at peek(0).
  size_t readable() {
    size_t t = tail_.load(std::memory_order_relaxed);  // own index
    if (head_cache_ == t) {
      // acquire: pairs with push() so slot contents are visible.
      head_cache_ = head_.load(std::memory_order_acquire);
    }
    return head_cache_ - t;
  }
  T& peek(size_t i) { return slots_[(tail_.load(std::memory_order_relaxed) + i) & mask_]; }
  void pop(size_t n) {
    // release: our reads of the slots happen before the producer may reuse them.
    tail_.store(tail_.load(std::memory_order_relaxed) + n, std::memory_order_release);
  }

 private:
  const size_t mask_;
  std::unique_ptr<T[]> slots_;
  alignas(64) std::atomic<size_t> head_{0};
  size_t tail_cache_ = 0;  // producer's view of tail_
  alignas(64) std::atomic<size_t> tail_{0};
  size_t head_cache_ = 0;  // consumer's view of head_
};

}  // namespace dpsw
