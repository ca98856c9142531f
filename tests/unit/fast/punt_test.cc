// The poll-mode side of the fast tier: frames the kernel tier punts arrive on
// one port tagged with their fast-tier port (VID = port + 1); dpsw strips the
// tag, runs them as received on that port, and sends to fast-tier ports
// through the same punt port with their tag. Over in-memory ports.
#include <gtest/gtest.h>

#include "dataplane/core/dataplane.h"
#include "dataplane/fast/fast_port.h"
#include "dataplane/ports/mem_port.h"
#include "dataplane/fast/punt_share.h"

#include <chrono>
#include <thread>
#include "tests/fixtures/frames.h"

namespace dpsw {
namespace {

using test::eth_frame;
using test::kBcast;
using test::station;

std::vector<uint8_t> tagged(std::vector<uint8_t> f, uint16_t vid) {
  const uint8_t tag[4] = {0x81, 0x00, uint8_t(vid >> 8), uint8_t(vid)};
  f.insert(f.begin() + 12, tag, tag + 4);
  return f;
}

// Port 0: the punt port (a MemPort). Ports 1, 2: fast-tier endpoints of
// network 0; port 3: an ordinary port of network 0; port 4: a fast-tier
// endpoint of network 1.
struct PuntRig {
  std::unique_ptr<Dataplane> dp;
  std::unique_ptr<MemPort> punt, plain;
  std::vector<std::unique_ptr<FastPort>> fast;

  explicit PuntRig(uint32_t* share = nullptr) {
    Dataplane::Options o;
    o.cores.assign(1, -1);
    o.mac.size = 1024;
    dp = std::make_unique<Dataplane>(o);
    punt = std::make_unique<MemPort>("punt");
    plain = std::make_unique<MemPort>("plain");
    auto s = std::make_unique<Snapshot>();
    s->bds.resize(2);
    s->rx_ports.resize(1);
    s->ports.resize(5);
    s->ports[0] = PortEntry{.port = punt.get(), .bd = kInvalidPort, .max_frame = 1518, .punt = true, .punt_share = share};
    s->rx_ports[0] = {0, 3};
    for (uint16_t id : {1, 2, 4}) {
      fast.push_back(std::make_unique<FastPort>("f" + std::to_string(id), punt.get(), id));
      s->ports[id] = PortEntry{.port = fast.back().get(), .bd = uint16_t(id == 4 ? 1 : 0), .fast = true};
      s->bds[s->ports[id].bd].ports.push_back(id);
    }
    s->ports[3] = PortEntry{.port = plain.get(), .bd = 0};
    s->bds[0].ports.push_back(3);
    dp->publish(std::move(s));
  }
  void poll() {
    while (dp->worker(0).poll_once()) {
    }
  }
  Dataplane::PortTotals c(uint16_t p) { return dp->port_totals(p); }
};

TEST(Punt, BroadcastFromFastPortFloodsTaggedToFastPortsAndPlainToOthers) {
  PuntRig r;
  auto f = eth_frame(kBcast, station(1));
  ASSERT_TRUE(r.punt->inject(tagged(f, punt_vid(1))));
  r.poll();
  auto out = r.punt->take_tx();
  ASSERT_EQ(out.size(), 1u);                 // to port 2 only: not back to 1, not to 4 (network 1)
  EXPECT_EQ(out[0], tagged(f, punt_vid(2)));  // the original bytes, tagged for port 2
  auto p = r.plain->take_tx();
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0], f);  // untagged on an ordinary port
  EXPECT_EQ(r.c(1).rx_packets, 1u);
  EXPECT_EQ(r.c(1).rx_bytes, f.size());
  EXPECT_EQ(r.c(2).tx_packets, 1u);
  EXPECT_EQ(r.c(4).tx_packets, 0u);
  EXPECT_EQ(r.c(0).rx_packets, 1u);  // the punt port counts what it carried
}

TEST(Punt, LearnsBehindTheFastPortAndSendsUnicastBack) {
  PuntRig r;
  r.punt->inject(tagged(eth_frame(kBcast, station(1)), punt_vid(1)));
  r.poll();
  r.punt->take_tx();
  r.plain->take_tx();
  EXPECT_EQ(r.dp->macs().lookup(0, station(1)), 1);
  auto f = eth_frame(station(1), station(3), 0x0800, 1000);
  r.plain->inject(f);
  r.poll();
  auto out = r.punt->take_tx();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0], tagged(f, punt_vid(1)));
  EXPECT_EQ(r.c(1).tx_packets, 1u);
  EXPECT_EQ(r.c(1).tx_bytes, f.size());
}

TEST(Punt, MixedBurstKeepsEachPortsFramesInOrder) {
  PuntRig r;
  // Known destination: the plain port's station.
  r.plain->inject(eth_frame(kBcast, station(3)));
  r.poll();
  r.punt->take_tx();
  for (int i = 0; i < 20; i++) {
    auto f = eth_frame(station(3), station(i % 2 ? 1 : 2), 0x0800, 64, uint8_t(i));
    r.punt->inject(tagged(f, punt_vid(i % 2 ? 1 : 2)));
  }
  r.poll();
  auto p = r.plain->take_tx();
  ASSERT_EQ(p.size(), 20u);
  std::vector<int> from1, from2;
  for (auto& f : p) (f[11] == 1 ? from1 : from2).push_back(f[15]);
  EXPECT_EQ(from1.size(), 10u);
  EXPECT_EQ(from2.size(), 10u);
  EXPECT_EQ(r.c(1).rx_packets, 10u);
  EXPECT_EQ(r.c(2).rx_packets, 10u);
  // Per source, fills (byte 15 = 15*7 + fill) increase in injection order.
  EXPECT_TRUE(std::is_sorted(from1.begin(), from1.end()));
  EXPECT_TRUE(std::is_sorted(from2.begin(), from2.end()));
}

TEST(Punt, FramesWithoutAFastPortTagAreDroppedAndCounted) {
  PuntRig r;
  auto f = eth_frame(kBcast, station(1));
  r.punt->inject(f);                            // untagged
  r.punt->inject(tagged(f, punt_vid(3)));       // the plain port's VID: not a fast-tier port
  r.punt->inject(tagged(f, punt_vid(900)));     // no such port
  r.punt->inject(std::vector<uint8_t>(15, 0));  // runt
  r.poll();
  EXPECT_EQ(r.punt->take_tx().size(), 0u);
  EXPECT_EQ(r.plain->take_tx().size(), 0u);
  EXPECT_EQ(r.c(0).drops[size_t(Drop::kPuntTag)], 4u);
  EXPECT_EQ(r.c(3).rx_packets, 0u);
}

TEST(Punt, NetworksStayIsolated) {
  PuntRig r;
  // Port 4 (network 1) sends to port 1's MAC after port 1 was learned in network 0.
  r.punt->inject(tagged(eth_frame(kBcast, station(1)), punt_vid(1)));
  r.poll();
  r.punt->take_tx();
  r.plain->take_tx();
  r.punt->inject(tagged(eth_frame(station(1), station(4)), punt_vid(4)));
  r.poll();
  // Unknown in network 1 (port 4 is alone there): flooded to nobody.
  EXPECT_EQ(r.punt->take_tx().size(), 0u);
  EXPECT_EQ(r.plain->take_tx().size(), 0u);
  EXPECT_EQ(r.c(1).tx_packets, 0u);
}

// Fair punting (issue 19, item 11): the share a worker publishes for the TC
// program, from what it sees of its punt port.
TEST(PuntShare, NoLimitWhileTheRingKeepsUp) {
  PuntShare ps;
  for (int i = 0; i < 5000; i++) ps.frame(1);
  ps.backlog(1000);  // below half the ring
  EXPECT_EQ(ps.decide(10, 2048, 0), 0u);
  EXPECT_EQ(ps.decide(10, 2048, 0), 0u);
}

TEST(PuntShare, CongestionSplitsWhatTheWorkerDrainedAmongActivePorts) {
  PuntShare ps;
  for (int i = 0; i < 5000; i++) ps.frame(1);  // the flooder
  for (int i = 0; i < 10; i++) ps.frame(2);    // the victim
  ps.backlog(1100);
  EXPECT_EQ(ps.decide(10, 2048, 0), 250u);  // 5010 frames in 10 ms, 2 ports
  ps.backlog(1500);                          // still congested: less
  EXPECT_EQ(ps.decide(10, 2048, 0), 188u);
  for (int i = 0; i < 1880; i++) ps.frame(1);  // at its share, ring fine: probe upwards
  EXPECT_EQ(ps.decide(10, 2048, 0), 188u + 188u / 8 + 1);
}

TEST(PuntShare, RingDropsCountAsCongestionAndTheShareHasAFloor) {
  PuntShare ps;
  ps.frame(1);
  EXPECT_EQ(ps.decide(10, 2048, 0), 0u);
  EXPECT_EQ(ps.decide(10, 2048, 5), PuntShare::kMinShare);  // frames lost, hardly any drained: the floor
  for (int i = 0; i < 50; i++) {
    ps.backlog(2048);
    EXPECT_GE(ps.decide(10, 2048, 5), PuntShare::kMinShare);
  }
}

TEST(PuntShare, LimitLiftedAfterACalmSecond) {
  PuntShare ps;
  for (int i = 0; i < 3000; i++) ps.frame(1);
  ps.backlog(2000);
  const uint32_t share = ps.decide(10, 2048, 0);
  ASSERT_GT(share, 0u);
  for (uint32_t i = 1; i < PuntShare::kCalmIntervals; i++) {
    ps.frame(2);  // light traffic, nobody near the share
    EXPECT_EQ(ps.decide(10, 2048, 0), share);
  }
  EXPECT_EQ(ps.decide(10, 2048, 0), 0u);
}

TEST(PuntShare, TimeAsleepCountsAsCalm) {
  PuntShare ps;
  for (int i = 0; i < 3000; i++) ps.frame(1);
  ps.backlog(2000);
  ASSERT_GT(ps.decide(10, 2048, 0), 0u);
  EXPECT_GT(ps.decide(100, 2048, 0), 0u);  // woke after 100 ms: ten calm intervals
  EXPECT_EQ(ps.decide(PuntShare::kIntervalMs * PuntShare::kCalmIntervals, 2048, 0), 0u);
}

TEST(Punt, WorkerPublishesAShareWhileItsPuntPortIsBackedUp) {
  uint32_t share = 0;
  PuntRig r(&share);
  auto f = tagged(eth_frame(kBcast, station(1)), punt_vid(1));
  for (int i = 0; i < 900; i++) ASSERT_TRUE(r.punt->inject(f));  // ring of 1024: far more than half waits
  r.dp->worker(0).poll_once();  // one burst; notes the backlog
  std::this_thread::sleep_for(std::chrono::milliseconds(PuntShare::kIntervalMs + 2));
  r.dp->worker(0).poll_once();
  EXPECT_GE(read_punt_share(&share), PuntShare::kMinShare);
  r.poll();  // drain; then a calm second lifts the limit
  r.punt->take_tx();
  r.plain->take_tx();
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(PuntShare::kIntervalMs * (PuntShare::kCalmIntervals + 30));
  while (read_punt_share(&share) && std::chrono::steady_clock::now() < until) {
    r.dp->worker(0).poll_once();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(read_punt_share(&share), 0u);
}

}  // namespace
}  // namespace dpsw
