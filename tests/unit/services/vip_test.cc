// A service's virtual IP in the packet path (issue 16), over in-memory
// ports: a client and two backends on one network. The first SYN to the VIP
// is DNATed to the backend Maglev picks, the client's address kept; the
// backend's replies (sent straight to the client's MAC) come back with the
// VIP restored; a backend's packets from its service port that belong to no
// VIP connection are bridged unchanged (kL2); ARP for the VIP is answered;
// a backend reaching its own VIP is masqueraded behind the gateway.
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "dataplane/core/checksum.h"
#include "dataplane/core/dataplane.h"
#include "dataplane/ports/mem_port.h"
#include "dataplane/services/maglev.h"
#include "tests/fixtures/frames.h"

namespace dpsw {
namespace {

using Bytes = std::vector<uint8_t>;
constexpr uint32_t kGw = 0x0a000001, kC = 0x0a000002, kB1 = 0x0a000003, kB2 = 0x0a000004, kVip = 0x0a0000c8;
constexpr uint32_t kHostIp = 0xc633640a;
constexpr Mac kRouter = 0x02dd00000001ULL, kUpMac = 0x02dd00000002ULL, kCMac = 0x020000000002ULL, kB1Mac = 0x020000000003ULL,
              kB2Mac = 0x020000000004ULL;
enum : uint16_t { kCPort = 0, kB1Port = 1, kB2Port = 2, kUpPort = 3 };

Bytes tcp(Mac dst, Mac src, uint32_t sip, uint32_t dip, uint16_t sport, uint16_t dport, uint8_t flags, uint32_t seq = 0,
          uint32_t ack = 0) {
  Bytes f = test::ipv4_frame(dst, src, sip, dip, 6, 14 + 20 + 20);
  uint8_t* t = f.data() + 34;
  csum::store16(t, sport);
  csum::store16(t + 2, dport);
  csum::store32(t + 4, seq);
  csum::store32(t + 8, ack);
  t[12] = 5 << 4, t[13] = flags;
  const uint32_t ps = (sip >> 16) + (sip & 0xffff) + (dip >> 16) + (dip & 0xffff) + 6 + 20;
  csum::store16(t + 16, csum::of(t, 20, ps));
  return f;
}
struct Seen {
  Mac dst, src;
  uint32_t sip, dip;
  uint16_t sport, dport;
};
Seen seen(const Bytes& f) {
  const uint8_t* ip = f.data() + 14;
  EXPECT_EQ(csum::of(ip, 20), 0);
  const uint32_t sip = csum::load32(ip + 12), dip = csum::load32(ip + 16);
  const uint32_t ps = (sip >> 16) + (sip & 0xffff) + (dip >> 16) + (dip & 0xffff) + 6 + 20;
  EXPECT_EQ(csum::of(ip + 20, 20, ps), 0) << "TCP checksum";
  return {mac_from_bytes(f.data()), mac_from_bytes(f.data() + 6), sip, dip, csum::load16(ip + 20), csum::load16(ip + 22)};
}

struct VipRig {
  std::unique_ptr<Dataplane> dp;
  std::unique_ptr<MemPort> ports[4];
  VipRig() {
    Dataplane::Options o;
    o.cores.assign(1, -1);
    o.mac.size = 1024;
    dp = std::make_unique<Dataplane>(o);
    ConnTrack::Options ct;
    ct.size = 1024;
    dp->enable_l3(ct, 0xc6336400, 24);
    auto s = std::make_unique<Snapshot>();
    s->bds.resize(2);
    s->rx_ports.resize(1);
    const char* names[] = {"c", "b1", "b2", "up"};
    for (uint16_t i = 0; i < 4; i++) {
      ports[i] = std::make_unique<MemPort>(names[i], MemPort::Options{});
      PortEntry pe;
      pe.port = ports[i].get();
      pe.bd = i == kUpPort ? 1 : 0;
      pe.endpoint = i != kUpPort;
      s->bds[pe.bd].ports.push_back(i);
      s->rx_ports[0].push_back(i);
      s->ports.push_back(pe);
    }
    s->bds[0].local_ip = kGw, s->bds[0].router_mac = kRouter, s->bds[0].nat = true, s->bds[0].vips = {kVip};
    s->bds[1].local_ip = kHostIp, s->bds[1].router_mac = kUpMac;
    L3Conf& l3 = s->l3;
    l3.enabled = true;
    l3.uplink_port = kUpPort, l3.uplink_bd = 1, l3.uplink_ip = kHostIp, l3.uplink_mac = kUpMac;
    l3.isolated = {{0x0a000000, 0xffffff00}};
    l3.isolated_bd = {0};
    l3.allowed = {1, 0, 0, 0};
    s->services.backend_ports.resize(4);
    for (uint16_t b : {kB1Port, kB2Port}) {
      s->services.backend_ports[b] = {SvcPort{6, 80, 80, 8080}};
      s->ports[b].svc_backend = true;
    }
    base = *s;
    set_backends(true, true);
  }
  // The service's table with b1 and/or b2 (the ports keep their diversion).
  void set_backends(bool b1, bool b2) {
    VipService v;
    v.vip = kVip, v.bd = 0, v.gateway = kGw, v.router_mac = kRouter;
    v.ports = {SvcPort{6, 80, 80, 8080}};
    std::vector<uint64_t> keys;
    if (b1) v.backends.push_back({kB1, kB1Port, kB1Mac}), keys.push_back(Maglev::key_of("b1"));
    if (b2) v.backends.push_back({kB2, kB2Port, kB2Mac}), keys.push_back(Maglev::key_of("b2"));
    v.table = std::make_shared<const std::vector<uint16_t>>(Maglev::build(keys));
    auto s = std::make_unique<Snapshot>(base);
    s->services.vips = {v};
    dp->publish(std::move(s));
  }
  Snapshot base;
  void poll() {
    while (dp->worker(0).poll_once()) {
    }
  }
  std::vector<Bytes> out(uint16_t p) { return ports[p]->take_tx(); }
  void step(uint16_t port, const Bytes& f) {
    ports[port]->inject(f);
    poll();
  }
  // The first client port from `sport` on whose VIP connection (the SYN, ISN seq) lands on b1.
  uint16_t vip_to_b1(uint16_t sport, uint32_t seq = 0) {
    for (;; sport++) {
      step(kCPort, tcp(kRouter, kCMac, kC, kVip, sport, 80, 0x02, seq));
      if (!out(kB1Port).empty()) return sport;
      out(kB2Port);
    }
  }
};

TEST(ServiceVip, ConnectionsSpreadRepliesRestoredClientKept) {
  VipRig r;
  unsigned per[2] = {0, 0};
  for (uint16_t sport = 40000; sport < 40200; sport++) {
    r.ports[kCPort]->inject(tcp(kRouter, kCMac, kC, kVip, sport, 80, 0x02));
    r.poll();
    auto b1 = r.out(kB1Port), b2 = r.out(kB2Port);
    ASSERT_EQ(b1.size() + b2.size(), 1u) << "the SYN reaches exactly one backend";
    const bool first = !b1.empty();
    per[first ? 0 : 1]++;
    Seen s = seen(first ? b1[0] : b2[0]);
    EXPECT_EQ(s.sip, kC) << "the client's address kept";
    EXPECT_EQ(s.sport, sport);
    EXPECT_EQ(s.dip, first ? kB1 : kB2);
    EXPECT_EQ(s.dport, 8080) << "the backends' port";
    EXPECT_EQ(s.dst, first ? kB1Mac : kB2Mac);
    EXPECT_EQ(s.src, kRouter);
    // The backend answers the client straight (its MAC, same network): restored to the VIP.
    const uint16_t bp = first ? kB1Port : kB2Port;
    r.ports[bp]->inject(tcp(kCMac, first ? kB1Mac : kB2Mac, first ? kB1 : kB2, kC, 8080, sport, 0x12));
    r.poll();
    auto back = r.out(kCPort);
    ASSERT_EQ(back.size(), 1u);
    Seen b = seen(back[0]);
    EXPECT_EQ(b.sip, kVip);
    EXPECT_EQ(b.sport, 80);
    EXPECT_EQ(b.dip, kC);
    EXPECT_EQ(b.dport, sport);
    EXPECT_EQ(b.src, kRouter);
    EXPECT_EQ(b.dst, kCMac);
  }
  EXPECT_GT(per[0], 70u);
  EXPECT_GT(per[1], 70u);
}

// A new SYN on the tuple of a VIP connection that is over (netfilter's
// reopen): today's backend, not the one that left; an established
// connection's tuple keeps its backend.
TEST(ServiceVip, AClosedConnectionsTupleOpensANewOne) {
  VipRig r;
  auto to_backend = [&](uint16_t sport, uint8_t flags) -> int {  // 1 or 2: which backend got it; 0: none
    r.ports[kCPort]->inject(tcp(kRouter, kCMac, kC, kVip, sport, 80, flags));
    r.poll();
    auto b1 = r.out(kB1Port), b2 = r.out(kB2Port);
    return b1.size() + b2.size() != 1 ? 0 : b1.empty() ? 2 : 1;
  };
  auto answer = [&](int b, uint16_t sport, uint8_t flags) {
    r.ports[b == 1 ? kB1Port : kB2Port]->inject(tcp(kCMac, b == 1 ? kB1Mac : kB2Mac, b == 1 ? kB1 : kB2, kC, 8080, sport, flags));
    r.poll();
    return r.out(kCPort);
  };
  // Two connections on b1 (found by tuple): one closed (FIN both ways), one established.
  std::vector<uint16_t> on_b1;
  for (uint16_t sport = 41000; on_b1.size() < 2; sport++) {
    const int b = to_backend(sport, 0x02);
    ASSERT_NE(b, 0);
    ASSERT_EQ(answer(b, sport, 0x12).size(), 1u);
    ASSERT_EQ(to_backend(sport, 0x10), b);
    if (b == 1) on_b1.push_back(sport);
  }
  const uint16_t closed = on_b1[0], open = on_b1[1];
  ASSERT_EQ(to_backend(closed, 0x11), 1);
  ASSERT_EQ(answer(1, closed, 0x11).size(), 1u);
  const uint64_t reopened = r.dp->conntrack()->reopened();
  // b1 leaves the table.
  r.set_backends(false, true);
  // b2 sends a SYN with the client's tuple: not from the client's port, it reopens nothing.
  r.ports[kB2Port]->inject(tcp(kRouter, kB2Mac, kC, kVip, closed, 80, 0x02));
  r.poll();
  EXPECT_TRUE(r.out(kB1Port).empty() && r.out(kB2Port).empty() && r.out(kCPort).empty());
  EXPECT_EQ(r.dp->conntrack()->reopened(), reopened);
  EXPECT_EQ(to_backend(closed, 0x02), 2) << "the closed connection's tuple opens a new connection on today's backend";
  EXPECT_EQ(r.dp->conntrack()->reopened(), reopened + 1);
  auto back = answer(2, closed, 0x12);
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(seen(back[0]).sip, kVip) << "the new connection's replies restored";
  EXPECT_EQ(to_backend(open, 0x02), 1) << "an established connection keeps its backend, even for a SYN";
  EXPECT_EQ(r.dp->conntrack()->reopened(), reopened + 1);
}

// A connection made straight to a backend from the client port of a VIP
// connection to it that is over: bridged from the backend's SYN+ACK on, not
// claimed by the old flow.
TEST(ServiceVip, StraightToABackendOnAClosedVipTuple) {
  VipRig r;
  auto step = [&](uint16_t port, const Bytes& f) { r.step(port, f); };
  const uint16_t sport = r.vip_to_b1(42000);
  step(kB1Port, tcp(kCMac, kB1Mac, kB1, kC, 8080, sport, 0x12));
  auto back = r.out(kCPort);
  ASSERT_EQ(back.size(), 1u);
  ASSERT_EQ(seen(back[0]).sip, kVip) << "the VIP connection's SYN+ACK, restored";
  step(kCPort, tcp(kRouter, kCMac, kC, kVip, sport, 80, 0x10));
  step(kCPort, tcp(kRouter, kCMac, kC, kVip, sport, 80, 0x11));
  step(kB1Port, tcp(kCMac, kB1Mac, kB1, kC, 8080, sport, 0x11));
  EXPECT_EQ(r.out(kB1Port).size(), 2u);
  back = r.out(kCPort);
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(seen(back[0]).sip, kVip) << "its FIN, restored";
  // b2 sends a SYN+ACK on that reply tuple's ports from its own port: not b1's, it ends nothing.
  const uint64_t reopened = r.dp->conntrack()->reopened();
  step(kB2Port, tcp(kCMac, kB2Mac, kB1, kC, 8080, sport, 0x12));
  r.out(kCPort);
  EXPECT_EQ(r.dp->conntrack()->reopened(), reopened) << "another port's SYN+ACK does not end the flow";
  // Now straight to b1:8080 from the same port.
  step(kCPort, tcp(kB1Mac, kCMac, kC, kB1, sport, 8080, 0x02));
  ASSERT_EQ(r.out(kB1Port).size(), 1u);
  for (uint8_t flags : {uint8_t(0x12), uint8_t(0x10)}) {
    Bytes reply = tcp(kCMac, kB1Mac, kB1, kC, 8080, sport, flags);
    step(kB1Port, reply);
    auto got = r.out(kCPort);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0], reply) << "bridged as it was sent (flags " << int(flags) << ")";
  }
  EXPECT_EQ(r.dp->conntrack()->reopened(), reopened + 1) << "b1's SYN+ACK ended the old flow";
}

TEST(ServiceVip, AfterTheCloseHandshakeTheBackendsTimeWaitAnswersGoAsTheyAre) {
  VipRig r;
  auto step = [&](uint16_t port, const Bytes& f) { r.step(port, f); };
  const uint16_t sport = r.vip_to_b1(43000, 99);  // the client's ISN 99
  bool reply = false;
  const Flow* fl = r.dp->conntrack()->find(FlowKey{kC, kVip, sport, 80, 6}, &reply);
  ASSERT_NE(fl, nullptr);
  auto state = [&] { return TcpState(fl->state.load()); };
  auto from_b1 = [&](uint8_t flags, uint32_t seq, uint32_t ack) {
    step(kB1Port, tcp(kCMac, kB1Mac, kB1, kC, 8080, sport, flags, seq, ack));
    auto got = r.out(kCPort);
    EXPECT_EQ(got.size(), 1u);
    return got.empty() ? 0u : seen(got[0]).sip;
  };
  auto from_c = [&](uint8_t flags, uint32_t seq, uint32_t ack) {
    step(kCPort, tcp(kRouter, kCMac, kC, kVip, sport, 80, flags, seq, ack));
    EXPECT_EQ(r.out(kB1Port).size(), 1u);
  };
  EXPECT_EQ(from_b1(0x12, 499, 100), kVip);
  from_c(0x10, 100, 500);
  EXPECT_EQ(state(), TcpState::kEstablished);
  // The client closes first; the backend's ACK of its FIN, its last data and
  // its own FIN are still the VIP connection's (restored).
  from_c(0x11, 100, 500);
  EXPECT_EQ(from_b1(0x10, 500, 101), kVip);
  EXPECT_EQ(from_b1(0x18, 500, 101), kVip);
  EXPECT_EQ(from_b1(0x11, 500, 101), kVip);
  EXPECT_EQ(state(), TcpState::kClosing);
  from_c(0x10, 101, 500);  // acknowledges only what came before the FIN
  EXPECT_EQ(state(), TcpState::kClosing);
  EXPECT_EQ(from_b1(0x11, 500, 101), kVip) << "the FIN's retransmission";
  from_c(0x10, 101, 501);  // the FIN's ACK: the handshake is complete
  EXPECT_EQ(state(), TcpState::kTimeWait);
  EXPECT_STREQ(tcp_state_name(uint8_t(TcpState::kTimeWait)), "time_wait");
  EXPECT_EQ(from_b1(0x11, 500, 101), kVip) << "a FIN resent after it (its ACK lost past dpsw) is still the old connection's";
  // A connection straight to b1 from the same port; b1's TIME_WAIT answers
  // it with an ACK of the old connection: the client gets it as it is (and
  // resets b1's TIME_WAIT), not restored to the VIP.
  step(kCPort, tcp(kB1Mac, kCMac, kC, kB1, sport, 8080, 0x02, 7000));
  ASSERT_EQ(r.out(kB1Port).size(), 1u);
  EXPECT_EQ(from_b1(0x10, 501, 101), kB1) << "the TIME_WAIT's ACK, bridged as sent";
  step(kCPort, tcp(kB1Mac, kCMac, kC, kB1, sport, 8080, 0x04, 101));
  EXPECT_EQ(r.out(kB1Port).size(), 1u) << "the client's RST, bridged";
  step(kCPort, tcp(kB1Mac, kCMac, kC, kB1, sport, 8080, 0x02, 7000));  // the SYN's retry
  ASSERT_EQ(r.out(kB1Port).size(), 1u);
  const uint64_t reopened = r.dp->conntrack()->reopened();
  EXPECT_EQ(from_b1(0x12, 3000, 7001), kB1) << "the new connection's SYN+ACK";
  EXPECT_EQ(r.dp->conntrack()->reopened(), reopened + 1) << "and it ended the old flow";
}

TEST(ServiceVip, OtherTrafficFromTheServicePortIsBridged) {
  VipRig r;
  // The client's MAC is learned; b1 answers a connection made straight to it (no VIP flow): unchanged.
  r.ports[kCPort]->inject(tcp(kB1Mac, kCMac, kC, kB1, 50000, 8080, 0x02));
  r.poll();
  ASSERT_EQ(r.out(kB1Port).size(), 1u);
  Bytes reply = tcp(kCMac, kB1Mac, kB1, kC, 8080, 50000, 0x12);
  r.ports[kB1Port]->inject(reply);
  r.poll();
  auto got = r.out(kCPort);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], reply) << "bridged as it was sent";
}

TEST(ServiceVip, ArpForTheVipAndABackendToItsOwnVip) {
  VipRig r;
  r.ports[kCPort]->inject(test::arp_request(kCMac, kC, kVip));
  r.poll();
  auto got = r.out(kCPort);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(load_be16(got[0].data() + 20), 2) << "ARP reply";
  EXPECT_EQ(mac_from_bytes(got[0].data() + 22), kRouter);
  EXPECT_EQ(csum::load32(got[0].data() + 28), kVip);
  // b1 to the VIP: whichever backend it lands on, one that is b1 itself sees the gateway.
  for (uint16_t sport = 41000; sport < 41040; sport++) {
    r.ports[kB1Port]->inject(tcp(kRouter, kB1Mac, kB1, kVip, sport, 80, 0x02));
    r.poll();
    auto to1 = r.out(kB1Port), to2 = r.out(kB2Port);
    ASSERT_EQ(to1.size() + to2.size(), 1u);
    Seen s = seen(to1.empty() ? to2[0] : to1[0]);
    EXPECT_EQ(s.sip, to1.empty() ? kB1 : kGw) << "masqueraded behind the gateway when it lands on itself";
  }
}

}  // namespace
}  // namespace dpsw
