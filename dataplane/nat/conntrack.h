// Connection tracking for masquerade (SNAT to the uplink address), shared by
// all workers: a container's port and the uplink are usually owned by
// different workers, so both directions must find the same flow.
//
// Flows live in a preallocated array. Each flow is indexed twice in a
// seqlock-bucket hash (same scheme as MacTable): under its original tuple
// (container -> remote, as the container sent it) and its reply tuple
// (remote -> uplink address:NAT port, as it arrives at the uplink).
// * Lookups are lock-free; a reader racing a writer retries a few times.
// * A flow is created only by the worker that owns the container's port
//   (so one tuple is never created twice). Its index comes from that
//   worker's free ring (SPSC, refilled by the control thread); its NAT port
//   is the source port itself when the reply tuple it makes is free, else
//   from that worker's slice of the port space (bitmap; the worker sets
//   bits, the control thread clears them). Either way the reply tuple goes
//   in with insert_unique (both buckets locked), so workers never collide. A
//   slice keeps a free count (a full slice refuses at once, without a scan)
//   and is searched 64 ports at a time from a rotating cursor.
// * Counts and statistics (live flows, refusals, early drops) are kept per
//   writer thread, a cache line each (no read-modify-write on a line every
//   worker writes, which a flood would make every packet pay), and summed
//   when read.
// * The control thread expires flows (per-protocol/per-state timeouts),
//   unindexes them, and recycles index and port only after a QSBR grace
//   period (the caller passes retire()).
// * Early drop (nf_conntrack's early_drop): when a worker's free flows fall
//   to a small reserve, create() first evicts one non-assured flow (TCP not
//   yet established or already closing, UDP/ICMP/other not replied) found in
//   a bounded window of buckets next to the new tuple's. The worker claims
//   the victim with one CAS on `live` (1 -> dead), which is what makes
//   lookups stop matching it, unindexes it with bounded retries, and leaves
//   the recycling of index and port to the control thread's next expire()
//   (after a grace period, like every other flow). Workers never spin
//   without bound. Flows started from the uplink (published ports) may not
//   take the reserve's last entries: a flood from outside cannot take the
//   containers' last free flows.
// A table with neither free flows nor a victim drops the new flow (counted);
// existing flows keep working.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "dataplane/core/ether.h"
#include "dataplane/core/spsc_ring.h"

namespace dpsw {

class FragTable;

struct FlowKey {
  uint32_t sip = 0, dip = 0;
  uint16_t sport = 0, dport = 0;  // ICMP echo: the id on the side the host chose, 0 on the other
  uint8_t proto = 0;
  bool operator==(const FlowKey&) const = default;
};

// Ordered: a flow's state only moves up (two workers may update it, one per
// direction; the CAS keeps the higher). Like netfilter's, simplified:
// kNone: created by an ACK (picked up mid-stream), no reply seen yet (a
// picked-up FIN or RST moves on to kClosing / kClose at once); kSynSent: the original SYN seen; kSynRecv: the reply's
// SYN+ACK seen; kEstablished: the original direction's ACK after that (or, for a
// picked-up flow, any reply); kClosing: a FIN seen (FIN_WAIT/CLOSE_WAIT/
// LAST_ACK folded); kTimeWait: both directions' FINs seen and acknowledged
// (the close handshake complete: TIME_WAIT on the side that closed first);
// kClose: a RST seen.
enum class TcpState : uint8_t { kNone = 0, kSynSent = 1, kSynRecv = 2, kEstablished = 3, kClosing = 4, kTimeWait = 5, kClose = 6 };
constexpr int kTcpStates = 7;
inline const char* tcp_state_name(uint8_t st) {
  static const char* const names[kTcpStates] = {"none", "syn_sent", "syn_recv", "established", "closing", "time_wait", "close"};
  return st < kTcpStates ? names[st] : "?";
}
// Flows of these protocols rewrite ports (ICMP: the echo id); any other IP
// protocol is masqueraded by address only (ports 0 in its keys).
inline bool has_ports(uint8_t proto) { return proto == 6 || proto == 17 || proto == 1; }

// Where one direction of a flow goes after its rewrite.
struct FlowOut {
  uint16_t port = 0;  // output port id
  Mac dst_mac = 0;    // 0: resolve the new destination through the uplink's ARP cache
  Mac src_mac = 0;    // dpsw's MAC on that side
};

// A flow rewrites its original direction's source to (xsrc_ip, xsrc_port) and
// destination to (xdst_ip, xdst_port); replies get the inverse. SNAT changes
// only the source, DNAT only the destination, hairpin both.
struct alignas(64) Flow {
  FlowKey orig;           // as first seen (before any rewrite)
  FlowKey reply;          // the answer, as it arrives (= the rewritten tuple, reversed)
  uint32_t xsrc_ip = 0, xdst_ip = 0;
  uint16_t xsrc_port = 0, xdst_port = 0;
  FlowOut out[2];         // [0] original direction, [1] replies
  uint16_t bd = 0;        // the container network the flow started in or goes to (for show)
  uint16_t nat_port = 0;  // source port allocated from the bitmap (0: none; a kept source port is not)
  uint8_t worker = 0;     // whose port slice nat_port came from
  std::atomic<uint8_t> state{0};        // TcpState; others: 1 once a reply was seen
  // ms, refreshed at most once a second; mutable: the control thread
  // refreshes a flow the kernel tier forwards from the kernel's stamps.
  mutable std::atomic<uint32_t> last_seen{0};
  std::atomic<uint8_t> live{0};         // Live: lookups match only kFlowLive
  // TCP close handshake (ConnTrack::tcp_segment): FinBits, and per direction
  // ([0] original, [1] reply) the sequence number just past its FIN.
  std::atomic<uint8_t> fins{0};
  std::atomic<uint32_t> fin_end[2] = {0, 0};
};
// Flow::fins: a direction's FIN seen (its fin_end set), and acknowledged by the other direction.
enum FinBits : uint8_t { kFinOrig = 1, kFinReply = 2, kFinOrigAcked = 4, kFinReplyAcked = 8 };

// Flow::live. A flow leaves kFlowLive exactly once, by a CAS (expiry or early drop).
enum Live : uint8_t {
  kFlowFree = 0,
  kFlowLive = 1,
  kFlowDeadUnindexed = 2,  // evicted by a worker, unindexed: the control thread recycles it
  kFlowDeadIndexed = 3,    // evicted by a worker that could not unindex it: the control thread unindexes, recycles
  kFlowAbandoned = 4,      // a create() that could not index it fully nor undo that: the control thread unindexes, recycles
};

// Whether a flow is worth keeping over a new one (netfilter's "assured"):
// TCP established; UDP, ICMP, other: a reply seen.
inline bool assured(uint8_t proto, uint8_t state) {
  return proto == 6 ? state == uint8_t(TcpState::kEstablished) : state != 0;
}

class ConnTrack {
 public:
  struct Timeouts {  // seconds
    // Handshake: netfilter's (SYN_SENT 120 s, SYN_RECV 60 s); a flow picked up
    // mid-stream (kNone) waits like SYN_SENT. Early drop reclaims them sooner
    // when the table is short of room.
    uint32_t tcp_syn_sent = 120, tcp_syn_recv = 60;
    uint32_t tcp_established = 3600, tcp_closing = 60, tcp_close = 10;
    uint32_t udp = 30, udp_replied = 120, icmp = 30;
    uint32_t other = 30, other_replied = 180;  // other IP protocols (GRE, ...): netfilter's GRE values
  };
  struct Options {
    uint32_t size = 262144;
    unsigned workers = 1;
    uint16_t port_lo = 1024, port_hi = 65535;
    bool keep_ports = true;  // masquerade keeps a source port in [port_lo, port_hi] when its reply tuple is free (create())
    Timeouts timeouts{};
    // Early drop: buckets scanned for a victim, starting at the new tuple's.
    unsigned early_drop_buckets = 8;
  };
  explicit ConnTrack(Options opt);
  ~ConnTrack();

  // ---- workers ----
  // Flow for a tuple seen on the wire; *reply tells which direction matched.
  Flow* find(const FlowKey& k, bool* reply) const;
  enum class Create { kOk, kFull, kNoPort, kBusy, kClash };
  // Who asks for the flow: kInbound (from the uplink: published ports) may
  // not take the last reserve() free flows of its worker; kPickup (a TCP
  // FIN or RST from inside with no flow: a close picked up) neither takes
  // them nor evicts a flow for room.
  enum class Origin : uint8_t { kInside, kInbound, kPickup };
  // Worker `w` is the one that sees the original direction (owns its input
  // port). A zero xsrc_port means "a NAT port" (masquerade; TCP, UDP,
  // ICMP; other protocols keep port 0): the source port itself when its
  // reply tuple is free (Options::keep_ports), else one of the bitmap's.
  // `keep` false: not the source port (the caller's reason: a port
  // published on that address, whose inbound tuples it would take). A
  // masquerade's reply tuple is never another flow's tuple (insert_unique).
  // On kOk *out is indexed and live.
  // kClash: the reply tuple is another flow's (another protocol's masquerade
  // of another endpoint towards the same remote address).
  Create create(unsigned w, const FlowKey& orig, uint32_t xsrc_ip, uint16_t xsrc_port, uint32_t xdst_ip, uint16_t xdst_port,
                const FlowOut& fwd, const FlowOut& back, uint16_t bd, uint32_t now, Flow** out,
                Origin origin = Origin::kInside, bool keep = true);
  static void seen(const Flow& f, uint32_t now);           // refresh last_seen (rate-limited)
  // Advance the TCP state; true when this segment made it established.
  static bool tcp_flags(Flow& f, uint8_t flags, bool reply);
  // A whole TCP segment (header and payload, len bytes) in one direction:
  // tcp_flags() (its result), and the close handshake, whose end (both FINs
  // acknowledged) is kTimeWait.
  static bool tcp_segment(Flow& f, const uint8_t* tcp, uint32_t len, bool reply);
  // Flows just worth handing to the kernel tier (TCP established, a new UDP
  // flow): worker w announces them when announcing is on (one relaxed
  // load; a slot in its own ring, no syscall; dropped when the ring is
  // full: the control thread's periodic sync finds every flow anyway).
  void announce(unsigned w, const Flow& f) {
    if (announcing_.load(std::memory_order_relaxed)) push_announced(w, f);  // relaxed: a switch, late by a packet at worst
  }
  // ---- control thread ----
  void set_announcing(bool on) {  // (stored only when it changes: the workers read its line)
    if (announcing_.load(std::memory_order_relaxed) != on) announcing_.store(on, std::memory_order_relaxed);  // relaxed: see announce()
  }
  // fn(flow) for each flow announced since the last call that is still live
  // (it may have closed meanwhile: fn re-checks its state); at most `max`,
  // the rest dropped. Each is taken off its ring before fn runs (a throw
  // loses the rest of that ring's, never repeats one).
  void take_announced(size_t max, const std::function<void(const Flow&)>& fn);
  // A TCP SYN that reuses the tuple of a closing or closed flow opens a new
  // connection (netfilter's reopen): worker w takes the old flow out of the
  // lookups (one CAS on `live`, like early drop; the control thread recycles
  // it). True: it is out, create() may make the tuple's new flow. False: it
  // went meanwhile (expired), or it could not be unindexed yet (the packet
  // is dropped; the SYN's retransmission finds it gone).
  bool reopen(unsigned w, Flow& f);

  // ---- control thread ----
  // Unindex expired flows; for each, retire(fn) must run fn after a grace period.
  // doomed (optional): live flows it returns true for go too, whatever their
  // age (the flows of an endpoint that is gone).
  size_t expire(uint32_t now, const std::function<void(std::function<void()>)>& retire,
                const std::function<bool(const Flow&)>& doomed = nullptr);
  void for_each(const std::function<void(const Flow&)>& fn) const;
  size_t count() const;  // live flows: every writer's slot summed (a statistic)
  // One writer's share of count() (worker id, or Options::workers for the
  // control thread); negative when it took more flows out than it made.
  int64_t count_slot(unsigned writer) const { return stats_[writer].live.load(std::memory_order_relaxed); }  // relaxed: a statistic
  size_t capacity() const { return opt_.size; }
  uint64_t full_drops() const;   // new flows refused, all workers
  uint64_t early_drops() const;  // flows evicted by early drop, all workers
  uint64_t reopened() const;     // flows a new connection's SYN replaced (reopen()), all workers
  // NAT ports: free in worker w's slice for proto (as that worker would see
  // it), and bitmap words its allocator examined so far (a cost probe: a
  // full slice costs none).
  size_t free_ports(unsigned w, uint8_t proto) const;
  uint64_t port_probes(unsigned w) const;
  size_t reserve() const { return reserve_; }  // per worker, see Origin
  FragTable& frags(unsigned w) { return *frags_[w]; }  // worker w's own (frag_table.h)
  uint32_t timeout_ms(const Flow& f) const;

 private:
  static constexpr int kWays = 7;
  static constexpr size_t kAnnounced = 4096;  // per worker: flows announced between two takes
  struct alignas(64) Bucket {
    std::atomic<uint32_t> seq{0};
    uint32_t pad = 0;
    std::atomic<uint64_t> sig[kWays];  // hash | 1; 0 = empty
    std::atomic<uint64_t> val[kWays];  // flow index << 1 | reply
    uint64_t pad2 = 0;
  };
  static uint64_t sig_of(const FlowKey& k);
  bool insert(const FlowKey& k, uint64_t val);
  // k's entry, unless a flow (live or being made) already has k as a tuple:
  // both candidate buckets locked (in index order, bounded tries) while they
  // are searched and written, so two workers cannot both add it.
  enum class Unique { kInserted, kExists, kBusy };
  static constexpr int kPortTries = 32;  // a masquerade's ports tried before ct_busy (the kept one, then the bitmap's)
  Unique insert_unique(const FlowKey& k, uint64_t val);
  void remove(const FlowKey& k, uint64_t val);                   // control thread: waits for the buckets
  bool try_remove(const FlowKey& k, uint64_t val, int attempts);  // workers: bounded
  bool early_drop(unsigned w, const FlowKey& k, uint32_t now);   // evict one non-assured flow near k
  // Worker w takes live flow idx out of the lookups (false: not live any
  // more); *gone: unindexed too (else the control thread unindexes it).
  bool claim(unsigned w, uint32_t idx, bool* gone);
  void recycle(uint32_t i, bool evicted, const std::function<void(std::function<void()>)>& retire);
  void mark_used(uint32_t idx);                                   // worker: idx left its free ring
  void for_each_used(const std::function<void(uint32_t)>& fn) const;  // control thread: every marked index
  uint16_t alloc_port(unsigned w, uint8_t proto);                // worker w
  void unalloc_port(unsigned w, uint8_t proto, uint16_t port);    // worker w: a port it has just taken, unused
  void free_port(unsigned w, uint8_t proto, uint16_t port);       // control thread, after a grace period
  int proto_slot(uint8_t proto) const;

  Options opt_;
  uint32_t mask_;
  std::unique_ptr<Bucket[]> buckets_;
  std::unique_ptr<Flow[]> flows_;
  // Occupancy, a bit per flow: set by the worker that takes the index from its
  // ring, cleared by the control thread when it frees the flow. The control
  // thread's scans (expire(), for_each()) visit only marked flows: a mostly
  // empty table costs a 32 KiB sweep per 256 Ki flows, not 16 MiB.
  std::unique_ptr<std::atomic<uint64_t>[]> used_;
  std::vector<std::unique_ptr<SpscRing<uint32_t>>> free_;  // per worker: free flow indexes
  struct alignas(64) FreeCount {
    std::atomic<uint64_t> pushed{0};  // written by the control thread (the ring's producer)
    uint64_t popped = 0;              // worker-private (the ring's consumer)
  };
  std::vector<std::unique_ptr<FreeCount>> free_count_;  // per worker: how full its free ring is
  // Per protocol (TCP, UDP, ICMP) a bitmap over the port space; worker w owns
  // [port_lo + w * span_, + span_). Bits: set by the owner (fetch_or: a word at
  // a slice's edge is shared with the neighbour's slice), cleared by the
  // control thread (fetch_and) or by the owner undoing a create().
  std::vector<std::unique_ptr<std::atomic<uint64_t>[]>> ports_;
  uint32_t span_ = 0;
  // Worker w's slices (one per protocol), written only by that worker.
  struct alignas(64) PortSlices {
    uint32_t cursor[3] = {};          // where the next search starts (offset in the slice)
    std::atomic<uint64_t> taken[3];   // ports it has taken, ever (minus the ones it undid)
    std::atomic<uint64_t> probes[3];  // bitmap words it examined (statistic)
  };
  // Worker w's slices' ports the control thread freed, ever: written only by it.
  struct alignas(64) PortsFreed {
    std::atomic<uint64_t> n[3];
  };
  std::unique_ptr<PortSlices[]> slices_;  // per worker
  std::unique_ptr<PortsFreed[]> freed_;   // per worker
  std::vector<std::unique_ptr<FragTable>> frags_;  // per worker
  std::vector<std::unique_ptr<SpscRing<uint32_t>>> announced_;  // per worker: flow indexes for the kernel tier (announce())
  std::atomic<bool> announcing_{false};
  size_t announce_first_ = 0;  // control thread: the ring take_announced() starts with
  void push_announced(unsigned w, const Flow& f);
  struct alignas(64) Pending {
    std::atomic<size_t> n{0};
    size_t load(std::memory_order o) const { return n.load(o); }
    void fetch_add(size_t v, std::memory_order o) { n.fetch_add(v, o); }
    void fetch_sub(size_t v, std::memory_order o) { n.fetch_sub(v, o); }
  };
  // Per worker: its flows evicted by early drop, not yet back in its free ring (any worker adds, control subtracts).
  std::vector<std::unique_ptr<Pending>> pending_;
  size_t reserve_ = 1;
  // Counts, one cache line per writer thread, each written only by its thread
  // with relaxed load + store; readers sum them (relaxed: statistics).
  // [0, workers): the workers (create() adds to live; early drop and reopen take any
  // worker's flow out of live, so a worker's live may go negative);
  // [workers]: the control thread (expire() takes flows out of live).
  struct alignas(64) Stats {
    std::atomic<int64_t> live{0};    // flows it made live minus flows it took out of live
    std::atomic<uint64_t> full{0};   // new flows it refused for lack of room
    std::atomic<uint64_t> early{0};  // flows its early drop evicted
    std::atomic<uint64_t> reopened{0};  // flows it replaced by a new connection on their tuple
  };
  std::unique_ptr<Stats[]> stats_;
};

}  // namespace dpsw
