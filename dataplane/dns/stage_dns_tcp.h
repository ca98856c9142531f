// Stage: DNS over TCP at a network's gateway (RFC 7766), for the answers
// that do not fit a UDP datagram (the asker got TC and asks again). The
// worker keeps no connection state: its initial sequence number is a keyed
// hash of the asker's address and port (as SYN cookies), so a segment that
// carries a whole query and acknowledges that number is answered at once —
// the answer, then FIN, in the same burst — and everything else follows
// from the segment itself:
//   SYN -> SYN+ACK (seq = cookie, MSS for the asker's port);
//   whole length-prefixed queries (one, or several back to back as glibc
//     sends A and AAAA), ack = cookie + 1 -> their answers in order (in
//     segments of at most MSS) with FIN on the last one;
//   FIN -> its ACK; a pure ACK, RST -> nothing;
//   data acknowledging something else (a connection we do not know), or a
//     query split over segments -> RST.
// The answer's segments are at most the asker's port's MTU - 40 (its MSS
// is not remembered: no state). No retransmission: a lost segment (a veth loses none but a full ring) is
// the asker's timeout and retry, as with UDP. A name the asker's networks
// do not hold is relayed upstream over UDP (node_dns.h: the query is
// acknowledged at once, the answer follows from whichever worker receives
// it, its sequence numbers known from the cookie and the relay slot).
// The TCP checksum of the query is not verified (partial from a container,
// as for UDP); the answer's is complete.
#pragma once

#include <cstring>

#include "dataplane/core/checksum.h"
#include "dataplane/core/hash.h"
#include "dataplane/dns/stage_dns.h"

namespace dpsw::stage {

constexpr uint32_t kTcpHdrs = kEthHdrLen + 20 + 20;  // Ethernet + IPv4 + TCP without options
constexpr uint8_t kTcpFin = 0x01, kTcpSyn = 0x02, kTcpRst = 0x04, kTcpPsh = 0x08, kTcpAck = 0x10;

inline uint32_t tcp_cookie(uint64_t secret, uint32_t sip, uint16_t sport) {
  return uint32_t(mix64(secret ^ (uint64_t(sip) << 16 | sport)) >> 17);
}

// One segment from the gateway (bd) to the asker (its MAC, address and
// port): seq, ack, flags, an MSS option when mss != 0, data. Returns the
// frame's length.
inline uint32_t tcp_frame(const BdEntry& bd, Mac dst_mac, uint32_t dst, uint16_t dport, uint32_t seq, uint32_t ack, uint8_t flags,
                          uint16_t mss, const uint8_t* data, uint32_t len, uint8_t* buf) {
  const uint32_t opt = mss ? 4 : 0, l4 = 20 + opt + len;
  mac_to_bytes(dst_mac, buf);
  mac_to_bytes(bd.router_mac, buf + 6);
  store_be16(buf + 12, kEtherTypeIpv4);
  uint8_t* ip = buf + kEthHdrLen;
  ip[0] = 0x45, ip[1] = 0;
  csum::store16(ip + 2, uint16_t(20 + l4));
  csum::store16(ip + 4, 0);
  csum::store16(ip + 6, 0x4000);
  ip[8] = 64, ip[9] = 6;
  ip[10] = ip[11] = 0;
  csum::store32(ip + 12, bd.local_ip);
  csum::store32(ip + 16, dst);
  csum::store16(ip + 10, csum::of(ip, 20));
  uint8_t* t = ip + 20;
  csum::store16(t, 53);
  csum::store16(t + 2, dport);
  csum::store32(t + 4, seq);
  csum::store32(t + 8, ack);
  t[12] = uint8_t((5 + opt / 4) << 4);
  t[13] = flags;
  csum::store16(t + 14, 65535);  // window
  csum::store16(t + 16, 0);
  csum::store16(t + 18, 0);
  if (mss) t[20] = 2, t[21] = 4, csum::store16(t + 22, mss);
  if (len) std::memcpy(t + 20 + opt, data, len);
  const uint32_t src = bd.local_ip;
  const uint32_t pseudo = (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + 6 + l4;
  csum::store16(t + 16, csum::of(t, l4, pseudo));
  return kEthHdrLen + 20 + l4;
}

// The same, back to the asker of frame f.
inline uint32_t tcp_reply_frame(const uint8_t* f, const BdEntry& bd, uint32_t seq, uint32_t ack, uint8_t flags, uint16_t mss,
                                const uint8_t* data, uint32_t len, uint8_t* buf) {
  const uint8_t* qip = f + kEthHdrLen;
  const uint8_t* qtcp = qip + uint32_t(qip[0] & 0x0f) * 4;
  return tcp_frame(bd, mac_from_bytes(f + 6), csum::load32(qip + 12), load_be16(qtcp), seq, ack, flags, mss, data, len, buf);
}

// What to send back for one TCP segment to gateway:53.
struct DnsTcpReply {
  enum class Kind : uint8_t { kNone, kSynAck, kAck, kRst, kAnswer } kind = Kind::kNone;
  uint32_t seq = 0, ack = 0;
  uint16_t mss = 0;
  uint32_t len = 0;  // kAnswer: the length-prefixed answer in the caller's buffer
  bool forwarded = false;  // kAnswer: one query, for a name not ours, to relay (it is at query, query_len); the buffer holds SERVFAIL
  dns::Rcode rc = dns::Rcode::kNoError;  // (unused: see tally)
  const uint8_t* query = nullptr;
  uint32_t query_len = 0;
  uint32_t queries = 0;  // kAnswer: the answers in the buffer, one per query, each length-prefixed
  struct Tally {         // kAnswer: the answers by kind (the counters of node_dns)
    uint16_t answered = 0, nodata = 0, nxdomain = 0, errors = 0, servfail = 0;
  } tally;
};

// The whole stage for TCP. out_buf: the answer, length-prefixed (cap bytes).
inline DnsNext dns_tcp(const Packet& p, const DnsTable& t, uint32_t max_frame, dns::Query* q, uint8_t* out_buf,
                       uint32_t cap, DnsTcpReply* r, Drop* drop, uint64_t rr = 0) {
  const uint8_t* ip = p.data + kEthHdrLen;
  const uint32_t ihl = uint32_t(ip[0] & 0x0f) * 4, tot = load_be16(ip + 2);
  if (csum::of(ip, ihl) != 0) return *drop = Drop::kBadCsum, DnsNext::kDrop;
  if (martian(csum::load32(ip + 12))) return *drop = Drop::kMartian, DnsNext::kDrop;
  const uint8_t* tcp = ip + ihl;
  if (tot < ihl + 20) return *drop = Drop::kBadIp, DnsNext::kDrop;
  const uint32_t doff = uint32_t(tcp[12] >> 4) * 4;
  if (doff < 20 || ihl + doff > tot) return *drop = Drop::kBadIp, DnsNext::kDrop;
  const uint8_t flags = tcp[13];
  const uint32_t seq = csum::load32(tcp + 4), ack = csum::load32(tcp + 8);
  const uint8_t* data = tcp + doff;
  const uint32_t dlen = tot - ihl - doff;
  const uint32_t cookie = tcp_cookie(t.tcp_secret, csum::load32(ip + 12), load_be16(tcp));
  *r = DnsTcpReply{};
  if (flags & kTcpRst) return DnsNext::kReply;
  if (flags & kTcpSyn) {
    if (flags & kTcpAck) return DnsNext::kReply;  // not ours to answer
    *r = {DnsTcpReply::Kind::kSynAck, cookie, seq + 1, uint16_t(max_frame > kTcpHdrs + 64 ? max_frame - kTcpHdrs : 536)};
    return DnsNext::kReply;
  }
  if (!(flags & kTcpAck)) return DnsNext::kReply;
  if (!dlen) {
    if (flags & kTcpFin) *r = {DnsTcpReply::Kind::kAck, ack, seq + 1};  // the asker closes (after our FIN): acknowledged
    return DnsNext::kReply;
  }
  // Queries: whole, in this one segment, on the connection our cookie opened.
  // Several may come back to back (glibc writes its A and AAAA queries in
  // one segment): answered in order, in one length-prefixed answer each.
  const uint32_t next = seq + dlen + ((flags & kTcpFin) ? 1 : 0);  // what we acknowledge (a FIN counts one)
  const DnsTcpReply rst{DnsTcpReply::Kind::kRst, ack, next};
  if (ack != cookie + 1 || cap < 2 + dns::kHeaderLen) return *r = rst, DnsNext::kReply;
  uint32_t off = 0, out = 0, queries = 0;
  DnsTcpReply::Tally tally;
  for (; off < dlen; queries++) {
    const uint32_t mlen = dlen - off >= 2 ? load_be16(data + off) : 0;
    if (dlen - off < 2 || off + 2 + mlen > dlen) return *r = rst, DnsNext::kReply;  // split over segments
    const uint8_t* msg = data + off + 2;
    off += 2 + mlen;
    DnsResult res;
    const DnsDecision d = dns_decide(msg, mlen, t, p.in_port, p.bd, q, &res, rr);
    if (d == DnsDecision::kIgnore) return *drop = Drop::kDnsBad, DnsNext::kDrop;
    if (d == DnsDecision::kForward) {
      res = DnsResult{dns::Rcode::kServFail, false, 0, {}};
      if (queries == 0 && off == dlen) r->forwarded = true, r->query = msg, r->query_len = mlen;  // alone: relayed (node_dns.h)
    }
    if (cap - out < 2 + dns::kHeaderLen) return *r = rst, DnsNext::kReply;
    q->udp_size = uint16_t(std::min<uint32_t>(cap - out - 2, 65535));  // over TCP the answer may be as long as the buffer
    const size_t n = dns::write_response(*q, res.rc, res.aa, res.an, res.n, out_buf + out + 2, cap - out - 2);
    if (!n) return *r = rst, DnsNext::kReply;
    if (d == DnsDecision::kForward) tally.servfail++;
    else if (res.rc == dns::Rcode::kNxDomain) tally.nxdomain++;
    else if (res.rc != dns::Rcode::kNoError) tally.errors++;
    else if (load_be16(out_buf + out + 2 + 6)) tally.answered++;  // ANCOUNT (0 when TC cut the records: counted as NODATA)
    else tally.nodata++;
    store_be16(out_buf + out, uint16_t(n));
    out += uint32_t(n + 2);
  }
  const bool fw = r->forwarded;
  const uint8_t* query = r->query;
  const uint32_t qlen = r->query_len;
  *r = {DnsTcpReply::Kind::kAnswer, cookie + 1, next, 0, out, fw, dns::Rcode::kNoError, query, qlen, queries, tally};
  return DnsNext::kReply;
}

}  // namespace dpsw::stage
