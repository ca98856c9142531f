#include "dataplane/conntrack.h"

#include <immintrin.h>

#include <algorithm>
#include <bit>

#include "dataplane/hash.h"

namespace dpsw {

namespace {
constexpr int kReadRetries = 8;
constexpr int kWriteRetries = 64;  // inserting may not be skipped: spin a little, then give up (counted)
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
  for (uint32_t i = 0; i < opt_.size; i++) {
    auto& r = *free_[i % opt_.workers];
    *r.producer_slot() = i;
    r.push();
  }
  for (int p = 0; p < 3; p++) {
    ports_.emplace_back(new std::atomic<uint64_t>[1024]);
    for (int i = 0; i < 1024; i++) ports_.back()[i].store(0, std::memory_order_relaxed);
  }
  cursor_.assign(size_t(opt_.workers) * 3, 0);
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
      if (f.live.load(std::memory_order_acquire) && (r ? f.reply : f.orig) == k) {  // acquire: see the tuples
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

int ConnTrack::proto_slot(uint8_t proto) const { return proto == 6 ? 0 : proto == 17 ? 1 : 2; }

uint16_t ConnTrack::alloc_port(unsigned w, uint8_t proto) {
  const uint32_t span = (uint32_t(opt_.port_hi) - opt_.port_lo + 1) / opt_.workers;
  const uint32_t lo = opt_.port_lo + w * span;
  auto& bits = ports_[size_t(proto_slot(proto))];
  uint32_t& cur = cursor_[w * 3 + unsigned(proto_slot(proto))];
  for (uint32_t i = 0; i < span; i++) {
    uint32_t port = lo + (cur + i) % span;
    uint64_t bit = 1ULL << (port & 63);
    // relaxed: only this worker sets bits in its slice; the control thread clears them after a grace period.
    if (bits[port >> 6].load(std::memory_order_relaxed) & bit) continue;
    bits[port >> 6].fetch_or(bit, std::memory_order_relaxed);
    cur = (cur + i + 1) % span;  // next search starts after: ports are reused as late as possible
    return uint16_t(port);
  }
  return 0;
}

void ConnTrack::free_port(unsigned, uint8_t proto, uint16_t port) {
  ports_[size_t(proto_slot(proto))][port >> 6].fetch_and(~(1ULL << (port & 63)), std::memory_order_relaxed);  // relaxed: see alloc_port
}

ConnTrack::Create ConnTrack::create(unsigned w, const FlowKey& orig, uint32_t xsrc_ip, uint16_t xsrc_port, uint32_t xdst_ip,
                                    uint16_t xdst_port, const FlowOut& fwd, const FlowOut& back, uint16_t bd, uint32_t now,
                                    Flow** out) {
  SpscRing<uint32_t>& ring = *free_[w];
  if (!ring.readable()) {
    full_.fetch_add(1, std::memory_order_relaxed);  // relaxed: statistic
    return Create::kFull;
  }
  uint16_t port = 0;
  if (!xsrc_port) {
    port = alloc_port(w, orig.proto);
    if (!port) return Create::kNoPort;
    xsrc_port = port;
  }
  uint32_t idx = ring.peek(0);  // taken (popped) only once the flow is indexed
  Flow& f = flows_[idx];
  f.orig = orig;
  f.xsrc_ip = xsrc_ip, f.xsrc_port = xsrc_port, f.xdst_ip = xdst_ip, f.xdst_port = xdst_port;
  // The reply travels from the rewritten destination to the rewritten source.
  // ICMP echo: the id rides in sport on requests and in dport on replies.
  f.reply = orig.proto == 1 ? FlowKey{xdst_ip, xsrc_ip, 0, xsrc_port, 1} : FlowKey{xdst_ip, xsrc_ip, xdst_port, xsrc_port, orig.proto};
  f.out[0] = fwd;
  f.out[1] = back;
  f.bd = bd;
  f.nat_port = port;
  f.worker = uint8_t(w);
  f.state.store(0, std::memory_order_relaxed);
  f.last_seen.store(now, std::memory_order_relaxed);
  f.live.store(1, std::memory_order_release);  // release: tuples above are visible to a reader that sees live
  if (!insert(f.orig, uint64_t(idx) << 1) || !insert(f.reply, uint64_t(idx) << 1 | 1)) {
    remove(f.orig, uint64_t(idx) << 1);
    f.live.store(0, std::memory_order_relaxed);
    if (port) free_port(w, orig.proto, port);
    return Create::kBusy;  // idx stays at the head of the ring for the next try
  }
  ring.pop(1);
  live_.fetch_add(1, std::memory_order_relaxed);  // relaxed: statistic
  *out = &f;
  return Create::kOk;
}

void ConnTrack::seen(Flow& f, uint32_t now) {
  // relaxed: a timestamp; writing at most once a second keeps the line quiet.
  if (age_of(now, f.last_seen.load(std::memory_order_relaxed)) >= 1000) f.last_seen.store(now, std::memory_order_relaxed);
}

void ConnTrack::tcp_flags(Flow& f, uint8_t flags, bool reply) {
  uint8_t want;
  if (flags & 0x04) want = uint8_t(TcpState::kClosed);                      // RST
  else if (flags & 0x01) want = uint8_t(TcpState::kClosing);                // FIN
  else if (reply && (flags & 0x12) == 0x12) want = uint8_t(TcpState::kEstablished);  // SYN+ACK answered
  else if (!(flags & 0x02)) want = uint8_t(TcpState::kEstablished);         // data/ACK after the handshake
  else return;
  uint8_t cur = f.state.load(std::memory_order_relaxed);
  // relaxed: states only move forward; the max wins between the two directions' workers.
  while (cur < want && !f.state.compare_exchange_weak(cur, want, std::memory_order_relaxed)) {
  }
}

uint32_t ConnTrack::timeout_ms(const Flow& f) const {
  const Timeouts& t = opt_.timeouts;
  uint8_t st = f.state.load(std::memory_order_relaxed);  // relaxed: ageing is approximate by nature
  switch (f.orig.proto) {
    case 6:
      return 1000 * (st == 0 ? t.tcp_new : st == 1 ? t.tcp_established : st == 2 ? t.tcp_closing : t.tcp_closed);
    case 17:
      return 1000 * (st ? t.udp_replied : t.udp);
    default:
      return 1000 * t.icmp;
  }
}

size_t ConnTrack::expire(uint32_t now, const std::function<void(std::function<void()>)>& retire) {
  size_t n = 0;
  for (uint32_t i = 0; i < opt_.size; i++) {
    Flow& f = flows_[i];
    if (!f.live.load(std::memory_order_acquire)) continue;  // acquire: pairs with create()'s release
    if (age_of(now, f.last_seen.load(std::memory_order_relaxed)) < timeout_ms(f)) continue;
    remove(f.orig, uint64_t(i) << 1);
    remove(f.reply, uint64_t(i) << 1 | 1);
    f.live.store(0, std::memory_order_relaxed);  // relaxed: readers also verify the tuple
    live_.fetch_sub(1, std::memory_order_relaxed);
    unsigned w = f.worker;
    uint8_t proto = f.orig.proto;
    uint16_t port = f.nat_port;
    // After the grace period no worker holds a pointer to it: recycle.
    retire([this, i, w, proto, port] {
      if (port) free_port(w, proto, port);
      SpscRing<uint32_t>& ring = *free_[w];
      if (uint32_t* slot = ring.producer_slot()) {
        *slot = i;
        ring.push();
      }
    });
    n++;
  }
  return n;
}

void ConnTrack::for_each(const std::function<void(const Flow&)>& fn) const {
  for (uint32_t i = 0; i < opt_.size; i++)
    if (flows_[i].live.load(std::memory_order_acquire)) fn(flows_[i]);
}

}  // namespace dpsw
