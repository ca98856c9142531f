// NAT rewrite + checksums, and the connection tracker.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include <functional>
#include <random>
#include <set>
#include <vector>

#include "dataplane/nat/conntrack.h"
#include "dataplane/nat/stage_l3_route.h"
#include "tests/fixtures/frames.h"

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
  o.keep_ports = false;  // every NAT port from the bitmap (the tests of keeping ports say so)
  o.timeouts.icmp = 2;
  o.timeouts.udp = 2;
  o.timeouts.tcp_syn_sent = 5;
  o.timeouts.tcp_syn_recv = 3;
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

TEST(ConnTrack, TcpHandshakeEstablishesOnlyWhenComplete) {
  ConnTrack ct(small(8));
  Flow* f = nullptr;
  ASSERT_EQ(snat(ct, 0, FlowKey{1, 2, 3, 4, 6}, 9, &f), ConnTrack::Create::kOk);
  auto st = [&] { return TcpState(f->state.load()); };
  EXPECT_EQ(st(), TcpState::kNone);
  ConnTrack::tcp_flags(*f, 0x02, false);  // SYN
  EXPECT_EQ(st(), TcpState::kSynSent);
  EXPECT_EQ(ct.timeout_ms(*f), 5000u) << "SYN_SENT: the short timeout";
  ConnTrack::tcp_flags(*f, 0x02, false);  // retransmitted SYN
  ConnTrack::tcp_flags(*f, 0x10, false);  // an ACK before any SYN+ACK does not establish
  EXPECT_EQ(st(), TcpState::kSynSent);
  ConnTrack::tcp_flags(*f, 0x12, true);  // SYN+ACK
  EXPECT_EQ(st(), TcpState::kSynRecv);
  EXPECT_EQ(ct.timeout_ms(*f), 3000u);
  ConnTrack::tcp_flags(*f, 0x12, true);  // retransmitted SYN+ACK
  EXPECT_EQ(st(), TcpState::kSynRecv);
  ConnTrack::tcp_flags(*f, 0x10, false);  // the third ACK
  EXPECT_EQ(st(), TcpState::kEstablished);
  EXPECT_EQ(ct.timeout_ms(*f), 3600u * 1000);
  ConnTrack::tcp_flags(*f, 0x02, false);  // a stray SYN does not go back
  EXPECT_EQ(st(), TcpState::kEstablished);
  ConnTrack::tcp_flags(*f, 0x11, false);  // FIN+ACK
  EXPECT_EQ(st(), TcpState::kClosing);
  ConnTrack::tcp_flags(*f, 0x10, true);  // a late ACK does not reopen it
  EXPECT_EQ(st(), TcpState::kClosing);
  ConnTrack::tcp_flags(*f, 0x04, true);  // RST
  EXPECT_EQ(st(), TcpState::kClose);
  EXPECT_EQ(ct.timeout_ms(*f), 10u * 1000);
  EXPECT_STREQ(tcp_state_name(uint8_t(TcpState::kSynRecv)), "syn_recv");
}

// A TCP header (20 bytes) with seq, ack and flags, and len bytes of payload after it.
std::vector<uint8_t> segment(uint8_t flags, uint32_t seq, uint32_t ack, uint32_t len = 0) {
  std::vector<uint8_t> t(20 + len);
  csum::store32(t.data() + 4, seq);
  csum::store32(t.data() + 8, ack);
  t[12] = 5 << 4, t[13] = flags;
  return t;
}

TEST(ConnTrack, TheCloseHandshakeEndsInTimeWait) {
  ConnTrack ct(small(8));
  auto seg = [](Flow& f, bool reply, uint8_t flags, uint32_t seq, uint32_t ack, uint32_t len = 0) {
    auto t = segment(flags, seq, ack, len);
    ConnTrack::tcp_segment(f, t.data(), uint32_t(t.size()), reply);
  };
  for (bool simultaneous : {false, true}) {
    Flow* f = nullptr;
    ASSERT_EQ(snat(ct, 0, FlowKey{1, 2, uint16_t(3 + simultaneous), 4, 6}, 9, &f), ConnTrack::Create::kOk);
    auto st = [&] { return TcpState(f->state.load()); };
    seg(*f, false, 0x02, 0xfffffff0, 0);  // SYN (the sequence numbers wrap below)
    seg(*f, true, 0x12, 500, 0xfffffff1);
    seg(*f, false, 0x10, 0xfffffff1, 501);
    ASSERT_EQ(st(), TcpState::kEstablished);
    seg(*f, false, 0x19, 0xfffffff1, 501, 100);  // data and FIN: it ends at 0xfffffff1 + 100 + 1
    if (simultaneous) {
      seg(*f, true, 0x11, 501, 0xfffffff1);  // the reply's FIN crossed it
      seg(*f, false, 0x10, 0x56, 502);       // the client acknowledges it
      EXPECT_EQ(st(), TcpState::kClosing);
      seg(*f, true, 0x10, 502, 0x56);  // the FIN's ACK: exactly its end
    } else {
      seg(*f, true, 0x10, 501, 0x55);  // short of the FIN
      seg(*f, true, 0x10, 501, 0x57);  // past it: nothing was sent there
      EXPECT_EQ(st(), TcpState::kClosing);
      seg(*f, true, 0x11, 501, 0x56);  // acknowledges the FIN, and the reply's FIN
      EXPECT_EQ(st(), TcpState::kClosing);
      seg(*f, false, 0x10, 0x56, 501);  // not the FIN's ACK
      EXPECT_EQ(st(), TcpState::kClosing);
      seg(*f, false, 0x10, 0x56, 502);
    }
    EXPECT_EQ(st(), TcpState::kTimeWait) << (simultaneous ? "simultaneous close" : "one side first");
    EXPECT_EQ(ct.timeout_ms(*f), 60u * 1000) << "as closing";
    seg(*f, true, 0x04, 502, 0);  // a RST after it
    EXPECT_EQ(st(), TcpState::kClose);
  }
}

TEST(ConnTrack, RstEndsAHandshakeAndAPickedUpFlowEstablishesOnAReply) {
  ConnTrack ct(small(8));
  Flow* f = nullptr;
  ASSERT_EQ(snat(ct, 0, FlowKey{1, 2, 3, 4, 6}, 9, &f), ConnTrack::Create::kOk);
  ConnTrack::tcp_flags(*f, 0x02, false);  // SYN
  ConnTrack::tcp_flags(*f, 0x14, true);   // RST+ACK: port closed
  EXPECT_EQ(TcpState(f->state.load()), TcpState::kClose);
  Flow* g = nullptr;
  ASSERT_EQ(snat(ct, 0, FlowKey{1, 2, 5, 4, 6}, 9, &g), ConnTrack::Create::kOk);
  ConnTrack::tcp_flags(*g, 0x10, false);  // mid-stream ACK (e.g. after a restart): not assured yet
  EXPECT_EQ(TcpState(g->state.load()), TcpState::kNone);
  EXPECT_FALSE(assured(6, g->state.load()));
  ConnTrack::tcp_flags(*g, 0x10, true);  // the other side answers
  EXPECT_EQ(TcpState(g->state.load()), TcpState::kEstablished);
  EXPECT_TRUE(assured(6, g->state.load()));
}

TEST(ConnTrack, UnansweredSynExpiresAfterTheShortTimeout) {
  ConnTrack ct(small(8));  // tcp_syn_sent: 5 s, tcp_syn_recv: 3 s
  Flow* f = nullptr;
  ASSERT_EQ(snat(ct, 0, FlowKey{1, 2, 3, 4, 6}, 9, &f, 1000), ConnTrack::Create::kOk);
  ConnTrack::tcp_flags(*f, 0x02, false);
  Flow* g = nullptr;
  ASSERT_EQ(snat(ct, 0, FlowKey{1, 2, 7, 4, 6}, 9, &g, 1000), ConnTrack::Create::kOk);
  ConnTrack::tcp_flags(*g, 0x02, false);
  ConnTrack::tcp_flags(*g, 0x12, true);
  std::vector<std::function<void()>> deferred;
  auto retire = [&](std::function<void()> fn) { deferred.push_back(std::move(fn)); };
  EXPECT_EQ(ct.expire(3500, retire), 0u);
  EXPECT_EQ(ct.expire(4100, retire), 1u) << "SYN_RECV after 3 s";
  EXPECT_EQ(ct.expire(5500, retire), 0u);
  EXPECT_EQ(ct.expire(6100, retire), 1u) << "SYN_SENT after 5 s";
  EXPECT_EQ(ct.count(), 0u);
}

TEST(ConnTrack, FullTableRefusesNewFlowsKeepsAssuredOnes) {
  ConnTrack ct(small(16));
  std::vector<Flow*> flows;
  for (uint16_t i = 0; i < 16; i++) {
    Flow* f = nullptr;
    ASSERT_EQ(snat(ct, 0, FlowKey{1, 2, uint16_t(1000 + i), 53, 17}, 9, &f), ConnTrack::Create::kOk) << i;
    f->state.store(1);  // replied: assured, never evicted
    flows.push_back(f);
  }
  Flow* f = nullptr;
  EXPECT_EQ(snat(ct, 0, FlowKey{1, 2, 999, 53, 17}, 9, &f), ConnTrack::Create::kFull);
  EXPECT_EQ(ct.full_drops(), 1u);
  EXPECT_EQ(ct.early_drops(), 0u);
  bool reply;
  for (uint16_t i = 0; i < 16; i++) EXPECT_EQ(ct.find(FlowKey{1, 2, uint16_t(1000 + i), 53, 17}, &reply), flows[i]);
}

TEST(ConnTrack, EarlyDropEvictsAnUnassuredFlowAndRecyclesItAfterTheGracePeriod) {
  ConnTrack::Options o = small(64);
  o.early_drop_buckets = 32;  // the whole table (32 buckets): the one victim is found wherever it is
  ConnTrack ct(o);  // reserve: 2
  ASSERT_EQ(ct.reserve(), 2u);
  std::vector<Flow*> flows;
  for (uint16_t i = 0; i < 62; i++) {
    Flow* f = nullptr;
    ASSERT_EQ(snat(ct, 0, FlowKey{1, 2, uint16_t(1000 + i), 80, 6}, 9, &f), ConnTrack::Create::kOk);
    ConnTrack::tcp_flags(*f, 0x02, false);
    if (i) {  // all but the first: established
      ConnTrack::tcp_flags(*f, 0x12, true);
      ConnTrack::tcp_flags(*f, 0x10, false);
    }
    flows.push_back(f);
  }
  // Inbound: at the reserve, refused; the one SYN_SENT flow makes room.
  Flow* f = nullptr;
  EXPECT_EQ(ct.create(0, FlowKey{7, 9, 5555, 8080, 6}, 7, 5555, 3, 80, FlowOut{}, FlowOut{}, 0, 0, &f, ConnTrack::Origin::kInbound),
            ConnTrack::Create::kFull);
  EXPECT_EQ(ct.early_drops(), 1u);
  EXPECT_EQ(ct.full_drops(), 1u);
  bool reply;
  EXPECT_EQ(ct.find(FlowKey{1, 2, 1000, 80, 6}, &reply), nullptr) << "the victim: unindexed, lookups miss it";
  EXPECT_EQ(ct.count(), 61u);
  // A container's flow may take the reserve (nothing left to evict: all established).
  auto establish = [](Flow* x) {
    for (auto [flags, reply] : {std::pair{0x02, false}, {0x12, true}, {0x10, false}}) ConnTrack::tcp_flags(*x, uint8_t(flags), reply);
  };
  ASSERT_EQ(snat(ct, 0, FlowKey{1, 2, 3000, 80, 6}, 9, &f), ConnTrack::Create::kOk);
  establish(f);
  ASSERT_EQ(snat(ct, 0, FlowKey{1, 2, 3001, 80, 6}, 9, &f), ConnTrack::Create::kOk);
  establish(f);
  EXPECT_EQ(snat(ct, 0, FlowKey{1, 2, 3002, 80, 6}, 9, &f), ConnTrack::Create::kFull) << "no index before the recycle";
  // The control thread recycles the victim only after a grace period.
  std::vector<std::function<void()>> deferred;
  EXPECT_EQ(ct.expire(1000, [&](std::function<void()> fn) { deferred.push_back(std::move(fn)); }), 0u);
  EXPECT_EQ(snat(ct, 0, FlowKey{1, 2, 3002, 80, 6}, 9, &f), ConnTrack::Create::kFull);
  ASSERT_EQ(deferred.size(), 1u);
  for (auto& fn : deferred) fn();
  EXPECT_EQ(snat(ct, 0, FlowKey{1, 2, 3002, 80, 6}, 9, &f), ConnTrack::Create::kOk);
  for (size_t i = 1; i < flows.size(); i++) EXPECT_NE(ct.find(flows[i]->orig, &reply), nullptr) << "established flows stay";
}

// A flow is announced (for the kernel tier) once, as it becomes established;
// the control thread takes only live ones, at most max a call.
TEST(ConnTrack, EstablishedFlowsAreAnnouncedToTheControlThread) {
  ConnTrack ct(small(64, 2));
  auto taken = [&](size_t max = 100) {
    std::vector<const Flow*> v;
    ct.take_announced(max, [&](const Flow& f) { v.push_back(&f); });
    return v;
  };
  Flow *a = nullptr, *b = nullptr, *c = nullptr;
  ASSERT_EQ(snat(ct, 0, FlowKey{1, 2, 3, 4, 6}, 9, &a), ConnTrack::Create::kOk);
  ASSERT_EQ(snat(ct, 1, FlowKey{1, 2, 5, 4, 6}, 9, &b), ConnTrack::Create::kOk);
  ASSERT_EQ(snat(ct, 1, FlowKey{1, 2, 6, 4, 6}, 9, &c), ConnTrack::Create::kOk);
  EXPECT_FALSE(ConnTrack::tcp_flags(*a, 0x02, false));
  EXPECT_FALSE(ConnTrack::tcp_flags(*a, 0x12, true));
  EXPECT_TRUE(ConnTrack::tcp_flags(*a, 0x10, false)) << "the handshake's last ACK establishes it";
  EXPECT_FALSE(ConnTrack::tcp_flags(*a, 0x10, false)) << "once";
  ct.announce(0, *a);
  EXPECT_TRUE(taken().empty()) << "announcing is off until the control thread turns it on";
  ct.set_announcing(true);
  ct.announce(0, *a);
  ct.announce(1, *b);
  ct.announce(1, *c);
  // b and c expire before the control thread takes them: only live flows are handed over.
  std::vector<std::function<void()>> later;
  c->state.store(uint8_t(TcpState::kClose));
  ASSERT_EQ(ct.expire(100 * 1000, [&](std::function<void()> fn) { later.push_back(std::move(fn)); }), 2u);
  EXPECT_EQ(taken(), std::vector<const Flow*>{a}) << "b and c expired meanwhile";
  for (auto& fn : later) fn();
  Flow* d = nullptr;
  ASSERT_EQ(snat(ct, 1, FlowKey{1, 2, 7, 4, 6}, 9, &d), ConnTrack::Create::kOk);
  ct.announce(0, *a);
  ct.announce(1, *d);
  EXPECT_EQ(taken(1), std::vector<const Flow*>{a}) << "at most max; the rest dropped (the tick's sync finds them)";
  EXPECT_TRUE(taken().empty());
  for (int i = 0; i < 5000; i++) ct.announce(0, *a);  // more than a ring holds: the rest dropped, never blocks
  EXPECT_EQ(taken(10000).size(), 4096u);
}

// A SYN on a closed flow's tuple (netfilter's reopen): the old flow leaves
// the lookups at once, the tuple's new flow gets a fresh NAT port, and the
// old one's index and port come back only after expire()'s grace period.
TEST(ConnTrack, ReopenReplacesAClosedFlowOnItsTuple) {
  ConnTrack ct(small(64));
  const FlowKey k{1, 2, 1000, 80, 6};
  Flow* old = nullptr;
  ASSERT_EQ(snat(ct, 0, k, 9, &old), ConnTrack::Create::kOk);
  for (auto [flags, reply] : {std::pair{0x02, false}, {0x12, true}, {0x10, false}, {0x11, false}, {0x11, true}})
    ConnTrack::tcp_flags(*old, uint8_t(flags), reply);
  ASSERT_EQ(old->state.load(), uint8_t(TcpState::kClosing));
  const FlowKey old_reply = old->reply;
  const uint16_t old_port = old->nat_port;
  EXPECT_TRUE(ct.reopen(0, *old));
  EXPECT_EQ(ct.reopened(), 1u);
  EXPECT_EQ(ct.count(), 0u);
  bool reply;
  EXPECT_EQ(ct.find(k, &reply), nullptr);
  EXPECT_EQ(ct.find(old_reply, &reply), nullptr);
  EXPECT_FALSE(ct.reopen(0, *old)) << "claimed once";
  Flow* f = nullptr;
  ASSERT_EQ(snat(ct, 0, k, 9, &f), ConnTrack::Create::kOk);
  EXPECT_NE(f, old);
  EXPECT_NE(f->nat_port, old_port);
  const size_t free_before = ct.free_ports(0, 6);
  EXPECT_EQ(ct.find(k, &reply), f);
  EXPECT_EQ(ct.find(f->reply, &reply), f);
  EXPECT_TRUE(reply);
  std::vector<std::function<void()>> deferred;
  EXPECT_EQ(ct.expire(1000, [&](std::function<void()> fn) { deferred.push_back(std::move(fn)); }), 0u) << "nothing expired";
  EXPECT_EQ(deferred.size(), 1u) << "the old flow recycled after a grace period";
  EXPECT_EQ(ct.free_ports(0, 6), free_before) << "the old port is not free before the grace period";
  for (auto& fn : deferred) fn();
  EXPECT_EQ(ct.free_ports(0, 6), free_before + 1) << "free after it";
  EXPECT_EQ(ct.find(k, &reply), f) << "the new flow stays";
  EXPECT_EQ(ct.count(), 1u);
}

// Masquerade keeps the source port when the reply tuple it makes is free
// (netfilter's way): a client socket reused soon after meets the server's
// TIME_WAIT with its own timestamps and sequence numbers. Another flow
// whose reply tuple would clash, or a port outside the range, gets one of
// the bitmap's, which never makes a kept port's tuple.
TEST(ConnTrack, MasqueradeKeepsTheSourcePortWhenItsReplyTupleIsFree) {
  ConnTrack::Options o = small(64, 1, 2000, 2009);
  o.keep_ports = true;
  ConnTrack ct(o);
  Flow* f = nullptr;
  ASSERT_EQ(snat(ct, 0, FlowKey{1, 2, 2003, 80, 6}, 9, &f), ConnTrack::Create::kOk);
  EXPECT_EQ(f->xsrc_port, 2003) << "kept";
  EXPECT_EQ(f->nat_port, 0) << "no bitmap port";
  EXPECT_EQ(ct.free_ports(0, 6), 10u);
  bool reply;
  EXPECT_EQ(ct.find(FlowKey{2, 9, 80, 2003, 6}, &reply), f);
  // Another container, same source port, same remote: that reply tuple is taken.
  Flow* g = nullptr;
  ASSERT_EQ(snat(ct, 0, FlowKey{3, 2, 2003, 80, 6}, 9, &g), ConnTrack::Create::kOk);
  EXPECT_NE(g->xsrc_port, 2003);
  EXPECT_EQ(g->xsrc_port, g->nat_port) << "from the bitmap";
  // The same port to another remote port: another tuple, kept.
  ASSERT_EQ(snat(ct, 0, FlowKey{3, 2, 2003, 443, 6}, 9, &g), ConnTrack::Create::kOk);
  EXPECT_EQ(g->xsrc_port, 2003);
  // Outside the range (a privileged port, the DNS relay's): from the bitmap.
  ASSERT_EQ(snat(ct, 0, FlowKey{1, 2, 53, 80, 6}, 9, &g), ConnTrack::Create::kOk);
  EXPECT_GE(g->nat_port, 2000);
  // The bitmap skips the port a kept flow's tuple holds: of 2000..2009, two are taken and 2003 is kept towards 2:80.
  std::set<uint16_t> got;
  for (uint16_t i = 0; i < 7; i++) {
    ASSERT_EQ(snat(ct, 0, FlowKey{5, 2, uint16_t(100 + i), 80, 6}, 9, &g), ConnTrack::Create::kOk) << i;
    EXPECT_NE(g->xsrc_port, 2003);
    EXPECT_TRUE(got.insert(g->xsrc_port).second);
  }
  EXPECT_EQ(snat(ct, 0, FlowKey{5, 2, 200, 80, 6}, 9, &g), ConnTrack::Create::kBusy) << "only 2003 is left, and it clashes";
  EXPECT_EQ(ct.free_ports(0, 6), 1u) << "given back";
}

TEST(ConnTrack, KeptPortsNeverMakeAnotherFlowsTuple) {
  ConnTrack::Options o = small(256, 2, 2000, 2999);
  o.keep_ports = true;
  ConnTrack ct(o);
  Flow* f = nullptr;
  // Two workers, two containers, the same source port to the same remote: one keeps it.
  ASSERT_EQ(snat(ct, 0, FlowKey{1, 7, 2500, 80, 6}, 9, &f), ConnTrack::Create::kOk);
  Flow* g = nullptr;
  ASSERT_EQ(snat(ct, 1, FlowKey{3, 7, 2500, 80, 6}, 9, &g), ConnTrack::Create::kOk);
  EXPECT_EQ(f->xsrc_port, 2500);
  EXPECT_NE(g->xsrc_port, 2500);
  EXPECT_EQ(g->nat_port, g->xsrc_port);
  EXPECT_EQ(ct.free_ports(0, 6), 500u) << "the kept port took no bitmap port";
  EXPECT_EQ(ct.free_ports(1, 6), 499u) << "the clash's bitmap port: one";
  // An inbound connection's own tuple (7:80 -> host 9:2600, to a published port) is not a reply tuple to make.
  Flow* in = nullptr;
  ASSERT_EQ(ct.create(1, FlowKey{7, 9, 80, 2600, 6}, 7, 80, 1, 80, FlowOut{3, 0, 0}, FlowOut{1, 0, 0}, 0, 0, &in,
                      ConnTrack::Origin::kInbound),
            ConnTrack::Create::kOk);
  ASSERT_EQ(snat(ct, 0, FlowKey{4, 7, 2600, 80, 6}, 9, &g), ConnTrack::Create::kOk);
  EXPECT_NE(g->xsrc_port, 2600);
  bool reply;
  EXPECT_EQ(ct.find(FlowKey{7, 9, 80, 2600, 6}, &reply), in) << "the inbound flow keeps its tuple";
  // keep = false (the caller's: a published port): from the bitmap.
  ASSERT_EQ(ct.create(0, FlowKey{5, 7, 2700, 81, 6}, 9, 0, 7, 81, FlowOut{1, 0, 0}, FlowOut{3, 0, 0}, 0, 0, &g,
                      ConnTrack::Origin::kInside, false),
            ConnTrack::Create::kOk);
  EXPECT_NE(g->xsrc_port, 2700);
  EXPECT_EQ(g->nat_port, g->xsrc_port);
  // A reopened connection (the client socket reused) keeps its port again.
  for (auto [flags, rep] : {std::pair{0x02, false}, {0x12, true}, {0x10, false}, {0x11, false}, {0x11, true}})
    ConnTrack::tcp_flags(*f, uint8_t(flags), rep);
  ASSERT_TRUE(ct.reopen(0, *f));
  ASSERT_EQ(snat(ct, 0, FlowKey{1, 7, 2500, 80, 6}, 9, &f), ConnTrack::Create::kOk);
  EXPECT_EQ(f->xsrc_port, 2500) << "the same tuple as before, as the server's TIME_WAIT expects";
}

// Two workers make flows whose kept ports would give the same reply tuple,
// at the same time: insert_unique lets one have it (run under TSan too).
TEST(ConnTrack, RacingCreatorsNeverShareAReplyTuple) {
  ConnTrack::Options o = small(8192, 2, 2000, 9999);
  o.keep_ports = true;
  ConnTrack ct(o);
  constexpr uint16_t kN = 2000;
  std::vector<Flow*> got[2];
  std::atomic<int> ready{0};
  auto run = [&](unsigned w) {
    ready.fetch_add(1);
    while (ready.load() < 2) {
    }
    for (uint16_t i = 0; i < kN; i++) {
      Flow* f = nullptr;
      if (snat(ct, w, FlowKey{10 + w, 7, uint16_t(3000 + i), 80, 6}, 9, &f) == ConnTrack::Create::kOk) got[w].push_back(f);
    }
  };
  std::thread t0(run, 0), t1(run, 1);
  t0.join();
  t1.join();
  std::set<uint16_t> ports;
  size_t n = 0;
  for (auto& v : got)
    for (Flow* f : v) {
      n++;
      EXPECT_TRUE(ports.insert(f->xsrc_port).second) << "port " << f->xsrc_port << " twice towards 7:80";
    }
  EXPECT_GE(n, size_t(2 * kN * 95 / 100)) << "(some may be refused: busy buckets, 32 clashing ports)";
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

// Issue 14: a full NAT port slice used to be scanned bit by bit on every new
// flow (a SYN flood multiplied it). Now its free count refuses at once, and
// the search goes a word at a time from a rotating cursor and still finds
// every freed port.
TEST(ConnTrack, FullPortSliceRefusesWithoutScanningAndFreedPortsAreFoundAgain) {
  ConnTrack ct(small(2048, 2, 10000, 10599));  // 300 ports per worker: slices start and end mid-word
  const uint16_t lo = 10300, hi = 10599;       // worker 1's slice
  ASSERT_EQ(ct.free_ports(1, 17), 300u);
  std::set<uint16_t> taken, early;
  for (uint16_t i = 0; i < 300; i++) {
    Flow* f = nullptr;
    ASSERT_EQ(snat(ct, 1, FlowKey{1, 2, uint16_t(1000 + i), 53, 17}, 9, &f, i < 150 ? 0 : 1500), ConnTrack::Create::kOk) << i;
    ASSERT_GE(f->nat_port, lo);
    ASSERT_LE(f->nat_port, hi);
    ASSERT_TRUE(taken.insert(f->nat_port).second) << "port " << f->nat_port << " given twice";
    if (i < 150) early.insert(f->nat_port);
  }
  EXPECT_EQ(ct.free_ports(1, 17), 0u);
  EXPECT_LE(ct.port_probes(1), 2u * 300) << "sequential allocations: about one word each";
  // A flood of new flows against the full slice: refused without looking at the bitmap.
  const uint64_t probes = ct.port_probes(1);
  Flow* f = nullptr;
  for (uint32_t i = 0; i < 100000; i++)
    ASSERT_EQ(snat(ct, 1, FlowKey{3, 2, uint16_t(i), 53, 17}, 9, &f, 1500), ConnTrack::Create::kNoPort);
  EXPECT_EQ(ct.port_probes(1), probes);
  // The first 150 expire (UDP: 2 s) and come back after the grace period.
  std::vector<std::function<void()>> deferred;
  EXPECT_EQ(ct.expire(2500, [&](std::function<void()> fn) { deferred.push_back(std::move(fn)); }), 150u);
  EXPECT_EQ(ct.free_ports(1, 17), 0u) << "not before the grace period";
  for (auto& fn : deferred) fn();
  EXPECT_EQ(ct.free_ports(1, 17), 150u);
  std::set<uint16_t> again;
  for (uint16_t i = 0; i < 150; i++) {
    ASSERT_EQ(snat(ct, 1, FlowKey{4, 2, uint16_t(i), 53, 17}, 9, &f, 2500), ConnTrack::Create::kOk) << i;
    again.insert(f->nat_port);
  }
  EXPECT_EQ(again, early) << "every freed port found again, and only those";
  const uint64_t before = ct.port_probes(1);
  EXPECT_EQ(snat(ct, 1, FlowKey{5, 2, 1, 53, 17}, 9, &f, 2500), ConnTrack::Create::kNoPort);
  EXPECT_EQ(ct.port_probes(1), before);
  EXPECT_LE(before - probes, 150u * (300 / 64 + 2)) << "each search at most the slice's words";
  EXPECT_EQ(ct.free_ports(0, 17), 300u);  // worker 0's slice untouched
  EXPECT_EQ(ct.free_ports(1, 6), 300u);   // and TCP has its own
}

// Issue 14: the flow count is kept per writer thread (each worker, and the
// control thread for expiry), no counter line every worker writes; the sum
// stays right when one worker's early drop takes another's flow.
TEST(ConnTrack, FlowCountIsPerWriterAndSumsRight) {
  ConnTrack::Options o = small(64, 2);  // 32 flows per worker, reserve 1
  o.early_drop_buckets = 32;            // the whole table
  ConnTrack ct(o);
  ASSERT_EQ(ct.reserve(), 1u);
  auto establish = [](Flow* x) {
    for (auto [flags, reply] : {std::pair{0x02, false}, {0x12, true}, {0x10, false}}) ConnTrack::tcp_flags(*x, uint8_t(flags), reply);
  };
  Flow* f = nullptr;
  ASSERT_EQ(snat(ct, 0, FlowKey{1, 2, 1000, 80, 6}, 9, &f), ConnTrack::Create::kOk);  // worker 0's, half-open
  ConnTrack::tcp_flags(*f, 0x02, false);
  for (uint16_t i = 0; i < 31; i++) {  // worker 1 down to its reserve, all established
    ASSERT_EQ(snat(ct, 1, FlowKey{1, 2, uint16_t(2000 + i), 80, 6}, 9, &f), ConnTrack::Create::kOk);
    establish(f);
  }
  EXPECT_EQ(ct.count(), 32u);
  EXPECT_EQ(ct.count_slot(0), 1);
  EXPECT_EQ(ct.count_slot(1), 31);
  // Worker 1's next flow evicts worker 0's half-open one: worker 1's slot counts both.
  ASSERT_EQ(snat(ct, 1, FlowKey{1, 2, 3000, 80, 6}, 9, &f), ConnTrack::Create::kOk);
  EXPECT_EQ(ct.early_drops(), 1u);
  EXPECT_EQ(ct.count_slot(0), 1);
  EXPECT_EQ(ct.count_slot(1), 31 + 1 - 1);
  EXPECT_EQ(ct.count(), 32u);
  // Expiry is the control thread's: its own slot goes negative.
  EXPECT_EQ(ct.expire(4000 * 1000, [](std::function<void()> fn) { fn(); }), 32u);
  EXPECT_EQ(ct.count_slot(2), -32);
  EXPECT_EQ(ct.count(), 0u);
}

TEST(ConnTrack, AGoneEndpointsFlowsGoWhateverTheirAge) {
  ConnTrack ct(small(64));
  Flow* f = nullptr;
  for (uint16_t port : {3, 4, 3}) {  // two flows out of port 3, one out of port 4
    FlowOut out;
    out.port = 2;  // to the uplink
    FlowOut back;
    back.port = port;
    ASSERT_EQ(ct.create(0, FlowKey{0x0a000000u + port, 0xc6336401, uint16_t(1000 + ct.count()), 80, 17}, 0xc633640a, 0, 0xc6336401, 80,
                        out, back, 0, 0, &f),
              ConnTrack::Create::kOk);
  }
  auto now = [](std::function<void()> fn) { fn(); };
  EXPECT_EQ(ct.expire(10, now, [](const Flow& x) { return x.out[0].port == 3 || x.out[1].port == 3; }), 2u);
  EXPECT_EQ(ct.count(), 1u);
  size_t seen = 0;
  ct.for_each([&](const Flow& x) { seen += x.out[1].port == 4; });
  EXPECT_EQ(seen, 1u);
  EXPECT_EQ(ct.expire(10, now), 0u);  // the others keep their timeouts
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
  auto sent = l4_frame(17, host, r, f->xsrc_port, 53, 1372);
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
  p.in_port = 3;  // from the container's side: not where errors about its outgoing packets come from
  ASSERT_EQ(stage::icmp_error(p, ip, 20, 20 + 8 + 28, rc, &out, &drop), stage::RouteNext::kDrop);
  EXPECT_EQ(drop, Drop::kWrongIngress);
  p.in_port = 7;  // the uplink
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

// ---- The whole pipeline over in-memory ports: a container network and the uplink ----
#include "dataplane/core/clock.h"
#include "dataplane/core/dataplane.h"
#include "dataplane/ports/mem_port.h"

namespace dpsw {
namespace {

constexpr uint32_t kGw = 0x0a000001, kC1 = 0x0a000002;         // 10.0.0.1 (gateway), 10.0.0.2 (container)
constexpr uint32_t kHostIp = 0xc633640a, kOut = 0xc6336401;    // 198.51.100.10 (uplink), .1 (outside, next hop)
constexpr Mac kRouterMac = 0x02dd00000001ULL, kUpMac = 0x02dd00000002ULL;
constexpr Mac kC1Mac = 0x020000000002ULL, kOutMac = 0x020000000099ULL;

// Ethernet + IPv4 + TCP with flags, valid checksums.
std::vector<uint8_t> tcp_seg(Mac dst, Mac src, uint32_t sip, uint32_t dip, uint16_t sport, uint16_t dport, uint8_t flags) {
  auto f = l4_frame(6, sip, dip, sport, dport, 0);
  mac_to_bytes(dst, f.data());
  mac_to_bytes(src, f.data() + 6);
  uint8_t* l4 = f.data() + 34;
  uint16_t old = csum::load16(l4 + 12);
  l4[13] = flags;
  csum::store16(l4 + 16, csum::update16(csum::load16(l4 + 16), old, csum::load16(l4 + 12)));
  return f;
}

struct NatRig {
  std::unique_ptr<Dataplane> dp;
  std::unique_ptr<MemPort> c1, up;
  enum : uint16_t { kC1Port = 0, kUpPort = 1 };

  explicit NatRig(ConnTrack::Options ct = small(1024)) {
    Dataplane::Options o;
    o.cores.assign(1, -1);
    o.mac.size = 1024;
    dp = std::make_unique<Dataplane>(o);
    dp->enable_l3(ct, 0xc6336400, 24);
    MemPort::Options mo;
    mo.ring_size = 4096;
    c1 = std::make_unique<MemPort>("c1", mo);
    up = std::make_unique<MemPort>("up", mo);
    auto s = std::make_unique<Snapshot>();
    s->bds.resize(2);
    s->rx_ports.resize(1);
    for (auto [port, bd] : {std::pair{c1.get(), 0}, {up.get(), 1}}) {
      PortEntry pe;
      pe.port = port;
      pe.bd = uint16_t(bd);
      s->bds[size_t(bd)].ports.push_back(uint16_t(s->ports.size()));
      s->rx_ports[0].push_back(uint16_t(s->ports.size()));
      s->ports.push_back(pe);
    }
    s->bds[0].local_ip = kGw, s->bds[0].router_mac = kRouterMac, s->bds[0].nat = true;
    s->bds[1].local_ip = kHostIp, s->bds[1].router_mac = kUpMac;
    L3Conf& l3 = s->l3;
    l3.enabled = true;
    l3.uplink_port = kUpPort, l3.uplink_bd = 1, l3.uplink_ip = kHostIp, l3.gateway = kOut, l3.uplink_mac = kUpMac;
    l3.isolated = {{0x0a000000, 0xffffff00}};
    l3.isolated_bd = {0};
    l3.allowed = {1, 0, 0, 0};
    l3.neighbors = {{kC1, kC1Port, 0, kC1Mac}};
    // 8080/tcp -> c1:80, 5353/udp -> c1:53
    l3.pub = {PubRule{8080, 80, kC1, kC1Port, 0, kC1Mac, kRouterMac, kGw}, PubRule{5353, 53, kC1, kC1Port, 0, kC1Mac, kRouterMac, kGw}};
    l3.pub_tcp.assign(65536, 0), l3.pub_udp.assign(65536, 0);
    l3.pub_tcp[8080] = 1, l3.pub_udp[5353] = 2;
    dp->publish(std::move(s));
    dp->arp()->learn(kOut, kOutMac);
  }
  void poll() {
    while (dp->worker(0).poll_once()) {
    }
  }
  ConnTrack& ct() { return *dp->conntrack(); }
  uint64_t drops(uint16_t port, Drop d) { return dp->port_totals(port).drops[size_t(d)]; }
  // The control thread's tick: expire, and (no worker threads here) the grace period is over at once.
  size_t tick() {
    return ct().expire(now_ms(), [](std::function<void()> fn) { fn(); });
  }
};

TEST(NatPipeline, SynFloodFromOutsideDoesNotLockContainersOut) {
  NatRig r;  // 1,024 flows
  std::mt19937 rnd(7);
  size_t delivered = 0;
  for (int i = 0; i < 3000; i++) {
    const uint32_t src = 0xc6336400 | (2 + rnd() % 250);
    ASSERT_TRUE(r.up->inject(tcp_seg(kUpMac, kOutMac, src, kHostIp, uint16_t(1024 + rnd() % 60000), 8080, 0x02)));
    if (i % 256 == 255) r.poll(), delivered += r.c1->take_tx().size();
  }
  r.poll();
  delivered += r.c1->take_tx().size();
  EXPECT_GE(delivered, 1024u - r.ct().reserve() - 8) << "the table filled with the flood first";
  EXPECT_LT(delivered, 3000u);
  EXPECT_GT(r.ct().full_drops(), 0u);
  EXPECT_GT(r.ct().early_drops(), 0u);
  EXPECT_GE(r.drops(NatRig::kUpPort, Drop::kCtFull), r.ct().full_drops());  // (and the odd insert that found both buckets full)
  size_t syn_sent = 0, other = 0;
  r.ct().for_each([&](const Flow& f) { (TcpState(f.state.load()) == TcpState::kSynSent ? syn_sent : other)++; });
  EXPECT_GT(syn_sent, 0u);
  EXPECT_EQ(other, 0u) << "nothing in the flood is established";
  // The server's SYN+ACKs and a container's close with no flow take none of the reserve.
  const size_t live = r.ct().count();
  for (uint16_t i = 0; i < 2 * r.ct().reserve(); i++) {
    r.c1->inject(tcp_seg(kRouterMac, kC1Mac, kC1, 0xcb007100 | (1 + i % 250), 80, uint16_t(20000 + i), 0x12));  // to 203.0.113.x
    r.c1->inject(tcp_seg(kRouterMac, kC1Mac, kC1, kOut, uint16_t(30000 + i), 80, 0x11));
  }
  r.poll();
  EXPECT_TRUE(r.up->take_tx().empty()) << "only while there is room";
  EXPECT_EQ(r.ct().count(), live);
  EXPECT_EQ(r.drops(NatRig::kC1Port, Drop::kCtInvalid), 2 * r.ct().reserve());
  EXPECT_EQ(r.drops(NatRig::kC1Port, Drop::kCtFull), 2 * r.ct().reserve());
  // The container's first SYN is admitted at once (no retransmission needed), and its flow works.
  r.c1->inject(tcp_seg(kRouterMac, kC1Mac, kC1, kOut, 40000, 80, 0x02));
  r.poll();
  auto out = r.up->take_tx();
  ASSERT_EQ(out.size(), 1u) << "the container's SYN was not forwarded";
  const uint8_t* ip = out[0].data() + 14;
  EXPECT_EQ(csum::load32(ip + 12), kHostIp);
  const uint16_t nat_port = csum::load16(ip + 20);
  r.up->inject(tcp_seg(kUpMac, kOutMac, kOut, kHostIp, 80, nat_port, 0x12));
  r.poll();
  ASSERT_EQ(r.c1->take_tx().size(), 1u) << "SYN+ACK back to the container";
  r.c1->inject(tcp_seg(kRouterMac, kC1Mac, kC1, kOut, 40000, 80, 0x10));
  r.poll();
  ASSERT_EQ(r.up->take_tx().size(), 1u);
  bool reply;
  const Flow* f = r.ct().find(FlowKey{kC1, kOut, 40000, 80, 6}, &reply);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(TcpState(f->state.load()), TcpState::kEstablished);
  // The control thread's next tick recycles the evicted flows: room again for the outside too.
  const size_t before = r.ct().count();
  r.tick();
  r.up->inject(tcp_seg(kUpMac, kOutMac, 0xc6336405, kHostIp, 999, 8080, 0x02));
  r.poll();
  EXPECT_EQ(r.c1->take_tx().size(), 1u);
  EXPECT_EQ(r.ct().count(), before + 1);
}

// As netfilter's conntrack: a segment with no flow opens one only when it is
// a SYN or an ACK (picked up mid-stream); a SYN+ACK, a SYN with FIN or RST,
// a flagless one is INVALID. A container's FIN or RST is picked up (its
// close reaches the remote after the flow expired), from outside it is not.
// A server's SYN+ACK retries for flows an early drop took, after a SYN
// flood, once used up the reserve a container's own connection needs.
TEST(NatPipeline, OnlyASynOrAnAckOpensATcpFlow) {
  NatRig r;
  uint16_t sport = 41000;
  for (uint8_t flags : {uint8_t(0x12), uint8_t(0x52), uint8_t(0x03), uint8_t(0x06), uint8_t(0x08), uint8_t(0x00)})
    r.c1->inject(tcp_seg(kRouterMac, kC1Mac, kC1, kOut, sport++, 80, flags));  // masquerade
  for (uint8_t flags : {uint8_t(0x12), uint8_t(0x04), uint8_t(0x14), uint8_t(0x11), uint8_t(0x01), uint8_t(0x00)})
    r.up->inject(tcp_seg(kUpMac, kOutMac, kOut, kHostIp, sport++, 8080, flags));  // a published port
  r.poll();
  EXPECT_TRUE(r.up->take_tx().empty());
  EXPECT_TRUE(r.c1->take_tx().empty());
  EXPECT_EQ(r.ct().count(), 0u);
  EXPECT_EQ(r.drops(NatRig::kC1Port, Drop::kCtInvalid), 6u);
  EXPECT_EQ(r.drops(NatRig::kUpPort, Drop::kCtInvalid), 6u);
  // SYNs (ECN's, with PSH or URG) and ACKs (with PSH or URG) open flows.
  const uint16_t first = sport;
  for (uint8_t flags : {uint8_t(0x02), uint8_t(0xc2), uint8_t(0x0a), uint8_t(0x22), uint8_t(0x10), uint8_t(0x18), uint8_t(0x30)})
    r.c1->inject(tcp_seg(kRouterMac, kC1Mac, kC1, kOut, sport++, 80, flags));
  r.poll();
  EXPECT_EQ(r.up->take_tx().size(), 7u);
  EXPECT_EQ(r.ct().count(), 7u);
  bool reply;
  const Flow* f = r.ct().find(FlowKey{kC1, kOut, uint16_t(first + 4), 80, 6}, &reply);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(TcpState(f->state.load()), TcpState::kNone);
  // A flow's own segments of every kind go on as before.
  r.c1->inject(tcp_seg(kRouterMac, kC1Mac, kC1, kOut, uint16_t(first + 4), 80, 0x11));
  r.poll();
  EXPECT_EQ(r.up->take_tx().size(), 1u);
  // A container's close with no flow (expired): out, masqueraded.
  const uint16_t closing = sport++, reset = sport++;
  r.c1->inject(tcp_seg(kRouterMac, kC1Mac, kC1, kOut, closing, 80, 0x11));
  r.c1->inject(tcp_seg(kRouterMac, kC1Mac, kC1, kOut, reset, 80, 0x14));
  r.poll();
  auto out = r.up->take_tx();
  ASSERT_EQ(out.size(), 2u);
  int i = 0;
  for (auto [port, state] : {std::pair{closing, TcpState::kClosing}, {reset, TcpState::kClose}}) {
    f = r.ct().find(FlowKey{kC1, kOut, port, 80, 6}, &reply);
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(TcpState(f->state.load()), state);
    EXPECT_EQ(csum::load32(out[size_t(i)].data() + 14 + 12), kHostIp);
    EXPECT_EQ(csum::load16(out[size_t(i++)].data() + 34), f->xsrc_port);
  }
  EXPECT_EQ(r.drops(NatRig::kC1Port, Drop::kCtInvalid), 6u);
}

}  // namespace
}  // namespace dpsw

namespace dpsw {
namespace {

// An IPv4 datagram (header + L4 bytes as given) in one Ethernet frame.
std::vector<uint8_t> ip_frame(Mac dst, Mac src, uint8_t proto, uint32_t sip, uint32_t dip, const std::vector<uint8_t>& l4, uint16_t id = 0x4d2) {
  std::vector<uint8_t> f(14 + 20 + l4.size(), 0);
  mac_to_bytes(dst, f.data());
  mac_to_bytes(src, f.data() + 6);
  store_be16(f.data() + 12, kEtherTypeIpv4);
  uint8_t* ip = f.data() + 14;
  ip[0] = 0x45, csum::store16(ip + 2, uint16_t(20 + l4.size())), csum::store16(ip + 4, id), ip[8] = 64, ip[9] = proto;
  csum::store32(ip + 12, sip), csum::store32(ip + 16, dip);
  csum::store16(ip + 10, csum::of(ip, 20));
  std::copy(l4.begin(), l4.end(), ip + 20);
  return f;
}

// Split a one-frame datagram into fragments of at most `mtu` IP bytes (what Linux sends).
std::vector<std::vector<uint8_t>> fragment(const std::vector<uint8_t>& whole, size_t mtu = 1500) {
  const uint8_t* ip = whole.data() + 14;
  const size_t data = whole.size() - 34, chunk = (mtu - 20) / 8 * 8;
  std::vector<std::vector<uint8_t>> out;
  for (size_t off = 0; off < data; off += chunk) {
    const size_t n = std::min(chunk, data - off);
    std::vector<uint8_t> f(whole.begin(), whole.begin() + 34);
    f.insert(f.end(), whole.begin() + 34 + long(off), whole.begin() + 34 + long(off + n));
    uint8_t* fip = f.data() + 14;
    csum::store16(fip + 2, uint16_t(20 + n));
    csum::store16(fip + 6, uint16_t((off / 8) | (off + n < data ? 0x2000 : 0)));
    fip[10] = fip[11] = 0;
    csum::store16(fip + 10, csum::of(fip, 20));
    out.push_back(std::move(f));
  }
  (void)ip;
  return out;
}

// Reassemble fragments (in order) into the datagram's L4 bytes; checks every IP header on the way.
std::vector<uint8_t> reassemble(const std::vector<std::vector<uint8_t>>& frags, uint16_t id, uint32_t sip, uint32_t dip) {
  std::vector<uint8_t> l4;
  for (size_t i = 0; i < frags.size(); i++) {
    const uint8_t* ip = frags[i].data() + 14;
    EXPECT_EQ(csum::of(ip, 20), 0) << "IP header checksum of fragment " << i;
    EXPECT_EQ(csum::load16(ip + 4), id) << "IP id kept";
    EXPECT_EQ(csum::load32(ip + 12), sip) << i;
    EXPECT_EQ(csum::load32(ip + 16), dip) << i;
    EXPECT_EQ(size_t(csum::load16(ip + 6) & 0x1fff) * 8, l4.size()) << "offset kept, in order";
    EXPECT_EQ((csum::load16(ip + 6) & 0x2000) != 0, i + 1 < frags.size()) << "MF kept";
    l4.insert(l4.end(), ip + 20, ip + csum::load16(ip + 2));
  }
  return l4;
}

uint16_t l4_sum(uint8_t proto, uint32_t sip, uint32_t dip, const std::vector<uint8_t>& l4) {
  uint32_t ps = proto == 1 ? 0 : (sip >> 16) + (sip & 0xffff) + (dip >> 16) + (dip & 0xffff) + proto + uint32_t(l4.size());
  return csum::of(l4.data(), l4.size(), ps);
}

std::vector<uint8_t> udp_l4(uint32_t sip, uint32_t dip, uint16_t sport, uint16_t dport, size_t payload) {
  std::vector<uint8_t> l4(8 + payload);
  csum::store16(l4.data(), sport), csum::store16(l4.data() + 2, dport), csum::store16(l4.data() + 4, uint16_t(l4.size()));
  for (size_t i = 0; i < payload; i++) l4[8 + i] = uint8_t(i * 7 + 3);
  csum::store16(l4.data() + 6, l4_sum(17, sip, dip, l4));
  return l4;
}

std::vector<uint8_t> echo_l4(uint8_t type, uint16_t id, size_t payload) {
  std::vector<uint8_t> l4(8 + payload);
  l4[0] = type, csum::store16(l4.data() + 4, id), csum::store16(l4.data() + 6, 1);
  for (size_t i = 0; i < payload; i++) l4[8 + i] = uint8_t(i * 13 + 1);
  csum::store16(l4.data() + 2, csum::of(l4.data(), l4.size()));
  return l4;
}

TEST(NatFragments, IcmpEcho3000OutAndBack) {
  NatRig r;
  auto frags = fragment(ip_frame(kRouterMac, kC1Mac, 1, kC1, kOut, echo_l4(8, 0x77, 3000), 0x1111));
  ASSERT_EQ(frags.size(), 3u);
  for (auto& f : frags) r.c1->inject(f);
  r.poll();
  auto out = r.up->take_tx();
  ASSERT_EQ(out.size(), 3u) << "every fragment masqueraded";
  auto l4 = reassemble(out, 0x1111, kHostIp, kOut);
  ASSERT_EQ(l4.size(), 3008u);
  EXPECT_EQ(csum::of(l4.data(), l4.size()), 0) << "ICMP checksum over the reassembled datagram";
  const uint16_t nat_id = csum::load16(l4.data() + 4);
  for (auto& f : out) EXPECT_EQ(f[14 + 8], 63) << "TTL decremented";
  // The outside answers, fragmented too.
  auto back = fragment(ip_frame(kUpMac, kOutMac, 1, kOut, kHostIp, echo_l4(0, nat_id, 3000), 0x2222));
  for (auto& f : back) r.up->inject(f);
  r.poll();
  auto in = r.c1->take_tx();
  ASSERT_EQ(in.size(), 3u) << "every fragment of the reply reaches the container";
  auto rl4 = reassemble(in, 0x2222, kOut, kC1);
  EXPECT_EQ(csum::of(rl4.data(), rl4.size()), 0);
  EXPECT_EQ(csum::load16(rl4.data() + 4), 0x77) << "the container's own echo id";
  EXPECT_EQ(mac_from_bytes(in[2].data()), kC1Mac);
}

TEST(NatFragments, UdpDatagram3000OutAndBackAndToAPublishedPort) {
  NatRig r;
  for (auto& f : fragment(ip_frame(kRouterMac, kC1Mac, 17, kC1, kOut, udp_l4(kC1, kOut, 40000, 7007, 3000), 0x3333))) r.c1->inject(f);
  r.poll();
  auto out = r.up->take_tx();
  ASSERT_EQ(out.size(), 3u);
  auto l4 = reassemble(out, 0x3333, kHostIp, kOut);
  EXPECT_EQ(l4_sum(17, kHostIp, kOut, l4), 0) << "UDP checksum (first fragment, incremental) over the whole datagram";
  const uint16_t nat_port = csum::load16(l4.data());
  EXPECT_NE(nat_port, 0);
  for (auto& f : fragment(ip_frame(kUpMac, kOutMac, 17, kOut, kHostIp, udp_l4(kOut, kHostIp, 7007, nat_port, 3000), 0x4444))) r.up->inject(f);
  r.poll();
  auto in = r.c1->take_tx();
  ASSERT_EQ(in.size(), 3u);
  auto rl4 = reassemble(in, 0x4444, kOut, kC1);
  EXPECT_EQ(l4_sum(17, kOut, kC1, rl4), 0);
  EXPECT_EQ(csum::load16(rl4.data() + 2), 40000);
  // From outside to a published UDP port (5353 -> c1:53).
  for (auto& f : fragment(ip_frame(kUpMac, kOutMac, 17, kOut, kHostIp, udp_l4(kOut, kHostIp, 5555, 5353, 3000), 0x5555))) r.up->inject(f);
  r.poll();
  in = r.c1->take_tx();
  ASSERT_EQ(in.size(), 3u);
  rl4 = reassemble(in, 0x5555, kOut, kC1);
  EXPECT_EQ(l4_sum(17, kOut, kC1, rl4), 0);
  EXPECT_EQ(csum::load16(rl4.data() + 2), 53);
}

TEST(NatFragments, AFragmentWithoutItsFirstIsDroppedAndCounted) {
  NatRig r;
  auto frags = fragment(ip_frame(kRouterMac, kC1Mac, 17, kC1, kOut, udp_l4(kC1, kOut, 40000, 7007, 3000), 0x6666));
  r.c1->inject(frags[1]);
  r.c1->inject(frags[2]);
  r.poll();
  EXPECT_EQ(r.up->take_tx().size(), 0u);
  EXPECT_EQ(r.drops(NatRig::kC1Port, Drop::kFragNoFlow), 2u);
}

TEST(NatOtherProtocols, GreIsMasqueradedByAddressAndItsReplyComesBack) {
  NatRig r;
  std::vector<uint8_t> gre = {0x00, 0x00, 0x08, 0x00, 0x45, 0x00, 0x00, 0x14, 1, 2, 3, 4};  // GRE header + the start of an inner packet
  r.c1->inject(ip_frame(kRouterMac, kC1Mac, 47, kC1, kOut, gre, 0x7777));
  r.poll();
  auto out = r.up->take_tx();
  ASSERT_EQ(out.size(), 1u);
  const uint8_t* ip = out[0].data() + 14;
  EXPECT_EQ(csum::load32(ip + 12), kHostIp);
  EXPECT_EQ(csum::of(ip, 20), 0);
  EXPECT_EQ(std::vector<uint8_t>(ip + 20, ip + 20 + gre.size()), gre) << "the GRE packet itself untouched";
  EXPECT_EQ(mac_from_bytes(out[0].data()), kOutMac);
  r.up->inject(ip_frame(kUpMac, kOutMac, 47, kOut, kHostIp, gre, 0x8888));
  r.poll();
  auto in = r.c1->take_tx();
  ASSERT_EQ(in.size(), 1u);
  EXPECT_EQ(csum::load32(in[0].data() + 14 + 16), kC1);
  EXPECT_EQ(csum::of(in[0].data() + 14, 20), 0);
  bool reply;
  const Flow* f = r.ct().find(FlowKey{kC1, kOut, 0, 0, 47}, &reply);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->state.load(), 1) << "replied";
  // Another inside host towards the same remote with the same protocol: refused while this flow lives.
  Flow* g = nullptr;
  EXPECT_EQ(r.ct().create(0, FlowKey{0x0a000003, kOut, 0, 0, 47}, kHostIp, 0, kOut, 0, FlowOut{}, FlowOut{}, 0, 0, &g),
            ConnTrack::Create::kClash);
  // Unsolicited GRE from outside: no flow, no published port.
  r.up->inject(ip_frame(kUpMac, kOutMac, 47, 0xc6336407, kHostIp, gre));
  r.poll();
  EXPECT_EQ(r.c1->take_tx().size(), 0u);
  EXPECT_EQ(r.drops(NatRig::kUpPort, Drop::kNoFlow), 1u);
}

TEST(NatL3Checks, EchoToTheGatewayWithABadChecksumIsNotAnswered) {
  NatRig r;
  auto good = test::icmp_echo(kRouterMac, kC1Mac, kC1, kGw, 56);
  auto bad_ip = good, bad_icmp = good;
  bad_ip[14 + 10] ^= 0x40;
  bad_icmp[14 + 20 + 2] ^= 0x01;
  r.c1->inject(bad_ip);
  r.c1->inject(bad_icmp);
  r.poll();
  EXPECT_EQ(r.c1->take_tx().size(), 0u);
  EXPECT_EQ(r.drops(NatRig::kC1Port, Drop::kBadCsum), 2u);
  r.c1->inject(good);
  r.poll();
  EXPECT_EQ(r.c1->take_tx().size(), 1u) << "a good one is answered";
  // Routed packets with a bad IP header checksum are not forwarded either.
  auto routed = test::icmp_echo(kRouterMac, kC1Mac, kC1, kOut, 56);
  routed[14 + 10] ^= 0x01;
  r.c1->inject(routed);
  r.poll();
  EXPECT_EQ(r.up->take_tx().size(), 0u);
  EXPECT_EQ(r.drops(NatRig::kC1Port, Drop::kBadCsum), 3u);
}

// Issue 19: a container on an internal network reused another container's
// flow tuple to get out, and injected into a container on another network
// by sending the reply tuple. Flows are bound to the ports they come from,
// and a container routes only from its own network's addresses.
TEST(NatL3Checks, AFlowIsUsedOnlyFromWhereItComes) {
  NatRig r;
  MemPort::Options mo;
  MemPort other("c9", mo);  // a container on an internal network (bd 2)
  {
    auto s = std::make_unique<Snapshot>(r.dp->snapshot());
    s->bds.resize(3);
    PortEntry pe;
    pe.port = &other;
    pe.bd = 2;
    s->bds[2].ports.push_back(2);
    s->bds[2].local_ip = 0x0a000101, s->bds[2].router_mac = kRouterMac;  // 10.0.1.1, internal (nat false)
    s->rx_ports[0].push_back(2);
    s->ports.push_back(pe);
    r.dp->publish(std::move(s));
  }
  auto udp = [](Mac dst, Mac src, uint32_t sip, uint32_t dip, uint16_t sport, uint16_t dport) {
    auto f = l4_frame(17, sip, dip, sport, dport, 16);
    mac_to_bytes(dst, f.data());
    mac_to_bytes(src, f.data() + 6);
    return f;
  };
  r.c1->inject(udp(kRouterMac, kC1Mac, kC1, kOut, 5000, 53));
  r.poll();
  auto out = r.up->take_tx();
  ASSERT_EQ(out.size(), 1u);
  const uint16_t nat_port = load16(out[0].data() + 34);
  // The same tuple from the internal network: not c1's flow, does not leave.
  other.inject(udp(kRouterMac, 0x020000000009ULL, kC1, kOut, 5000, 53));
  // The reply tuple from the internal network: not delivered to c1.
  other.inject(udp(kRouterMac, 0x020000000009ULL, kOut, kHostIp, 53, nat_port));
  r.poll();
  EXPECT_EQ(r.up->take_tx().size(), 0u);
  EXPECT_EQ(r.c1->take_tx().size(), 0u);
  EXPECT_EQ(r.drops(2, Drop::kWrongIngress), 2u);
  // The real reply still comes back.
  r.up->inject(udp(kUpMac, kOutMac, kOut, kHostIp, 53, nat_port));
  r.poll();
  EXPECT_EQ(r.c1->take_tx().size(), 1u);
  // With its network's subnet known, a container routes only from its own addresses.
  {
    auto s = std::make_unique<Snapshot>(r.dp->snapshot());
    s->bds[0].subnet = 0x0a000000, s->bds[0].mask = 0xffffff00;
    r.dp->publish(std::move(s));
  }
  r.c1->inject(udp(kRouterMac, kC1Mac, 0x0a090909, kOut, 5001, 53));
  r.poll();
  EXPECT_EQ(r.up->take_tx().size(), 0u);
  EXPECT_EQ(r.drops(NatRig::kC1Port, Drop::kSpoofedSrc), 1u);
}

TEST(NatL3Checks, MartianDestinationsAndSourcesAreNotMasqueraded) {
  NatRig r;
  for (uint32_t dst : {0x7f000001u, 0x00000000u, 0x01020304u & 0x00ffffffu, 0xe0000005u, 0xf0000001u, 0xffffffffu})
    r.c1->inject(test::icmp_echo(kRouterMac, kC1Mac, kC1, dst, 8));
  r.c1->inject(test::icmp_echo(kRouterMac, kC1Mac, 0x7f000001, kOut, 8));  // martian source from a container
  r.up->inject(test::icmp_echo(kUpMac, kOutMac, 0x7f000001, kHostIp, 8));  // and from outside
  r.poll();
  EXPECT_EQ(r.up->take_tx().size() + r.c1->take_tx().size(), 0u);
  EXPECT_EQ(r.drops(NatRig::kC1Port, Drop::kMartian), 7u);
  EXPECT_EQ(r.drops(NatRig::kUpPort, Drop::kMartian), 1u);
  EXPECT_EQ(r.ct().count(), 0u);
  r.c1->inject(test::icmp_echo(kRouterMac, kC1Mac, kC1, kOut, 8));
  r.poll();
  EXPECT_EQ(r.up->take_tx().size(), 1u) << "a real destination still goes out";
}

}  // namespace
}  // namespace dpsw

namespace dpsw {
namespace {

// A Linux peer's TCP/UDP checksum left to offload (the pseudo-header sum
// only), as AF_XDP hands it over from a veth: dpsw completes it on the uplink.
uint32_t l4_sum_ok(const std::vector<uint8_t>& f) {  // 0xffff when the L4 checksum verifies
  const uint8_t* ip = f.data() + 14;
  const uint32_t l4len = csum::load16(ip + 2) - 20u;
  uint32_t s = uint32_t(csum::load16(ip + 12)) + csum::load16(ip + 14) + csum::load16(ip + 16) + csum::load16(ip + 18) + ip[9] + l4len;
  return csum::fold(s + uint16_t(~csum::of(ip + 20, l4len)));
}
std::vector<uint8_t> partial(uint8_t proto, size_t len) {
  auto f = test::ipv4_frame(test::station(1), test::station(2), 0xc6336401, 0xc633640a, proto, len, 0x3c);
  uint8_t* ip = f.data() + 14;
  const uint32_t l4len = csum::load16(ip + 2) - 20u;
  csum::store16(ip + 20 + (proto == 6 ? 16 : 6), csum::fold(uint32_t(csum::load16(ip + 12)) + csum::load16(ip + 14) +
                                                            csum::load16(ip + 16) + csum::load16(ip + 18) + proto + l4len));
  return f;
}

TEST(PartialChecksum, CompletedForTcpAndUdpAndLeftAloneOnceComplete) {
  for (uint8_t proto : {uint8_t(6), uint8_t(17)})
    for (size_t len : {size_t(14 + 20 + 20), size_t(14 + 20 + 20 + 1), size_t(1514)}) {
      auto f = partial(proto, len);
      EXPECT_NE(l4_sum_ok(f), 0xffffu);
      EXPECT_TRUE(csum::complete_partial(f.data(), uint32_t(f.size())));
      EXPECT_EQ(l4_sum_ok(f), 0xffffu) << int(proto) << " " << len;
      const auto done = f;
      EXPECT_FALSE(csum::complete_partial(f.data(), uint32_t(f.size())));  // complete: untouched
      EXPECT_EQ(f, done);
    }
}

TEST(PartialChecksum, FragmentsAndOtherProtocolsUntouched) {
  auto f = partial(6, 200);
  f[14 + 6] = 0x20;  // MF: the L4 header's checksum covers the whole datagram
  const auto frag = f;
  EXPECT_FALSE(csum::complete_partial(f.data(), uint32_t(f.size())));
  EXPECT_EQ(f, frag);
  auto icmp = test::icmp_echo(test::station(1), test::station(2), 1, 2, 10);
  const auto before = icmp;
  EXPECT_FALSE(csum::complete_partial(icmp.data(), uint32_t(icmp.size())));
  EXPECT_EQ(icmp, before);
}

}  // namespace
}  // namespace dpsw
