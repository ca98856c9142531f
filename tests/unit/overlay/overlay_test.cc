// Overlay networks in the pipeline: VXLAN tunnel ports over an in-memory
// uplink, driven by Worker::poll_once() from the test thread.
//   port 0: uplink (198.51.100.10), bd 0
//   ports 1, 2: local endpoints on overlay network bd 1 (VNI 42)
//   port 3: local endpoint on overlay network bd 2 (VNI 43)
//   port 4: tunnel bd 1 -> B (198.51.100.11), port 5: tunnel bd 1 -> C (.12)
//   port 6: tunnel bd 2 -> B, port 7: tunnel bd 1 -> D (.13, never answers ARP)
#include <gtest/gtest.h>

#include <algorithm>

#include "dataplane/core/dataplane.h"
#include "dataplane/ports/mem_port.h"
#include "dataplane/overlay/vxlan.h"
#include "tests/fixtures/frames.h"

namespace dpsw {
namespace {

using test::eth_frame;
using test::kBcast;
using test::station;

constexpr uint32_t kA = 0xc633640a, kB = 0xc633640b, kC = 0xc633640c, kD = 0xc633640d;
constexpr Mac kUpMac = 0x02aa00000001ULL, kBMac = 0x02bb00000001ULL, kCMac = 0x02cc00000001ULL;
constexpr uint32_t kGw = 0x0a0a0001, kE1 = 0x0a0a000b;  // 10.10.0.1 (bd 1's gateway), 10.10.0.11 (port 1's)
constexpr Mac kRouter = 0x02dd00000001ULL;

struct OverlayRig {
  std::unique_ptr<Dataplane> dp;
  std::vector<std::unique_ptr<MemPort>> ports;

  // gateway: bd 1 has this host's anycast gateway kGw at kRouter (the
  // bridge module's overlay contribution), its local ports are endpoints.
  explicit OverlayRig(uint32_t uplink_mtu = 1500, uint32_t overlay_mtu = 1450, bool gateway = false) {
    Dataplane::Options o;
    o.cores.assign(1, -1);
    o.mac.size = 1024;
    dp = std::make_unique<Dataplane>(o);
    dp->enable_l3(ConnTrack::Options{}, 0xc6336400, 24);
    dp->arp()->learn(kB, kBMac);
    dp->arp()->learn(kC, kCMac);
    auto s = std::make_unique<Snapshot>();
    s->bds.resize(3);
    s->rx_ports.resize(1);
    auto add = [&](uint16_t bd, uint32_t mtu, uint32_t vtep = 0, uint32_t vni = 0) {
      PortEntry pe;
      pe.bd = bd;
      pe.max_frame = mtu + 14;
      pe.vtep = vtep;
      pe.vni = vni;
      uint16_t id = uint16_t(s->ports.size());
      if (!vtep) {
        ports.push_back(std::make_unique<MemPort>("p" + std::to_string(id)));
        pe.port = ports.back().get();
        s->rx_ports[0].push_back(id);
      } else {
        ports.push_back(nullptr);
        s->tunnels.push_back({TunnelKey::make(vni, vtep), id});
      }
      s->ports.push_back(pe);
      s->bds[bd].ports.push_back(id);
    };
    add(0, uplink_mtu);
    add(1, overlay_mtu), add(1, overlay_mtu), add(2, overlay_mtu);
    add(1, overlay_mtu, kB, 42), add(1, overlay_mtu, kC, 42), add(2, overlay_mtu, kB, 43), add(1, overlay_mtu, kD, 42);
    std::sort(s->tunnels.begin(), s->tunnels.end(), [](auto& a, auto& b) { return a.key < b.key; });
    s->bds[0].local_ip = kA;
    s->bds[0].router_mac = kUpMac;
    if (gateway) {
      s->bds[1].local_ip = kGw;
      s->bds[1].router_mac = kRouter;
      s->bds[1].local_only = true;
      s->bds[1].subnet = kGw - 1, s->bds[1].mask = 0xffffff00;
      s->ports[1].endpoint = s->ports[2].endpoint = true;
    }
    s->l3.enabled = true;
    s->l3.uplink_port = 0;
    s->l3.uplink_ip = kA;
    s->l3.uplink_mac = kUpMac;
    dp->publish(std::move(s));
  }
  void poll() {
    while (dp->worker(0).poll_once()) {
    }
  }
  std::vector<std::vector<uint8_t>> tx(size_t p) { return ports[p]->take_tx(); }
  Dataplane::PortTotals c(uint16_t p) { return dp->port_totals(p); }
  // A VXLAN frame from `from` (MAC, address) to us carrying `inner`.
  static std::vector<uint8_t> tunnelled(Mac from_mac, uint32_t from, uint32_t vni, const std::vector<uint8_t>& inner) {
    std::vector<uint8_t> out(inner.size() + kVxlanOverhead);
    VxlanEncap e{from_mac, kUpMac, from, kA, vni, 64, false};
    vxlan_encap(e, inner.data(), uint32_t(inner.size()), out.data());
    return out;
  }
};

std::vector<uint8_t> inner_of(const std::vector<uint8_t>& outer, VxlanInfo* vi) {
  EXPECT_EQ(vxlan_decap(outer.data(), uint32_t(outer.size()), vi), VxlanDecap::kOk);
  return std::vector<uint8_t>(vi->inner, vi->inner + vi->inner_len);
}

// The uplink also carries our ARP requests for unresolved VTEPs (D).
std::vector<std::vector<uint8_t>> vxlan_only(std::vector<std::vector<uint8_t>> v) {
  std::erase_if(v, [](auto& f) { return load_be16(f.data() + 12) == kEtherTypeArp; });
  return v;
}

TEST(Overlay, BroadcastReachesLocalPortsAndEveryPeerOfItsNetworkOnly) {
  OverlayRig r;
  auto f = eth_frame(kBcast, station(1), 0x0806, 60);
  r.ports[1]->inject(f);
  r.poll();
  EXPECT_EQ(r.tx(2), std::vector<std::vector<uint8_t>>{f});
  EXPECT_TRUE(r.tx(3).empty()) << "other overlay network";
  auto up_all = r.tx(0);
  auto up = vxlan_only(up_all);
  ASSERT_EQ(up.size(), 2u) << "one copy per resolved peer of VNI 42 (B, C); D is being resolved";
  std::vector<uint32_t> dsts;
  for (auto& o : up) {
    VxlanInfo vi;
    EXPECT_EQ(inner_of(o, &vi), f);
    EXPECT_EQ(vi.vni, 42u);
    EXPECT_EQ(vi.src_ip, kA);
    EXPECT_EQ(mac_from_bytes(o.data() + 6), kUpMac);
    EXPECT_EQ(mac_from_bytes(o.data()), vi.dst_ip == kB ? kBMac : kCMac);
    EXPECT_EQ(csum::of(o.data() + 14, 20), 0);
    EXPECT_EQ(o[14 + 8], 64) << "TTL";
    EXPECT_EQ(o[14 + 6] & 0x40, 0) << "DF clear";
    dsts.push_back(vi.dst_ip);
  }
  std::sort(dsts.begin(), dsts.end());
  EXPECT_EQ(dsts, (std::vector<uint32_t>{kB, kC}));
  EXPECT_EQ(r.c(4).tx_packets, 1u);
  EXPECT_EQ(r.c(5).tx_packets, 1u);
  EXPECT_EQ(r.c(7).drops[size_t(Drop::kArpMiss)], 1u);
  // Meanwhile the uplink's worker asked for D (in the same polls).
  bool asked = false;
  for (auto& o : up_all) asked |= load_be16(o.data() + 12) == kEtherTypeArp && csum::load32(o.data() + 14 + 24) == kD;
  EXPECT_TRUE(asked) << "an ARP request for the unresolved VTEP";
}

TEST(Overlay, DecapsulatedFramesAreLearnedOnTheirTunnelAndNeverRelayed) {
  OverlayRig r;
  const Mac remote = station(0xb1);
  auto f = eth_frame(station(99), remote, 0x0800, 200);  // unknown unicast from a container behind B
  r.ports[0]->inject(OverlayRig::tunnelled(kBMac, kB, 42, f));
  r.poll();
  EXPECT_EQ(r.tx(1), std::vector<std::vector<uint8_t>>{f});
  EXPECT_EQ(r.tx(2), std::vector<std::vector<uint8_t>>{f});
  EXPECT_TRUE(r.tx(3).empty());
  EXPECT_TRUE(r.tx(0).empty()) << "split horizon: never back into a tunnel";
  EXPECT_EQ(r.dp->macs().lookup(1, remote), 4) << "learned on B's tunnel of network 1";
  EXPECT_EQ(r.dp->macs().lookup(2, remote), kInvalidPort);
  EXPECT_EQ(r.c(4).rx_packets, 1u);
  EXPECT_EQ(r.c(0).rx_packets, 1u);
  // A reply goes to B alone, unicast.
  auto back = eth_frame(remote, station(1), 0x0800, 300);
  r.ports[1]->inject(back);
  r.poll();
  auto up = r.tx(0);
  ASSERT_EQ(up.size(), 1u);
  VxlanInfo vi;
  EXPECT_EQ(inner_of(up[0], &vi), back);
  EXPECT_EQ(vi.dst_ip, kB);
  EXPECT_TRUE(r.tx(2).empty());
  // A frame from C for the MAC learned behind B is not relayed B-wards.
  r.ports[0]->inject(OverlayRig::tunnelled(kCMac, kC, 42, eth_frame(remote, station(0xc1), 0x0800, 100)));
  r.poll();
  EXPECT_TRUE(r.tx(0).empty());
  EXPECT_EQ(r.c(5).drops[size_t(Drop::kSplitHorizon)], 1u);
}

TEST(Overlay, VnisStayIsolated) {
  OverlayRig r;
  auto f = eth_frame(kBcast, station(0xb2), 0x0806, 60);
  r.ports[0]->inject(OverlayRig::tunnelled(kBMac, kB, 43, f));
  r.poll();
  EXPECT_EQ(r.tx(3), std::vector<std::vector<uint8_t>>{f});
  EXPECT_TRUE(r.tx(1).empty());
  EXPECT_TRUE(r.tx(2).empty());
  EXPECT_EQ(r.dp->macs().lookup(2, station(0xb2)), 6);
}

TEST(Overlay, UnknownVniStrangersAndBadHeadersAreCountedAndDropped) {
  OverlayRig r;
  auto f = eth_frame(kBcast, station(0xb3), 0x0806, 60);
  r.ports[0]->inject(OverlayRig::tunnelled(kBMac, kB, 44, f));     // no network has VNI 44
  r.ports[0]->inject(OverlayRig::tunnelled(kBMac, kD + 1, 42, f)); // not a peer of VNI 42
  auto bad = OverlayRig::tunnelled(kBMac, kB, 42, f);
  bad[14 + 20 + 8] = 0;  // I flag clear
  r.ports[0]->inject(bad);
  auto trunc = OverlayRig::tunnelled(kBMac, kB, 42, f);
  trunc.resize(14 + 20 + 8 + 8 + 10);  // IP and UDP lengths say more
  r.ports[0]->inject(trunc);
  auto frag = OverlayRig::tunnelled(kBMac, kB, 42, f);
  frag[14 + 6] |= 0x20;  // MF
  csum::store16(frag.data() + 14 + 10, 0);
  csum::store16(frag.data() + 14 + 10, csum::of(frag.data() + 14, 20));
  r.ports[0]->inject(frag);
  r.poll();
  for (int p = 0; p < 4; p++) EXPECT_TRUE(r.tx(p).empty()) << p;
  auto c = r.c(0);
  EXPECT_EQ(c.drops[size_t(Drop::kVxlanVni)], 1u);
  EXPECT_EQ(c.drops[size_t(Drop::kVxlanPeer)], 1u);
  EXPECT_EQ(c.drops[size_t(Drop::kVxlanBad)], 2u);
  EXPECT_EQ(c.drops[size_t(Drop::kVxlanFragment)], 1u);  // a reason of its own: outer fragments are not reassembled
  EXPECT_EQ(r.dp->macs().lookup(1, station(0xb3)), kInvalidPort);
}

// An overlay's gateway is each host's own (Docker's per-host overlay bridge
// holds it): ARP and echo answered for local endpoints, never asked of or
// announced by a tunnel, and nothing sent to it routed.
TEST(Overlay, TheGatewayIsAnsweredLocallyAndRoutesNothing) {
  OverlayRig r(1500, 1450, true);
  const Mac e1 = station(0xa1), remote = station(0xb1);
  r.ports[1]->inject(test::arp_request(e1, kE1, kGw));
  r.ports[1]->inject(test::icmp_echo(kRouter, e1, kE1, kGw, 32));
  r.ports[1]->inject(test::ipv4_frame(kRouter, e1, kE1, 0xcb007107, 17, 80));  // to the outside through it: not routed
  r.poll();
  auto back = r.tx(1);
  ASSERT_EQ(back.size(), 2u);
  EXPECT_EQ(load_be16(back[0].data() + 12), kEtherTypeArp);
  EXPECT_EQ(load_be16(back[0].data() + 14 + 6), 2) << "an ARP reply";
  EXPECT_EQ(mac_from_bytes(back[0].data() + 14 + 8), kRouter);
  EXPECT_EQ(csum::load32(back[0].data() + 14 + 14), kGw);
  EXPECT_EQ(back[1][14 + 20], 0) << "an echo reply";
  EXPECT_EQ(mac_from_bytes(back[1].data()), e1);
  EXPECT_TRUE(r.tx(2).empty()) << "the ARP request is answered, not flooded";
  EXPECT_TRUE(vxlan_only(r.tx(0)).empty()) << "nothing into the tunnels, nothing routed out";
  EXPECT_EQ(r.c(1).drops[size_t(Drop::kNoRoute)], 1u);
  // From a tunnel: another host's ARP for the gateway is not ours to answer (bridged as ever);
  // a tunnel announcing the gateway is refused; a frame to our router MAC is bogus.
  auto ask = test::arp_request(remote, 0x0a0a0015, kGw);
  r.ports[0]->inject(OverlayRig::tunnelled(kBMac, kB, 42, ask));
  r.poll();
  EXPECT_TRUE(vxlan_only(r.tx(0)).empty()) << "no answer into the tunnel";
  EXPECT_EQ(r.tx(1), std::vector<std::vector<uint8_t>>{ask});
  EXPECT_EQ(r.tx(2), std::vector<std::vector<uint8_t>>{ask});
  r.ports[0]->inject(OverlayRig::tunnelled(kBMac, kB, 42, test::arp_request(remote, kGw, kE1)));
  r.ports[0]->inject(OverlayRig::tunnelled(kBMac, kB, 42, test::icmp_echo(kRouter, remote, 0x0a0a0015, kGw, 8)));
  r.poll();
  EXPECT_TRUE(r.tx(1).empty());
  EXPECT_TRUE(r.tx(2).empty());
  EXPECT_TRUE(vxlan_only(r.tx(0)).empty());
  EXPECT_EQ(r.c(4).drops[size_t(Drop::kArpSpoof)], 1u);
  EXPECT_EQ(r.c(4).drops[size_t(Drop::kNoRoute)], 1u);
}

TEST(Overlay, InnerFrameBiggerThanItsNetworkIsDropped) {
  OverlayRig r;
  r.ports[0]->inject(OverlayRig::tunnelled(kBMac, kB, 42, eth_frame(kBcast, station(0xb4), 0x0800, 1464 + 14)));
  r.poll();
  EXPECT_TRUE(r.tx(1).empty());
  EXPECT_EQ(r.c(4).drops[size_t(Drop::kOversize)], 1u);
}

TEST(Overlay, TooBigForTheUnderlayGetsFragmentationNeededWhenDfIsSet) {
  OverlayRig r(1500, 1500);  // an overlay MTU the underlay cannot carry
  const Mac remote = station(0xb5);
  r.ports[0]->inject(OverlayRig::tunnelled(kBMac, kB, 42, eth_frame(station(1), remote, 0x0806, 60)));
  r.poll();
  r.tx(1);
  r.tx(2);
  ASSERT_EQ(r.dp->macs().lookup(1, remote), 4);
  auto big = test::icmp_echo(remote, station(1), 0x0a2a0001, 0x0a2a0002, 1500 - 28);
  big[14 + 6] = 0x40;  // DF
  csum::store16(big.data() + 14 + 10, 0);
  csum::store16(big.data() + 14 + 10, csum::of(big.data() + 14, 20));
  r.ports[1]->inject(big);
  auto small = test::icmp_echo(remote, station(1), 0x0a2a0001, 0x0a2a0002, 1400);
  r.ports[1]->inject(small);
  auto nodf = test::icmp_echo(remote, station(1), 0x0a2a0001, 0x0a2a0002, 1500 - 28);
  r.ports[1]->inject(nodf);
  r.poll();
  auto up = r.tx(0);
  ASSERT_EQ(up.size(), 1u) << "only the frame that fits";
  EXPECT_EQ(up[0].size(), small.size() + kVxlanOverhead);
  EXPECT_EQ(r.c(4).drops[size_t(Drop::kTooBig)], 2u);
  auto back = r.tx(1);
  ASSERT_EQ(back.size(), 1u) << "one ICMP, for the DF frame";
  const uint8_t* ip = back[0].data() + 14;
  EXPECT_EQ(mac_from_bytes(back[0].data()), station(1));
  EXPECT_EQ(mac_from_bytes(back[0].data() + 6), remote);
  EXPECT_EQ(csum::load32(ip + 12), 0x0a2a0002u) << "from the destination";
  EXPECT_EQ(csum::load32(ip + 16), 0x0a2a0001u);
  EXPECT_EQ(ip[20], 3);
  EXPECT_EQ(ip[21], 4);
  EXPECT_EQ(load_be16(ip + 26), 1450) << "the MTU that fits the tunnel";
  EXPECT_EQ(csum::of(ip, 20), 0);
  EXPECT_EQ(csum::of(ip + 20, load_be16(ip + 2) - 20u), 0);
  EXPECT_EQ(std::vector<uint8_t>(ip + 28, ip + 48), std::vector<uint8_t>(big.begin() + 14, big.begin() + 34)) << "quotes the header";
}

TEST(Overlay, OrdinaryUplinkTrafficIsUntouched) {
  OverlayRig r;
  r.ports[0]->inject(test::arp_request(kBMac, kB, kA));
  r.poll();
  auto out = r.tx(0);
  ASSERT_EQ(out.size(), 1u) << "ARP for the uplink address answered";
  EXPECT_EQ(load_be16(out[0].data() + 14 + 6), 2);
}

TEST(Overlay, ManyFloodsInOneBurstOutgrowTheEncapBuffersSafely) {
  OverlayRig r;
  std::vector<std::vector<uint8_t>> sent;
  for (int i = 0; i < 200; i++) {
    auto f = eth_frame(kBcast, station(1), 0x0806, 60 + i);
    sent.push_back(f);
    r.ports[1]->inject(f);
  }
  r.poll();
  auto up = vxlan_only(r.tx(0));
  ASSERT_EQ(up.size(), 400u);
  for (size_t i = 0; i < up.size(); i++) {
    VxlanInfo vi;
    EXPECT_EQ(inner_of(up[i], &vi), sent[i / 2]) << i;
  }
}

}  // namespace
}  // namespace dpsw
