// The DNS responder in the packet path (issue 16): the snapshot's name table
// (scope, aliases, reverse), answers written by the worker for real frames
// (addresses, ports, checksums, every rcode), and the upstream relay (the
// query as the upstream sees it, the answer as the asker sees it, forged or
// late answers refused, retries and SERVFAIL), including the relay slots'
// one-winner rule under two threads (run under TSan too).
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "dataplane/core/checksum.h"
#include "dataplane/core/dataplane.h"
#include "dataplane/dns/dns_relay.h"
#include "dataplane/dns/dns_table.h"
#include "dataplane/dns/dns_wire.h"
#include "dataplane/ports/mem_port.h"
#include "tests/fixtures/frames.h"

namespace dpsw {
namespace {

using Bytes = std::vector<uint8_t>;

constexpr uint32_t kGw = 0x0a000001, kC1 = 0x0a000002, kC2 = 0x0a000003;  // 10.0.0.1 (gateway), .2, .3
constexpr uint32_t kGwB = 0x0a000101, kC3 = 0x0a000102;                   // network b: 10.0.1.1, .2
constexpr uint32_t kHostIp = 0xc633640a, kOut = 0xc6336401, kOut2 = 0xc6336402;  // uplink, upstream (next hop), a second upstream
constexpr Mac kRouterMac = 0x02dd00000001ULL, kUpMac = 0x02dd00000002ULL, kC1Mac = 0x020000000002ULL, kOutMac = 0x020000000099ULL;

// A DnsTable as the control module builds it: (bd, name, ip) entries, PTRs, scopes.
struct TableBuilder {
  DnsTable t;
  uint32_t str(const std::string& s) {
    const uint32_t off = uint32_t(t.pool.size());
    t.pool.append(s).push_back('\0');
    return off;
  }
  void name(uint16_t bd, const std::string& n, uint32_t ip) { t.names.push_back({DnsTable::name_key(bd, n), str(n), ip, bd}); }
  void ptr(uint16_t bd, uint32_t ip, const std::string& n) { t.ptrs.push_back({uint64_t(bd) << 32 | ip, str(n)}); }
  void scope(uint16_t port, std::vector<uint16_t> bds) {
    if (t.scope.size() <= port) t.scope.resize(port + 1, UINT32_MAX);
    t.scope[port] = uint32_t(t.scope_bds.size());
    t.scope_bds.push_back(uint16_t(bds.size()));
    t.scope_bds.insert(t.scope_bds.end(), bds.begin(), bds.end());
  }
  DnsTable done() {
    std::sort(t.names.begin(), t.names.end(), [](auto& a, auto& b) { return a.key != b.key ? a.key < b.key : a.ip < b.ip; });
    std::sort(t.ptrs.begin(), t.ptrs.end(), [](auto& a, auto& b) { return a.key < b.key; });
    return t;
  }
};

DnsTable sample_table() {
  TableBuilder b;
  b.name(0, "c1", kC1);
  b.name(0, "c1.a", kC1);
  b.name(0, "www", kC1);
  b.name(0, "shared", kC2);
  b.name(0, "shared", kC1);
  b.name(1, "c3", kC3);
  b.ptr(0, kC1, "c1.a");
  b.ptr(1, kC3, "c3.b");
  b.scope(0, {0});
  b.scope(5, {0, 1});  // a port on a whose endpoint is on b too
  b.t.subnets = {{0x0a000000, 0xffffff00}, {0x0a000100, 0xffffff00}};
  b.t.ttl = 600;
  return b.done();
}

TEST(DnsTable, LookupScopeAndReverse) {
  const DnsTable t = sample_table();
  uint32_t ips[8];
  EXPECT_EQ(t.lookup(0, "c1", ips, 8), 1u);
  EXPECT_EQ(ips[0], kC1);
  ASSERT_EQ(t.lookup(0, "shared", ips, 8), 2u);
  EXPECT_EQ(ips[0], kC1);  // address order
  EXPECT_EQ(ips[1], kC2);
  EXPECT_EQ(t.lookup(0, "c3", ips, 8), 0u) << "c3 is on b only";
  EXPECT_EQ(t.lookup(1, "c3", ips, 8), 1u);
  EXPECT_EQ(t.lookup(0, "c", ips, 8), 0u);
  uint16_t sc[4];
  EXPECT_EQ(t.scope_of(0, 0, sc, 4), 1u);
  ASSERT_EQ(t.scope_of(5, 0, sc, 4), 2u);
  EXPECT_EQ(sc[1], 1);
  EXPECT_EQ(t.scope_of(9, 1, sc, 4), 1u) << "a port without a scope: its own network";
  EXPECT_EQ(sc[0], 1);
  EXPECT_STREQ(t.reverse(0, kC1), "c1.a");
  EXPECT_EQ(t.reverse(1, kC1), nullptr);
  EXPECT_TRUE(t.in_subnet(0, 0x0a0000c8));
  EXPECT_FALSE(t.in_subnet(0, kC3));
}

// ---- Frames ----

using test::name_wire;

Bytes query_msg(const std::string& name, uint16_t type = dns::kTypeA, uint16_t qclass = dns::kClassIn, uint16_t flags = 0x0100,
                uint16_t qd = 1, uint16_t id = 0x4242) {
  Bytes m{uint8_t(id >> 8), uint8_t(id), uint8_t(flags >> 8), uint8_t(flags), 0, uint8_t(qd), 0, 0, 0, 0, 0, 0};
  Bytes n = name_wire(name);
  m.insert(m.end(), n.begin(), n.end());
  m.insert(m.end(), {uint8_t(type >> 8), uint8_t(type), uint8_t(qclass >> 8), uint8_t(qclass)});
  return m;
}

// Ethernet + IPv4 + UDP (checksum as a Linux container leaves it: partial, i.e. pseudo-header only, when `partial`).
Bytes udp_frame(Mac dst, Mac src, uint32_t sip, uint32_t dip, uint16_t sport, uint16_t dport, const Bytes& payload, bool partial = false) {
  Bytes f = test::ipv4_frame(dst, src, sip, dip, 17, 14 + 20 + 8 + payload.size());
  uint8_t* udp = f.data() + 34;
  csum::store16(udp, sport);
  csum::store16(udp + 2, dport);
  csum::store16(udp + 4, uint16_t(8 + payload.size()));
  std::copy(payload.begin(), payload.end(), udp + 8);
  const uint32_t pseudo = (sip >> 16) + (sip & 0xffff) + (dip >> 16) + (dip & 0xffff) + 17 + 8 + uint32_t(payload.size());
  csum::store16(udp + 6, partial ? csum::fold(pseudo) : csum::of(udp, 8 + payload.size(), pseudo));
  return f;
}

struct Udp {
  uint32_t sip, dip;
  uint16_t sport, dport;
  Bytes payload;
  Mac dst, src;
};
// Parses an IPv4/UDP frame, checking both checksums.
Udp parse_udp(const Bytes& f) {
  EXPECT_GE(f.size(), 42u);
  const uint8_t* ip = f.data() + 14;
  EXPECT_EQ(csum::of(ip, 20), 0) << "IP header checksum";
  EXPECT_EQ(ip[9], 17);
  const uint8_t* udp = ip + 20;
  const uint32_t ulen = csum::load16(udp + 4);
  EXPECT_EQ(14 + 20 + ulen, f.size());
  const uint32_t sip = csum::load32(ip + 12), dip = csum::load32(ip + 16);
  const uint32_t pseudo = (sip >> 16) + (sip & 0xffff) + (dip >> 16) + (dip & 0xffff) + 17 + ulen;
  EXPECT_EQ(csum::of(udp, ulen, pseudo), 0) << "UDP checksum";
  return {sip, dip, csum::load16(udp), csum::load16(udp + 2), Bytes(udp + 8, udp + ulen), mac_from_bytes(f.data()), mac_from_bytes(f.data() + 6)};
}
unsigned rcode(const Bytes& m) { return m[3] & 15; }
unsigned ancount(const Bytes& m) { return csum::load16(m.data() + 6); }

struct DnsRig {
  std::unique_ptr<Dataplane> dp;
  std::unique_ptr<MemPort> c1, up;
  enum : uint16_t { kC1Port = 0, kUpPort = 1 };

  explicit DnsRig(std::vector<uint32_t> upstream = {kOut}, uint32_t c1_mtu = 1500) {
    Dataplane::Options o;
    o.cores.assign(1, -1);
    o.mac.size = 1024;
    dp = std::make_unique<Dataplane>(o);
    ConnTrack::Options ct;
    ct.size = 1024;
    dp->enable_l3(ct, 0xc6336400, 24);
    MemPort::Options mo;
    mo.ring_size = 1024;
    c1 = std::make_unique<MemPort>("c1", mo);
    up = std::make_unique<MemPort>("up", mo);
    auto s = std::make_unique<Snapshot>();
    s->bds.resize(2);
    s->rx_ports.resize(1);
    for (auto [port, bd] : {std::pair{c1.get(), 0}, {up.get(), 1}}) {
      PortEntry pe;
      pe.port = port;
      pe.bd = uint16_t(bd);
      pe.max_frame = bd == 0 ? c1_mtu + 14 : 1514;
      s->bds[size_t(bd)].ports.push_back(uint16_t(s->ports.size()));
      s->rx_ports[0].push_back(uint16_t(s->ports.size()));
      s->ports.push_back(pe);
    }
    s->bds[0].local_ip = kGw, s->bds[0].router_mac = kRouterMac, s->bds[0].nat = true, s->bds[0].relay_names = true, s->bds[0].dns = true;
    s->bds[1].local_ip = kHostIp, s->bds[1].router_mac = kUpMac, s->bds[1].dns_relay = true;
    L3Conf& l3 = s->l3;
    l3.enabled = true;
    l3.uplink_port = kUpPort, l3.uplink_bd = 1, l3.uplink_ip = kHostIp, l3.gateway = kOut, l3.uplink_mac = kUpMac;
    l3.isolated = {{0x0a000000, 0xffffff00}};
    l3.isolated_bd = {0};
    l3.allowed = {1, 0, 0, 0};
    s->dns = sample_table();
    s->dns.upstream = upstream;
    dp->publish(std::move(s));
    dp->arp()->learn(kOut, kOutMac);
    dp->arp()->learn(kOut2, kOutMac + 1);
  }
  void poll() {
    while (dp->worker(0).poll_once()) {
    }
  }
  // A query from c1 to the gateway; the frames c1 gets back.
  std::vector<Bytes> ask(const Bytes& msg, uint16_t sport = 33333) {
    c1->inject(udp_frame(kRouterMac, kC1Mac, kC1, kGw, sport, 53, msg, true));
    poll();
    return c1->take_tx();
  }
  const WorkerCounters::Dns& counters() { return dp->worker(0).counters().dns; }
  uint64_t drops(uint16_t port, Drop d) { return dp->port_totals(port).drops[size_t(d)]; }
};

TEST(DnsPipeline, AnswersFromTheGatewayWithValidChecksums) {
  DnsRig r;
  auto got = r.ask(query_msg("C1"));  // case-insensitive; the query's own checksum partial (a container's)
  ASSERT_EQ(got.size(), 1u);
  Udp u = parse_udp(got[0]);
  EXPECT_EQ(u.sip, kGw);
  EXPECT_EQ(u.dip, kC1);
  EXPECT_EQ(u.sport, 53);
  EXPECT_EQ(u.dport, 33333);
  EXPECT_EQ(u.src, kRouterMac);
  EXPECT_EQ(u.dst, kC1Mac);
  EXPECT_EQ(rcode(u.payload), 0u);
  EXPECT_EQ(u.payload[2] & 0x84, 0x84) << "QR and AA";
  EXPECT_EQ(csum::load16(u.payload.data()), 0x4242) << "the asker's id";
  ASSERT_EQ(ancount(u.payload), 1u);
  const Bytes& m = u.payload;
  EXPECT_EQ(csum::load32(m.data() + m.size() - 4), kC1);
  EXPECT_EQ(csum::load32(m.data() + m.size() - 10), 600u) << "TTL";
  // The question is echoed as asked (0x20).
  EXPECT_EQ(m[13], 'C');
  EXPECT_EQ(r.counters().answered.get(), 1u);
}

TEST(DnsPipeline, EveryOutcome) {
  DnsRig r;
  auto one = [&](const Bytes& q) {
    auto got = r.ask(q);
    EXPECT_EQ(got.size(), 1u);
    return got.empty() ? Bytes{} : parse_udp(got[0]).payload;
  };
  Bytes m = one(query_msg("shared"));
  EXPECT_EQ(ancount(m), 2u);
  m = one(query_msg("c1.a"));
  EXPECT_EQ(ancount(m), 1u);
  m = one(query_msg("c1", dns::kTypeAaaa));
  EXPECT_EQ(rcode(m), 0u);
  EXPECT_EQ(ancount(m), 0u) << "NODATA";
  m = one(query_msg("2.0.0.10.in-addr.arpa", dns::kTypePtr));
  EXPECT_EQ(ancount(m), 1u);
  const Bytes target = name_wire("c1.a");
  EXPECT_TRUE(std::search(m.begin(), m.end(), target.begin(), target.end()) != m.end()) << "PTR target c1.a";
  m = one(query_msg("200.0.0.10.in-addr.arpa", dns::kTypePtr));
  EXPECT_EQ(rcode(m), 3u) << "NXDOMAIN: our subnet, nobody's address";
  m = one(query_msg("version.bind", 16, 3));
  EXPECT_EQ(rcode(m), 5u) << "CHAOS: REFUSED";
  m = one(query_msg("c1", dns::kTypeA, dns::kClassIn, 0x0100, 2));
  EXPECT_EQ(rcode(m), 1u) << "QDCOUNT 2: FORMERR";
  m = one(query_msg("c1", dns::kTypeA, dns::kClassIn, 0x2900));
  EXPECT_EQ(rcode(m), 4u) << "UPDATE: NOTIMP";
  EXPECT_TRUE(r.ask(query_msg("c3")).empty()) << "c3 is on b, which c1 does not share: not answered here...";
  EXPECT_EQ(r.up->take_tx().size(), 1u) << "...but relayed upstream";
}

TEST(DnsPipeline, NotAQueryIsDroppedAndCounted) {
  DnsRig r;
  EXPECT_TRUE(r.ask(query_msg("c1", dns::kTypeA, dns::kClassIn, 0x8100)).empty()) << "a response is never answered";
  EXPECT_TRUE(r.ask(Bytes{1, 2, 3}).empty());
  EXPECT_EQ(r.drops(DnsRig::kC1Port, Drop::kDnsBad), 2u);
}

// The relay: the query as the upstream sees it.
struct Relayed {
  uint16_t port, id;
  uint32_t server;
  Bytes msg;
};
Relayed upstream_query(DnsRig& r) {
  auto out = r.up->take_tx();
  std::erase_if(out, [](const Bytes& f) { return load_be16(f.data() + 12) != kEtherTypeIpv4; });  // ARP probes of the next hops
  EXPECT_EQ(out.size(), 1u);
  if (out.empty()) return {};
  Udp u = parse_udp(out[0]);
  EXPECT_EQ(u.sip, kHostIp) << "masqueraded: the host's address";
  EXPECT_EQ(u.src, kUpMac);
  EXPECT_EQ(u.dport, 53);
  EXPECT_GE(u.sport, DnsRelay::kPortLo);
  return {u.sport, csum::load16(u.payload.data()), u.dip, u.payload};
}
Bytes answer_to(const Relayed& q, uint32_t from = kOut, int id = -1, size_t pad = 0) {
  Bytes a = q.msg;
  a[2] |= 0x80;  // QR
  if (id >= 0) csum::store16(a.data(), uint16_t(id));
  a[7] = 1;  // ANCOUNT 1: a record for the question
  const Bytes rr{0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 203, 0, 113, 7};
  a.insert(a.end(), rr.begin(), rr.end());
  a.insert(a.end(), pad, 0);
  return udp_frame(kUpMac, kOutMac, from, kHostIp, 53, q.port, a);
}

TEST(DnsRelayPipeline, QueryOutAnswerBackForgedAndLateRefused) {
  DnsRig r;
  EXPECT_TRUE(r.ask(query_msg("example.org")).empty()) << "nothing yet: the query went upstream";
  Relayed q = upstream_query(r);
  EXPECT_EQ(q.server, kOut);
  EXPECT_EQ(q.msg.size(), query_msg("example.org").size());
  EXPECT_EQ(r.counters().forwarded.get(), 1u);
  // Forged: from an address that is not an upstream, with another id (the
  // asker's own among them), to another relay port, not an answer (QR 0), or
  // for another question.
  r.up->inject(answer_to(q, 0xc6336403));
  r.up->inject(answer_to(q, kOut, q.id ^ 1));
  if (q.id != 0x4242) r.up->inject(answer_to(q, kOut, 0x4242));
  Relayed other = q;
  other.port = uint16_t(q.port == 65535 ? 65534 : q.port + 1);
  r.up->inject(answer_to(other));
  Bytes noqr = answer_to(q);
  noqr[42 + 2] &= 0x7f;
  r.up->inject(noqr);
  Relayed otherq = q;
  otherq.msg[otherq.msg.size() - 3] = 28;  // QTYPE AAAA
  r.up->inject(answer_to(otherq));
  r.poll();
  EXPECT_TRUE(r.c1->take_tx().empty());
  EXPECT_EQ(r.drops(DnsRig::kUpPort, Drop::kNoFlow), q.id != 0x4242 ? 6u : 5u) << "refused answers go on to routing, which finds no flow";
  // The real answer: to c1, from its gateway, with its own id.
  r.up->inject(answer_to(q));
  r.poll();
  auto got = r.c1->take_tx();
  ASSERT_EQ(got.size(), 1u);
  Udp u = parse_udp(got[0]);
  EXPECT_EQ(u.sip, kGw);
  EXPECT_EQ(u.sport, 53);
  EXPECT_EQ(u.dip, kC1);
  EXPECT_EQ(u.dport, 33333);
  EXPECT_EQ(u.dst, kC1Mac);
  EXPECT_EQ(csum::load16(u.payload.data()), 0x4242);
  EXPECT_EQ(ancount(u.payload), 1u);
  EXPECT_EQ(r.counters().relayed.get(), 1u);
  // The same answer again (late, duplicated): nobody waits for it.
  r.up->inject(answer_to(q));
  r.poll();
  EXPECT_TRUE(r.c1->take_tx().empty());
}

TEST(DnsRelayPipeline, TooBigForTheAskerGoesTruncated) {
  DnsRig r({kOut}, 576);
  r.ask(query_msg("big.example.org"));
  Relayed q = upstream_query(r);
  r.up->inject(answer_to(q, kOut, -1, 1000));
  r.poll();
  auto got = r.c1->take_tx();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_LE(got[0].size(), 576u + 14);
  Udp u = parse_udp(got[0]);
  EXPECT_EQ(u.payload[2] & 0x02, 0x02) << "TC";
  EXPECT_EQ(ancount(u.payload), 0u);
  EXPECT_EQ(u.payload.size(), query_msg("big.example.org").size()) << "header and question";
}

TEST(DnsRelayPipeline, RetriesTheNextServerThenServfail) {
  DnsRig r({kOut, kOut2});
  r.ask(query_msg("slow.example.org"));
  Relayed q1 = upstream_query(r);
  EXPECT_EQ(q1.server, kOut);
  std::this_thread::sleep_for(std::chrono::milliseconds(DnsRelay::kTryMs + 100));
  r.poll();
  Relayed q2 = upstream_query(r);
  EXPECT_EQ(q2.server, kOut2);
  EXPECT_EQ(q2.port, q1.port);
  EXPECT_EQ(q2.id, q1.id);
  std::this_thread::sleep_for(std::chrono::milliseconds(2 * DnsRelay::kTryMs + 100));
  r.poll();
  upstream_query(r);  // the third try, to the first server again...
  std::this_thread::sleep_for(std::chrono::milliseconds(DnsRelay::kTryMs + 100));
  r.poll();
  auto got = r.c1->take_tx();  // ...then SERVFAIL
  ASSERT_EQ(got.size(), 1u);
  Udp u = parse_udp(got[0]);
  EXPECT_EQ(rcode(u.payload), 2u);
  EXPECT_EQ(csum::load16(u.payload.data()), 0x4242);
  EXPECT_EQ(r.counters().upstream_timeouts.get(), 3u);
  EXPECT_EQ(r.counters().servfail.get(), 1u);
  // A late answer finds the slot free.
  r.up->inject(answer_to(q1));
  r.poll();
  EXPECT_TRUE(r.c1->take_tx().empty());
}

TEST(DnsRelayPipeline, EdnsSizeCappedAndInternalNetworksNotRelayed) {
  DnsRig r;
  Bytes m = query_msg("big.example.org");
  m[11] = 1;  // ARCOUNT: an OPT record asking for 4096 bytes
  m.insert(m.end(), {0, 0, 41, 0x10, 0x00, 0, 0, 0, 0, 0, 0});
  r.ask(m);
  Relayed q = upstream_query(r);
  EXPECT_EQ(csum::load16(q.msg.data() + q.msg.size() - 8), 1232) << "the upstream is asked for at most 1232 bytes";
  // An internal network's query for an outside name: SERVFAIL, nothing upstream.
  auto s = std::make_unique<Snapshot>(r.dp->snapshot());
  s->bds[0].nat = s->bds[0].relay_names = false;
  r.dp->publish(std::move(s));
  auto got = r.ask(query_msg("example.org"));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(rcode(parse_udp(got[0]).payload), 2u);
  EXPECT_TRUE(r.up->take_tx().empty());
}

TEST(DnsPipeline, AnswersStayWithinThePortsFrames) {
  TableBuilder b;
  for (uint32_t i = 0; i < 120; i++) b.name(0, "many", 0x0a000200 + i);
  b.scope(0, {0});
  DnsRig r;
  auto s = std::make_unique<Snapshot>(r.dp->snapshot());
  s->dns = b.done();
  r.dp->publish(std::move(s));
  Bytes m = query_msg("many");
  m[11] = 1;  // EDNS, 4096 bytes: more than the port's 1514-byte frames carry
  m.insert(m.end(), {0, 0, 41, 0x10, 0x00, 0, 0, 0, 0, 0, 0});
  auto got = r.ask(m);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_LE(got[0].size(), 1514u);
  Udp u = parse_udp(got[0]);
  EXPECT_EQ(u.payload[2] & 0x02, 0x02) << "TC: the asker goes to TCP";
}

TEST(DnsRelayPipeline, NoUpstreamIsServfailAtOnce) {
  DnsRig r(std::vector<uint32_t>{});
  auto got = r.ask(query_msg("example.org"));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(rcode(parse_udp(got[0]).payload), 2u);
  EXPECT_TRUE(r.up->take_tx().empty());
}

// ---- TCP ----

// A TCP segment from c1 to the gateway:53 (checksum left partial, as a container's).
Bytes tcp_seg(uint32_t seq, uint32_t ack, uint8_t flags, const Bytes& data = {}, uint16_t sport = 40000) {
  Bytes f = test::ipv4_frame(kRouterMac, kC1Mac, kC1, kGw, 6, 14 + 20 + 20 + data.size());
  uint8_t* t = f.data() + 34;
  csum::store16(t, sport);
  csum::store16(t + 2, 53);
  csum::store32(t + 4, seq);
  csum::store32(t + 8, ack);
  t[12] = 5 << 4, t[13] = flags;
  csum::store16(t + 14, 64240);
  std::copy(data.begin(), data.end(), t + 20);
  return f;
}
struct Seg {
  uint32_t seq, ack;
  uint8_t flags;
  Bytes data;
  uint16_t mss = 0;
};
Seg parse_tcp(const Bytes& f) {
  const uint8_t* ip = f.data() + 14;
  EXPECT_EQ(csum::of(ip, 20), 0);
  EXPECT_EQ(csum::load32(ip + 12), kGw);
  EXPECT_EQ(csum::load32(ip + 16), kC1);
  const uint8_t* t = ip + 20;
  const uint32_t l4 = csum::load16(ip + 2) - 20, doff = uint32_t(t[12] >> 4) * 4;
  const uint32_t pseudo = (kGw >> 16) + (kGw & 0xffff) + (kC1 >> 16) + (kC1 & 0xffff) + 6 + l4;
  EXPECT_EQ(csum::of(t, l4, pseudo), 0) << "TCP checksum";
  EXPECT_EQ(csum::load16(t), 53);
  Seg s{csum::load32(t + 4), csum::load32(t + 8), t[13], Bytes(t + doff, t + l4)};
  if (doff == 24 && t[20] == 2) s.mss = csum::load16(t + 22);
  return s;
}

TEST(DnsTcp, HandshakeAnswerFinAndStrangers) {
  DnsRig r;
  r.c1->inject(tcp_seg(1000, 0, 0x02));
  r.poll();
  auto got = r.c1->take_tx();
  ASSERT_EQ(got.size(), 1u);
  Seg sa = parse_tcp(got[0]);
  EXPECT_EQ(sa.flags, 0x12) << "SYN+ACK";
  EXPECT_EQ(sa.ack, 1001u);
  EXPECT_EQ(sa.mss, 1460);
  // The query, length-prefixed, acknowledging our SYN: the answer and FIN.
  Bytes m = query_msg("shared");
  Bytes data{uint8_t(m.size() >> 8), uint8_t(m.size())};
  data.insert(data.end(), m.begin(), m.end());
  r.c1->inject(tcp_seg(1001, sa.seq + 1, 0x18, data));
  r.poll();
  got = r.c1->take_tx();
  ASSERT_EQ(got.size(), 1u);
  Seg ans = parse_tcp(got[0]);
  EXPECT_EQ(ans.flags, 0x19) << "ACK PSH FIN";
  EXPECT_EQ(ans.seq, sa.seq + 1);
  EXPECT_EQ(ans.ack, 1001u + data.size());
  ASSERT_GE(ans.data.size(), 14u);
  EXPECT_EQ(csum::load16(ans.data.data()), ans.data.size() - 2) << "length prefix";
  EXPECT_EQ(ancount(Bytes(ans.data.begin() + 2, ans.data.end())), 2u);
  // The asker's FIN is acknowledged.
  r.c1->inject(tcp_seg(1001 + uint32_t(data.size()), ans.seq + uint32_t(ans.data.size()) + 1, 0x11));
  r.poll();
  got = r.c1->take_tx();
  ASSERT_EQ(got.size(), 1u);
  Seg fin = parse_tcp(got[0]);
  EXPECT_EQ(fin.flags, 0x10);
  EXPECT_EQ(fin.ack, 1001u + data.size() + 1);
  // Data on a connection we did not open (wrong ack), and a split query: RST.
  r.c1->inject(tcp_seg(5000, 12345, 0x18, data));
  Bytes half(data.begin(), data.begin() + 5);
  r.c1->inject(tcp_seg(1001, sa.seq + 1, 0x18, half));
  r.poll();
  got = r.c1->take_tx();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(parse_tcp(got[0]).flags & 0x04, 0x04);
  EXPECT_EQ(parse_tcp(got[1]).flags & 0x04, 0x04);
  // A pure ACK and an RST: nothing.
  r.c1->inject(tcp_seg(1001, sa.seq + 1, 0x10));
  r.c1->inject(tcp_seg(1001, sa.seq + 1, 0x04));
  r.poll();
  EXPECT_TRUE(r.c1->take_tx().empty());
  EXPECT_EQ(r.counters().answered.get(), 1u);
}

TEST(DnsTcp, QueriesBackToBackInOneSegmentAreAnsweredInOrder) {
  DnsRig r;
  r.c1->inject(tcp_seg(1000, 0, 0x02));
  r.poll();
  Seg sa = parse_tcp(r.c1->take_tx().at(0));
  // As glibc sends A and AAAA: two length-prefixed queries in one segment.
  Bytes data;
  for (uint16_t type : {dns::kTypeA, dns::kTypeAaaa}) {
    Bytes m = query_msg("shared", type);
    csum::store16(m.data(), uint16_t(0x1000 + type));
    data.push_back(uint8_t(m.size() >> 8)), data.push_back(uint8_t(m.size()));
    data.insert(data.end(), m.begin(), m.end());
  }
  r.c1->inject(tcp_seg(1001, sa.seq + 1, 0x18, data));
  r.poll();
  auto got = r.c1->take_tx();
  ASSERT_EQ(got.size(), 1u);
  Seg ans = parse_tcp(got[0]);
  EXPECT_EQ(ans.flags, 0x19);
  EXPECT_EQ(ans.ack, 1001u + data.size()) << "both acknowledged";
  const Bytes& d = ans.data;
  ASSERT_GE(d.size(), 4u);
  const uint32_t n1 = csum::load16(d.data());
  ASSERT_GE(d.size(), 2 + n1 + 2);
  const Bytes m1(d.begin() + 2, d.begin() + 2 + n1), m2(d.begin() + 4 + n1, d.end());
  EXPECT_EQ(csum::load16(d.data() + 2 + n1), m2.size());
  EXPECT_EQ(csum::load16(m1.data()), 0x1001) << "A first";
  EXPECT_EQ(ancount(m1), 2u);
  EXPECT_EQ(csum::load16(m2.data()), 0x101c) << "then AAAA";
  EXPECT_EQ(ancount(m2), 0u) << "NODATA";
  EXPECT_EQ(r.counters().queries.get(), 2u);
  EXPECT_EQ(r.counters().answered.get(), 1u);
  EXPECT_EQ(r.counters().nodata.get(), 1u);
  // Half of a second query: RST, as a split query.
  Bytes half(data.begin(), data.end() - 3);
  r.c1->inject(tcp_seg(1001, sa.seq + 1, 0x18, half));
  r.poll();
  got = r.c1->take_tx();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(parse_tcp(got[0]).flags & 0x04, 0x04);
}

TEST(DnsTcp, LongAnswerInSegmentsOfTheMss) {
  TableBuilder b;
  for (uint32_t i = 0; i < 120; i++) b.name(0, "many", 0x0a000200 + i);
  b.scope(0, {0});
  DnsRig r({kOut}, 576);
  {
    auto s = std::make_unique<Snapshot>(r.dp->snapshot());
    s->dns = b.done();
    r.dp->publish(std::move(s));
  }
  r.c1->inject(tcp_seg(1, 0, 0x02));
  r.poll();
  Seg sa = parse_tcp(r.c1->take_tx().at(0));
  EXPECT_EQ(sa.mss, 576 + 14 - 54);
  Bytes m = query_msg("many");
  Bytes data{uint8_t(m.size() >> 8), uint8_t(m.size())};
  data.insert(data.end(), m.begin(), m.end());
  r.c1->inject(tcp_seg(2, sa.seq + 1, 0x18, data));
  r.poll();
  auto got = r.c1->take_tx();
  ASSERT_GE(got.size(), 4u) << "120 A records (~1.9 KB) in segments of 536";
  Bytes all;
  uint32_t next = sa.seq + 1;
  for (size_t i = 0; i < got.size(); i++) {
    Seg sg = parse_tcp(got[i]);
    EXPECT_LE(got[i].size(), 576u + 14);
    EXPECT_EQ(sg.seq, next);
    EXPECT_EQ(bool(sg.flags & 0x01), i + 1 == got.size()) << "FIN on the last only";
    next += uint32_t(sg.data.size());
    all.insert(all.end(), sg.data.begin(), sg.data.end());
  }
  ASSERT_EQ(csum::load16(all.data()), all.size() - 2);
  EXPECT_EQ(ancount(Bytes(all.begin() + 2, all.end())), 120u);
}

// An upstream's answer to a relayed query that ended in an OPT record: the
// A record (unless tc: the upstream truncated it) in the answer section,
// then `additional` (an A record, say) and the upstream's own OPT with
// `options` (none: an upstream without EDNS), rcode as given.
const Bytes kNoOpt{0xff};
Bytes edns_answer_to(const Relayed& q, bool tc = false, const Bytes& options = {}, const Bytes& additional = {}, uint8_t rc = 0) {
  size_t qend = 12;
  while (q.msg.at(qend)) qend += 1 + q.msg[qend];
  Bytes a(q.msg.begin(), q.msg.begin() + long(qend + 5));  // header and question: the query's OPT record goes
  a[2] |= 0x80 | 0x04;  // QR, AA
  if (tc) a[2] |= 0x02;
  a[3] = uint8_t(0x80 | 0x20 | rc);  // RA, AD
  a[7] = tc ? 0 : 1;
  if (!tc) a.insert(a.end(), {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 203, 0, 113, 7});
  a.insert(a.end(), additional.begin(), additional.end());
  const bool opt = options != kNoOpt;
  a[11] = uint8_t((additional.empty() ? 0 : 1) + (opt ? 1 : 0));
  if (opt) {
    a.insert(a.end(), {0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, uint8_t(options.size() >> 8), uint8_t(options.size())});  // 1232
    a.insert(a.end(), options.begin(), options.end());
  }
  return udp_frame(kUpMac, kOutMac, kOut, kHostIp, 53, q.port, a);
}

struct TcpAsk {
  Seg sa;
  Bytes data;  // the length-prefixed query
  Relayed q;   // as the upstream saw it
};
// c1 opens a connection to the gateway and asks msg over it; the query is
// acknowledged (checked) and relayed.
TcpAsk tcp_relayed(DnsRig& r, uint32_t isn, const Bytes& msg) {
  TcpAsk t;
  r.c1->inject(tcp_seg(isn, 0, 0x02));
  r.poll();
  t.sa = parse_tcp(r.c1->take_tx().at(0));
  t.data = Bytes{uint8_t(msg.size() >> 8), uint8_t(msg.size())};
  t.data.insert(t.data.end(), msg.begin(), msg.end());
  r.c1->inject(tcp_seg(isn + 1, t.sa.seq + 1, 0x18, t.data));
  r.poll();
  auto got = r.c1->take_tx();
  EXPECT_EQ(got.size(), 1u) << "the query is acknowledged at once";
  if (!got.empty()) {
    Seg ack = parse_tcp(got[0]);
    EXPECT_EQ(ack.flags, 0x10);
    EXPECT_EQ(ack.seq, t.sa.seq + 1);
    EXPECT_EQ(ack.ack, isn + 1 + t.data.size());
    EXPECT_TRUE(ack.data.empty());
  }
  t.q = upstream_query(r);
  return t;
}
// The one answer segment c1 gets (checked: from the cookie, acknowledging the query, FIN) as a DNS message.
Bytes tcp_answer_msg(DnsRig& r, const TcpAsk& t, uint32_t isn) {
  r.poll();
  auto got = r.c1->take_tx();
  EXPECT_EQ(got.size(), 1u);
  if (got.empty()) return {};
  Seg ans = parse_tcp(got[0]);
  EXPECT_EQ(ans.flags, 0x19) << "ACK PSH FIN";
  EXPECT_EQ(ans.seq, t.sa.seq + 1);
  EXPECT_EQ(ans.ack, isn + 1 + t.data.size());
  EXPECT_EQ(csum::load16(ans.data.data()), ans.data.size() - 2) << "length prefix";
  Bytes m(ans.data.begin() + 2, ans.data.end());
  EXPECT_EQ(csum::load16(m.data()), 0x4242) << "the asker's id";
  return m;
}

TEST(DnsTcp, NamesNotOursAreRelayedOverUdpAndAnsweredInSegments) {
  DnsRig r;
  const Bytes qm = query_msg("big.example.org");  // no OPT record, as glibc asks
  TcpAsk t = tcp_relayed(r, 1000, qm);
  EXPECT_EQ(r.counters().forwarded.get(), 1u);
  // Upstream, it asks over UDP for 1232 bytes (an OPT record added): without one the upstream truncates at 512.
  ASSERT_EQ(t.q.msg.size(), qm.size() + 11);
  EXPECT_EQ(csum::load16(t.q.msg.data() + 10), 1u) << "ARCOUNT";
  EXPECT_EQ(t.q.msg[t.q.msg.size() - 9], 41) << "OPT";
  EXPECT_EQ(csum::load16(t.q.msg.data() + t.q.msg.size() - 8), 1232);
  // The answer: over TCP to c1, the added OPT taken off.
  r.up->inject(edns_answer_to(t.q));
  Bytes m = tcp_answer_msg(r, t, 1000);
  ASSERT_EQ(m.size(), qm.size() + 16);
  EXPECT_EQ(ancount(m), 1u);
  EXPECT_EQ(csum::load16(m.data() + 10), 0u) << "no OPT: the asker sent none";
  EXPECT_EQ(csum::load32(m.data() + m.size() - 4), 0xcb007107u);
  EXPECT_EQ(r.counters().relayed.get(), 1u);
  EXPECT_EQ(r.counters().servfail.get(), 0u);
  // The upstream's OPT with an option (an extended error, RFC 8914) is taken off too; another additional record stays.
  const Bytes extra{0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 0, 0, 41, 0};  // an A record whose last bytes look like an OPT's start
  t = tcp_relayed(r, 3000, query_msg("ede.example.org"));
  r.up->inject(edns_answer_to(t.q, false, {0, 15, 0, 2, 0, 18}, extra));
  m = tcp_answer_msg(r, t, 3000);
  EXPECT_EQ(csum::load16(m.data() + 10), 1u) << "the A record stays, the OPT goes";
  EXPECT_EQ(m.size(), query_msg("ede.example.org").size() + 16 + extra.size());
  // An upstream without EDNS: its A record in the additional section is not taken for our OPT.
  t = tcp_relayed(r, 4000, query_msg("noedns.example.org"));
  r.up->inject(edns_answer_to(t.q, false, kNoOpt, extra));
  m = tcp_answer_msg(r, t, 4000);
  EXPECT_EQ(csum::load16(m.data() + 10), 1u);
  EXPECT_EQ(m.size(), query_msg("noedns.example.org").size() + 16 + extra.size());
}

TEST(DnsTcp, RelayedAnswersThatCannotGoOnAreServfail) {
  DnsRig r;
  // Truncated upstream (longer than 1232 bytes): SERVFAIL, header and question, AA/AD/TC cleared.
  const Bytes qm = query_msg("huge.example.org");
  TcpAsk t = tcp_relayed(r, 5000, qm);
  r.up->inject(edns_answer_to(t.q, true));
  Bytes m = tcp_answer_msg(r, t, 5000);
  EXPECT_EQ(rcode(m), 2u);
  EXPECT_EQ(m[2] & 0x06, 0) << "TC and AA cleared";
  EXPECT_EQ(m[3] & 0x20, 0) << "AD cleared";
  EXPECT_EQ(m.size(), qm.size()) << "header and question";
  EXPECT_EQ(r.counters().servfail.get(), 1u);
  // FORMERR without EDNS (an upstream that refuses the OPT we added): not the asker's error.
  t = tcp_relayed(r, 6000, query_msg("old.example.org"));
  r.up->inject(edns_answer_to(t.q, true, kNoOpt, {}, 1));
  m = tcp_answer_msg(r, t, 6000);
  EXPECT_EQ(rcode(m), 2u);
  EXPECT_EQ(r.counters().servfail.get(), 2u);
  // An asker that sent EDNS (512 bytes, a cookie): the upstream is asked for 1232, SERVFAIL keeps an OPT.
  Bytes em = query_msg("cookie.example.org");
  em[11] = 1;
  em.insert(em.end(), {0, 0, 41, 0x02, 0x00, 0, 0, 0, 0, 0, 12, 0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8});
  t = tcp_relayed(r, 7000, em);
  ASSERT_EQ(t.q.msg.size(), em.size()) << "its own OPT, nothing added";
  const size_t opt = query_msg("cookie.example.org").size();
  EXPECT_EQ(csum::load16(t.q.msg.data() + opt + 3), 1232) << "raised from 512";
  r.up->inject(edns_answer_to(t.q, true));
  m = tcp_answer_msg(r, t, 7000);
  EXPECT_EQ(rcode(m), 2u);
  EXPECT_EQ(csum::load16(m.data() + 10), 1u) << "an OPT: the asker sent one";
  EXPECT_EQ(m[m.size() - 9], 41);
}

// Length-prefixed queries back to back, as one segment's data.
Bytes pipeline(std::initializer_list<Bytes> msgs) {
  Bytes d;
  for (const Bytes& m : msgs) {
    d.push_back(uint8_t(m.size() >> 8)), d.push_back(uint8_t(m.size()));
    d.insert(d.end(), m.begin(), m.end());
  }
  return d;
}
// The DNS messages in a run of TCP segments' data (length-prefixed), and the segments' checks.
std::vector<Bytes> messages(const std::vector<Seg>& segs, uint32_t seq0, uint32_t ack, bool fin_last) {
  Bytes all;
  uint32_t next = seq0;
  for (size_t i = 0; i < segs.size(); i++) {
    EXPECT_EQ(segs[i].seq, next);
    EXPECT_EQ(segs[i].ack, ack);
    EXPECT_EQ(bool(segs[i].flags & 0x01), fin_last && i + 1 == segs.size());
    next += uint32_t(segs[i].data.size());
    all.insert(all.end(), segs[i].data.begin(), segs[i].data.end());
  }
  std::vector<Bytes> out;
  for (size_t off = 0; off + 2 <= all.size();) {
    const size_t n = csum::load16(all.data() + off);
    out.emplace_back(all.begin() + long(off + 2), all.begin() + long(std::min(all.size(), off + 2 + n)));
    off += 2 + n;
  }
  return out;
}
std::vector<Seg> segs_of(std::vector<Bytes> frames) {
  std::vector<Seg> out;
  for (const Bytes& f : frames) out.push_back(parse_tcp(f));
  return out;
}

TEST(DnsTcp, BackToBackQueriesWithNamesNotOursAreRelayedInTurn) {
  DnsRig r;
  r.c1->inject(tcp_seg(1000, 0, 0x02));
  r.poll();
  const Seg sa = parse_tcp(r.c1->take_tx().at(0));
  Bytes q1 = query_msg("shared"), q2 = query_msg("example.org"), q3 = query_msg("example.org", dns::kTypeAaaa), q4 = query_msg("c1");
  csum::store16(q1.data(), 1), csum::store16(q2.data(), 2), csum::store16(q3.data(), 3), csum::store16(q4.data(), 4);
  const Bytes data = pipeline({q1, q2, q3, q4});
  const uint32_t ack = 1001 + uint32_t(data.size());
  r.c1->inject(tcp_seg(1001, sa.seq + 1, 0x18, data));
  r.poll();
  // Ours first, at once (no FIN); the second goes upstream.
  auto got = segs_of(r.c1->take_tx());
  auto m = messages(got, sa.seq + 1, ack, false);
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(csum::load16(m[0].data()), 1);
  uint32_t next = sa.seq + 1 + 2 + uint32_t(m[0].size());
  Relayed u = upstream_query(r);
  EXPECT_EQ(u.msg.size(), q2.size() + 11);
  // Its answer, then the third goes upstream.
  r.up->inject(edns_answer_to(u));
  r.poll();
  got = segs_of(r.c1->take_tx());
  m = messages(got, next, ack, false);
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(csum::load16(m[0].data()), 2);
  EXPECT_EQ(ancount(m[0]), 1u);
  next += 2 + uint32_t(m[0].size());
  u = upstream_query(r);
  EXPECT_EQ(u.msg[u.msg.size() - 11 - 3], 28) << "AAAA";
  // The third's answer, and the fourth (ours) at once after it, FIN.
  r.up->inject(edns_answer_to(u));
  r.poll();
  got = segs_of(r.c1->take_tx());
  m = messages(got, next, ack, true);
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(csum::load16(m[0].data()), 3);
  EXPECT_EQ(csum::load16(m[1].data()), 4);
  EXPECT_EQ(ancount(m[1]), 1u);
  EXPECT_TRUE(r.up->take_tx().empty());
  EXPECT_EQ(r.counters().queries.get(), 4u);
  EXPECT_EQ(r.counters().forwarded.get(), 2u);
  EXPECT_EQ(r.counters().relayed.get(), 2u);
  EXPECT_EQ(r.counters().answered.get(), 2u);
}

TEST(DnsTcp, AQueryAfterARelayedOneThatTimesOutIsStillAnswered) {
  DnsRig r;
  r.c1->inject(tcp_seg(1, 0, 0x02));
  r.poll();
  const Seg sa = parse_tcp(r.c1->take_tx().at(0));
  Bytes q1 = query_msg("slow.example.org"), q2 = query_msg("c1", dns::kTypeAaaa);
  csum::store16(q2.data(), 2);
  const Bytes data = pipeline({q1, q2});
  r.c1->inject(tcp_seg(2, sa.seq + 1, 0x18, data));
  r.poll();
  auto got = segs_of(r.c1->take_tx());
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].flags, 0x10) << "a bare ACK: nothing of ours before the relayed one";
  for (unsigned t = 0; t < DnsRelay::kTries; t++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(DnsRelay::kTryMs + 50));
    r.poll();
  }
  got = segs_of(r.c1->take_tx());
  auto m = messages(got, sa.seq + 1, 2 + uint32_t(data.size()), true);
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(rcode(m[0]), 2u) << "SERVFAIL";
  EXPECT_EQ(csum::load16(m[1].data()), 2);
  EXPECT_EQ(rcode(m[1]), 0u) << "NODATA, ours";
}

TEST(DnsTcp, WithoutARelayNamesNotOursAmongOthersAreServfail) {
  DnsRig r;
  auto s = std::make_unique<Snapshot>(r.dp->snapshot());
  s->bds[0].nat = s->bds[0].relay_names = false;  // an internal network: no way out, DNS included
  r.dp->publish(std::move(s));
  r.c1->inject(tcp_seg(1, 0, 0x02));
  r.poll();
  const Seg sa = parse_tcp(r.c1->take_tx().at(0));
  Bytes q1 = query_msg("shared"), q2 = query_msg("example.org"), q3 = query_msg("c1");
  csum::store16(q1.data(), 1), csum::store16(q2.data(), 2), csum::store16(q3.data(), 3);
  const Bytes data = pipeline({q1, q2, q3});
  r.c1->inject(tcp_seg(2, sa.seq + 1, 0x18, data));
  r.poll();
  auto m = messages(segs_of(r.c1->take_tx()), sa.seq + 1, 2 + uint32_t(data.size()), true);
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(ancount(m[0]), 2u);
  EXPECT_EQ(rcode(m[1]), 2u);
  EXPECT_EQ(csum::load16(m[2].data()), 3);
  EXPECT_EQ(ancount(m[2]), 1u);
  EXPECT_TRUE(r.up->take_tx().empty());
  EXPECT_EQ(r.counters().queries.get(), 3u);
  EXPECT_EQ(r.counters().servfail.get(), 1u);
}

TEST(DnsTcp, ASegmentRelaysAtMostFourNamesThenServfail) {
  DnsRig r;
  r.c1->inject(tcp_seg(1, 0, 0x02));
  r.poll();
  const Seg sa = parse_tcp(r.c1->take_tx().at(0));
  Bytes data;
  for (int i = 0; i < 5; i++) {
    Bytes q = query_msg("n" + std::to_string(i) + ".example.org");
    csum::store16(q.data(), uint16_t(i));
    const Bytes one = pipeline({q});
    data.insert(data.end(), one.begin(), one.end());
  }
  r.c1->inject(tcp_seg(2, sa.seq + 1, 0x18, data));
  r.poll();
  r.c1->take_tx();  // the bare ACK
  std::vector<Seg> all;
  for (unsigned i = 0; i < DnsRelay::kMaxHops; i++) {
    Relayed u = upstream_query(r);
    r.up->inject(edns_answer_to(u));
    r.poll();
    for (Seg& sg : segs_of(r.c1->take_tx())) all.push_back(sg);
  }
  EXPECT_TRUE(r.up->take_tx().empty()) << "no fifth relay";
  auto m = messages(all, sa.seq + 1, 2 + uint32_t(data.size()), true);
  ASSERT_EQ(m.size(), 5u);
  for (int i = 0; i < 4; i++) EXPECT_EQ(ancount(m[size_t(i)]), 1u);
  EXPECT_EQ(rcode(m[4]), 2u) << "the fifth: SERVFAIL";
  EXPECT_EQ(r.counters().forwarded.get(), 4u);
}

TEST(DnsTcp, RelayTimeoutIsServfailOverTcp) {
  DnsRig r;
  r.c1->inject(tcp_seg(1, 0, 0x02));
  r.poll();
  Seg sa = parse_tcp(r.c1->take_tx().at(0));
  Bytes m = query_msg("slow.example.org");
  Bytes data{uint8_t(m.size() >> 8), uint8_t(m.size())};
  data.insert(data.end(), m.begin(), m.end());
  r.c1->inject(tcp_seg(2, sa.seq + 1, 0x18, data));
  r.poll();
  r.c1->take_tx();
  for (unsigned t = 0; t < DnsRelay::kTries; t++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(DnsRelay::kTryMs + 50));
    r.poll();
  }
  auto got = r.c1->take_tx();
  ASSERT_EQ(got.size(), 1u);
  Seg sf = parse_tcp(got[0]);
  EXPECT_EQ(sf.seq, sa.seq + 1);
  EXPECT_EQ(sf.ack, 2u + data.size());
  EXPECT_EQ(sf.flags & 0x01, 0x01);
  const Bytes fm(sf.data.begin() + 2, sf.data.end());
  EXPECT_EQ(rcode(fm), 2u);
  EXPECT_EQ(csum::load16(fm.data()), 0x4242);
  EXPECT_EQ(r.counters().upstream_timeouts.get(), 3u);
  EXPECT_EQ(r.counters().servfail.get(), 1u);
}

// ---- The slots ----

TEST(DnsRelaySlots, ClaimTakeExpire) {
  DnsRelay rl(2);
  EXPECT_EQ(rl.slice_begin(1), DnsRelay::kSlots / 2);
  const int i = rl.claim(1);
  ASSERT_GE(i, int(DnsRelay::kSlots / 2));
  DnsRelay::Asker a{kC1, 4000, 7, kC1Mac, 3, 0, 0x5555, 77};
  const uint8_t q[12] = {};
  rl.publish(unsigned(i), a, 1000, q, 12);
  for (int k = 0; k < 100; k++) EXPECT_NE(rl.claim(1), i) << "busy";
  DnsRelay::Asker got;
  EXPECT_FALSE(rl.take(unsigned(i), 0x5556, 77, &got)) << "another id";
  EXPECT_FALSE(rl.take(unsigned(i), 0x5555, 78, &got)) << "another question";
  EXPECT_TRUE(rl.take(unsigned(i), 0x5555, 77, &got));
  EXPECT_EQ(got.ip, kC1);
  EXPECT_EQ(got.sport, 4000);
  EXPECT_EQ(got.id, 7);
  EXPECT_EQ(got.mac, kC1Mac);
  EXPECT_EQ(got.port, 3);
  EXPECT_FALSE(got.tcp);
  EXPECT_EQ(got.rest_len, 0u);
  EXPECT_FALSE(rl.take(unsigned(i), 0x5555, 77, &got)) << "answered once";
  // A TCP asker's fields, and the queries after its own (not a multiple of 8 bytes; the most there may be).
  for (uint16_t n : {uint16_t(13), uint16_t(DnsRelay::kRestMax)}) {
    DnsRelay::Asker t = a;
    t.tcp = true, t.opt_added = true, t.ack = 0xfedcba98, t.seq = 0x12345678, t.hops = 3, t.rest_len = n;
    for (uint16_t j = 0; j < n; j++) t.rest[j] = uint8_t(j * 7 + 1);
    rl.publish(unsigned(i), t, 1000, q, 12);
    ASSERT_TRUE(rl.take(unsigned(i), 0x5555, 77, &got));
    EXPECT_TRUE(got.tcp && got.opt_added);
    EXPECT_EQ(got.ack, 0xfedcba98u);
    EXPECT_EQ(got.seq, 0x12345678u);
    EXPECT_EQ(got.hops, 3u);
    ASSERT_EQ(got.rest_len, n);
    EXPECT_EQ(Bytes(got.rest, got.rest + n), Bytes(t.rest, t.rest + n));
  }
  // Timeouts: tries 2, 3, then 0 (SERVFAIL), then nothing.
  rl.publish(unsigned(i), a, 1000, q, 12);
  std::vector<unsigned> seen;
  for (uint32_t t = 1000; t <= 6000; t += 500) rl.expire(1, t, [&](unsigned, const DnsRelay::Asker&, const uint8_t*, uint32_t, unsigned tries) { seen.push_back(tries); });
  EXPECT_EQ(seen, (std::vector<unsigned>{2, 3, 0}));
  EXPECT_FALSE(rl.take(unsigned(i), 0x5555, 77, &got));
  EXPECT_EQ(rl.pending(), 0u);
}

// The asker's worker (timeouts) and the uplink's (answers) race for every
// slot: W publishes a query and at once runs its timeouts to the last one
// (the final CAS) while U tries to take the same slot's answer. Each query
// ends exactly once.
TEST(DnsRelaySlots, ExactlyOneEndUnderTwoThreads) {
  DnsRelay rl(1);
  constexpr unsigned kQueries = 20000;
  std::atomic<unsigned> taken{0};
  std::atomic<bool> done{false};
  std::atomic<uint64_t> published{0};  // slot << 16 | id of the latest, for the answering thread
  std::thread u([&] {
    DnsRelay::Asker k;
    while (!done.load(std::memory_order_acquire)) {
      const uint64_t p = published.load(std::memory_order_acquire);
      if (p && rl.take(unsigned(p >> 16), uint16_t(p), 5, &k)) taken.fetch_add(1, std::memory_order_relaxed);
    }
  });
  unsigned servfail = 0, sent = 0;
  uint32_t now = 0;
  const uint8_t q[12] = {};
  for (unsigned n = 0; n < kQueries; n++) {
    const int i = rl.claim(0);
    ASSERT_GE(i, 0);
    const uint16_t id = rl.next_id(0);
    rl.publish(unsigned(i), DnsRelay::Asker{kC1, 1, 1, kC1Mac, 0, 0, id, 5}, now, q, 12);
    sent++;
    published.store(uint64_t(i) << 16 | id, std::memory_order_release);
    for (unsigned t = 0; t < DnsRelay::kTries; t++) {  // tries 2 and 3, then the final CAS: racing U's take
      now += DnsRelay::kTryMs;
      rl.expire(0, now, [&](unsigned, const DnsRelay::Asker&, const uint8_t*, uint32_t, unsigned tr) { servfail += tr == 0; });
    }
  }
  done.store(true, std::memory_order_release);
  u.join();
  EXPECT_EQ(taken.load() + servfail, sent) << "every query ended exactly once";
  EXPECT_GT(taken.load(), 0u) << "U won some races";
  EXPECT_GT(servfail, 0u) << "W won some races";
  EXPECT_EQ(rl.pending(), 0u);
}

}  // namespace
}  // namespace dpsw
