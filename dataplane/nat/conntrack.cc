#include "dataplane/nat/conntrack.h"

#include <immintrin.h>

#include <algorithm>
#include <bit>

#include "dataplane/core/checksum.h"
#include "dataplane/nat/frag_table.h"
#include "dataplane/core/hash.h"

namespace dpsw {

namespace {
constexpr int kReadRetries = 8;
constexpr int kWriteRetries = 64;  // inserting may not be skipped: spin a little, then give up (counted)

// A count with one writer: a plain load + store, no locked instruction.
template <typename T>
void bump(std::atomic<T>& v, T d) {
  v.store(v.load(std::memory_order_relaxed) + d, std::memory_order_relaxed);  // relaxed: single writer, a count
}
}  // namespace

ConnTrack::ConnTrack(Options opt) : opt_(opt) {
  size_t nb = std::bit_ceil(std::max<size_t>(2, size_t(opt_.size) * 2 / kWays * 5 / 4));  // two keys per flow
  mask_ = uint32_t(nb - 1);
  buckets_.reset(new Bucket[nb]);
  for (size_t i = 0; i < nb; i++)
    for (int w = 0; w < kWays; w++) {
      buckets_[i].sig[w].store(0, std::memory_order_relaxed);  // relaxed: not shared yet
      buckets_[i].val[w].store(0, std::memory_order_relaxed);
    }
  flows_.reset(new Flow[opt_.size]);
  for (unsigned w = 0; w < opt_.workers; w++) free_.push_back(std::make_unique<SpscRing<uint32_t>>(std::bit_ceil(size_t(opt_.size))));
  for (unsigned w = 0; w < opt_.workers; w++) free_count_.push_back(std::make_unique<FreeCount>());
  for (unsigned w = 0; w < opt_.workers; w++) announced_.push_back(std::make_unique<SpscRing<uint32_t>>(kAnnounced));
  // Each worker gets a contiguous share of the indexes (they always come back
  // to it): the occupancy words below are, but for the shares' edges, one
  // worker's.
  for (uint32_t i = 0; i < opt_.size; i++) {
    const unsigned w = unsigned(uint64_t(i) * opt_.workers / opt_.size);
    auto& r = *free_[w];
    *r.producer_slot() = i;
    r.push();
    free_count_[w]->pushed.fetch_add(1, std::memory_order_relaxed);  // relaxed: not shared yet
  }
  used_.reset(new std::atomic<uint64_t>[(opt_.size + 63) / 64]);
  for (uint32_t i = 0; i < (opt_.size + 63) / 64; i++) used_[i].store(0, std::memory_order_relaxed);  // relaxed: not shared yet
  for (int p = 0; p < 3; p++) {
    ports_.emplace_back(new std::atomic<uint64_t>[1024]);
    for (int i = 0; i < 1024; i++) ports_.back()[i].store(0, std::memory_order_relaxed);
  }
  span_ = (uint32_t(opt_.port_hi) - opt_.port_lo + 1) / opt_.workers;
  slices_.reset(new PortSlices[opt_.workers]);
  freed_.reset(new PortsFreed[opt_.workers]);
  for (unsigned w = 0; w < opt_.workers; w++)
    for (int p = 0; p < 3; p++) {
      slices_[w].taken[p].store(0, std::memory_order_relaxed);  // relaxed: not shared yet
      slices_[w].probes[p].store(0, std::memory_order_relaxed);
      freed_[w].n[p].store(0, std::memory_order_relaxed);
    }
  stats_.reset(new Stats[opt_.workers + 1]);
  for (unsigned w = 0; w < opt_.workers; w++) frags_.push_back(std::make_unique<FragTable>());
  for (unsigned w = 0; w < opt_.workers; w++) pending_.push_back(std::make_unique<Pending>());
  // Early drop starts when a worker's free flows fall to this many; flows
  // from the uplink may not take them (see Origin).
  reserve_ = std::clamp<size_t>(opt_.size / opt_.workers / 32, 1, 64);
}

ConnTrack::~ConnTrack() = default;

uint64_t ConnTrack::sig_of(const FlowKey& k) {
  uint64_t a = uint64_t(k.sip) << 32 | k.dip;
  uint64_t b = uint64_t(k.sport) << 32 | uint64_t(k.dport) << 16 | k.proto;
  return mix64(a ^ mix64(b)) | 1;
}

Flow* ConnTrack::find(const FlowKey& k, bool* reply) const {
  const uint64_t sig = sig_of(k);
  const uint32_t b[2] = {uint32_t(sig >> 1) & mask_, uint32_t(sig >> 33) & mask_};
  for (uint32_t bi : b) {
    const Bucket& bk = buckets_[bi];
    for (int attempt = 0; attempt < kReadRetries; attempt++) {
      // acquire: slot loads are not hoisted above this read of seq (seqlock read side).
      uint32_t s1 = bk.seq.load(std::memory_order_acquire);
      if (s1 & 1) {
        _mm_pause();
        continue;
      }
      uint64_t found = 0;
      for (int w = 0; w < kWays && !found; w++)
        if (bk.sig[w].load(std::memory_order_relaxed) == sig) found = bk.val[w].load(std::memory_order_relaxed) | (1ULL << 63);
      std::atomic_thread_fence(std::memory_order_acquire);  // slot loads complete before seq is re-read
      if (bk.seq.load(std::memory_order_relaxed) != s1) continue;
      if (!found) break;
      Flow& f = flows_[uint32_t(found >> 1)];
      bool r = found & 1;
      // The flow's tuples are written before it is indexed and never change while live.
      if (f.live.load(std::memory_order_acquire) == kFlowLive && (r ? f.reply : f.orig) == k) {  // acquire: see the tuples
        *reply = r;
        return &f;
      }
      break;  // signature collision: not this flow
    }
  }
  return nullptr;
}

bool ConnTrack::insert(const FlowKey& k, uint64_t val) {
  const uint64_t sig = sig_of(k);
  const uint32_t b[2] = {uint32_t(sig >> 1) & mask_, uint32_t(sig >> 33) & mask_};
  for (int attempt = 0; attempt < kWriteRetries; attempt++) {
    for (uint32_t bi : b) {
      Bucket& bk = buckets_[bi];
      uint32_t s = bk.seq.load(std::memory_order_relaxed);  // relaxed: the CAS decides
      if ((s & 1) || !bk.seq.compare_exchange_strong(s, s + 1, std::memory_order_acquire, std::memory_order_relaxed)) continue;
      std::atomic_thread_fence(std::memory_order_release);  // readers seeing a slot store also see seq odd
      bool done = false;
      for (int w = 0; w < kWays && !done; w++)
        if (bk.sig[w].load(std::memory_order_relaxed) == 0) {  // relaxed: under bucket lock
          bk.val[w].store(val, std::memory_order_relaxed);
          bk.sig[w].store(sig, std::memory_order_relaxed);
          done = true;
        }
      bk.seq.store(s + 2, std::memory_order_release);  // release: slot stores visible before seq is even
      if (done) return true;
    }
    _mm_pause();
  }
  return false;
}

void ConnTrack::remove(const FlowKey& k, uint64_t val) {
  const uint64_t sig = sig_of(k);
  const uint32_t b[2] = {uint32_t(sig >> 1) & mask_, uint32_t(sig >> 33) & mask_};
  for (uint32_t bi : b) {
    Bucket& bk = buckets_[bi];
    uint32_t s;
    for (;;) {  // control thread: may spin (workers hold a bucket for nanoseconds)
      s = bk.seq.load(std::memory_order_relaxed);
      if (!(s & 1) && bk.seq.compare_exchange_weak(s, s + 1, std::memory_order_acquire, std::memory_order_relaxed)) break;
      _mm_pause();
    }
    std::atomic_thread_fence(std::memory_order_release);
    for (int w = 0; w < kWays; w++)
      if (bk.sig[w].load(std::memory_order_relaxed) == sig && bk.val[w].load(std::memory_order_relaxed) == val) {
        bk.sig[w].store(0, std::memory_order_relaxed);
        bk.val[w].store(0, std::memory_order_relaxed);
      }
    bk.seq.store(s + 2, std::memory_order_release);
  }
}

bool ConnTrack::try_remove(const FlowKey& k, uint64_t val, int attempts) {
  const uint64_t sig = sig_of(k);
  const uint32_t b[2] = {uint32_t(sig >> 1) & mask_, uint32_t(sig >> 33) & mask_};
  bool all = true;
  for (uint32_t bi : b) {
    Bucket& bk = buckets_[bi];
    uint32_t s = 0;
    bool locked = false;
    for (int a = 0; a < attempts && !locked; a++) {  // workers: bounded (a writer holds a bucket for nanoseconds)
      s = bk.seq.load(std::memory_order_relaxed);  // relaxed: the CAS decides
      locked = !(s & 1) && bk.seq.compare_exchange_strong(s, s + 1, std::memory_order_acquire, std::memory_order_relaxed);
      if (!locked) _mm_pause();
    }
    if (!locked) {
      all = false;
      continue;
    }
    std::atomic_thread_fence(std::memory_order_release);  // readers seeing a slot store also see seq odd
    for (int w = 0; w < kWays; w++)
      if (bk.sig[w].load(std::memory_order_relaxed) == sig && bk.val[w].load(std::memory_order_relaxed) == val) {  // relaxed: under bucket lock
        bk.sig[w].store(0, std::memory_order_relaxed);
        bk.val[w].store(0, std::memory_order_relaxed);
      }
    bk.seq.store(s + 2, std::memory_order_release);  // release: slot stores visible before seq is even
  }
  return all;
}

ConnTrack::Unique ConnTrack::insert_unique(const FlowKey& k, uint64_t val) {
  const uint64_t sig = sig_of(k);
  uint32_t b[2] = {uint32_t(sig >> 1) & mask_, uint32_t(sig >> 33) & mask_};
  if (b[0] > b[1]) std::swap(b[0], b[1]);  // locked in index order: two creators never wait on each other in a cycle
  const int n = b[0] == b[1] ? 1 : 2;
  uint32_t seq[2] = {};
  int locked = 0;
  // Bucket lo with bounded tries, then hi briefly: holding lo while waiting long for hi would keep
  // lo's readers retrying (find() gives up after kReadRetries). Failing hi: lo released, the pair again.
  auto lock = [&](int i, int tries) {
    Bucket& bk = buckets_[b[i]];
    for (int a = 0; a < tries; a++) {
      seq[i] = bk.seq.load(std::memory_order_relaxed);  // relaxed: the CAS decides
      if (!(seq[i] & 1) && bk.seq.compare_exchange_strong(seq[i], seq[i] + 1, std::memory_order_acquire, std::memory_order_relaxed))
        return true;
      _mm_pause();
    }
    return false;
  };
  for (int round = 0; round < 4 && locked < n; round++) {
    if (!lock(0, kWriteRetries)) continue;
    locked = 1;
    if (n == 1 || lock(1, 2)) {
      locked = n;
      break;
    }
    buckets_[b[0]].seq.store(seq[0] + 2, std::memory_order_release);  // release: an unlock like any other (nothing written)
    locked = 0;
  }
  Unique r = Unique::kBusy;
  if (locked == n) {
    std::atomic_thread_fence(std::memory_order_release);  // readers seeing a slot store also see seq odd
    // Under both locks: every entry k could have is in view. An entry's flow keeps its tuples while it
    // is indexed (live or not yet: a concurrent creator's counts too), and its creator wrote them
    // before taking the lock we now hold (acquire).
    r = Unique::kInserted;
    for (int i = 0; i < n && r == Unique::kInserted; i++)
      for (int w = 0; w < kWays; w++) {
        const Bucket& bk = buckets_[b[i]];
        if (bk.sig[w].load(std::memory_order_relaxed) != sig) continue;  // relaxed: under the bucket lock
        const uint64_t v = bk.val[w].load(std::memory_order_relaxed);
        const Flow& g = flows_[uint32_t(v >> 1)];
        if (((v & 1) ? g.reply : g.orig) == k) {
          r = Unique::kExists;
          break;
        }
      }
    if (r == Unique::kInserted) {
      r = Unique::kBusy;  // both buckets full
      for (int i = 0; i < n && r == Unique::kBusy; i++)
        for (int w = 0; w < kWays; w++) {
          Bucket& bk = buckets_[b[i]];
          if (bk.sig[w].load(std::memory_order_relaxed) == 0) {  // relaxed: under the bucket lock
            bk.val[w].store(val, std::memory_order_relaxed);
            bk.sig[w].store(sig, std::memory_order_relaxed);
            r = Unique::kInserted;
            break;
          }
        }
    }
  }
  for (int i = 0; i < locked; i++) buckets_[b[i]].seq.store(seq[i] + 2, std::memory_order_release);  // release: slot stores first
  return r;
}

// A worker short of free flows: evict one non-assured flow found in the
// buckets from the new tuple's on (bounded). Prefers flows this worker
// created (their index comes back to its own ring), then the longest idle.
bool ConnTrack::early_drop(unsigned w, const FlowKey& k, uint32_t now) {
  const uint32_t b0 = uint32_t(sig_of(k) >> 1) & mask_;
  uint32_t best = UINT32_MAX;
  uint64_t best_score = 0;
  for (unsigned i = 0; i < opt_.early_drop_buckets; i++) {
    const Bucket& bk = buckets_[(b0 + i) & mask_];
    for (int wy = 0; wy < kWays; wy++) {
      // relaxed: only a hint, read without the bucket's seqlock; the CAS on `live` below decides.
      // An index seen here is not recycled before this worker's next quiescent point (QSBR).
      if (!bk.sig[wy].load(std::memory_order_relaxed)) continue;
      const uint32_t idx = uint32_t(bk.val[wy].load(std::memory_order_relaxed) >> 1);
      if (idx >= opt_.size) continue;
      const Flow& f = flows_[idx];
      if (f.live.load(std::memory_order_acquire) != kFlowLive) continue;  // acquire: the tuple and fields below are set
      const uint8_t st = f.state.load(std::memory_order_relaxed);          // relaxed: a snapshot is enough for a choice
      if (assured(f.orig.proto, st)) continue;  // established / replied: kept (closing TCP is not "assured" here)
      const uint64_t score = (uint64_t(f.worker == w) << 40) + age_of(now, f.last_seen.load(std::memory_order_relaxed)) + 1;
      if (score > best_score) best_score = score, best = idx;
    }
  }
  if (best == UINT32_MAX) return false;
  bool gone = false;
  if (!claim(w, best, &gone)) return false;
  bump(stats_[w].early, uint64_t(1));
  return true;
}

bool ConnTrack::claim(unsigned w, uint32_t idx, bool* gone) {
  Flow& f = flows_[idx];
  uint8_t expect = kFlowLive;
  // acq_rel: claim it exactly once against the control thread's expire() and other workers; lookups stop matching now.
  if (!f.live.compare_exchange_strong(expect, kFlowDeadIndexed, std::memory_order_acq_rel, std::memory_order_relaxed)) return false;
  *gone = try_remove(f.orig, uint64_t(idx) << 1, kWriteRetries) & try_remove(f.reply, uint64_t(idx) << 1 | 1, kWriteRetries);
  // release: the control thread that sees "unindexed" skips the buckets (it only recycles). A CAS, not a
  // store: the control thread may have reaped the flow meanwhile (it saw kFlowDeadIndexed and unindexed it too).
  if (*gone) f.live.compare_exchange_strong(expect = kFlowDeadIndexed, kFlowDeadUnindexed, std::memory_order_release,
                                            std::memory_order_relaxed);
  bump(stats_[w].live, int64_t(-1));  // our own slot, though the flow may be another worker's
  pending_[f.worker]->fetch_add(1, std::memory_order_relaxed);  // relaxed: a rate limit (see create())
  return true;
}

bool ConnTrack::reopen(unsigned w, Flow& f) {
  bool gone = false;
  if (!claim(w, uint32_t(&f - flows_.get()), &gone)) return false;
  bump(stats_[w].reopened, uint64_t(1));
  return gone;
}

uint64_t ConnTrack::reopened() const {
  uint64_t n = 0;
  for (unsigned i = 0; i < opt_.workers; i++) n += stats_[i].reopened.load(std::memory_order_relaxed);  // relaxed: a statistic
  return n;
}

int ConnTrack::proto_slot(uint8_t proto) const { return proto == 6 ? 0 : proto == 17 ? 1 : 2; }

// Worker w: a free port of its slice, or 0. A full slice is refused from its
// free count, without touching the bitmap; otherwise the search goes 64
// ports at a time from where the last one ended (ports are reused as late
// as possible), wrapping once: at most span/64 + 2 words.
uint16_t ConnTrack::alloc_port(unsigned w, uint8_t proto) {
  const int p = proto_slot(proto);
  PortSlices& sl = slices_[w];
  const uint64_t taken = sl.taken[p].load(std::memory_order_relaxed);  // relaxed: our own count
  // acquire: pairs with free_port()'s release, so the bits it cleared are visible to the search.
  const uint64_t freed = freed_[w].n[p].load(std::memory_order_acquire);
  if (taken - freed >= span_) return 0;
  std::atomic<uint64_t>* bits = ports_[size_t(p)].get();
  const uint32_t lo = opt_.port_lo + w * span_, end = lo + span_, first = lo + sl.cursor[p];
  uint64_t probes = 0;
  uint16_t got = 0;
  for (int pass = 0; pass < 2 && !got; pass++) {
    uint32_t pos = pass ? lo : first;
    const uint32_t stop = pass ? first : end;  // [first, end), then [lo, first)
    while (pos < stop) {
      const uint32_t base = pos & ~63u;
      uint64_t want = ~0ULL << (pos - base);
      if (stop - base < 64) want &= (1ULL << (stop - base)) - 1;
      probes++;
      // relaxed: only this worker sets bits in its slice; the control thread clears them after a grace period.
      const uint64_t free_bits = ~bits[pos >> 6].load(std::memory_order_relaxed) & want;
      if (free_bits) {
        got = uint16_t(base + unsigned(std::countr_zero(free_bits)));
        break;
      }
      pos = base + 64;
    }
  }
  bump(sl.probes[p], probes);
  if (!got) return 0;  // only if a cleared bit is not visible yet
  bits[got >> 6].fetch_or(1ULL << (got & 63), std::memory_order_relaxed);  // relaxed: see the load above
  bump(sl.taken[p], uint64_t(1));
  sl.cursor[p] = got + 1 - lo == span_ ? 0 : got + 1 - lo;  // next search starts after it
  return got;
}

void ConnTrack::unalloc_port(unsigned w, uint8_t proto, uint16_t port) {
  const int p = proto_slot(proto);
  ports_[size_t(p)][port >> 6].fetch_and(~(1ULL << (port & 63)), std::memory_order_relaxed);  // relaxed: our own bit
  bump(slices_[w].taken[p], uint64_t(-1));  // wraps back: a count we just raised
}

void ConnTrack::free_port(unsigned w, uint8_t proto, uint16_t port) {
  const int p = proto_slot(proto);
  ports_[size_t(p)][port >> 6].fetch_and(~(1ULL << (port & 63)), std::memory_order_relaxed);  // relaxed: ordered by the release below
  std::atomic<uint64_t>& n = freed_[w].n[p];
  // release: the bit cleared above is visible to the worker that sees the count; single writer (control thread).
  n.store(n.load(std::memory_order_relaxed) + 1, std::memory_order_release);
}

size_t ConnTrack::free_ports(unsigned w, uint8_t proto) const {
  const int p = proto_slot(proto);
  const uint64_t used = slices_[w].taken[p].load(std::memory_order_relaxed) -  // relaxed: a statistic
                        freed_[w].n[p].load(std::memory_order_relaxed);
  return used >= span_ ? 0 : size_t(span_ - used);
}

uint64_t ConnTrack::port_probes(unsigned w) const {
  uint64_t n = 0;
  for (int p = 0; p < 3; p++) n += slices_[w].probes[p].load(std::memory_order_relaxed);  // relaxed: a statistic
  return n;
}

size_t ConnTrack::count() const {
  int64_t n = 0;
  for (unsigned i = 0; i <= opt_.workers; i++) n += stats_[i].live.load(std::memory_order_relaxed);  // relaxed: a statistic
  return n > 0 ? size_t(n) : 0;  // slots read at slightly different moments may briefly undercount
}

uint64_t ConnTrack::full_drops() const {
  uint64_t n = 0;
  for (unsigned i = 0; i < opt_.workers; i++) n += stats_[i].full.load(std::memory_order_relaxed);  // relaxed: a statistic
  return n;
}

uint64_t ConnTrack::early_drops() const {
  uint64_t n = 0;
  for (unsigned i = 0; i < opt_.workers; i++) n += stats_[i].early.load(std::memory_order_relaxed);  // relaxed: a statistic
  return n;
}

ConnTrack::Create ConnTrack::create(unsigned w, const FlowKey& orig, uint32_t xsrc_ip, uint16_t xsrc_port, uint32_t xdst_ip,
                                    uint16_t xdst_port, const FlowOut& fwd, const FlowOut& back, uint16_t bd, uint32_t now,
                                    Flow** out, Origin origin, bool keep) {
  SpscRing<uint32_t>& ring = *free_[w];
  FreeCount& fc = *free_count_[w];
  // Free flows of this worker (the ring's readable() may under-report: it reloads only when empty).
  const size_t avail = size_t(fc.pushed.load(std::memory_order_relaxed) - fc.popped);  // relaxed: the ring below is the truth
  if (avail <= reserve_) [[unlikely]] {
    // Short of room: make some (the victim's index comes back after a grace period),
    // then use the reserve, unless this is the last flow or the uplink asks. The
    // uplink's flows evict only while less than a reserve's worth is on its way back:
    // a flood from outside churns a few of its own flows per tick, not the whole table.
    // A picked-up close neither evicts nor takes the reserve.
    if (origin == Origin::kInside ||
        (origin == Origin::kInbound && pending_[w]->load(std::memory_order_relaxed) < reserve_))  // relaxed: a rate limit
      early_drop(w, orig, now);
    if (!avail || origin != Origin::kInside) {
      bump(stats_[w].full, uint64_t(1));
      return Create::kFull;
    }
  }
  if (!ring.readable()) [[unlikely]] {
    bump(stats_[w].full, uint64_t(1));
    return Create::kFull;
  }
  // The reply travels from the rewritten destination to the rewritten source.
  // ICMP echo: the id rides in sport on requests and in dport on replies.
  // Other protocols: address only, and one endpoint per (protocol, remote) at a time.
  bool dummy;
  if (!has_ports(orig.proto) && find(FlowKey{xdst_ip, xsrc_ip, 0, 0, orig.proto}, &dummy)) return Create::kClash;
  // Masquerade (TCP, UDP, ICMP): the source port is kept when the reply
  // tuple it makes is free, as netfilter's masquerade does: the remote sees
  // the same 4-tuple for the same client socket, so a client port reused
  // soon after (the server still in TIME_WAIT for it) carries a timestamp
  // and sequence number that continue the old connection's, which the
  // server accepts. A port from the bitmap, reused by another client socket
  // (other timestamps, another ISN), meets that TIME_WAIT and waits a
  // second for its SYN's retry — at a thousand connections a second the
  // bitmap comes round within the TIME_WAIT. Otherwise (kept port in use,
  // outside [port_lo, port_hi], or `keep` false: a published port) ports of
  // the bitmap. Either way the reply tuple goes in with insert_unique(): a
  // kept port uses no bitmap bit, so the tuple's uniqueness is the table's.
  const bool masquerade = !xsrc_port && has_ports(orig.proto);
  const bool try_keep = masquerade && keep && opt_.keep_ports && orig.sport >= opt_.port_lo && orig.sport <= opt_.port_hi;
  uint16_t port = 0;  // a port of the bitmap (freed with the flow)
  if (masquerade && !try_keep) {
    port = alloc_port(w, orig.proto);
    if (!port) return Create::kNoPort;
    xsrc_port = port;
  } else if (try_keep) {
    xsrc_port = orig.sport;
  }
  uint32_t idx = ring.peek(0);  // taken (popped) only once the flow is indexed
  Flow& f = flows_[idx];
  f.orig = orig;
  f.xsrc_ip = xsrc_ip, f.xsrc_port = xsrc_port, f.xdst_ip = xdst_ip, f.xdst_port = xdst_port;
  f.reply = orig.proto == 1 ? FlowKey{xdst_ip, xsrc_ip, 0, xsrc_port, 1} : FlowKey{xdst_ip, xsrc_ip, xdst_port, xsrc_port, orig.proto};
  f.out[0] = fwd;
  f.out[1] = back;
  f.bd = bd;
  f.nat_port = port;
  f.worker = uint8_t(w);
  f.state.store(0, std::memory_order_relaxed);
  f.fins.store(0, std::memory_order_relaxed);  // relaxed: published with the flow by the release store of `live` below
  f.last_seen.store(now, std::memory_order_relaxed);
  // Indexed first, live last: until then no lookup matches it and no other
  // worker's early drop (nor expiry) can claim it, so a half-made flow is
  // only ever this worker's.
  bool no_port = false;  // the slice ran out while clashing ports were tried: kNoPort (ct_full), not kBusy
  bool indexed = insert(f.orig, uint64_t(idx) << 1);
  if (indexed && !masquerade) {
    indexed = insert(f.reply, uint64_t(idx) << 1 | 1);
  } else if (indexed) {
    Unique u = Unique::kExists;
    for (int tries = 0; tries < kPortTries; tries++) {  // the kept port (if tried), then ports of the bitmap
      u = insert_unique(f.reply, uint64_t(idx) << 1 | 1);
      if (u != Unique::kExists) break;
      if (port) unalloc_port(w, orig.proto, port), port = 0, f.nat_port = 0;  // its tuple is another flow's: another one
      // Kept ports cluster (a client's ephemeral range): the next search starts somewhere else in the slice.
      if (tries) slices_[w].cursor[proto_slot(orig.proto)] = uint32_t(mix64(uint64_t(idx) << 20 ^ uint64_t(tries) << 16 ^ f.xsrc_port) % span_);
      port = alloc_port(w, orig.proto);
      if (!port) {
        no_port = true;
        break;
      }
      f.xsrc_port = port;
      f.reply.dport = port;  // (ICMP: the id rides in dport on replies too)
      f.nat_port = port;
    }
    indexed = u == Unique::kInserted;
    if (!indexed && port && u == Unique::kExists) {  // the last port tried: not this flow's
      unalloc_port(w, orig.proto, port);
      port = 0;
      f.nat_port = 0;
    }
  }
  if (!indexed) [[unlikely]] {
    if (try_remove(f.orig, uint64_t(idx) << 1, kWriteRetries)) {
      if (port) unalloc_port(w, orig.proto, port);
      return no_port ? Create::kNoPort : Create::kBusy;  // never published: idx stays at the head of the ring for the next try
    }
    mark_used(idx);
    // release: the tuples are visible to the control thread, which unindexes and recycles it (index and port).
    f.live.store(kFlowAbandoned, std::memory_order_release);
    ring.pop(1);
    fc.popped++;
    return no_port ? Create::kNoPort : Create::kBusy;
  }
  mark_used(idx);
  bump(stats_[w].live, int64_t(1));  // before `live`: an early drop elsewhere may subtract as soon as it is live
  f.live.store(kFlowLive, std::memory_order_release);  // release: tuples above are visible to a reader that sees live
  ring.pop(1);
  fc.popped++;
  *out = &f;
  return Create::kOk;
}

void ConnTrack::seen(const Flow& f, uint32_t now) {
  // relaxed: a timestamp; writing at most once a second keeps the line quiet.
  if (age_of(now, f.last_seen.load(std::memory_order_relaxed)) >= 1000) f.last_seen.store(now, std::memory_order_relaxed);
}

namespace {
// The TCP state after a segment with `flags` in one direction (never lower than cur).
uint8_t tcp_next(uint8_t cur, uint8_t flags, bool reply) {
  constexpr uint8_t kFin = 0x01, kSyn = 0x02, kRst = 0x04, kAck = 0x10;
  if (flags & kRst) return uint8_t(TcpState::kClose);
  if (flags & kFin) return std::max(cur, uint8_t(TcpState::kClosing));
  if ((flags & (kSyn | kAck)) == kSyn) return reply ? cur : std::max(cur, uint8_t(TcpState::kSynSent));
  if (flags & kSyn)  // SYN+ACK: the answer to the original SYN
    return reply && cur <= uint8_t(TcpState::kSynSent) ? uint8_t(TcpState::kSynRecv) : cur;
  if (!reply && (flags & kAck) && cur == uint8_t(TcpState::kSynRecv)) return uint8_t(TcpState::kEstablished);  // handshake done
  if (reply && cur == uint8_t(TcpState::kNone)) return uint8_t(TcpState::kEstablished);  // picked up mid-stream, both ways alive
  return cur;
}
}  // namespace

bool ConnTrack::tcp_flags(Flow& f, uint8_t flags, bool reply) {
  uint8_t cur = f.state.load(std::memory_order_relaxed);
  // relaxed: states only move up; the higher wins between the two directions' workers.
  // Bounded: the only competitor is the other direction's worker.
  for (int i = 0; i < 4; i++) {
    const uint8_t want = tcp_next(cur, flags, reply);
    if (want <= cur) return false;
    if (f.state.compare_exchange_weak(cur, want, std::memory_order_relaxed)) return want == uint8_t(TcpState::kEstablished);
  }
  return false;
}

void ConnTrack::push_announced(unsigned w, const Flow& f) {
  SpscRing<uint32_t>& r = *announced_[w];
  if (uint32_t* slot = r.producer_slot()) {
    *slot = uint32_t(&f - flows_.get());
    r.push();
  }
}

void ConnTrack::take_announced(size_t max, const std::function<void(const Flow&)>& fn) {
  // The rings in turn from a rotating first one, so that a flood on one
  // worker does not crowd out the others' announcements call after call.
  const size_t nr = announced_.size();
  for (size_t k = 0; k < nr; k++) {
    SpscRing<uint32_t>& ring = *announced_[(announce_first_ + k) % nr];
    for (size_t n = ring.readable(); n; n--) {
      const Flow& f = flows_[ring.peek(0)];
      ring.pop(1);  // taken before fn runs: one that throws is not met again
      // acquire: a live flow's fields were written before its release store of
      // live, and only this thread (expiry) recycles it: stable while fn runs.
      if (max && f.live.load(std::memory_order_acquire) == kFlowLive) {
        max--;
        fn(f);
      }
    }
  }
  announce_first_++;
}

bool ConnTrack::tcp_segment(Flow& f, const uint8_t* tcp, uint32_t len, bool reply) {
  constexpr uint8_t kFin = 0x01, kSyn = 0x02, kRst = 0x04, kAck = 0x10;
  const uint8_t flags = tcp[13];
  const bool established = tcp_flags(f, flags, reply);
  if (flags & kRst) return established;
  const uint8_t mine = reply ? kFinReply : kFinOrig, theirs = reply ? kFinOrig : kFinReply;
  const uint8_t theirs_acked = reply ? kFinOrigAcked : kFinReplyAcked;
  // acquire: pairs with the other direction's release below, so its fin_end
  // is read as written. (That direction's FIN reached this one's sender
  // before this ACK could come back: the two workers' stores and loads are
  // also ordered by the packets' round trip through the ports' rings.)
  uint8_t bits = f.fins.load(std::memory_order_acquire);
  const uint32_t doff = uint32_t(tcp[12] >> 4) * 4;
  if ((flags & kFin) && !(bits & mine) && doff >= 20 && doff <= len) {  // (a FIN with a bad header: the receiver drops it)
    const uint32_t end = csum::load32(tcp + 4) + ((flags & kSyn) ? 1 : 0) + (len - doff) + 1;
    f.fin_end[reply].store(end, std::memory_order_relaxed);  // relaxed: published by the release below
    // acq_rel: release publishes fin_end above; acquire, should the other
    // direction's FIN bit show up only now (the FINs crossed), its fin_end.
    bits = f.fins.fetch_or(mine, std::memory_order_acq_rel) | mine;
  }
  // Only the FIN's exact end acknowledges it: nothing was sent past a FIN.
  if ((flags & kAck) && (bits & theirs) && !(bits & theirs_acked) &&
      csum::load32(tcp + 8) == f.fin_end[!reply].load(std::memory_order_relaxed))  // relaxed: after an acquire that saw its bit
    bits = f.fins.fetch_or(theirs_acked, std::memory_order_relaxed) | theirs_acked;  // relaxed: a state hint, like `state`
  if (bits != (kFinOrig | kFinReply | kFinOrigAcked | kFinReplyAcked)) return established;
  uint8_t cur = f.state.load(std::memory_order_relaxed);
  // relaxed: states only move up (as tcp_flags); bounded: one competitor.
  for (int i = 0; i < 4 && cur < uint8_t(TcpState::kTimeWait); i++)
    if (f.state.compare_exchange_weak(cur, uint8_t(TcpState::kTimeWait), std::memory_order_relaxed)) break;
  return established;
}

uint32_t ConnTrack::timeout_ms(const Flow& f) const {
  const Timeouts& t = opt_.timeouts;
  uint8_t st = f.state.load(std::memory_order_relaxed);  // relaxed: ageing is approximate by nature
  switch (f.orig.proto) {
    case 6:
      switch (TcpState(st)) {
        case TcpState::kNone:
        case TcpState::kSynSent: return 1000 * t.tcp_syn_sent;
        case TcpState::kSynRecv: return 1000 * t.tcp_syn_recv;
        case TcpState::kEstablished: return 1000 * t.tcp_established;
        case TcpState::kClosing:
        case TcpState::kTimeWait: return 1000 * t.tcp_closing;
        default: return 1000 * t.tcp_close;
      }
    case 17:
      return 1000 * (st ? t.udp_replied : t.udp);
    case 1:
      return 1000 * t.icmp;
    default:
      return 1000 * (st ? t.other_replied : t.other);
  }
}

void ConnTrack::recycle(uint32_t i, bool evicted, const std::function<void(std::function<void()>)>& retire) {
  const Flow& f = flows_[i];
  unsigned w = f.worker;
  uint8_t proto = f.orig.proto;
  uint16_t port = f.nat_port;
  // After the grace period no worker holds a pointer to it: recycle.
  retire([this, i, w, proto, port, evicted] {
    if (evicted) pending_[w]->fetch_sub(1, std::memory_order_relaxed);  // relaxed: a rate limit
    if (port) free_port(w, proto, port);
    SpscRing<uint32_t>& ring = *free_[w];
    if (uint32_t* slot = ring.producer_slot()) {
      *slot = i;
      ring.push();
      std::atomic<uint64_t>& pushed = free_count_[w]->pushed;
      pushed.store(pushed.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);  // relaxed: single writer, a count
    }
  });
}

size_t ConnTrack::expire(uint32_t now, const std::function<void(std::function<void()>)>& retire,
                         const std::function<bool(const Flow&)>& doomed) {
  size_t n = 0;
  for_each_used([&](uint32_t i) {
    Flow& f = flows_[i];
    uint8_t lv = f.live.load(std::memory_order_acquire);  // acquire: pairs with create()'s / early_drop()'s release
    if (lv == kFlowFree) return;  // marked, not yet made (or never: a create() that undid itself leaves no mark)
    bool evicted = lv == kFlowDeadUnindexed || lv == kFlowDeadIndexed;
    if (lv == kFlowLive) {
      if (age_of(now, f.last_seen.load(std::memory_order_relaxed)) < timeout_ms(f) && !(doomed && doomed(f))) return;
      // acq_rel: a worker's early drop may claim it at the same moment; one of us wins.
      if (f.live.compare_exchange_strong(lv, kFlowDeadIndexed, std::memory_order_acq_rel, std::memory_order_acquire)) {
        lv = kFlowDeadIndexed;
        bump(stats_[opt_.workers].live, int64_t(-1));  // the control thread's slot
        n++;
      } else {
        evicted = lv != kFlowAbandoned;  // a worker's early drop won: recycled below like any evicted flow
      }
    }
    if (lv == kFlowDeadIndexed || lv == kFlowAbandoned) {
      remove(f.orig, uint64_t(i) << 1);
      remove(f.reply, uint64_t(i) << 1 | 1);
    }
    f.live.store(kFlowFree, std::memory_order_relaxed);  // relaxed: readers also verify the tuple
    // relaxed: the index goes back to a worker only after the grace period below, which orders this clear
    // before that worker's next mark; an RMW, as the word's other bits may be marked meanwhile.
    used_[i >> 6].fetch_and(~(1ULL << (i & 63)), std::memory_order_relaxed);
    recycle(i, evicted, retire);
  });
  return n;
}

void ConnTrack::mark_used(uint32_t idx) {
  // relaxed: only a hint for the control thread's scans, which read `live` (acquire) before using the flow;
  // a mark it does not see yet delays that flow to its next scan. An RMW: a word's bits belong to several flows.
  used_[idx >> 6].fetch_or(1ULL << (idx & 63), std::memory_order_relaxed);
}

void ConnTrack::for_each_used(const std::function<void(uint32_t)>& fn) const {
  for (uint32_t wd = 0; wd < (opt_.size + 63) / 64; wd++) {
    uint64_t bits = used_[wd].load(std::memory_order_relaxed);  // relaxed: see mark_used()
    while (bits) {
      fn(wd * 64 + uint32_t(std::countr_zero(bits)));
      bits &= bits - 1;
    }
  }
}

void ConnTrack::for_each(const std::function<void(const Flow&)>& fn) const {
  for_each_used([&](uint32_t i) {
    if (flows_[i].live.load(std::memory_order_acquire) == kFlowLive) fn(flows_[i]);  // acquire: see the tuples
  });
}

}  // namespace dpsw
