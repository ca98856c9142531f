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
// do not hold is relayed upstream over UDP (node_dns.h: the queries are
// acknowledged at once, the answer follows from whichever worker receives
// it, in the place the relay slot holds, then the queries after it).
// The TCP checksum of the query is not verified (partial from a container,
// as for UDP); the answer's is complete.
#pragma once

#include <cstring>

#include "dataplane/core/checksum.h"
#include "dataplane/core/hash.h"
#include "dataplane/dns/dns_relay.h"
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

// The answers to a run of length-prefixed queries (dns_tcp_batch).
struct DnsTcpBatch {
  uint32_t len = 0;      // the length-prefixed answers written
  uint32_t queries = 0;  // the queries answered (or relayed: *relay)
  // A query for a name not ours, to relay (when relaying was allowed): the
  // answers stop before it; rest/rest_len are the queries after it.
  const uint8_t* relay = nullptr;
  uint32_t relay_len = 0;
  const uint8_t* rest = nullptr;
  uint32_t rest_len = 0;
  bool full = false;  // an answer did not fit the buffer (the rest is unanswered)
  struct Tally {      // the answers by kind (the counters of node_dns)
    uint16_t answered = 0, nodata = 0, nxdomain = 0, errors = 0, servfail = 0;
  } tally;
};

// Answers the length-prefixed queries of data[0, len) (their framing
// checked by the caller) in order for an asker on in_port (network bd),
// into out (cap bytes). A name not ours stops the run when may_relay (the
// caller relays it, then answers the rest), else is SERVFAIL; a message that
// is not a query is skipped.
inline DnsTcpBatch dns_tcp_batch(const uint8_t* data, uint32_t len, const DnsTable& t, uint16_t in_port, uint16_t bd, bool may_relay,
                                 uint8_t* out, uint32_t cap, uint64_t rr = 0) {
  DnsTcpBatch b;
  dns::Query q;
  DnsResult res;
  for (uint32_t off = 0; off + 2 <= len;) {
    const uint32_t mlen = load_be16(data + off);
    if (off + 2 + mlen > len) break;
    const uint8_t* msg = data + off + 2;
    off += 2 + mlen;
    const DnsDecision d = dns_decide(msg, mlen, t, in_port, bd, &q, &res, rr);
    if (d == DnsDecision::kIgnore) continue;
    if (d == DnsDecision::kForward) {
      if (may_relay && mlen <= DnsRelay::kQueryMax) {
        b.queries++;
        b.relay = msg, b.relay_len = mlen, b.rest = data + off, b.rest_len = len - off;
        return b;
      }
      res = DnsResult{dns::Rcode::kServFail, false, 0, {}};
    }
    if (cap - b.len < 2 + dns::kHeaderLen) return b.full = true, b;
    q.udp_size = uint16_t(std::min<uint32_t>(cap - b.len - 2, 65535));  // over TCP the answer may be as long as the buffer
    const size_t n = dns::write_response(q, res.rc, res.aa, res.an, res.n, out + b.len + 2, cap - b.len - 2);
    if (!n) return b.full = true, b;
    if (d == DnsDecision::kForward) b.tally.servfail++;
    else if (res.rc == dns::Rcode::kNxDomain) b.tally.nxdomain++;
    else if (res.rc != dns::Rcode::kNoError) b.tally.errors++;
    else if (load_be16(out + b.len + 2 + 6)) b.tally.answered++;  // ANCOUNT (0 when TC cut the records: counted as NODATA)
    else b.tally.nodata++;
    store_be16(out + b.len, uint16_t(n));
    b.len += uint32_t(n + 2);
    b.queries++;
  }
  return b;
}

// What to send back for one TCP segment to gateway:53.
struct DnsTcpReply {
  enum class Kind : uint8_t { kNone, kSynAck, kAck, kRst, kAnswer } kind = Kind::kNone;
  uint32_t seq = 0, ack = 0;
  uint16_t mss = 0;
  const uint8_t* data = nullptr;  // kAnswer: the segment's queries, length-prefixed, whole (for dns_tcp_batch)
  uint32_t data_len = 0;
};

// The whole stage for TCP: what to send back for segment p.
inline DnsNext dns_tcp(const Packet& p, const DnsTable& t, uint32_t max_frame, DnsTcpReply* r, Drop* drop) {
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
  // one segment): each answered in turn (node_dns.h).
  const uint32_t next = seq + dlen + ((flags & kTcpFin) ? 1 : 0);  // what we acknowledge (a FIN counts one)
  *r = {DnsTcpReply::Kind::kRst, ack, next};
  if (ack != cookie + 1) return DnsNext::kReply;
  bool query = false;
  for (uint32_t off = 0; off < dlen;) {
    const uint32_t mlen = dlen - off >= 2 ? load_be16(data + off) : 0;
    if (dlen - off < 2 || off + 2 + mlen > dlen) return DnsNext::kReply;  // split over segments
    if (mlen >= dns::kHeaderLen && !(data[off + 2 + 2] & 0x80)) query = true;
    off += 2 + mlen;
  }
  if (!query) return *drop = Drop::kDnsBad, DnsNext::kDrop;  // not a query at all
  *r = {DnsTcpReply::Kind::kAnswer, cookie + 1, next, 0, data, dlen};
  return DnsNext::kReply;
}

}  // namespace dpsw::stage
