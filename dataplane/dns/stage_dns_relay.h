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

// The query (len bytes, its id replaced by relay_id, its EDNS size capped) from the uplink's
// address and relay port kPortLo + slot to server:53, through next hop
// nh_mac. Returns the frame's length (0: does not fit cap).
inline uint32_t relay_query_frame(const L3Conf& l3, Mac nh_mac, uint32_t server, unsigned slot, uint16_t relay_id, const uint8_t* query,
                                  uint32_t len, uint8_t* buf, uint32_t cap) {
  if (len < dns::kHeaderLen || kUdpHdrs + len > cap) return 0;
  uint8_t* m = buf + kUdpHdrs;
  std::memcpy(m, query, len);
  store_be16(m, relay_id);
  // An OPT record (the last additional record of a query dns_wire accepted) may say a larger size.
  size_t off = dns::kHeaderLen;
  char name[dns::kMaxName + 1];
  uint8_t nlen;
  if (load_be16(m + 10) == 1 && dns::read_name(m, len, &off, name, &nlen, nullptr, nullptr) && off + 4 + 11 <= len && m[off + 4] == 0 &&
      load_be16(m + off + 5) == dns::kTypeOpt && load_be16(m + off + 7) > kRelayEdnsSize)
    store_be16(m + off + 7, kRelayEdnsSize);
  return udp_frame(buf, nh_mac, l3.uplink_mac, l3.uplink_ip, server, uint16_t(DnsRelay::kPortLo + slot), 53, len);
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
  } else {  // header and question only, TC
    size_t off = dns::kHeaderLen;
    char name[dns::kMaxName + 1];
    uint8_t nlen;
    const bool q = load_be16(msg + 4) == 1 && dns::read_name(msg, len, &off, name, &nlen, nullptr, nullptr) && off + 4 <= len;
    const uint32_t keep = q ? uint32_t(off + 4) : uint32_t(dns::kHeaderLen);
    if (kUdpHdrs + keep > room) return 0;
    std::memcpy(out, msg, keep);
    out[2] |= 0x02;                                // TC
    store_be16(out + 4, q ? 1 : 0);                // QDCOUNT
    std::memset(out + 6, 0, 6);                    // no AN, NS, AR
    len = keep;
  }
  store_be16(out, a.id);
  return udp_frame(buf, a.mac, bd.router_mac, bd.local_ip, a.ip, 53, a.sport, len);
}

}  // namespace dpsw::stage
