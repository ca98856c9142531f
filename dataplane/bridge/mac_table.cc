#include "dataplane/bridge/mac_table.h"

#include <immintrin.h>

#include <algorithm>
#include <bit>

#include "dataplane/core/packet.h"

#include "dataplane/core/clock.h"
#include "dataplane/core/hash.h"

namespace dpsw {


MacTable::MacTable(Options opt) : opt_(opt), count_(std::max(1u, opt.workers) + 1) {
  opt_.workers = std::max(1u, opt_.workers);
  size_t want = std::max<size_t>(2, (size_t(opt.size) + kWays - 1) / kWays * 5 / 4);  // ~80% max load
  size_t nb = std::bit_ceil(want);
  mask_ = uint32_t(nb - 1);
  buckets_.reset(new Bucket[nb]);
  for (size_t i = 0; i < nb; i++)
    for (int w = 0; w < kWays; w++) {
      buckets_[i].key[w].store(0, std::memory_order_relaxed);  // relaxed: not yet shared
      buckets_[i].val[w].store(0, std::memory_order_relaxed);
    }
}

MacTable::~MacTable() = default;

void MacTable::buckets_of(uint64_t key, uint32_t* b1, uint32_t* b2) const {
  uint64_t h = mix64(key);
  uint32_t a = uint32_t(h) & mask_, b = uint32_t(h >> 32) & mask_;
  *b1 = a;
  *b2 = a == b ? (b ^ 1) & mask_ : b;
}

int MacTable::read_bucket(const Bucket& b, uint64_t key, uint64_t* val) const {
  for (int attempt = 0; attempt < kReadRetries; attempt++) {
    // acquire: the slot loads below cannot be hoisted above this read of seq.
    uint32_t s1 = b.seq.load(std::memory_order_acquire);
    if (s1 & 1) {
      _mm_pause();
      continue;
    }
    int found = 0;
    uint64_t v = 0;
    for (int w = 0; w < kWays; w++) {
      // relaxed: validated by the seq re-check below (seqlock read side).
      if (b.key[w].load(std::memory_order_relaxed) == key) {
        v = b.val[w].load(std::memory_order_relaxed);
        found = 1;
        break;
      }
    }
    // acquire fence: the slot loads above complete before seq is re-read.
    std::atomic_thread_fence(std::memory_order_acquire);
    if (b.seq.load(std::memory_order_relaxed) == s1) {
      *val = v;
      return found;
    }
  }
  return -1;
}

bool MacTable::try_lock(Bucket& b) const {
  uint32_t s = b.seq.load(std::memory_order_relaxed);  // relaxed: the CAS below decides
  if (s & 1) return false;
  // acquire: we see the previous writer's slot stores before touching slots.
  if (!b.seq.compare_exchange_strong(s, s + 1, std::memory_order_acquire, std::memory_order_relaxed))
    return false;
  // release fence: readers that see any slot store below also see seq odd.
  std::atomic_thread_fence(std::memory_order_release);
  return true;
}

void MacTable::lock(Bucket& b) const {
  while (!try_lock(b)) _mm_pause();
}

void MacTable::unlock(Bucket& b) {
  // release: slot stores are visible before seq turns even again.
  b.seq.store(b.seq.load(std::memory_order_relaxed) + 1, std::memory_order_release);
}

uint16_t MacTable::lookup(uint16_t bd, Mac mac) const {
  uint64_t key = make_key(bd, mac), v;
  uint32_t b1, b2;
  buckets_of(key, &b1, &b2);
  if (read_bucket(buckets_[b1], key, &v) == 1) return val_port(v);
  if (read_bucket(buckets_[b2], key, &v) == 1) return val_port(v);
  return kInvalidPort;
}

void MacTable::lookup_bulk(const uint64_t* keys, uint16_t n, uint16_t* ports) const {
  uint32_t b1[kBurst], b2[kBurst];
  for (uint16_t i = 0; i < n; i++) {
    buckets_of(keys[i], &b1[i], &b2[i]);
    __builtin_prefetch(&buckets_[b1[i]]);
  }
  for (uint16_t i = 0; i < n; i++) {
    uint64_t v;
    if (read_bucket(buckets_[b1[i]], keys[i], &v) == 1) {
      ports[i] = val_port(v);
    } else if (read_bucket(buckets_[b2[i]], keys[i], &v) == 1) {
      ports[i] = val_port(v);
    } else {
      ports[i] = kInvalidPort;
    }
  }
}

MacTable::Learn MacTable::learn(uint16_t bd, Mac mac, uint16_t port, uint32_t now, unsigned worker) {
  const uint64_t key = make_key(bd, mac);
  uint32_t i1, i2;
  buckets_of(key, &i1, &i2);
  Bucket* bs[2] = {&buckets_[i1], &buckets_[i2]};

  // Read-only fast path: known station on the same port, nothing to write.
  for (Bucket* b : bs) {
    uint64_t v;
    int r = read_bucket(*b, key, &v);
    if (r == 1) {
      if (val_static(v)) return Learn::kKnown;  // configured stations never move
      uint32_t age = age_of(now, val_ts(v));
      if (val_port(v) == port && age < opt_.refresh_ms && (val_est(v) || age < opt_.confirm_ms))
        return Learn::kKnown;
      break;
    }
  }

  // Slow path: lock both candidate buckets (try only: workers never wait).
  if (!try_lock(*bs[0])) return Learn::kBusy;
  if (!try_lock(*bs[1])) {
    unlock(*bs[0]);
    return Learn::kBusy;
  }
  Learn result = Learn::kFull;
  // Existing entry: refresh, confirm or move.
  for (Bucket* b : bs) {
    for (int w = 0; w < kWays; w++) {
      if (b->key[w].load(std::memory_order_relaxed) != key) continue;  // relaxed: under bucket lock
      uint64_t v = b->val[w].load(std::memory_order_relaxed);
      if (val_static(v)) {
        result = Learn::kKnown;
        goto done;
      }
      bool est = val_est(v) || age_of(now, val_ts(v)) >= opt_.confirm_ms;
      uint32_t ts = est ? now : val_ts(v);  // tentative entries keep their first sighting
      result = val_port(v) == port ? Learn::kRefreshed : Learn::kMoved;
      b->val[w].store(make_val(port, ts, est), std::memory_order_relaxed);  // relaxed: under bucket lock
      goto done;
    }
  }
  {
    // New entry: an empty slot while under the bound, else replace the
    // expired or oldest tentative entry of the two buckets.
    Bucket* eb = nullptr;
    int ew = -1;
    for (Bucket* b : bs)
      for (int w = 0; w < kWays && !eb; w++)
        if (b->key[w].load(std::memory_order_relaxed) == 0) eb = b, ew = w;  // relaxed: under bucket lock
    // The bound: every writer's slot summed (see count_ for the slack).
    if (eb && count_.sum() >= opt_.size) eb = nullptr;
    if (eb) count_.add(worker, 1);  // our own slot: a plain store
    if (!eb) {
      uint32_t best_age = 0;
      bool best_expired = false;
      for (Bucket* b : bs)
        for (int w = 0; w < kWays; w++) {
          uint64_t k = b->key[w].load(std::memory_order_relaxed);
          if (k == 0) continue;
          uint64_t v = b->val[w].load(std::memory_order_relaxed);
          uint32_t age = age_of(now, val_ts(v));
          bool expired = age >= opt_.aging_ms;
          if (val_static(v) || (!expired && val_est(v))) continue;  // static, or established and alive: never evicted
          if ((expired && !best_expired) || (expired == best_expired && age >= best_age)) {
            eb = b, ew = w, best_age = age, best_expired = expired;
          }
        }
    }
    if (eb) {
      eb->key[ew].store(key, std::memory_order_relaxed);  // relaxed: under bucket lock
      eb->val[ew].store(make_val(port, now, false), std::memory_order_relaxed);
      result = Learn::kInserted;
    }
  }
done:
  unlock(*bs[1]);
  unlock(*bs[0]);
  return result;
}

template <typename Pred>
size_t MacTable::remove_if(Pred pred) {
  size_t removed = 0;
  for (uint32_t i = 0; i <= mask_; i++) {
    Bucket& b = buckets_[i];
    bool any = false;
    for (int w = 0; w < kWays && !any; w++) {
      uint64_t k = b.key[w].load(std::memory_order_relaxed);  // relaxed: a hint, re-checked under lock
      if (k && pred(k, b.val[w].load(std::memory_order_relaxed))) any = true;
    }
    if (!any) continue;
    lock(b);
    for (int w = 0; w < kWays; w++) {
      uint64_t k = b.key[w].load(std::memory_order_relaxed);  // relaxed: under bucket lock
      if (k && pred(k, b.val[w].load(std::memory_order_relaxed))) {
        b.key[w].store(0, std::memory_order_relaxed);
        b.val[w].store(0, std::memory_order_relaxed);
        removed++;
      }
    }
    unlock(b);
  }
  if (removed) count_.add(opt_.workers, -int64_t(removed));  // the control thread's slot
  return removed;
}

size_t MacTable::age(uint32_t now, uint32_t aging_ms) {
  return remove_if([&](uint64_t, uint64_t v) { return !val_static(v) && age_of(now, val_ts(v)) >= aging_ms; });
}

bool MacTable::add_static(uint16_t bd, Mac mac, uint16_t port) {
  const uint64_t key = make_key(bd, mac);
  uint32_t i1, i2;
  buckets_of(key, &i1, &i2);
  Bucket* bs[2] = {&buckets_[i1], &buckets_[i2]};
  lock(*bs[0]);
  lock(*bs[1]);
  const uint64_t val = make_val(port, 0, true) | kStatic;
  Bucket* eb = nullptr;
  int ew = -1;
  for (Bucket* b : bs)
    for (int w = 0; w < kWays; w++) {
      uint64_t k = b->key[w].load(std::memory_order_relaxed);  // relaxed: under bucket lock
      if (k == key) eb = b, ew = w;
      if (!eb && k == 0) eb = b, ew = w;
    }
  // No free slot: a configured station outranks anything learned, so the
  // two buckets cannot be filled ahead of it (e.g. by frames whose source
  // MACs were chosen to hash there). Evict a tentative entry first, else
  // the least recently seen learned one; it is relearned elsewhere (until
  // then its frames are flooded). Only 14 static entries refuse it.
  if (!eb) {
    uint32_t best = 0;
    bool best_tentative = false;
    const uint32_t now = now_ms();
    for (Bucket* b : bs)
      for (int w = 0; w < kWays; w++) {
        uint64_t v = b->val[w].load(std::memory_order_relaxed);  // relaxed: under bucket lock
        if (val_static(v)) continue;
        bool tentative = !val_est(v);
        uint32_t age = age_of(now, val_ts(v));
        if (!eb || (tentative && !best_tentative) || (tentative == best_tentative && age >= best))
          eb = b, ew = w, best = age, best_tentative = tentative;
      }
  }
  bool ok = false;
  if (eb) {
    if (eb->key[ew].load(std::memory_order_relaxed) == 0) count_.add(opt_.workers, 1);  // relaxed: under bucket lock; the control thread's slot
    eb->key[ew].store(key, std::memory_order_relaxed);  // relaxed: under bucket lock
    eb->val[ew].store(val, std::memory_order_relaxed);
    ok = true;
  }
  unlock(*bs[1]);
  unlock(*bs[0]);
  return ok;
}
size_t MacTable::flush_port(uint16_t port) {
  return remove_if([&](uint64_t, uint64_t v) { return val_port(v) == port; });
}
size_t MacTable::flush_bd(uint16_t bd) {
  return remove_if([&](uint64_t k, uint64_t) { return (k >> 48) == uint64_t(bd) + 1; });
}

void MacTable::for_each(const std::function<void(const Entry&)>& fn) const {
  for (uint32_t i = 0; i <= mask_; i++) {
    const Bucket& b = buckets_[i];
    uint64_t keys[kWays], vals[kWays];
    for (;;) {
      uint32_t s1 = b.seq.load(std::memory_order_acquire);  // acquire: seqlock read side
      if (s1 & 1) {
        _mm_pause();
        continue;
      }
      for (int w = 0; w < kWays; w++) {
        keys[w] = b.key[w].load(std::memory_order_relaxed);  // relaxed: validated by seq
        vals[w] = b.val[w].load(std::memory_order_relaxed);
      }
      std::atomic_thread_fence(std::memory_order_acquire);  // loads complete before re-check
      if (b.seq.load(std::memory_order_relaxed) == s1) break;
    }
    for (int w = 0; w < kWays; w++) {
      if (!keys[w]) continue;
      fn(Entry{uint16_t((keys[w] >> 48) - 1), keys[w] & 0xffffffffffffULL, val_port(vals[w]),
               val_ts(vals[w]), val_est(vals[w]), val_static(vals[w])});
    }
  }
}

}  // namespace dpsw
