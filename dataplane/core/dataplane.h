// The dataplane: worker threads, the published snapshot, the MAC table.
//
// Threads: the control thread owns this object and is the only caller of
// every method except Worker::run(), which each worker thread executes.
// Control -> workers: publish() swaps the snapshot with one release store;
// the old one is deleted by QSBR after every worker has passed a quiescent
// point (once per loop iteration), so workers never lock or stop.
#pragma once

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "dataplane/nat/arp_cache.h"
#include "dataplane/core/burst.h"
#include "dataplane/nat/conntrack.h"
#include "dataplane/core/counters.h"
#include "dataplane/bridge/mac_table.h"
#include "dataplane/fast/punt_share.h"
#include "dataplane/core/qsbr.h"
#include "dataplane/core/snapshot.h"
#include "dataplane/core/stage_tx.h"
#include "dataplane/dns/dns_relay.h"

namespace dpsw {

class Dataplane;

class Worker {
 public:
  Worker(Dataplane& dp, unsigned id);
  // One poll-loop iteration; returns frames moved. Public for tests/benches.
  unsigned poll_once();
  // Process one received burst from in_port (rx already done into it).
  // Transmits (flushes) before returning, so the caller may release the buffers.
  void process(const Snapshot& s, uint16_t in_port, Burst& pkts, uint32_t now);
  // The Burst to receive into before process() (the worker's own, burst.h).
  Burst& rx_burst() { return arena_.rx(); }
  void run();  // loop until the dataplane stops
  WorkerCounters& counters() { return *wc_; }
  const WorkerCounters& counters() const { return *wc_; }

 private:
  // One burst's Bursts and its tx flush (burst.h): every frame queued for tx
  // is a Packet of a Burst taken from the scope, sent when the scope ends.
  using Scope = BurstArena::Scope<stage::TxStage, Snapshot>;
  // The packet graph (graph.h) after rx accounting, on b[first, first + n).
  // Frames stay queued in tx_ until the scope's flush.
  void forward(const Snapshot& s, uint16_t in_port, Burst& b, uint16_t first, uint16_t n, uint32_t now);
  void process_uplink(const Snapshot& s, Scope& scope, uint16_t in_port, const Burst& pkts, uint32_t now);
  // The fast tier's punt port: frames tagged with the fast-tier port they came
  // from (fast_port.h).
  void process_punt(const Snapshot& s, Scope& scope, uint16_t in_port, const Burst& pkts, uint32_t now);
  // Frames each received on ports[i]: counted as rx there and forwarded, one
  // run per port, order kept per port.
  void forward_by_port(const Snapshot& s, Scope& scope, const Burst& pkts, const uint16_t* ports, uint32_t now);
  unsigned drain_handoff(const Snapshot& s);
  void send_arp_requests(const Snapshot& s, uint32_t now);  // uplink owner: resolve wanted next hops
  // Every worker, each 50 ms: its DNS relay slots that waited too long are
  // sent to the next upstream, or answered SERVFAIL (dns_relay.h).
  void dns_relay_tick(const Snapshot& s, uint32_t now);
  bool block();  // idle: wait for traffic; false if this worker cannot block
  // After polling a punt port: track its congestion, publish the share.
  void punt_fairness(const PortEntry& pe, uint16_t received, uint32_t now);

  Dataplane& dp_;
  unsigned id_;
  std::unique_ptr<WorkerCounters> wc_;
  stage::TxStage tx_;
  uint32_t last_arp_ms_ = 0, last_relay_ms_ = 0;
  uint8_t arp_buf_[32][64];
  uint16_t ip_id_ = 0;  // outer IPv4 identification
  std::unique_ptr<PuntShare> punt_share_;  // the punt port this worker polls (at most one); 6 KiB, kept off the hot members
  uint32_t punt_ms_ = 0, punt_published_ = 0;
  uint64_t punt_dropped_ = 0;
  // Every Packet the tx stage points to, and the encapsulation scratch
  // (encapsulated frames and ICMP replies built during one burst, sent at
  // flush; when all are in use the tx stage is flushed early).
  BurstArena arena_;
};

class Dataplane {
 public:
  struct Options {
    std::vector<int> cores{};        // one worker per entry; -1 = unpinned
    MacTable::Options mac{};
    size_t handoff_slots = 256;      // at most, per worker pair (power of two; HandoffMesh)
    size_t handoff_budget = HandoffMesh::kDefaultBudget;  // bytes for all handoff rings and buffers
    // Idle policy. kPoll: spin forever (lowest latency, burns the core).
    // kBlock: after idle_after_us without a frame, block in epoll on the
    // ports' wait fds until one has traffic (no CPU while idle; the first
    // frame after a quiet spell pays one wake-up).
    enum class Idle { kPoll, kBlock } idle = Idle::kPoll;
    uint32_t idle_after_us = 200;
    int block_timeout_ms = 100;      // safety net for a blocked worker (-1: none; tests)
  };
  explicit Dataplane(Options opt);
  ~Dataplane();

  void start();  // spawns pinned worker threads
  void stop();   // joins them (idempotent)
  bool running() const { return running_.load(std::memory_order_relaxed); }  // relaxed: a flag polled each loop

  // Publish a new snapshot; the previous one is retired through QSBR.
  void publish(std::unique_ptr<Snapshot> s);
  // Delete `p` once no worker can be using it (after the next grace period).
  void retire_port(std::unique_ptr<Port> p);
  // Control-thread housekeeping: reclaim retired state, age the MAC table.
  void maintain(uint32_t now_ms, uint32_t aging_ms);
  // Block until every worker has passed a quiescent point (control thread
  // only); sleeps rather than spins while a worker is slow to get there
  // (Qsbr::synchronize). Then runs what defer() queued and is now safe.
  void synchronize();
  // Run fn once no worker can still hold references taken before now
  // (control thread): from the next maintain() or synchronize() after the
  // grace period, without waiting for it here.
  void defer(std::function<void()> fn) { qsbr_.retire(std::move(fn)); }
  // Have every worker run fn once, on its own thread, at its next loop
  // iteration (e.g. register with DPDK's EAL once that is up).
  void set_thread_hook(void (*fn)()) { thread_hook_.store(fn, std::memory_order_release); }  // release: fn's setup is visible

  const Snapshot& snapshot() const { return *snap_.load(std::memory_order_acquire); }
  MacTable& macs() { return macs_; }
  // Routing/NAT state (control thread, before start()): an uplink segment and the conntrack table.
  void enable_l3(ConnTrack::Options ct, uint32_t segment, uint8_t prefix_len);
  ConnTrack* conntrack() { return ct_.get(); }
  ArpCache* arp() { return arp_.get(); }
  const DnsRelay* dns_relay() const { return relay_.get(); }
  unsigned workers() const { return unsigned(workers_.size()); }
  Worker& worker(unsigned i) { return *workers_[i]; }

  // Sum of per-worker counters for one port / all workers (control thread).
  struct PortTotals {
    uint64_t rx_packets = 0, rx_bytes = 0, tx_packets = 0, tx_bytes = 0, flood_packets = 0;
    std::array<uint64_t, kDropReasons> drops{};
  };
  PortTotals port_totals(uint16_t port) const;

 private:
  friend class Worker;
  Options opt_;
  MacTable macs_;
  std::unique_ptr<ConnTrack> ct_;
  std::unique_ptr<ArpCache> arp_;
  std::unique_ptr<DnsRelay> relay_;  // with L3: the DNS responder's queries upstream (dns_relay.h)
  Qsbr qsbr_;
  HandoffMesh mesh_;
  // release on store / acquire on load: a worker that sees the pointer sees the whole snapshot.
  std::atomic<const Snapshot*> snap_{nullptr};
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::thread> threads_;
  std::atomic<bool> running_{false};
  std::atomic<void (*)()> thread_hook_{nullptr};
  // Idle blocking: one epoll set per worker, kept in step with the snapshot
  // by publish() (control thread); wake_fd_ (eventfd) is in every set so
  // stop() can wake blocked workers. A closed port fd leaves the sets by itself.
  std::vector<int> epfd_;
  std::vector<std::vector<int>> registered_;
  int wake_fd_ = -1;
  void sync_wait_sets(Snapshot& s);
};

}  // namespace dpsw
