// The DNS responder's upstream relay (issue 16): a query for a name no
// network of the asker holds is sent on to an upstream resolver from the
// uplink's address (masqueraded: the upstream sees the host, never the
// container), and the answer is relayed back to the asker as if from its
// gateway. No socket: the worker writes the frames.
//
// State: one slot per outstanding query, kSlots in all, split into equal
// per-worker slices. Slot i's queries leave from UDP port kPortLo + i with a
// fresh random id (so an answer names its slot; RFC 5452: port and id are
// what an off-path forger must guess). NAT never allocates those ports
// (ConnTrack's range ends below kPortLo).
//
// Threads. The worker that sends the query (W: the asker's port's owner;
// for the later queries of a TCP segment, the worker that ended the
// previous one's slot, see node_dns.h) owns its slice: it claims a free slot, fills it, and publishes it with a
// release store of `state` (pending, with a new generation); it alone
// resends on timeout and finally answers SERVFAIL. The answer arrives on
// the uplink, whose owner (U, possibly another worker) loads `state`
// (acquire), reads the asker's fields, and claims the answer with one CAS
// pending(gen) -> free; W's last timeout makes the same CAS, so exactly one
// of them answers the asker. The fields U reads are atomics read relaxed: W
// may be rewriting a slot U has stopped caring about (its CAS then fails,
// the generation having moved) without a data race; so are the queries a
// TCP asker sent after this one (`rest`, answered by whoever ends the slot).
// What only W reads (the query copy, tries, the time sent) is plain.
#pragma once

#include <sys/random.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <ctime>
#include <cstring>
#include <memory>

#include "dataplane/core/ether.h"

namespace dpsw {

class DnsRelay {
 public:
  static constexpr uint16_t kPortLo = 61440;      // 61440..65535: the relay's source ports
  static constexpr unsigned kSlots = 65536 - kPortLo;
  static constexpr uint32_t kQueryMax = 512;      // a query longer than this is answered SERVFAIL (none is, in practice)
  static constexpr uint32_t kTryMs = 1000;        // wait for one upstream before the next is tried
  static constexpr unsigned kTries = 3;           // then SERVFAIL
  static constexpr uint32_t kRestMax = 512;       // TCP: queries after the relayed one in its segment, at most (glibc: one)
  static constexpr unsigned kMaxHops = 4;         // TCP: queries of one segment relayed, at most (glibc: A and AAAA); then SERVFAIL

  struct Asker {
    uint32_t ip = 0;
    uint16_t sport = 0, id = 0;  // its source port, its query id
    Mac mac = 0;
    uint16_t port = 0, bd = 0;   // the port it asked on, its network
    uint16_t relay_id = 0;       // the id the upstream saw
    uint64_t question = 0;       // a hash of the question (name in lower case, type, class): the answer must echo it
    bool tcp = false;            // asked over TCP (stage_dns_tcp.h): answered in segments, seq from the cookie
    bool opt_added = false;      // tcp: the relay added an OPT record to the query (stage_dns_relay.h)
    uint32_t ack = 0;            // tcp: what the answer's segments acknowledge (past the query)
    uint32_t seq = 0;            // tcp: where the answer goes in the gateway's byte stream
    uint8_t hops = 0;            // tcp: the queries of its segment relayed before this one (at most kMaxHops in all)
    uint16_t rest_len = 0;       // tcp: the queries that came after this one in its segment
    uint8_t rest[kRestMax];      //   (length-prefixed), answered after its answer (node_dns.h)
  };

  explicit DnsRelay(unsigned workers)
      : workers_(workers ? workers : 1), per_(kSlots / workers_), slots_(new Slot[kSlots]), w_(new PerWorker[workers_]) {
    for (unsigned w = 0; w < workers_; w++) {
      uint64_t seed = 0;
      if (getrandom(&seed, sizeof seed, 0) != sizeof seed) seed = uint64_t(time(nullptr)) * 0x9e3779b97f4a7c15ULL + w;
      w_[w].rng = seed | 1;
    }
  }

  // W: an unpredictable query id (xorshift64* seeded from getrandom).
  uint16_t next_id(unsigned w) {
    uint64_t& x = w_[w].rng;
    x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
    return uint16_t((x * 0x2545f4914f6cdd1dULL) >> 48);
  }

  unsigned slice_begin(unsigned w) const { return w * per_; }
  unsigned slice_end(unsigned w) const { return (w + 1) * per_; }

  // W: a free slot of its slice (-1: all busy), from a random start: the
  // source port is not predictable (RFC 5452), nor is the id.
  int claim(unsigned w) {
    const unsigned b = slice_begin(w), start = unsigned(next_id(w)) % per_;
    for (unsigned k = 0; k < per_; k++) {
      const unsigned i = b + (start + k) % per_;
      // relaxed: only W turns a free slot pending; U and W's own CAS free it (seen here late at worst: the slot looks busy)
      if (!(slots_[i].state.load(std::memory_order_relaxed) & 1)) return int(i);
    }
    return -1;
  }
  // W: fills slot i and makes it pending; returns its state word.
  uint64_t publish(unsigned i, const Asker& a, uint32_t now, const uint8_t* query, uint32_t len) {
    Slot& s = slots_[i];
    s.a.store(uint64_t(a.ip) << 32 | uint32_t(a.sport) << 16 | a.id, std::memory_order_relaxed);  // relaxed: published by the release below
    s.b.store(a.mac << 16 | a.port, std::memory_order_relaxed);
    s.c.store(uint64_t(a.relay_id) << 16 | a.bd, std::memory_order_relaxed);
    s.d.store(a.question, std::memory_order_relaxed);
    s.e.store(uint64_t(a.opt_added) << 33 | uint64_t(a.tcp) << 32 | a.ack, std::memory_order_relaxed);
    s.f.store(uint64_t(a.seq) << 32 | uint32_t(a.hops) << 16 | a.rest_len, std::memory_order_relaxed);
    for (uint32_t w = 0; w * 8 < a.rest_len; w++) {  // atomics: U copies them before its CAS may fail (relaxed: ordered by state)
      uint64_t v = 0;
      std::memcpy(&v, a.rest + w * 8, std::min<uint32_t>(8, a.rest_len - w * 8));
      s.rest[w].store(v, std::memory_order_relaxed);
    }
    std::memcpy(s.query, query, len);
    s.len = len;
    s.sent_ms = now;
    s.tries = 1;
    const uint64_t st = ((s.state.load(std::memory_order_relaxed) >> 1) + 1) << 1 | 1;  // relaxed: W's own word
    s.state.store(st, std::memory_order_release);  // release: the fields above are visible to U once it sees pending
    return st;
  }
  // U: the asker of the answer to slot i with id relay_id and that question,
  // claimed (the slot is free again); false if none waits for it (late,
  // forged, already answered).
  bool take(unsigned i, uint16_t relay_id, uint64_t question, Asker* out) {
    if (i >= kSlots) return false;
    Slot& s = slots_[i];
    uint64_t st = s.state.load(std::memory_order_acquire);  // acquire: pairs with publish()'s release
    if (!(st & 1)) return false;
    read(s, out);
    if (out->relay_id != relay_id || out->question != question) return false;
    // acq_rel: wins the slot against W's timeout; the fields read above belong to generation st
    return s.state.compare_exchange_strong(st, st & ~uint64_t(1), std::memory_order_acq_rel, std::memory_order_relaxed);
  }

  // W: its slots waiting since before now - kTryMs: fn(i, asker, query, len, tries) is told
  // each; it returns true to resend (tries moves on) or, past kTries, the slot is freed
  // (if U did not take it meanwhile) and fn is called with tries == 0 to answer SERVFAIL.
  template <class Fn>
  void expire(unsigned w, uint32_t now, Fn&& fn) {
    for (unsigned i = slice_begin(w); i < slice_end(w); i++) {
      Slot& s = slots_[i];
      uint64_t st = s.state.load(std::memory_order_acquire);  // acquire: W's own writes, and U's CAS
      if (!(st & 1) || int32_t(now - s.sent_ms) < int32_t(kTryMs)) continue;
      Asker a;
      read(s, &a);
      if (s.tries < kTries) {
        s.tries++;
        s.sent_ms = now;
        fn(i, a, s.query, s.len, s.tries);
        continue;
      }
      // acq_rel: exactly one of U and W frees a pending slot
      if (s.state.compare_exchange_strong(st, st & ~uint64_t(1), std::memory_order_acq_rel, std::memory_order_relaxed))
        fn(i, a, s.query, s.len, 0u);
    }
  }
  // Slots pending now (a statistic: read relaxed, slot by slot).
  unsigned pending() const {
    unsigned n = 0;
    for (unsigned i = 0; i < kSlots; i++) n += slots_[i].state.load(std::memory_order_relaxed) & 1;  // relaxed: a count
    return n;
  }

 private:
  struct alignas(64) Slot {
    std::atomic<uint64_t> state{0};   // generation << 1 | pending
    std::atomic<uint64_t> a{0}, b{0}, c{0}, d{0}, e{0}, f{0};  // the asker (see publish())
    std::atomic<uint64_t> rest[kRestMax / 8] = {};
    uint32_t len = 0, sent_ms = 0;
    unsigned tries = 0;
    uint8_t query[kQueryMax];
  };
  static void read(const Slot& s, Asker* o) {
    const uint64_t a = s.a.load(std::memory_order_relaxed), b = s.b.load(std::memory_order_relaxed),
                   c = s.c.load(std::memory_order_relaxed);  // relaxed: ordered by the state word's acquire
    o->question = s.d.load(std::memory_order_relaxed);  // relaxed: as above
    const uint64_t e = s.e.load(std::memory_order_relaxed);  // relaxed: as above
    o->tcp = (e >> 32) & 1, o->opt_added = (e >> 33) & 1, o->ack = uint32_t(e);
    const uint64_t f = s.f.load(std::memory_order_relaxed);  // relaxed: as above
    o->seq = uint32_t(f >> 32), o->hops = uint8_t(f >> 16), o->rest_len = uint16_t(std::min<uint64_t>(f & 0xffff, kRestMax));
    for (uint32_t w = 0; w * 8 < o->rest_len; w++) {
      const uint64_t v = s.rest[w].load(std::memory_order_relaxed);  // relaxed: as above
      std::memcpy(o->rest + w * 8, &v, std::min<uint32_t>(8, o->rest_len - w * 8));
    }
    o->ip = uint32_t(a >> 32), o->sport = uint16_t(a >> 16), o->id = uint16_t(a);
    o->mac = b >> 16, o->port = uint16_t(b);
    o->relay_id = uint16_t(c >> 16), o->bd = uint16_t(c);
  }
  struct alignas(64) PerWorker {  // written by its worker only
    unsigned cursor = 0;
    uint64_t rng = 1;
  };
  unsigned workers_, per_;
  std::unique_ptr<Slot[]> slots_;
  std::unique_ptr<PerWorker[]> w_;
};

}  // namespace dpsw
