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
//   from that worker's slice of the port space (bitmap; the worker sets
//   bits, the control thread clears them), so workers never collide.
// * The control thread expires flows (per-protocol/per-state timeouts),
//   unindexes them, and recycles index and port only after a QSBR grace
//   period (the caller passes retire()).
// A full table drops the new flow (counted); existing flows keep working.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "dataplane/ether.h"
#include "dataplane/spsc_ring.h"

namespace dpsw {

struct FlowKey {
  uint32_t sip = 0, dip = 0;
  uint16_t sport = 0, dport = 0;  // ICMP echo: the id on the side the host chose, 0 on the other
  uint8_t proto = 0;
  bool operator==(const FlowKey&) const = default;
};

enum class TcpState : uint8_t { kNew = 0, kEstablished = 1, kClosing = 2, kClosed = 3 };

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
  uint16_t nat_port = 0;  // allocated source port (0: none)
  uint8_t worker = 0;     // whose port slice nat_port came from
  std::atomic<uint8_t> state{0};        // TcpState; UDP: 1 once a reply was seen
  std::atomic<uint32_t> last_seen{0};   // ms, refreshed at most once a second
  std::atomic<uint8_t> live{0};         // indexed (1) or free (0)
};

class ConnTrack {
 public:
  struct Timeouts {  // seconds
    uint32_t tcp_new = 60, tcp_established = 3600, tcp_closing = 60, tcp_closed = 10;
    uint32_t udp = 30, udp_replied = 120, icmp = 30;
  };
  struct Options {
    uint32_t size = 262144;
    unsigned workers = 1;
    uint16_t port_lo = 1024, port_hi = 65535;
    Timeouts timeouts{};
  };
  explicit ConnTrack(Options opt);
  ~ConnTrack();

  // ---- workers ----
  // Flow for a tuple seen on the wire; *reply tells which direction matched.
  Flow* find(const FlowKey& k, bool* reply) const;
  enum class Create { kOk, kFull, kNoPort, kBusy };
  // Worker `w` is the one that sees the original direction (owns its input
  // port). A zero xsrc_port means "allocate a NAT port" (masquerade). On kOk
  // *out is indexed and live.
  Create create(unsigned w, const FlowKey& orig, uint32_t xsrc_ip, uint16_t xsrc_port, uint32_t xdst_ip, uint16_t xdst_port,
                const FlowOut& fwd, const FlowOut& back, uint16_t bd, uint32_t now, Flow** out);
  static void seen(Flow& f, uint32_t now);                 // refresh last_seen (rate-limited)
  static void tcp_flags(Flow& f, uint8_t flags, bool reply);  // advance the TCP state

  // ---- control thread ----
  // Unindex expired flows; for each, retire(fn) must run fn after a grace period.
  size_t expire(uint32_t now, const std::function<void(std::function<void()>)>& retire);
  void for_each(const std::function<void(const Flow&)>& fn) const;
  size_t count() const { return live_.load(std::memory_order_relaxed); }  // relaxed: statistic
  size_t capacity() const { return opt_.size; }
  uint64_t full_drops() const { return full_.load(std::memory_order_relaxed); }  // relaxed: statistic

 private:
  static constexpr int kWays = 7;
  struct alignas(64) Bucket {
    std::atomic<uint32_t> seq{0};
    uint32_t pad = 0;
    std::atomic<uint64_t> sig[kWays];  // hash | 1; 0 = empty
    std::atomic<uint64_t> val[kWays];  // flow index << 1 | reply
    uint64_t pad2 = 0;
  };
  static uint64_t sig_of(const FlowKey& k);
  bool insert(const FlowKey& k, uint64_t val);
  void remove(const FlowKey& k, uint64_t val);
  uint32_t timeout_ms(const Flow& f) const;
  uint16_t alloc_port(unsigned w, uint8_t proto);
  void free_port(unsigned w, uint8_t proto, uint16_t port);
  int proto_slot(uint8_t proto) const;

  Options opt_;
  uint32_t mask_;
  std::unique_ptr<Bucket[]> buckets_;
  std::unique_ptr<Flow[]> flows_;
  std::vector<std::unique_ptr<SpscRing<uint32_t>>> free_;  // per worker: free flow indexes
  // Per protocol (TCP, UDP, ICMP) a bitmap over the port space; worker w owns [lo_w, hi_w).
  std::vector<std::unique_ptr<std::atomic<uint64_t>[]>> ports_;
  std::vector<uint32_t> cursor_;  // per worker × proto, worker-private
  std::atomic<size_t> live_{0};
  std::atomic<uint64_t> full_{0};
};

}  // namespace dpsw
