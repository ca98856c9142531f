// Bounded, lock-free MAC learning table shared by all workers.
//
// Key: (bridge domain, MAC). Value: port, last-seen time, flags.
//
// Layout: power-of-two array of 128-byte buckets, 7 slots each (keys in the
// first cache line, values in the second). Every key has two candidate
// buckets (two-choice hashing); lookups read at most two buckets.
//
// Concurrency (see docs/ARCHITECTURE.md):
// * Readers (workers forwarding) never write and never wait: each bucket has
//   a sequence counter (seqlock); a reader that races with a writer retries a
//   bounded number of times and otherwise reports a miss, which only means
//   the frame is flooded.
// * Writers (workers learning, control thread ageing) take a bucket by CAS on
//   its counter. Workers use try_lock: if the bucket is busy the learn is
//   skipped (counted) and happens on a later frame. So workers never block.
// * Flood resistance: a new entry is TENTATIVE. It becomes ESTABLISHED when
//   its station is seen again at least `confirm_ms` later. Inserts may evict
//   only expired or tentative entries, never established ones, and the table
//   holds at most about `size` entries (see count_). A flood of random source
//   MACs (each seen once) therefore only churns tentative slots: known
//   stations keep their entries and lookups stay two bucket reads.
// * The entry count is per writer (SlotCount: a cache line per worker plus
//   one for the control thread, no read-modify-write on a shared line), so a
//   flood learning on every worker does not bounce one counter between them.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>

#include "dataplane/core/counters.h"
#include "dataplane/core/ether.h"

namespace dpsw {

class MacTable {
 public:
  struct Options {
    uint32_t size = 65536;     // max entries
    uint32_t aging_ms = 300000;  // idle entries older than this may be replaced by inserts
    uint32_t confirm_ms = 1000;  // tentative -> established after a re-sighting this much later
    uint32_t refresh_ms = 1000;  // don't rewrite last-seen more often than this
    unsigned workers = 1;        // learn()'s worker ids are 0..workers-1
  };
  enum class Learn : uint8_t { kKnown, kRefreshed, kInserted, kMoved, kBusy, kFull };
  struct Entry {
    uint16_t bd;
    Mac mac;
    uint16_t port;
    uint32_t last_seen_ms;
    bool established;
    bool is_static;
  };

  explicit MacTable(Options opt);
  ~MacTable();
  MacTable(const MacTable&) = delete;
  MacTable& operator=(const MacTable&) = delete;

  // ---- any thread, lock-free ----
  // Port for (bd, mac), or kInvalidPort.
  uint16_t lookup(uint16_t bd, Mac mac) const;
  // Bulk form: n keys made with make_key(); prefetches all buckets first.
  void lookup_bulk(const uint64_t* keys, uint16_t n, uint16_t* ports) const;
  static uint64_t make_key(uint16_t bd, Mac mac) { return (uint64_t(bd) + 1) << 48 | mac; }

  // ---- workers: never blocks (may return kBusy / kFull) ----
  // `worker`: the caller's worker id (< Options::workers); each id must be
  // used by one thread at a time (it names the count slot it writes).
  Learn learn(uint16_t bd, Mac mac, uint16_t port, uint32_t now_ms, unsigned worker = 0);

  // ---- control thread (may spin briefly on a bucket) ----
  // A static entry (a station dpsw knows by configuration): never aged, never
  // moved or evicted by learning; removed only by flush_port/flush_bd.
  bool add_static(uint16_t bd, Mac mac, uint16_t port);
  size_t age(uint32_t now_ms, uint32_t aging_ms);   // removes non-static entries idle longer than aging_ms
  size_t flush_port(uint16_t port);
  size_t flush_bd(uint16_t bd);
  void for_each(const std::function<void(const Entry&)>& fn) const;

  size_t count() const { return size_t(count_.sum()); }  // the writers' slots summed (relaxed: a statistic)
  size_t capacity() const { return opt_.size; }
  // One writer's share of count() (worker id, or Options::workers for the
  // control thread); negative when it removed more than it added.
  int64_t count_slot(unsigned writer) const { return count_.slot(writer); }

 private:
  static constexpr int kWays = 7;
  static constexpr int kReadRetries = 4;
  struct alignas(64) Bucket {
    std::atomic<uint32_t> seq{0};  // even: stable, odd: a writer is inside
    uint32_t pad0 = 0;
    std::atomic<uint64_t> key[kWays];  // 0 = empty
    std::atomic<uint64_t> val[kWays];
    uint64_t pad1 = 0;
  };
  static_assert(sizeof(Bucket) == 128);

  // value: [63:48] flags | [47:32] port | [31:0] last seen (ms, wrapping)
  static constexpr uint64_t kEstablished = 1ULL << 48;
  static constexpr uint64_t kStatic = 1ULL << 49;
  static bool val_static(uint64_t v) { return v & kStatic; }
  static uint64_t make_val(uint16_t port, uint32_t ts, bool est) {
    return (est ? kEstablished : 0) | uint64_t(port) << 32 | ts;
  }
  static uint16_t val_port(uint64_t v) { return uint16_t(v >> 32); }
  static uint32_t val_ts(uint64_t v) { return uint32_t(v); }
  static bool val_est(uint64_t v) { return v & kEstablished; }

  // The key's two candidate buckets (always distinct), from one hash.
  void buckets_of(uint64_t key, uint32_t* b1, uint32_t* b2) const;
  // Seqlock read of one bucket: 1 found, 0 absent, -1 gave up (writer busy).
  int read_bucket(const Bucket& b, uint64_t key, uint64_t* val) const;
  bool try_lock(Bucket& b) const;
  void lock(Bucket& b) const;
  static void unlock(Bucket& b);
  template <typename Pred>
  size_t remove_if(Pred pred);

  Options opt_;
  uint32_t mask_;
  std::unique_ptr<Bucket[]> buckets_;
  // Entries in the table: slot w for worker w's inserts, slot opt_.workers
  // for the control thread's (static entries added, entries aged or
  // flushed: negative). Also the bound on learning: a worker inserts into an
  // empty slot only while the sum, read relaxed, is below opt_.size. Workers
  // learning at the same moment may each read the sum before the others'
  // increments land, so the table can exceed size by the inserts in flight:
  // at most one per other worker, i.e. fewer than `workers` entries (a
  // worker's increment is visible before its next insert: on x86 that
  // insert's bucket CAS drains the store buffer). The hash table has ~25%
  // spare slots for that.
  SlotCount count_;
};

}  // namespace dpsw
