// Frame vectors and the rule that makes them safe to transmit from.
//
// The tx stage (stage_tx.h) queues *pointers* to Packets and sends them at
// the flush that ends a burst. A Packet it points to must therefore live
// until that flush. That rule is structural here, not a comment:
//  * a Burst (kBurst Packets and a count) cannot be constructed, copied or
//    moved by anyone but its worker's BurstArena: there is no Burst on the
//    stack, only references into the arena the worker owns;
//  * TxStage::enqueue() accepts a Packet only as (Burst&, index);
//  * Bursts are taken from the arena through a BurstArena::Scope, whose
//    destructor flushes the tx stage before it hands the Bursts back for
//    reuse. A Burst taken in a scope is not reused before the flush that
//    ends the scope; the tx stage never points at a recycled Burst.
// The arena is fixed-size (no allocation on the fast path): one rx Burst,
// kSlots Bursts per scope (the deepest path takes 3: uplink rest + inner +
// the per-port run), and the encapsulation scratch frames.
#pragma once

#include <cstdint>
#include <memory>

#include "dataplane/core/packet.h"

namespace dpsw {

class BurstArena;

class Burst {
 public:
  Burst(const Burst&) = delete;
  Burst& operator=(const Burst&) = delete;

  uint16_t size() const { return n_; }
  void resize(uint16_t n) { n_ = n; }  // after filling data() directly (rx)
  Packet* data() { return pkts_; }
  const Packet* data() const { return pkts_; }
  Packet& operator[](uint16_t i) { return pkts_[i]; }
  const Packet& operator[](uint16_t i) const { return pkts_[i]; }
  // Appends p; the caller keeps size() <= kBurst (one input burst at most).
  Packet& push(const Packet& p) { return pkts_[n_++] = p; }

 private:
  friend class BurstArena;
  Burst() = default;
  Packet pkts_[kBurst];
  uint16_t n_ = 0;
};

class BurstArena {
 public:
  static constexpr unsigned kSlots = 4;      // Bursts one scope may take
  static constexpr unsigned kScratch = 128;  // encapsulated frames / ICMP replies per scope (then an early flush)
  static constexpr uint32_t kScratchBytes = 4096;

  BurstArena() : scratch_buf_(std::make_unique<ScratchBuf[]>(kScratch)) {}
  BurstArena(const BurstArena&) = delete;
  BurstArena& operator=(const BurstArena&) = delete;

  // The Burst rx_burst() fills: reused for every port, released by the
  // caller after process() (which flushes) returns.
  Burst& rx() { return rx_; }

  // One burst's lifetime: Bursts taken here stay valid until the scope
  // ends; its destructor flushes `tx` (TxStage, or anything with
  // flush(const Snapshot&)) first, then recycles them. One scope at a time.
  template <class Tx, class Snap>
  class Scope {
   public:
    Scope(BurstArena& a, Tx& tx, const Snap& s) : a_(a), tx_(tx), s_(s) {}
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;
    ~Scope() {
      tx_.flush(s_);
      a_.taken_ = 0;
      a_.nscratch_ = 0;  // every scratch frame has been sent
    }
    Burst& take() {
      if (a_.taken_ == kSlots) [[unlikely]]
        __builtin_trap();  // a static bound (see above): a new path taking more Bursts must raise kSlots
      Burst& b = a_.slots_[a_.taken_++];
      b.n_ = 0;
      return b;
    }

   private:
    BurstArena& a_;
    Tx& tx_;
    const Snap& s_;
  };

  // Encapsulation scratch: a Packet slot and its 4 KiB buffer, valid until
  // the scope's flush. full(): the caller flushes the tx stage and calls
  // scratch_reset() (nothing queued points at a scratch frame any more).
  bool scratch_full() const { return nscratch_ == kScratch; }
  void scratch_reset() { nscratch_ = 0; }
  Burst& scratch_burst() { return scratch_[nscratch_ / kBurst]; }
  uint16_t scratch_index() const { return uint16_t(nscratch_ % kBurst); }
  uint8_t* scratch_data() { return scratch_buf_[nscratch_].data; }
  void scratch_commit() { nscratch_++; }

 private:
  struct ScratchBuf {
    alignas(64) uint8_t data[kScratchBytes];
  };
  Burst rx_;
  Burst slots_[kSlots];
  unsigned taken_ = 0;
  Burst scratch_[kScratch / kBurst];
  unsigned nscratch_ = 0;
  std::unique_ptr<ScratchBuf[]> scratch_buf_;
};

}  // namespace dpsw
