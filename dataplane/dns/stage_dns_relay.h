// Stage: the frames of the DNS relay (dns_relay.h). Pure functions over
// caller-owned buffers: a query on its way to an upstream resolver, and an
// upstream's answer on its way back to the container that asked.
#pragma once

#include <algorithm>
#include <cstring>

#include "dataplane/core/hash.h"
#include "dataplane/dns/dns_relay.h"
#include "dataplane/dns/dns_wire.h"
#include "dataplane/dns/stage_dns.h"

namespace dpsw::stage {

// The question of a message (its first): name in lower case, type, class,
// hashed; 0 when it has none that reads. The relay's answer must echo the
// query's (RFC 5452 9.1).
inline uint64_t question_hash(const uint8_t* msg, uint32_t len) {
  size_t off = dns::kHeaderLen;
  char name[dns::kMaxName + 1];
  uint8_t nlen;
  if (len < dns::kHeaderLen || load_be16(msg + 4) != 1 || !dns::read_name(msg, len, &off, name, &nlen, nullptr, nullptr) || off + 4 > len)
    return 0;
  uint64_t h = mix64(uint64_t(load_be16(msg + off)) << 16 | load_be16(msg + off + 2));
  for (uint8_t i = 0; i < nlen; i++) h = mix64(h ^ uint8_t(name[i]));
  return h ? h : 1;
}

// The UDP size an EDNS query forwarded upstream advertises, at most: an
// answer longer than the uplink's frames would come back fragmented (which
// the relay does not reassemble); past it the upstream sets TC.
constexpr uint16_t kRelayEdnsSize = 1232;
constexpr uint32_t kOptLen = 11;  // an OPT record without options: root, type, size, ext-rcode/version/flags, rdlen

// A query asked over TCP is relayed over UDP too, advertising
// kRelayEdnsSize (an OPT record is added when it has none — it has no
// additional record then, dns_wire accepting no other): without one the
// upstream would truncate at 512 bytes, the very answer the asker wanted
// TCP for. The OPT so added is taken off the answer (relay_tcp_message).
inline bool relay_adds_opt(bool tcp, const uint8_t* query, uint32_t len) {
  return tcp && len >= dns::kHeaderLen && load_be16(query + 10) == 0;
}

// The query (len bytes, its id replaced by relay_id, its EDNS size capped,
// or for a TCP asker raised and added) from the uplink's address and relay
// port kPortLo + slot to server:53, through next hop nh_mac. Returns the
// frame's length (0: does not fit cap).
inline uint32_t relay_query_frame(const L3Conf& l3, Mac nh_mac, uint32_t server, unsigned slot, uint16_t relay_id, const uint8_t* query,
                                  uint32_t len, bool tcp, uint8_t* buf, uint32_t cap) {
  const bool add = relay_adds_opt(tcp, query, len);
  if (len < dns::kHeaderLen || kUdpHdrs + len + (add ? kOptLen : 0) > cap) return 0;
  uint8_t* m = buf + kUdpHdrs;
  std::memcpy(m, query, len);
  store_be16(m, relay_id);
  if (add) {
    static constexpr uint8_t opt[kOptLen] = {0, 0, dns::kTypeOpt, kRelayEdnsSize >> 8, kRelayEdnsSize & 0xff, 0, 0, 0, 0, 0, 0};
    std::memcpy(m + len, opt, kOptLen);
    store_be16(m + 10, 1);  // ARCOUNT
    len += kOptLen;
  }
  // An OPT record (the last additional record of a query dns_wire accepted) may say another size.
  size_t off = dns::kHeaderLen;
  char name[dns::kMaxName + 1];
  uint8_t nlen;
  if (!add && load_be16(m + 10) == 1 && dns::read_name(m, len, &off, name, &nlen, nullptr, nullptr) && off + 4 + kOptLen <= len &&
      m[off + 4] == 0 && load_be16(m + off + 5) == dns::kTypeOpt && (tcp || load_be16(m + off + 7) > kRelayEdnsSize))
    store_be16(m + off + 7, kRelayEdnsSize);
  return udp_frame(buf, nh_mac, l3.uplink_mac, l3.uplink_ip, server, uint16_t(DnsRelay::kPortLo + slot), 53, len);
}

// The header and question of msg into out (room bytes), no records
// (QDCOUNT 1, or 0 when the question does not read); its length, 0 when it
// does not fit.
inline uint32_t header_and_question(const uint8_t* msg, uint32_t len, uint8_t* out, uint32_t room) {
  if (len < dns::kHeaderLen) return 0;
  size_t off = dns::kHeaderLen;
  char name[dns::kMaxName + 1];
  uint8_t nlen;
  const bool q = load_be16(msg + 4) == 1 && dns::read_name(msg, len, &off, name, &nlen, nullptr, nullptr) && off + 4 <= len;
  const uint32_t keep = q ? uint32_t(off + 4) : uint32_t(dns::kHeaderLen);
  if (keep > room) return 0;
  std::memmove(out, msg, keep);
  store_be16(out + 4, q ? 1 : 0);  // QDCOUNT
  std::memset(out + 6, 0, 6);      // no AN, NS, AR
  return keep;
}

// An upstream's answer (msg, len bytes) to the asker, from its network's
// gateway, with the asker's id. An answer longer than the asker's port
// carries (max_frame) goes as its header and question with TC set (the
// asker may ask again over TCP). Returns the frame's length (0: none).
inline uint32_t relay_answer_frame(const BdEntry& bd, const DnsRelay::Asker& a, const uint8_t* msg, uint32_t len, uint32_t max_frame,
                                   uint8_t* buf, uint32_t cap) {
  if (len < dns::kHeaderLen) return 0;
  const uint32_t room = std::min(cap, max_frame);
  if (room <= kUdpHdrs) return 0;
  uint8_t* out = buf + kUdpHdrs;
  if (kUdpHdrs + len <= room) {
    std::memcpy(out, msg, len);
  } else {
    len = header_and_question(msg, len, out, room - kUdpHdrs);
    if (!len) return 0;
    out[2] |= 0x02;  // TC
  }
  store_be16(out, a.id);
  return udp_frame(buf, a.mac, bd.router_mac, bd.local_ip, a.ip, 53, a.sport, len);
}

// An upstream's answer (msg, len bytes) to a TCP asker: length-prefixed in
// out (cap bytes), with the asker's id, without the OPT record the relay
// added (the asker sent none: RFC 6891 6.1.1; found by walking the
// message to its last record). SERVFAIL (header and question, an OPT
// record when the asker sent one) instead when the upstream truncated it
// (longer than kRelayEdnsSize: the relay does not ask upstreams over TCP),
// when it does not fit out, or when it is FORMERR without EDNS to the OPT
// the relay added (an upstream without EDNS: not the asker's error).
// Returns the length with the prefix (0: none); *servfail tells which.
inline uint32_t relay_tcp_message(const DnsRelay::Asker& a, const uint8_t* msg, uint32_t len, uint8_t* out, uint32_t cap,
                                  bool* servfail) {
  *servfail = false;
  if (len < dns::kHeaderLen || cap < 2 + dns::kHeaderLen) return 0;
  uint8_t* m = out + 2;
  const bool formerr_no_edns = a.opt_added && (msg[3] & 0x0f) == uint8_t(dns::Rcode::kFormErr) && load_be16(msg + 10) == 0;
  if ((msg[2] & 0x02) || 2 + len > cap || formerr_no_edns) {
    *servfail = true;
    len = header_and_question(msg, len, m, cap - 2);
    if (!len) return 0;
    m[2] &= uint8_t(~0x06);                                          // TC, AA
    m[3] = uint8_t((m[3] & 0x90) | uint8_t(dns::Rcode::kServFail));  // RA and CD kept (RFC 6840: CD as asked), AD cleared
    if (!a.opt_added && 2 + len + kOptLen <= cap) {  // the asker's query had an OPT record: so has the answer
      static constexpr uint8_t opt[kOptLen] = {0, 0, dns::kTypeOpt, kRelayEdnsSize >> 8, kRelayEdnsSize & 0xff, 0, 0, 0, 0, 0, 0};
      std::memcpy(m + len, opt, kOptLen);
      store_be16(m + 10, 1);
      len += kOptLen;
    }
  } else {
    std::memcpy(m, msg, len);
    if (a.opt_added && load_be16(m + 10) >= 1) {
      // Ours is answered by the upstream's own OPT, the last additional record (with options or not).
      const size_t last = dns::last_record(m, len);
      if (last && m[last] == 0 && last + 3 <= len && load_be16(m + last + 1) == dns::kTypeOpt) {
        store_be16(m + 10, uint16_t(load_be16(m + 10) - 1));
        len = uint32_t(last);
      }
    }
  }
  store_be16(m, a.id);
  store_be16(out, uint16_t(len));
  return len + 2;
}

}  // namespace dpsw::stage
