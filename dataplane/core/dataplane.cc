#include "dataplane/core/dataplane.h"

#include <pthread.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>

#include "dataplane/core/checksum.h"
#include "dataplane/core/clock.h"
#include "dataplane/fast/fast_port.h"
#include "dataplane/core/graph.h"
#include "dataplane/overlay/stage_vxlan_input.h"

namespace dpsw {

Worker::Worker(Dataplane& dp, unsigned id)
    : dp_(dp), id_(id), wc_(std::make_unique<WorkerCounters>()), tx_(id, &dp.mesh_, wc_.get()),
      punt_share_(std::make_unique<PuntShare>()) {}

void Worker::process(const Snapshot& s, uint16_t in_port, Burst& b, uint32_t now) {
  Scope scope(arena_, tx_, s);  // flushes the tx stage when this burst is done
  Packet* pkts = b.data();
  const uint16_t n = b.size();
  PortCounters& pc = wc_->ports[in_port];
  uint64_t bytes = 0;
  for (uint16_t i = 0; i < n; i++) {
    __builtin_prefetch(pkts[i].data);
    pkts[i].in_port = in_port;
    bytes += pkts[i].len;
  }
  pc.rx_packets.add(n);
  pc.rx_bytes.add(bytes);
  if (in_port == s.l3.uplink_port && !s.tunnels.empty()) {
    process_uplink(s, scope, in_port, b, now);
  } else if (s.ports[in_port].punt) {
    process_punt(s, scope, in_port, b, now);
  } else {
    forward(s, in_port, b, 0, n, now);
  }
}

// The uplink of a host with overlay networks: VXLAN to us is decapsulated
// and forwarded as received on its tunnel port, one run per tunnel.
void Worker::process_uplink(const Snapshot& s, Scope& scope, uint16_t in_port, const Burst& pkts, uint32_t now) {
  PortCounters& pc = wc_->ports[in_port];
  Burst& rest = scope.take();
  Burst& inner = scope.take();
  uint16_t tport[kBurst];
  uint16_t ninner = 0;
  const uint16_t n = pkts.size();
  for (uint16_t i = 0; i < n; i++) {
    Drop d = Drop::kCount;
    switch (stage::vxlan_input(pkts[i], s, &inner[ninner], &tport[ninner], &d)) {
      case stage::VxlanInNext::kNotVxlan:
        rest.push(pkts[i]);
        break;
      case stage::VxlanInNext::kTunnel:
        csum::complete_partial(inner[ninner].data, inner[ninner].len);  // the peer's kernel may leave it to offload
        ninner++;
        break;
      case stage::VxlanInNext::kDrop:
        pc.drops[size_t(d)].add(1);
        break;
    }
  }
  if (rest.size()) forward(s, in_port, rest, 0, rest.size(), now);
  inner.resize(ninner);
  forward_by_port(s, scope, inner, tport, now);
}

void Worker::forward_by_port(const Snapshot& s, Scope& scope, const Burst& pkts, const uint16_t* ports, uint32_t now) {
  // One run per port, in order of first appearance, each port's frames in
  // arrival order (a burst usually holds one or two ports).
  // The runs lie one after another in `run` (the scope's: the tx stage
  // points into every one of them until the scope's flush).
  Burst& run = scope.take();
  const uint16_t n = pkts.size();
  bool taken[kBurst] = {};
  uint16_t k = 0;
  for (uint16_t start = 0; start < n; start++) {
    if (taken[start]) continue;
    const uint16_t t = ports[start], first = k;
    uint64_t bytes = 0;
    for (uint16_t j = start; j < n; j++) {
      if (taken[j] || ports[j] != t) continue;
      taken[j] = true;
      run[k] = pkts[j];
      run[k].in_port = t;
      bytes += run[k++].len;
    }
    PortCounters& tc = wc_->ports[t];
    tc.rx_packets.add(k - first);
    tc.rx_bytes.add(bytes);
    forward(s, t, run, first, uint16_t(k - first), now);
  }
  run.resize(k);
}

// Frames the fast tier punted: [dst, src, 0x8100, VID = port + 1, ...]. The
// tag goes (the MAC addresses move 4 bytes up, in the port's own buffer) and
// each frame runs through the pipeline as received on its fast-tier port.
void Worker::process_punt(const Snapshot& s, Scope& scope, uint16_t in_port, const Burst& pkts, uint32_t now) {
  PortCounters& pc = wc_->ports[in_port];
  // A copy: the caller releases `pkts` as received.
  Burst& fp = scope.take();
  uint16_t port[kBurst];
  uint16_t k = 0;
  const uint16_t n = pkts.size();
  for (uint16_t i = 0; i < n; i++) {
    Packet p = pkts[i];
    const uint16_t id = p.len >= kEthHdrLen + 4 && p.data[12] == 0x81 && p.data[13] == 0x00
                            ? punt_port(uint16_t((p.data[14] & 0x0f) << 8 | p.data[15]))
                            : kInvalidPort;
    if (id >= s.ports.size() || !s.ports[id].fast || !s.ports[id].port) {
      pc.drops[size_t(Drop::kPuntTag)].add(1);
      continue;
    }
    std::memmove(p.data + 4, p.data, 12);
    p.data += 4;
    p.len -= 4;
    punt_share_->frame(id);
    if (id == s.l3.uplink_port && !s.tunnels.empty()) {
      // A punted (veth) uplink's frames: VXLAN to us is decapsulated here,
      // as process_uplink() does, and runs as received on its tunnel port.
      Drop d = Drop::kCount;
      Packet inner;
      uint16_t tport = 0;
      const stage::VxlanInNext next = stage::vxlan_input(p, s, &inner, &tport, &d);
      if (next != stage::VxlanInNext::kNotVxlan) {
        PortCounters& uc = wc_->ports[id];  // the uplink received it (forward_by_port counts the rest)
        uc.rx_packets.add(1);
        uc.rx_bytes.add(p.len);
        if (next == stage::VxlanInNext::kDrop) {
          uc.drops[size_t(d)].add(1);
          continue;
        }
        csum::complete_partial(inner.data, inner.len);  // the peer's kernel may leave it to offload
        port[k++] = tport;
        fp.push(inner);
        continue;
      }
    }
    port[k++] = id;
    fp.push(p);
  }
  forward_by_port(s, scope, fp, port, now);
}

void Worker::forward(const Snapshot& s, uint16_t in_port, Burst& b, uint16_t first, uint16_t n, uint32_t now) {
  PortCounters& pc = wc_->ports[in_port];
  const PortEntry* in = s.port(in_port);
  if (!in || in->bd >= s.bds.size()) {
    pc.drops[size_t(Drop::kNoNetwork)].add(n);
    return;
  }
  graph::Lanes lane;
  graph::Ctx c(s, tx_, *wc_, dp_.macs_, dp_.ct_.get(), dp_.arp_.get(), dp_.relay_.get(), arena_, ip_id_, id_, now, in_port, *in,
               s.bds[in->bd], pc, b, first, n, lane);
  graph::run(c);
  pc.flood_packets.add(c.flooded);
}

unsigned Worker::drain_handoff(const Snapshot& s) {
  unsigned moved = 0;
  for (unsigned from = 0; from < dp_.mesh_.workers(); from++) {
    HandoffRing* r = dp_.mesh_.ring(from, id_);
    if (!r) continue;
    size_t k = std::min<size_t>(r->readable(), kBurst);
    if (!k) continue;
    {
      Scope scope(arena_, tx_, s);  // flushes before the pop below
      Burst& pkts = scope.take();
      for (size_t i = 0; i < k; i++) {
        const HandoffDesc& d = r->peek(i);
        Packet& p = pkts[uint16_t(i)];
        p.data = dp_.mesh_.data(from, d);  // the producer's buffer, ours until popped
        p.len = d.len;
        p.in_port = d.dst_port;  // drops are charged to the destination
        p.mbuf = nullptr;        // the buffer is a copy
        tx_.enqueue(s, d.dst_port, pkts, uint16_t(i));
      }
      pkts.resize(uint16_t(k));
    }
    r->pop(k);  // the producer takes the buffers back from here
    moved += unsigned(k);
  }
  return moved;
}

unsigned Worker::poll_once() {
  // acquire: pairs with publish(); everything in the snapshot is visible.
  const Snapshot* s = dp_.snap_.load(std::memory_order_acquire);
  unsigned moved = 0;
  if (s && id_ < s->rx_ports.size()) {
    uint32_t now = now_ms();
    Burst& pkts = arena_.rx();
    for (uint16_t id : s->rx_ports[id_]) {
      const PortEntry& pe = s->ports[id];
      Port* port = pe.port;
      uint16_t n = port->rx_burst(pkts.data(), kBurst);
      if (n) {
        pkts.resize(n);
        process(*s, id, pkts, now);  // transmits before it returns
        port->release(pkts.data(), n);
        moved += n;
      }
      if (pe.punt_share) punt_fairness(pe, n, now);
      port->maintain();
    }
    if (dp_.mesh_.workers() > 1) moved += drain_handoff(*s);
    if (s->l3.enabled && dp_.arp_ && s->l3.uplink_port < s->ports.size() && s->ports[s->l3.uplink_port].owner == id_ &&
        now - last_arp_ms_ >= 100) {
      last_arp_ms_ = now;
      send_arp_requests(*s, now);
    }
    if (dp_.relay_ && s->l3.enabled && now - last_relay_ms_ >= 50) {
      last_relay_ms_ = now;
      dns_relay_tick(*s, now);
    }
  }
  dp_.qsbr_.quiescent(id_);
  return moved;
}

void Worker::punt_fairness(const PortEntry& pe, uint16_t received, uint32_t now) {
  if (received == kBurst) punt_share_->backlog(pe.port->rx_backlog());  // a shorter burst emptied the ring
  const uint32_t ms = now - punt_ms_;
  if (ms < PuntShare::kIntervalMs) return;
  punt_ms_ = now;
  if (punt_share_->saw_backlog()) punt_dropped_ = pe.port->rx_dropped();  // a syscall: only when it may have moved
  const uint32_t share = punt_share_->decide(ms, pe.port->rx_capacity(), punt_dropped_);
  if (share != punt_published_) {
    publish_punt_share(pe.punt_share, share);
    punt_published_ = share;
  }
}

void Worker::dns_relay_tick(const Snapshot& s, uint32_t now) {
  using graph::Dns;
  Scope scope(arena_, tx_, s);  // sends what it writes when it ends
  WorkerCounters::Dns& dc = wc_->dns;
  dp_.relay_->expire(id_, now, [&](unsigned slot, const DnsRelay::Asker& k, const uint8_t* query, uint32_t len, unsigned tries) {
    dc.upstream_timeouts.add(1);
    if (tries) {
      if (dp_.arp_) Dns::send_upstream(s, tx_, arena_, *dp_.arp_, slot, k, query, len, tries, nullptr);
      return;
    }
    dc.servfail.add(1);  // every try timed out
    DnsRelay::Asker asker = k;  // (its rest moves on as the queries after it are answered)
    Dns::servfail(s, tx_, *wc_, arena_, dp_.arp_.get(), dp_.relay_.get(), id_, now, asker, query, len);
  });
}

void Worker::send_arp_requests(const Snapshot& s, uint32_t now) {
  static_assert(sizeof arp_buf_ / sizeof arp_buf_[0] <= kBurst);
  Scope scope(arena_, tx_, s);  // sends the requests when it ends
  Burst& pkts = scope.take();
  uint16_t n = 0;
  dp_.arp_->tick(now);
  dp_.arp_->for_each_wanted([&](uint32_t ip) {
    if (n == 32) return;
    arp_request(arp_buf_[n], s.l3.uplink_mac, s.l3.uplink_ip, ip);
    Packet& p = pkts[n];
    p.data = arp_buf_[n];
    p.len = 60;
    p.in_port = s.l3.uplink_port;
    p.mbuf = nullptr;
    tx_.enqueue(s, s.l3.uplink_port, pkts, n);
    n++;
  });
  pkts.resize(n);
}

void Worker::run() {
  using clock = std::chrono::steady_clock;
  const bool may_block = dp_.opt_.idle == Dataplane::Options::Idle::kBlock;
  const auto block_after = std::chrono::microseconds(dp_.opt_.idle_after_us);
  dp_.qsbr_.online(id_);
  auto last_frame = clock::now();
  void (*ran_hook)() = nullptr;
  uint64_t t0 = rdtsc();
  while (dp_.running()) {
    // acquire: pairs with set_thread_hook(); one load per loop, a call only once.
    if (auto* hook = dp_.thread_hook_.load(std::memory_order_acquire); hook != ran_hook) {
      hook();
      ran_hook = hook;
    }
    unsigned moved = poll_once();
    uint64_t t1 = rdtsc();
    wc_->loops.add(1);
    if (moved) {
      wc_->busy_loops.add(1);
      wc_->busy_cycles.add(t1 - t0);
      if (may_block) last_frame = clock::now();
    } else {
      wc_->idle_cycles.add(t1 - t0);
      if (may_block && clock::now() - last_frame > block_after && block()) {
        last_frame = clock::now();
        t1 = rdtsc();  // time blocked is neither busy nor polling
      }
    }
    t0 = t1;
  }
  dp_.qsbr_.offline(id_);
}

bool Worker::block() {
  // acquire: pairs with publish(); can_block was computed with the snapshot.
  const Snapshot* s = dp_.snap_.load(std::memory_order_acquire);
  if (!s || id_ >= s->can_block.size() || !s->can_block[id_]) return false;
  if (!dp_.mesh_.prepare_sleep(id_)) return false;  // another worker just handed us frames
  // Offline while blocked: the control thread's grace periods do not wait
  // for us, and we hold no snapshot reference across the wait.
  wc_->sleeps.add(1);
  dp_.qsbr_.offline(id_);
  epoll_event ev[8];
  epoll_wait(dp_.epfd_[id_], ev, 8, dp_.opt_.block_timeout_ms);
  dp_.qsbr_.online(id_);
  dp_.mesh_.woke(id_);
  return true;
}

namespace {
MacTable::Options with_workers(MacTable::Options o, unsigned workers) {
  o.workers = workers;  // one count slot per worker (learn() gets the worker's id)
  return o;
}
}  // namespace

Dataplane::Dataplane(Options opt)
    : opt_(std::move(opt)),
      macs_(with_workers(opt_.mac, unsigned(std::max<size_t>(1, opt_.cores.size())))),
      qsbr_(unsigned(std::max<size_t>(1, opt_.cores.size()))),
      mesh_(unsigned(std::max<size_t>(1, opt_.cores.size())), opt_.handoff_slots, opt_.handoff_budget) {
  if (opt_.cores.empty()) opt_.cores.push_back(-1);
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  for (unsigned i = 0; i < opt_.cores.size(); i++) {
    workers_.push_back(std::make_unique<Worker>(*this, i));
    epfd_.push_back(epoll_create1(EPOLL_CLOEXEC));
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = wake_fd_;
    epoll_ctl(epfd_.back(), EPOLL_CTL_ADD, wake_fd_, &ev);
    ev.data.fd = mesh_.bell_fd(i);
    epoll_ctl(epfd_.back(), EPOLL_CTL_ADD, mesh_.bell_fd(i), &ev);
  }
  registered_.resize(workers_.size());
  publish(std::make_unique<Snapshot>());
}

Dataplane::~Dataplane() {
  stop();
  delete snap_.load(std::memory_order_relaxed);  // relaxed: no workers left
  qsbr_.reclaim();
  for (int fd : epfd_) close(fd);
  if (wake_fd_ >= 0) close(wake_fd_);
}

void Dataplane::sync_wait_sets(Snapshot& s) {
  s.can_block.assign(workers_.size(), 0);
  s.rx_ports.resize(workers_.size());
  for (unsigned w = 0; w < workers_.size(); w++) {
    std::vector<int> want;
    bool all = !s.rx_ports[w].empty();
    for (uint16_t id : s.rx_ports[w]) {
      int fd = s.ports[id].port ? s.ports[id].port->wait_fd() : -1;
      if (fd < 0) all = false;
      else want.push_back(fd);
    }
    s.can_block[w] = all;
    for (int fd : registered_[w])
      if (std::find(want.begin(), want.end(), fd) == want.end()) epoll_ctl(epfd_[w], EPOLL_CTL_DEL, fd, nullptr);
    for (int fd : want) {
      if (std::find(registered_[w].begin(), registered_[w].end(), fd) != registered_[w].end()) continue;
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.fd = fd;
      epoll_ctl(epfd_[w], EPOLL_CTL_ADD, fd, &ev);
    }
    registered_[w] = std::move(want);
  }
}

void Dataplane::start() {
  uint64_t v;
  if (read(wake_fd_, &v, sizeof v) < 0) {
  }  // clear a wake-up left by an earlier stop()
  running_.store(true, std::memory_order_relaxed);  // relaxed: thread creation orders it
  for (unsigned i = 0; i < workers_.size(); i++) {
    threads_.emplace_back([this, i] { workers_[i]->run(); });
    if (opt_.cores[i] >= 0) {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(opt_.cores[i], &set);
      pthread_setaffinity_np(threads_.back().native_handle(), sizeof set, &set);
    }
    pthread_setname_np(threads_.back().native_handle(), ("dpsw-w" + std::to_string(i)).c_str());
  }
}

void Dataplane::stop() {
  running_.store(false, std::memory_order_relaxed);  // relaxed: join() below synchronises
  uint64_t one = 1;
  if (wake_fd_ >= 0 && write(wake_fd_, &one, sizeof one) < 0) {
  }  // wakes workers blocked in epoll; they then see running_ == false
  for (auto& t : threads_) t.join();
  threads_.clear();
}

void Dataplane::enable_l3(ConnTrack::Options ct, uint32_t segment, uint8_t prefix_len) {
  ct.workers = unsigned(workers_.size());
  ct.port_hi = std::min<uint16_t>(ct.port_hi, DnsRelay::kPortLo - 1);  // the DNS relay's source ports are its own
  ct_ = std::make_unique<ConnTrack>(ct);
  arp_ = std::make_unique<ArpCache>(segment, prefix_len);
  relay_ = std::make_unique<DnsRelay>(unsigned(workers_.size()));
}

void Dataplane::publish(std::unique_ptr<Snapshot> s) {
  sync_wait_sets(*s);
  for (auto& b : s->bds)
    b.has_tunnels = std::any_of(b.ports.begin(), b.ports.end(), [&](uint16_t id) { return id < s->ports.size() && s->ports[id].vtep; });
  // release: the snapshot's contents are visible to a worker that loads the pointer.
  const Snapshot* old = snap_.exchange(s.release(), std::memory_order_acq_rel);
  if (old) qsbr_.retire([old] { delete old; });
}

void Dataplane::retire_port(std::unique_ptr<Port> p) {
  Port* raw = p.release();
  qsbr_.retire([raw] { delete raw; });
}

void Dataplane::maintain(uint32_t now, uint32_t aging_ms) {
  qsbr_.reclaim();
  macs_.age(now, aging_ms);
}

void Dataplane::synchronize() {
  if (running()) qsbr_.synchronize();
  qsbr_.reclaim();
}

Dataplane::PortTotals Dataplane::port_totals(uint16_t port) const {
  PortTotals t;
  for (auto& w : workers_) {
    const PortCounters& c = w->counters().ports[port];
    t.rx_packets += c.rx_packets.get();
    t.rx_bytes += c.rx_bytes.get();
    t.tx_packets += c.tx_packets.get();
    t.tx_bytes += c.tx_bytes.get();
    t.flood_packets += c.flood_packets.get();
    for (size_t d = 0; d < kDropReasons; d++) t.drops[d] += c.drops[d].get();
  }
  return t;
}

}  // namespace dpsw
