// Stage: the embedded DNS responder (issue 16). A UDP datagram to port 53
// of a network's gateway (l3_local's kDns exit) is answered from the
// snapshot's DnsTable, in the worker, with no socket: the answer is written
// into a buffer of the worker's (the caller's) and sent back out of the
// port the query came in on.
// Exits: kReply (buf holds the answer frame), kForward (a name this network
// does not know: to an upstream resolver; `q` holds the parsed query),
// kDrop (bad_ip, bad_csum, martian, dns_bad: not a query at all).
//
// What is answered: A for endpoint names and aliases, and for
// "NAME.NETWORK"; PTR for the addresses of those endpoints; a known name
// of another type: NOERROR without records (NODATA); a reverse name of a
// network's subnet that no endpoint holds: NXDOMAIN; FORMERR, NOTIMP and
// BADVERS for queries dns_wire refuses; a class other than IN/ANY: REFUSED.
//
// The UDP checksum of the query is not verified: a container's kernel leaves
// it partial (offloaded) through a veth, which corrupts nothing. The
// answer's is always complete.
#pragma once

#include <cstring>

#include "dataplane/core/checksum.h"
#include "dataplane/core/counters.h"
#include "dataplane/core/ether.h"
#include "dataplane/core/snapshot.h"
#include "dataplane/dns/dns_table.h"
#include "dataplane/dns/dns_wire.h"
#include "dataplane/nat/stage_l3_local.h"

namespace dpsw::stage {

enum class DnsNext : uint8_t { kReply, kForward, kDrop };

constexpr uint32_t kUdpHdrs = kEthHdrLen + 20 + 8;  // Ethernet + IPv4 (no options) + UDP
constexpr unsigned kDnsMaxAnswers = 128;            // A records in one answer (a name on many endpoints; past 512 bytes: TC, then TCP)

// The UDP datagram in an IPv4 frame l3_local has checked (version, lengths,
// not a fragment): its payload, or nullptr when the UDP length is wrong.
inline const uint8_t* udp_payload(const Packet& p, uint32_t* len) {
  const uint8_t* ip = p.data + kEthHdrLen;
  const uint32_t ihl = uint32_t(ip[0] & 0x0f) * 4, tot = load_be16(ip + 2);
  const uint8_t* udp = ip + ihl;
  const uint32_t ulen = load_be16(udp + 4);
  if (ulen < 8 || ulen > tot - ihl) return nullptr;
  *len = ulen - 8;
  return udp + 8;
}

// Writes Ethernet, IPv4 (no options, DF, TTL 64) and UDP headers (complete
// checksum) in front of the payload already at buf + kUdpHdrs; returns the
// frame's length.
inline uint32_t udp_frame(uint8_t* buf, Mac dst_mac, Mac src_mac, uint32_t src, uint32_t dst, uint16_t sport, uint16_t dport,
                          uint32_t payload) {
  mac_to_bytes(dst_mac, buf);
  mac_to_bytes(src_mac, buf + 6);
  store_be16(buf + 12, kEtherTypeIpv4);
  uint8_t* ip = buf + kEthHdrLen;
  ip[0] = 0x45, ip[1] = 0;
  csum::store16(ip + 2, uint16_t(20 + 8 + payload));
  csum::store16(ip + 4, 0);
  csum::store16(ip + 6, 0x4000);  // DF: a DNS datagram is never fragmented here (it fits the asker's size)
  ip[8] = 64, ip[9] = 17;
  ip[10] = ip[11] = 0;
  csum::store32(ip + 12, src);
  csum::store32(ip + 16, dst);
  csum::store16(ip + 10, csum::of(ip, 20));
  uint8_t* udp = ip + 20;
  csum::store16(udp, sport);
  csum::store16(udp + 2, dport);
  csum::store16(udp + 4, uint16_t(8 + payload));
  csum::store16(udp + 6, 0);
  const uint32_t pseudo = (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + 17 + 8 + payload;
  const uint16_t c = csum::of(udp, 8 + payload, pseudo);
  csum::store16(udp + 6, c ? c : 0xffff);
  return kUdpHdrs + payload;
}

// The reply to the query frame f (addresses and ports swapped, from src_mac/src:sport).
inline uint32_t udp_reply_headers(const uint8_t* f, Mac src_mac, uint32_t src, uint16_t sport, uint8_t* buf, uint32_t payload) {
  const uint8_t* qip = f + kEthHdrLen;
  const uint8_t* qudp = qip + uint32_t(qip[0] & 0x0f) * 4;
  return udp_frame(buf, mac_from_bytes(f + 6), src_mac, src, csum::load32(qip + 12), sport, load_be16(qudp), payload);
}

// The answer to q (rcode, records) as a frame in buf (cap bytes) back to the
// asker of frame p; 0 when it does not fit.
inline uint32_t dns_reply_frame(const Packet& p, const BdEntry& bd, const dns::Query& q, dns::Rcode rc, bool aa, const dns::Answer* an,
                                size_t n, uint8_t* buf, uint32_t cap) {
  if (cap <= kUdpHdrs) return 0;
  const size_t len = dns::write_response(q, rc, aa, an, n, buf + kUdpHdrs, cap - kUdpHdrs);
  if (!len) return 0;
  return udp_reply_headers(p.data, bd.router_mac, bd.local_ip, 53, buf, uint32_t(len));
}

// Resolves q against the table for an asker on in_port (network bd):
// fills answers, returns true with rc/aa set, or false (not ours: forward).
inline bool dns_resolve(const DnsTable& t, uint16_t in_port, uint16_t bd, const dns::Query& q, dns::Answer* an, size_t* n,
                        dns::Rcode* rc, uint64_t rr = 0) {
  uint16_t scope[16];
  const unsigned ns = t.scope_of(in_port, bd, scope, 16);
  *n = 0;
  *rc = dns::Rcode::kNoError;
  const std::string_view name(q.name, q.name_len);
  if (q.qtype == dns::kTypePtr) {
    uint32_t ip;
    if (dns::parse_reverse_v4(q.name, &ip)) {
      for (unsigned i = 0; i < ns; i++)
        if (const char* target = t.reverse(scope[i], ip)) {
          an[0] = dns::Answer{dns::kTypePtr, t.ttl, 0, target};
          *n = 1;
          return true;
        }
      for (unsigned i = 0; i < ns; i++)
        if (t.in_subnet(scope[i], ip)) {  // ours, but no endpoint holds it
          *rc = dns::Rcode::kNxDomain;
          return true;
        }
      return false;
    }
  }
  uint32_t ips[kDnsMaxAnswers];
  for (unsigned i = 0; i < ns; i++) {
    const unsigned k = t.lookup(scope[i], name, ips, kDnsMaxAnswers, rr);
    if (!k) continue;
    if (q.qtype == dns::kTypeA || q.qtype == dns::kTypeAny) {
      for (unsigned j = 0; j < k; j++) an[j] = dns::Answer{dns::kTypeA, t.ttl, ips[j], nullptr};
      *n = k;
    }  // another type of a name we hold: NODATA (NOERROR, no record), never forwarded
    return true;
  }
  return false;
}

// What to do with a query message (UDP payload, or a TCP message without
// its length): respond with *r (rcode, AA, answers), relay it upstream
// (kForward: a name the asker's networks do not hold), or ignore it (not a
// query). q is the parsed query in every case.
enum class DnsDecision : uint8_t { kRespond, kForward, kIgnore };
struct DnsResult {
  dns::Rcode rc = dns::Rcode::kNoError;
  bool aa = true;
  size_t n = 0;
  dns::Answer an[kDnsMaxAnswers];
};
inline DnsDecision dns_decide(const uint8_t* msg, uint32_t len, const DnsTable& t, uint16_t in_port, uint16_t bd, dns::Query* q,
                              DnsResult* r, uint64_t rr = 0) {
  r->n = 0;
  r->aa = false;
  switch (dns::parse_query(msg, len, q)) {
    case dns::Parse::kIgnore:
      return DnsDecision::kIgnore;
    case dns::Parse::kFormErr:
      r->rc = dns::Rcode::kFormErr;
      return DnsDecision::kRespond;
    case dns::Parse::kNotImp:
      r->rc = dns::Rcode::kNotImp;
      return DnsDecision::kRespond;
    case dns::Parse::kBadVers:
      r->rc = dns::Rcode::kBadVers;
      return DnsDecision::kRespond;
    case dns::Parse::kOk:
      break;
  }
  if (q->qclass != dns::kClassIn && q->qclass != dns::kClassAny) {
    r->rc = dns::Rcode::kRefused;
    return DnsDecision::kRespond;
  }
  r->aa = true;
  return dns_resolve(t, in_port, bd, *q, r->an, &r->n, &r->rc, rr) ? DnsDecision::kRespond : DnsDecision::kForward;
}

// The whole stage for UDP. buf: cap bytes for the answer frame (*out_len).
// q: the parsed query (on kForward the caller relays it).
inline DnsNext dns_answer(const Packet& p, const DnsTable& t, const BdEntry& bd, dns::Query* q, uint8_t* buf, uint32_t cap,
                          uint32_t* out_len, dns::Rcode* out_rc, Drop* drop, uint64_t rr = 0) {
  const uint8_t* ip = p.data + kEthHdrLen;
  const uint32_t ihl = uint32_t(ip[0] & 0x0f) * 4;
  if (csum::of(ip, ihl) != 0) return *drop = Drop::kBadCsum, DnsNext::kDrop;
  if (martian(csum::load32(ip + 12))) return *drop = Drop::kMartian, DnsNext::kDrop;
  uint32_t plen = 0;
  const uint8_t* msg = udp_payload(p, &plen);
  if (!msg) return *drop = Drop::kBadIp, DnsNext::kDrop;
  DnsResult r;
  switch (dns_decide(msg, plen, t, p.in_port, p.bd, q, &r, rr)) {
    case DnsDecision::kIgnore:
      return *drop = Drop::kDnsBad, DnsNext::kDrop;
    case DnsDecision::kForward:
      return DnsNext::kForward;
    case DnsDecision::kRespond:
      break;
  }
  *out_rc = r.rc;
  *out_len = dns_reply_frame(p, bd, *q, r.rc, r.aa, r.an, r.n, buf, cap);
  if (!*out_len) return *drop = Drop::kDnsBad, DnsNext::kDrop;
  return DnsNext::kReply;
}

}  // namespace dpsw::stage
