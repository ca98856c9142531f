// Stage 3: output. Collects frames per destination port during a burst and
// hands each port one tx_burst() at flush time. Frames for ports owned by
// another worker are copied into one of this worker's handoff buffers and
// queued on the ring to that worker instead (HandoffMesh).
// Exits: transmitted, kTxFull / kHandoffFull drops, kNoNetwork (port gone).
#pragma once

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstring>
#include <memory>
#include <vector>

#include "dataplane/core/burst.h"
#include "dataplane/core/counters.h"
#include "dataplane/core/snapshot.h"
#include "dataplane/core/spsc_ring.h"

namespace dpsw {

// Cross-worker handoff. Memory grows linearly with the workers and stays
// within a budget: what crosses a worker pair's SPSC ring is an 8-byte
// descriptor; the frame itself sits in a buffer of the producer's own pool,
// which all its outgoing rings share. The producer takes a buffer back once
// the consumer has popped the descriptor that lent it (the ring's tail says
// so: no return path, no shared counter). Before, every pair's ring held
// whole jumbo frames: n * (n - 1) * slots * 9 KiB, ~9 GiB at 64 workers.
struct HandoffDesc {
  uint32_t buf;       // index in the producer's pool
  uint16_t dst_port;  // the port the frame goes out of
  uint16_t len;
};
static_assert(kMaxFrame <= UINT16_MAX, "HandoffDesc::len");
using HandoffRing = SpscRing<HandoffDesc>;
struct HandoffBuf {
  alignas(64) uint8_t data[kMaxFrame];  // a whole jumbo frame
};

// Rings between workers: ring(from, to), owned by the Dataplane; per
// producer a buffer pool; plus a doorbell per worker so a producer can wake
// a consumer blocked while idle.
//
// Sizing: a producer's pool holds what its rings could hold in flight
// ((workers - 1) * slots buffers), cut to the budget (default 64 MiB for
// the whole mesh, rings included), never below kMinPool buffers; a ring
// holds at most `slots` descriptors and, with more than one consumer, at
// most half its producer's pool (one consumer that stops draining cannot
// take every buffer). So bytes() <= max(budget, workers * kMinPool buffers
// + rings): 2 workers get 256 buffers for their one ring as before; 64
// workers get ~110 buffers each and 32-descriptor rings (~64 MiB in all).
class HandoffMesh {
 public:
  static constexpr size_t kDefaultBudget = size_t(64) << 20;
  static constexpr size_t kMinPool = 2 * kBurst;  // buffers per producer, whatever the budget

  // slots: the most descriptors a pair's ring holds (a power of two).
  HandoffMesh(unsigned workers, size_t slots, size_t budget = kDefaultBudget) : n_(workers), bells_(workers) {
    if (n_ > 1) {
      const size_t pairs = size_t(n_) * (n_ - 1);
      const size_t fixed = n_ * (sizeof(Bell) + sizeof(Producer) + n_ * sizeof(size_t));
      constexpr size_t per_buf = sizeof(HandoffBuf) + sizeof(uint32_t);  // the buffer and its free-stack entry
      auto pool_within = [&](size_t ring_bytes) {
        const size_t left = budget > ring_bytes + fixed ? budget - ring_bytes - fixed : 0;
        return std::clamp<size_t>(left / n_ / per_buf, kMinPool, std::max(kMinPool, (n_ - 1) * slots));
      };
      pool_ = pool_within(0);
      ring_slots_ = std::min(slots, std::bit_floor(n_ > 2 ? pool_ / 2 : pool_));
      const size_t ring_bytes = pairs * (ring_slots_ * sizeof(HandoffDesc) + sizeof(HandoffRing));
      pool_ = pool_within(ring_bytes);  // the rings come out of the budget too
      bytes_ = ring_bytes + fixed + n_ * pool_ * per_buf;
    } else {
      bytes_ = n_ * sizeof(Bell);
    }
    for (unsigned i = 0; i < n_ * n_; i++)
      rings_.push_back(i / n_ == i % n_ ? nullptr : std::make_unique<HandoffRing>(ring_slots_));
    for (unsigned i = 0; i < n_ && n_ > 1; i++) {
      pools_.emplace_back(new HandoffBuf[pool_]);  // not value-initialised: pages are touched only when used
      auto p = std::make_unique<Producer>();
      p->free.reset(new uint32_t[pool_]);
      for (size_t b = 0; b < pool_; b++) p->free[b] = uint32_t(pool_ - 1 - b);  // buffer 0 first
      p->nfree = uint32_t(pool_);
      p->reclaimed.reset(new size_t[n_]());
      prod_.push_back(std::move(p));
    }
    for (auto& b : bells_) b.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  }
  ~HandoffMesh() {
    for (auto& b : bells_) close(b.fd);
  }
  HandoffRing* ring(unsigned from, unsigned to) { return rings_[from * n_ + to].get(); }
  unsigned workers() const { return n_; }
  size_t pool_size() const { return pool_; }         // buffers per producer
  size_t ring_slots() const { return ring_slots_; }  // descriptors per pair
  size_t bytes() const { return bytes_; }            // rings, buffers and their bookkeeping

  // Producer `from` (that worker only): copy a frame into one of its
  // buffers and queue it for worker `to`. False (nothing queued) when the
  // pair's ring is full or every buffer is in flight.
  bool send(unsigned from, unsigned to, uint16_t dst_port, const uint8_t* data, uint32_t len) {
    HandoffRing* r = ring(from, to);
    HandoffDesc* d = r ? r->producer_slot() : nullptr;
    if (!d || len > sizeof(HandoffBuf::data)) return false;
    Producer& p = *prod_[from];
    // The slot's descriptor of one lap ago lent a buffer the consumer is done
    // with (producer_slot() saw it popped): take that back before it is overwritten.
    if (r->produced() - p.reclaimed[to] >= r->capacity()) reclaim(p, *r, to);
    if (!p.nfree) [[unlikely]] {
      for (unsigned t = 0; t < n_; t++)
        if (HandoffRing* o = ring(from, t)) reclaim(p, *o, t);
      if (!p.nfree) return false;
    }
    const uint32_t b = p.free[--p.nfree];
    std::memcpy(pools_[from][b].data, data, len);
    d->buf = b;
    d->dst_port = dst_port;
    d->len = uint16_t(len);
    r->push();
    return true;
  }
  // Consumer: the bytes behind a descriptor read from ring(from, self); valid until it is popped.
  uint8_t* data(unsigned from, const HandoffDesc& d) { return pools_[from][d.buf].data; }

  // Consumer `w` about to block: announce it, then re-check its rings.
  // seq_cst store/load pair (Dekker): either the producer sees sleeping and
  // rings, or the consumer sees the producer's frames and does not block.
  bool prepare_sleep(unsigned w) {
    bells_[w].sleeping.store(true, std::memory_order_seq_cst);
    for (unsigned from = 0; from < n_; from++) {
      HandoffRing* r = ring(from, w);
      if (r && r->readable()) {
        bells_[w].sleeping.store(false, std::memory_order_relaxed);  // relaxed: only we act on it now
        return false;
      }
    }
    return true;
  }
  void woke(unsigned w) {
    bells_[w].sleeping.store(false, std::memory_order_relaxed);  // relaxed: producers tolerate a stale true (one spare ring)
    uint64_t v;
    if (read(bells_[w].fd, &v, sizeof v) < 0) {
    }  // drain; EAGAIN when nobody rang
  }
  // Producer, after pushing frames for w.
  void ring_if_asleep(unsigned w) {
    if (bells_[w].sleeping.load(std::memory_order_seq_cst)) {  // seq_cst: pairs with prepare_sleep
      uint64_t one = 1;
      if (write(bells_[w].fd, &one, sizeof one) < 0) {
      }
    }
  }
  int bell_fd(unsigned w) const { return bells_[w].fd; }

 private:
  struct alignas(64) Bell {
    std::atomic<bool> sleeping{false};
    int fd = -1;
  };
  // A producer's bookkeeping, touched only by that worker.
  struct alignas(64) Producer {
    std::unique_ptr<uint32_t[]> free;      // buffers not lent out (a stack)
    uint32_t nfree = 0;
    std::unique_ptr<size_t[]> reclaimed;  // per destination: ring position up to which buffers are back
  };
  // Buffers lent with descriptors the consumer of `to` has popped since: back to the free stack.
  static void reclaim(Producer& p, HandoffRing& r, unsigned to) {
    const size_t done = r.consumed();  // acquire: the consumer has finished with those buffers
    for (size_t pos = p.reclaimed[to]; pos != done; pos++) p.free[p.nfree++] = r.at(pos).buf;
    p.reclaimed[to] = done;
  }

  unsigned n_;
  size_t pool_ = 0, ring_slots_ = 0, bytes_ = 0;
  std::vector<std::unique_ptr<HandoffRing>> rings_;
  std::vector<std::unique_ptr<HandoffBuf[]>> pools_;  // per producer; never reallocated (consumers read them)
  std::vector<std::unique_ptr<Producer>> prod_;
  std::vector<Bell> bells_;
};

namespace stage {

class TxStage {
 public:
  static constexpr uint16_t kPerPort = 64;

  TxStage(unsigned self, HandoffMesh* mesh, WorkerCounters* wc) : self_(self), mesh_(mesh), wc_(wc) {}

  // Queue b[i] for dst. Flushes that port early if its queue is full. Only
  // a Packet of a Burst (burst.h): it lives until the flush ending its scope.
  // Inlined into its callers (it is a few instructions per frame); the
  // rarer work (a full queue's burst, a handoff) stays out of line.
  [[gnu::always_inline]] void enqueue(const Snapshot& s, uint16_t dst, const Burst& b, uint16_t i) {
    const Packet* p = &b[i];
    const PortEntry* pe = s.port(dst);
    if (!pe || !pe->port) {  // gone (or a tunnel: the worker encapsulates before this stage)
      wc_->ports[p->in_port].drops[size_t(Drop::kNoNetwork)].add(1);
      return;
    }
    if (pe->owner != self_) {
      handoff(dst, pe->owner, p);
      return;
    }
    Queue& q = q_[dst];
    if (!q.listed) {
      q.listed = true;
      touched_[ntouched_++] = dst;
    }
    q.pkts[q.n++] = p;
    if (q.n == kPerPort) send(s, dst);
  }

  // Transmit everything queued. Must run before the rx buffers are released.
  void flush(const Snapshot& s) {
    for (uint16_t i = 0; i < ntouched_; i++) {
      Queue& q = q_[touched_[i]];
      if (q.n) send(s, touched_[i]);
      q.listed = false;
    }
    ntouched_ = 0;
    if (handed_) {
      for (unsigned w = 0; w < mesh_->workers(); w++)
        if (handed_ >> w & 1) mesh_->ring_if_asleep(w);
      handed_ = 0;
    }
  }

 private:
  struct Queue {
    uint16_t n = 0;
    bool listed = false;  // in touched_
    const Packet* pkts[kPerPort];
  };

  [[gnu::noinline]] void send(const Snapshot& s, uint16_t dst) {
    Queue& q = q_[dst];
    const PortEntry* pe = s.port(dst);
    uint16_t sent = pe && pe->port ? pe->port->tx_burst(q.pkts, q.n) : 0;
    PortCounters& pc = wc_->ports[dst];
    uint64_t bytes = 0;
    for (uint16_t i = 0; i < sent; i++) bytes += q.pkts[i]->len;
    pc.tx_packets.add(sent);
    pc.tx_bytes.add(bytes);
    if (sent < q.n) pc.drops[size_t(pe ? Drop::kTxFull : Drop::kNoNetwork)].add(q.n - sent);
    q.n = 0;
  }

  [[gnu::noinline]] void handoff(uint16_t dst, uint16_t owner, const Packet* p) {
    if (!mesh_->send(self_, owner, dst, p->data, p->len)) {  // ring full, or all our buffers in flight
      wc_->ports[dst].drops[size_t(Drop::kHandoffFull)].add(1);
      return;
    }
    if (owner < 64) handed_ |= 1ULL << owner;
  }

  unsigned self_;
  HandoffMesh* mesh_;
  WorkerCounters* wc_;
  uint16_t ntouched_ = 0;
  uint64_t handed_ = 0;  // workers we handed frames to during this burst
  uint16_t touched_[kMaxPorts];
  Queue q_[kMaxPorts];
};

}  // namespace stage
}  // namespace dpsw
