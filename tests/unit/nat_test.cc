// NAT rewrite + checksums, and the connection tracker.
#include <gtest/gtest.h>

#include <functional>
#include <set>
#include <vector>

#include "dataplane/conntrack.h"
#include "dataplane/stage_l3_route.h"
#include "frames.h"

namespace dpsw {
namespace {

using csum::load16;

// Ethernet + IPv4 + TCP/UDP with `payload` bytes and valid checksums.
std::vector<uint8_t> l4_frame(uint8_t proto, uint32_t sip, uint32_t dip, uint16_t sport, uint16_t dport, size_t payload) {
  size_t l4h = proto == 6 ? 20 : 8;
  std::vector<uint8_t> f(14 + 20 + l4h + payload, 0);
  store_be16(f.data() + 12, kEtherTypeIpv4);
  uint8_t* ip = f.data() + 14;
  ip[0] = 0x45, csum::store16(ip + 2, uint16_t(20 + l4h + payload)), ip[8] = 64, ip[9] = proto;
  csum::store32(ip + 12, sip), csum::store32(ip + 16, dip);
  csum::store16(ip + 10, csum::of(ip, 20));
  uint8_t* l4 = ip + 20;
  csum::store16(l4, sport), csum::store16(l4 + 2, dport);
  if (proto == 6) l4[12] = 5 << 4, l4[13] = 0x18;
  else csum::store16(l4 + 4, uint16_t(8 + payload));
  for (size_t i = 0; i < payload; i++) l4[l4h + i] = uint8_t(i * 31 + 7);
  uint32_t ps = (sip >> 16) + (sip & 0xffff) + (dip >> 16) + (dip & 0xffff) + proto + uint32_t(l4h + payload);
  csum::store16(l4 + (proto == 6 ? 16 : 6), csum::of(l4, l4h + payload, ps));
  return f;
}

// 0 when the L4 checksum (with pseudo-header) verifies.
uint16_t verify_l4(const std::vector<uint8_t>& f) {
  const uint8_t* ip = f.data() + 14;
  uint32_t sip = csum::load32(ip + 12), dip = csum::load32(ip + 16);
  size_t len = load16(ip + 2) - 20u;
  uint32_t ps = (sip >> 16) + (sip & 0xffff) + (dip >> 16) + (dip & 0xffff) + ip[9] + uint32_t(len);
  return csum::of(ip + 20, len, ps);
}

TEST(NatRewrite, TcpAndUdpChecksumsStayValidForAnyLength) {
  for (uint8_t proto : {uint8_t(6), uint8_t(17)})
    for (size_t payload : {0u, 1u, 2u, 3u, 511u, 1400u, 1401u}) {
      auto f = l4_frame(proto, 0x0af10102, 0xc6336401, 40000, 80, payload);
      uint8_t* ip = f.data() + 14;
      stage::route_detail::rewrite(ip, 20, proto, true, 0xc633640a, 1025);  // SNAT
      EXPECT_EQ(csum::of(ip, 20), 0) << "IP header, proto " << int(proto) << " payload " << payload;
      EXPECT_EQ(verify_l4(f), 0) << "L4, proto " << int(proto) << " payload " << payload;
      EXPECT_EQ(csum::load32(ip + 12), 0xc633640au);
      EXPECT_EQ(load16(ip + 20), 1025);
      stage::route_detail::rewrite(ip, 20, proto, false, 0x0af10102, 40000);  // and back on the dst side
      EXPECT_EQ(verify_l4(f), 0);
    }
}

TEST(NatRewrite, UdpWithoutChecksumStaysWithout) {
  auto f = l4_frame(17, 1, 2, 3, 4, 10);
  csum::store16(f.data() + 14 + 20 + 6, 0);
  stage::route_detail::rewrite(f.data() + 14, 20, 17, true, 0x0a000001, 5000);
  EXPECT_EQ(load16(f.data() + 14 + 20 + 6), 0);
  EXPECT_EQ(csum::of(f.data() + 14, 20), 0);
}

TEST(NatRewrite, IcmpEchoIdAndTtl) {
  for (size_t payload : {0u, 1u, 57u}) {
    auto f = test::icmp_echo(0, 0, 0x0af10102, 0xc6336401, payload, 0x4242);
    uint8_t* ip = f.data() + 14;
    ASSERT_TRUE(stage::route_detail::ttl_down(ip));
    stage::route_detail::rewrite(ip, 20, 1, true, 0xc633640a, 1500);
    EXPECT_EQ(ip[8], 16);
    EXPECT_EQ(csum::of(ip, 20), 0);
    EXPECT_EQ(csum::of(ip + 20, 8 + payload), 0) << payload;
    EXPECT_EQ(load16(ip + 24), 1500);
  }
  auto f = test::icmp_echo(0, 0, 1, 2, 8);
  f[14 + 8] = 1;
  EXPECT_FALSE(stage::route_detail::ttl_down(f.data() + 14));  // would expire here
}

// Masquerade flow for `orig` behind nat_ip (what the route stage creates for a container).
ConnTrack::Create snat(ConnTrack& ct, unsigned w, const FlowKey& orig, uint32_t nat_ip, Flow** f, uint32_t now = 0) {
  return ct.create(w, orig, nat_ip, 0, orig.dip, orig.dport, FlowOut{}, FlowOut{}, 0, now, f);
}

ConnTrack::Options small(uint32_t size, unsigned workers = 1, uint16_t lo = 1024, uint16_t hi = 65535) {
  ConnTrack::Options o;
  o.size = size;
  o.workers = workers;
  o.port_lo = lo;
  o.port_hi = hi;
  o.timeouts.icmp = 2;
  o.timeouts.udp = 2;
  o.timeouts.tcp_new = 5;
  return o;
}

TEST(ConnTrack, BothDirectionsFindTheSameFlow) {
  ConnTrack ct(small(64));
  FlowKey orig{0x0a000002, 0xc6336401, 40000, 80, 6};
  Flow* f = nullptr;
  ASSERT_EQ(snat(ct, 0, orig, 0xc633640a, &f), ConnTrack::Create::kOk);
  bool reply = true;
  EXPECT_EQ(ct.find(orig, &reply), f);
  EXPECT_FALSE(reply);
  FlowKey back{0xc6336401, 0xc633640a, 80, f->nat_port, 6};
  EXPECT_EQ(ct.find(back, &reply), f);
  EXPECT_TRUE(reply);
  EXPECT_EQ(ct.find(FlowKey{0x0a000002, 0xc6336401, 40001, 80, 6}, &reply), nullptr);
  EXPECT_EQ(ct.count(), 1u);
}

TEST(ConnTrack, DnatKeepsTheClientAddressAndFindsReplies) {
  ConnTrack ct(small(8));
  FlowKey in{0xc6336401, 0xc633640a, 51000, 8080, 6};  // client -> host:8080
  Flow* f = nullptr;
  ASSERT_EQ(ct.create(0, in, in.sip, in.sport, 0x0a000002, 80, FlowOut{3, 0x0242, 0x02dd}, FlowOut{1, 0, 0x0200}, 2, 0, &f),
            ConnTrack::Create::kOk);
  EXPECT_EQ(f->nat_port, 0);  // nothing allocated: the source stays the client's
  bool reply;
  FlowKey back{0x0a000002, 0xc6336401, 80, 51000, 6};  // container:80 -> client
  EXPECT_EQ(ct.find(back, &reply), f);
  EXPECT_TRUE(reply);
  EXPECT_EQ(f->out[0].port, 3);
  EXPECT_EQ(f->out[1].port, 1);
}

TEST(ConnTrack, TcpStateMachineMovesForwardOnly) {
  ConnTrack ct(small(8));
  Flow* f = nullptr;
  ASSERT_EQ(snat(ct, 0, FlowKey{1, 2, 3, 4, 6}, 9, &f), ConnTrack::Create::kOk);
  EXPECT_EQ(f->state.load(), uint8_t(TcpState::kNew));
  ConnTrack::tcp_flags(*f, 0x02, false);  // SYN
  EXPECT_EQ(f->state.load(), uint8_t(TcpState::kNew));
  ConnTrack::tcp_flags(*f, 0x12, true);  // SYN+ACK
  EXPECT_EQ(f->state.load(), uint8_t(TcpState::kEstablished));
  ConnTrack::tcp_flags(*f, 0x11, false);  // FIN+ACK
  EXPECT_EQ(f->state.load(), uint8_t(TcpState::kClosing));
  ConnTrack::tcp_flags(*f, 0x10, true);  // a late ACK does not reopen it
  EXPECT_EQ(f->state.load(), uint8_t(TcpState::kClosing));
  ConnTrack::tcp_flags(*f, 0x04, true);  // RST
  EXPECT_EQ(f->state.load(), uint8_t(TcpState::kClosed));
}

TEST(ConnTrack, FullTableRefusesNewFlowsKeepsOldOnes) {
  ConnTrack ct(small(16));
  std::vector<Flow*> flows;
  for (uint16_t i = 0; i < 16; i++) {
    Flow* f = nullptr;
    ASSERT_EQ(snat(ct, 0, FlowKey{1, 2, uint16_t(1000 + i), 53, 17}, 9, &f), ConnTrack::Create::kOk);
    flows.push_back(f);
  }
  Flow* f = nullptr;
  EXPECT_EQ(snat(ct, 0, FlowKey{1, 2, 999, 53, 17}, 9, &f), ConnTrack::Create::kFull);
  EXPECT_EQ(ct.full_drops(), 1u);
  bool reply;
  for (uint16_t i = 0; i < 16; i++) EXPECT_EQ(ct.find(FlowKey{1, 2, uint16_t(1000 + i), 53, 17}, &reply), flows[i]);
}

TEST(ConnTrack, PortsAreUniqueAndExhaustionIsReported) {
  ConnTrack ct(small(64, 2, 2000, 2009));  // 10 ports, 5 per worker
  std::set<uint16_t> seen;
  for (unsigned w = 0; w < 2; w++)
    for (uint16_t i = 0; i < 5; i++) {
      Flow* f = nullptr;
      ASSERT_EQ(snat(ct, w, FlowKey{1, 2, uint16_t(100 * w + i), 7, 6}, 9, &f), ConnTrack::Create::kOk);
      EXPECT_TRUE(seen.insert(f->nat_port).second) << "port " << f->nat_port << " given twice";
      EXPECT_GE(f->nat_port, 2000);
      EXPECT_LE(f->nat_port, 2009);
    }
  Flow* f = nullptr;
  EXPECT_EQ(snat(ct, 0, FlowKey{1, 2, 50, 7, 6}, 9, &f), ConnTrack::Create::kNoPort);
  // Another protocol has its own ports.
  EXPECT_EQ(snat(ct, 0, FlowKey{1, 2, 50, 7, 17}, 9, &f), ConnTrack::Create::kOk);
}

TEST(ConnTrack, ExpiredFlowsAreRecycledOnlyAfterTheGracePeriod) {
  ConnTrack ct(small(1, 1, 3000, 3000));  // one flow, one port
  Flow* f = nullptr;
  ASSERT_EQ(snat(ct, 0, FlowKey{1, 2, 3, 0, 1}, 9, &f), ConnTrack::Create::kOk);
  std::vector<std::function<void()>> deferred;
  auto retire = [&](std::function<void()> fn) { deferred.push_back(std::move(fn)); };
  EXPECT_EQ(ct.expire(1000, retire), 0u);  // icmp: 2 s
  EXPECT_EQ(ct.expire(2500, retire), 1u);
  bool reply;
  EXPECT_EQ(ct.find(FlowKey{1, 2, 3, 0, 1}, &reply), nullptr);
  // Until the grace period ends, neither the slot nor the port is reused.
  EXPECT_EQ(snat(ct, 0, FlowKey{1, 2, 4, 0, 1}, 9, &f), ConnTrack::Create::kFull);
  for (auto& fn : deferred) fn();
  EXPECT_EQ(snat(ct, 0, FlowKey{1, 2, 4, 0, 1}, 9, &f), ConnTrack::Create::kOk);
  EXPECT_EQ(f->nat_port, 3000);
}

}  // namespace
}  // namespace dpsw

namespace dpsw {
namespace {

TEST(NatIcmpError, FragmentationNeededReachesTheContainersOwnFlow) {
  ConnTrack ct(small(8));
  const uint32_t c = 0x0a000002, r = 0xc6336401, host = 0xc633640a;
  Flow* f = nullptr;
  ASSERT_EQ(ct.create(0, FlowKey{c, r, 5000, 53, 17}, host, 0, r, 53, FlowOut{7, 0, 0x02aa}, FlowOut{3, 0x024200000002ULL, 0x02dd00000001ULL},
                      0, 0, &f),
            ConnTrack::Create::kOk);
  // The packet as it left through the uplink: host:nat -> r:53, UDP, 1400 bytes.
  auto sent = l4_frame(17, host, r, f->nat_port, 53, 1372);
  // A router answers "fragmentation needed" (type 3 code 4), quoting IP header + 8 bytes.
  std::vector<uint8_t> e(14 + 20 + 8 + 28, 0);
  store_be16(e.data() + 12, kEtherTypeIpv4);
  uint8_t* ip = e.data() + 14;
  ip[0] = 0x45, csum::store16(ip + 2, 20 + 8 + 28), ip[8] = 64, ip[9] = 1;
  csum::store32(ip + 12, r), csum::store32(ip + 16, host);
  csum::store16(ip + 10, csum::of(ip, 20));
  uint8_t* icmp = ip + 20;
  icmp[0] = 3, icmp[1] = 4, csum::store16(icmp + 6, 1280);  // next-hop MTU
  std::copy(sent.begin() + 14, sent.begin() + 14 + 28, icmp + 8);
  csum::store16(icmp + 2, csum::of(icmp, 8 + 28));

  Snapshot s;
  s.l3.enabled = true;
  ArpCache arp(0xc6336400, 24);
  stage::RouteCtx rc{s, ct, arp, 0, 0};
  Packet p;
  p.data = e.data();
  p.len = uint32_t(e.size());
  uint16_t out = 0;
  Drop drop = Drop::kCount;
  ASSERT_EQ(stage::icmp_error(p, ip, 20, 20 + 8 + 28, rc, &out, &drop), stage::RouteNext::kOut) << int(drop);
  EXPECT_EQ(out, 3);
  EXPECT_EQ(mac_from_bytes(e.data()), 0x024200000002ULL);
  EXPECT_EQ(csum::load32(ip + 16), c) << "outer destination: the container";
  EXPECT_EQ(csum::of(ip, 20), 0) << "outer IP checksum";
  EXPECT_EQ(csum::of(icmp, 8 + 28), 0) << "ICMP checksum";
  const uint8_t* in = icmp + 8;
  EXPECT_EQ(csum::load32(in + 12), c) << "quoted source: what the container sent";
  EXPECT_EQ(csum::load16(in + 20), 5000);
  EXPECT_EQ(csum::load32(in + 16), r);
  EXPECT_EQ(csum::of(in, 20), 0) << "quoted IP checksum";
  EXPECT_EQ(csum::load16(icmp + 6), 1280) << "the MTU the container must learn";
}

}  // namespace
}  // namespace dpsw
