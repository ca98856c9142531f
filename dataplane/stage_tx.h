// Stage 3: output. Collects frames per destination port during a burst and
// hands each port one tx_burst() at flush time. Frames for ports owned by
// another worker are copied into that worker's handoff ring instead.
// Exits: transmitted, kTxFull / kHandoffFull drops, kNoNetwork (port gone).
#pragma once

#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <vector>

#include "dataplane/counters.h"
#include "dataplane/snapshot.h"
#include "dataplane/spsc_ring.h"

namespace dpsw {

// One frame crossing from one worker to another.
struct HandoffSlot {
  uint16_t dst_port;
  uint32_t len;
  alignas(64) uint8_t data[kMaxFrame];
};
using HandoffRing = SpscRing<HandoffSlot>;

// Rings between workers: ring(from, to), owned by the Dataplane; plus a
// doorbell per worker so a producer can wake a consumer blocked while idle.
class HandoffMesh {
 public:
  HandoffMesh(unsigned workers, size_t slots) : n_(workers), bells_(workers) {
    for (unsigned i = 0; i < n_ * n_; i++)
      rings_.push_back(i / n_ == i % n_ ? nullptr : std::make_unique<HandoffRing>(slots));
    for (auto& b : bells_) b.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  }
  ~HandoffMesh() {
    for (auto& b : bells_) close(b.fd);
  }
  HandoffRing* ring(unsigned from, unsigned to) { return rings_[from * n_ + to].get(); }
  unsigned workers() const { return n_; }

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
  unsigned n_;
  std::vector<std::unique_ptr<HandoffRing>> rings_;
  std::vector<Bell> bells_;
};

namespace stage {

class TxStage {
 public:
  static constexpr uint16_t kPerPort = 64;

  TxStage(unsigned self, HandoffMesh* mesh, WorkerCounters* wc) : self_(self), mesh_(mesh), wc_(wc) {}

  // Queue p for dst. Flushes that port early if its queue is full.
  void enqueue(const Snapshot& s, uint16_t dst, const Packet* p) {
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

  void send(const Snapshot& s, uint16_t dst) {
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

  void handoff(uint16_t dst, uint16_t owner, const Packet* p) {
    HandoffRing* r = mesh_->ring(self_, owner);
    HandoffSlot* slot = r ? r->producer_slot() : nullptr;
    if (!slot) {
      wc_->ports[dst].drops[size_t(Drop::kHandoffFull)].add(1);
      return;
    }
    slot->dst_port = dst;
    slot->len = p->len;
    std::memcpy(slot->data, p->data, p->len);
    r->push();
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
