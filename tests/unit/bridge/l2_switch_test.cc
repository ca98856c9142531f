// The L2 pipeline over in-memory ports, driven by Worker::poll_once()
// from the test thread (no worker threads: deterministic).
#include <gtest/gtest.h>

#include <random>

#include "dataplane/core/dataplane.h"
#include "dataplane/ports/mem_port.h"
#include "tests/fixtures/frames.h"

namespace dpsw {
namespace {

using test::eth_frame;
using test::kBcast;
using test::station;

// Ports 0..n-1; bd_of[i] is port i's network; owner[i] its worker.
struct Rig {
  std::unique_ptr<Dataplane> dp;
  std::vector<std::unique_ptr<MemPort>> ports;

  Rig(std::vector<uint16_t> bd_of, unsigned workers = 1, std::vector<uint16_t> owner = {}) {
    Dataplane::Options o;
    o.cores.assign(workers, -1);
    o.mac.size = 1024;
    dp = std::make_unique<Dataplane>(o);
    auto s = std::make_unique<Snapshot>();
    uint16_t nbd = 0;
    for (auto b : bd_of) nbd = std::max<uint16_t>(nbd, uint16_t(b + 1));
    s->bds.resize(nbd);
    s->rx_ports.resize(workers);
    for (size_t i = 0; i < bd_of.size(); i++) {
      ports.push_back(std::make_unique<MemPort>("p" + std::to_string(i)));
      PortEntry pe;
      pe.port = ports.back().get();
      pe.bd = bd_of[i];
      pe.owner = owner.empty() ? 0 : owner[i];
      pe.max_frame = 1514;
      s->ports.push_back(pe);
      s->bds[bd_of[i]].ports.push_back(uint16_t(i));
      s->rx_ports[pe.owner].push_back(uint16_t(i));
    }
    dp->publish(std::move(s));
  }
  // Run every worker until none moves a frame (handoffs included).
  void poll() {
    for (unsigned moved = 1; moved;) {
      moved = 0;
      for (unsigned w = 0; w < dp->workers(); w++) moved += dp->worker(w).poll_once();
    }
  }
  std::vector<std::vector<uint8_t>> tx(size_t p) { return ports[p]->take_tx(); }
  Dataplane::PortTotals c(uint16_t p) { return dp->port_totals(p); }
};

TEST(L2Switch, BroadcastFloodsWithinNetworkOnly) {
  Rig r({0, 0, 0, 1, 1});
  auto f = eth_frame(kBcast, station(1));
  ASSERT_TRUE(r.ports[0]->inject(f));
  r.poll();
  EXPECT_EQ(r.tx(0).size(), 0u);  // never back out of the input port
  auto t1 = r.tx(1), t2 = r.tx(2);
  ASSERT_EQ(t1.size(), 1u);
  ASSERT_EQ(t2.size(), 1u);
  EXPECT_EQ(t1[0], f);  // bytes intact
  EXPECT_EQ(r.tx(3).size(), 0u);  // other network: nothing
  EXPECT_EQ(r.tx(4).size(), 0u);
  EXPECT_EQ(r.c(0).rx_packets, 1u);
  EXPECT_EQ(r.c(0).flood_packets, 2u);
  EXPECT_EQ(r.c(3).tx_packets, 0u);
}

TEST(L2Switch, UnknownUnicastFloodsThenLearnedUnicastDoesNot) {
  Rig r({0, 0, 0});
  // 1 -> 2 unknown: flooded to ports 1 and 2.
  r.ports[0]->inject(eth_frame(station(2), station(1)));
  r.poll();
  EXPECT_EQ(r.tx(1).size(), 1u);
  EXPECT_EQ(r.tx(2).size(), 1u);
  // 2 answers from port 1: station 1 is known on port 0, so unicast.
  r.ports[1]->inject(eth_frame(station(1), station(2)));
  r.poll();
  EXPECT_EQ(r.tx(0).size(), 1u);
  EXPECT_EQ(r.tx(2).size(), 0u);
  // Now 1 -> 2 is unicast to port 1 only.
  r.ports[0]->inject(eth_frame(station(2), station(1)));
  r.poll();
  EXPECT_EQ(r.tx(1).size(), 1u);
  EXPECT_EQ(r.tx(2).size(), 0u);
  EXPECT_EQ(r.dp->macs().lookup(0, station(2)), 1);
}

TEST(L2Switch, SameMacInTwoNetworksNeverLeaks) {
  Rig r({0, 0, 1, 1});
  // Station 9 lives on port 1 (network 0). Teach it.
  r.ports[1]->inject(eth_frame(kBcast, station(9)));
  r.poll();
  r.tx(0);
  // A frame to station 9 from network 1 must not reach port 1.
  r.ports[2]->inject(eth_frame(station(9), station(3)));
  r.poll();
  EXPECT_EQ(r.tx(1).size(), 0u);
  EXPECT_EQ(r.tx(0).size(), 0u);
  EXPECT_EQ(r.tx(3).size(), 1u);  // flooded inside network 1 only
}

TEST(L2Switch, FrameToItsOwnPortIsFiltered) {
  Rig r({0, 0});
  r.ports[0]->inject(eth_frame(kBcast, station(1)));
  r.ports[0]->inject(eth_frame(kBcast, station(2)));
  r.poll();
  r.tx(1);
  r.ports[0]->inject(eth_frame(station(2), station(1)));  // both behind port 0
  r.poll();
  EXPECT_EQ(r.tx(1).size(), 0u);
  EXPECT_EQ(r.c(0).drops[size_t(Drop::kSamePort)], 1u);
}

TEST(L2Switch, TruncatedAndBadFramesAreCountedAndDropped) {
  Rig r({0, 0});
  for (size_t len = 0; len < 14; len++) {
    std::vector<uint8_t> f(len, 0x11);
    ASSERT_TRUE(r.ports[0]->inject(f));
  }
  r.ports[0]->inject(eth_frame(station(2), 0x010000000001ULL));  // multicast source
  r.ports[0]->inject(eth_frame(station(2), 0));                 // zero source
  r.ports[0]->inject(eth_frame(station(2), station(1), 0x0800, 1600));  // above MTU
  r.poll();
  EXPECT_EQ(r.tx(1).size(), 0u);
  auto c = r.c(0);
  EXPECT_EQ(c.rx_packets, 17u);
  EXPECT_EQ(c.drops[size_t(Drop::kRunt)], 14u);
  EXPECT_EQ(c.drops[size_t(Drop::kBadSrcMac)], 2u);
  EXPECT_EQ(c.drops[size_t(Drop::kOversize)], 1u);
  EXPECT_EQ(r.dp->macs().count(), 0u);  // nothing learned from garbage
}

TEST(L2Switch, RandomGarbageNeverCrashes) {
  Rig r({0, 0, 0});
  std::mt19937 rng(7);
  uint64_t sent = 0;
  for (int i = 0; i < 20000; i++) {
    std::vector<uint8_t> f(rng() % 1600);
    for (auto& b : f) b = uint8_t(rng());
    if (r.ports[0]->inject(f)) sent++;
    if (i % 256 == 0) {
      r.poll();
      r.tx(1);
      r.tx(2);
    }
  }
  r.poll();
  auto c = r.c(0);
  EXPECT_EQ(c.rx_packets, sent);
  uint64_t dropped = 0;
  for (auto d : c.drops) dropped += d;
  EXPECT_GT(dropped, 0u);
}

TEST(L2Switch, CrossWorkerFramesGoThroughHandoff) {
  // Ports 0,1 on worker 0; port 2 on worker 1; all in one network.
  Rig r({0, 0, 0}, 2, {0, 0, 1});
  auto f = eth_frame(kBcast, station(1), 0x0806, 60);
  r.ports[0]->inject(f);
  r.poll();
  auto t2 = r.tx(2);
  ASSERT_EQ(t2.size(), 1u);
  EXPECT_EQ(t2[0], f);
  EXPECT_EQ(r.tx(1).size(), 1u);
  // And back: worker 1 learns/forwards to a port owned by worker 0.
  r.ports[2]->inject(eth_frame(station(1), station(3)));
  r.poll();
  EXPECT_EQ(r.tx(0).size(), 1u);
  EXPECT_EQ(r.tx(1).size(), 0u);
  EXPECT_EQ(r.c(0).tx_packets, 1u);
}

TEST(L2Switch, PortRemovedFromSnapshotStopsReceivingFloods) {
  Rig r({0, 0, 0});
  auto s = std::make_unique<Snapshot>(r.dp->snapshot());
  s->bds[0].ports = {0, 1};
  s->ports[2].port = nullptr;
  s->rx_ports[0] = {0, 1};
  r.dp->publish(std::move(s));
  r.ports[0]->inject(eth_frame(kBcast, station(1)));
  r.poll();
  EXPECT_EQ(r.tx(1).size(), 1u);
  EXPECT_EQ(r.tx(2).size(), 0u);
}

TEST(L2Switch, JumboFramesPassIntactWhenTheNetworkAllowsThem) {
  Rig r({0, 0});
  auto s = std::make_unique<Snapshot>(r.dp->snapshot());
  for (auto& p : s->ports) p.max_frame = 9000 + 14;
  r.dp->publish(std::move(s));
  auto f = eth_frame(kBcast, station(1), 0x0800, 9014);
  r.ports[0]->inject(f);
  r.poll();
  auto t = r.tx(1);
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0], f);
}

}  // namespace
}  // namespace dpsw

namespace dpsw {
namespace {

using test::station;

constexpr uint32_t kGw = 0x0a000001, kHost = 0x0a000005;  // 10.0.0.1, 10.0.0.5
constexpr Mac kRouter = 0x02dd00000001ULL;

struct L3Rig : Rig {
  L3Rig() : Rig({0, 0}) {
    auto s = std::make_unique<Snapshot>(dp->snapshot());
    s->bds[0].local_ip = kGw;
    s->bds[0].router_mac = kRouter;
    dp->publish(std::move(s));
  }
};

TEST(L3Local, AnswersArpForTheGatewayAndDoesNotFloodIt) {
  L3Rig r;
  r.ports[0]->inject(test::arp_request(station(5), kHost, kGw));
  r.poll();
  EXPECT_EQ(r.tx(1).size(), 0u);  // not flooded: we are the target
  auto out = r.tx(0);
  ASSERT_EQ(out.size(), 1u);
  const uint8_t* f = out[0].data();
  EXPECT_EQ(mac_from_bytes(f), station(5));
  EXPECT_EQ(mac_from_bytes(f + 6), kRouter);
  const uint8_t* a = f + 14;
  EXPECT_EQ(load_be16(a + 6), 2);                     // reply
  EXPECT_EQ(mac_from_bytes(a + 8), kRouter);          // sender hw
  EXPECT_EQ(std::vector<uint8_t>(a + 14, a + 18), (std::vector<uint8_t>{10, 0, 0, 1}));
  EXPECT_EQ(mac_from_bytes(a + 18), station(5));      // target hw
  EXPECT_EQ(std::vector<uint8_t>(a + 24, a + 28), (std::vector<uint8_t>{10, 0, 0, 5}));
  EXPECT_EQ(r.dp->macs().lookup(0, station(5)), 0);   // the asker was still learned
}

TEST(L3Local, ArpForSomeoneElseIsFloodedAsUsual) {
  L3Rig r;
  r.ports[0]->inject(test::arp_request(station(5), kHost, 0x0a000009));
  r.poll();
  EXPECT_EQ(r.tx(1).size(), 1u);
  EXPECT_EQ(r.tx(0).size(), 0u);
}

TEST(L3Local, AnswersEchoWithCorrectChecksumsForOddAndEvenPayloads) {
  for (size_t payload : {0u, 1u, 56u, 57u, 1400u}) {
    L3Rig r;
    auto req = test::icmp_echo(kRouter, station(5), kHost, kGw, payload);
    r.ports[0]->inject(req);
    r.poll();
    auto out = r.tx(0);
    ASSERT_EQ(out.size(), 1u) << payload;
    const uint8_t* f = out[0].data();
    const uint8_t* ip = f + 14;
    const uint8_t* icmp = ip + 20;
    EXPECT_EQ(mac_from_bytes(f), station(5));
    EXPECT_EQ(mac_from_bytes(f + 6), kRouter);
    EXPECT_EQ(icmp[0], 0) << "type: echo reply";
    EXPECT_EQ(std::vector<uint8_t>(ip + 12, ip + 16), (std::vector<uint8_t>{10, 0, 0, 1}));
    EXPECT_EQ(std::vector<uint8_t>(ip + 16, ip + 20), (std::vector<uint8_t>{10, 0, 0, 5}));
    EXPECT_EQ(test::inet_csum(ip, 20), 0) << "IP checksum, payload " << payload;
    EXPECT_EQ(test::inet_csum(icmp, 8 + payload), 0) << "ICMP checksum, payload " << payload;
    EXPECT_EQ(std::vector<uint8_t>(icmp + 4, icmp + 8 + payload),
              std::vector<uint8_t>(req.begin() + 14 + 20 + 4, req.end()));  // id, seq, data echoed
    EXPECT_EQ(r.tx(1).size(), 0u);
  }
}

TEST(L3Local, RouterMacTrafficThatIsNotForUsIsDroppedAndCounted) {
  L3Rig r;
  r.ports[0]->inject(test::icmp_echo(kRouter, station(5), kHost, 0x08080808, 10));  // to be routed: not yet
  auto bad = test::icmp_echo(kRouter, station(5), kHost, kGw, 10);
  store_be16(bad.data() + 14 + 2, 5000);  // IP total length beyond the frame
  r.ports[0]->inject(bad);
  r.poll();
  EXPECT_EQ(r.tx(0).size() + r.tx(1).size(), 0u);
  EXPECT_EQ(r.c(0).drops[size_t(Drop::kNoRoute)], 1u);
  EXPECT_EQ(r.c(0).drops[size_t(Drop::kBadIp)], 1u);
}

TEST(L3Local, NetworksWithoutAnAddressForwardPurelyAtL2) {
  Rig r({0, 0});
  r.ports[0]->inject(test::arp_request(station(5), kHost, kGw));
  r.poll();
  EXPECT_EQ(r.tx(1).size(), 1u);
  EXPECT_EQ(r.tx(0).size(), 0u);
}

}  // namespace
}  // namespace dpsw
