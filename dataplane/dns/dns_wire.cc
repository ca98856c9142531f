#include "dataplane/dns/dns_wire.h"

namespace dpsw::dns {

namespace {
inline uint16_t be16(const uint8_t* p) { return uint16_t(p[0] << 8 | p[1]); }
inline void put16(uint8_t* p, uint16_t v) {
  p[0] = uint8_t(v >> 8);
  p[1] = uint8_t(v);
}
inline void put32(uint8_t* p, uint32_t v) {
  put16(p, uint16_t(v >> 16));
  put16(p + 2, uint16_t(v));
}
inline char lower(uint8_t c) { return c >= 'A' && c <= 'Z' ? char(c + 32) : char(c); }
}  // namespace

bool skip_name(const uint8_t* msg, size_t len, size_t* off) {
  size_t pos = *off;
  while (pos < len) {
    const uint8_t l = msg[pos];
    if (l == 0) {
      *off = pos + 1;
      return true;
    }
    if ((l & 0xc0) == 0xc0) {
      if (pos + 2 > len) return false;
      *off = pos + 2;
      return true;
    }
    if (l & 0xc0) return false;
    pos += 1 + size_t(l);
  }
  return false;
}

size_t last_record(const uint8_t* msg, size_t len) {
  if (len < kHeaderLen) return 0;
  size_t off = kHeaderLen;
  for (unsigned i = be16(msg + 4); i > 0; i--)
    if (!skip_name(msg, len, &off) || (off += 4) > len) return 0;
  const unsigned records = unsigned(be16(msg + 6)) + be16(msg + 8) + be16(msg + 10);
  size_t last = 0;
  for (unsigned i = 0; i < records; i++) {  // each at least 11 bytes: bounded by len
    last = off;
    if (!skip_name(msg, len, &off) || off + 10 > len) return 0;
    off += 10 + be16(msg + off + 8);
    if (off > len) return 0;
  }
  return off == len ? last : 0;
}

bool read_name(const uint8_t* msg, size_t len, size_t* off, char* out, uint8_t* out_len, uint8_t* wire, uint8_t* wire_len) {
  size_t pos = *off;
  size_t end = 0;          // where the name ends at *off (set at the first pointer or the final zero)
  size_t limit = pos;      // a pointer must point before this (the start of the label that holds it)
  unsigned pointers = 0;
  size_t n = 0;            // bytes of out used
  size_t w = 0;            // bytes of the uncompressed wire form
  for (;;) {
    if (pos >= len) return false;
    const uint8_t b = msg[pos];
    if ((b & 0xc0) == 0xc0) {  // a pointer
      if (pos + 1 >= len || ++pointers > kMaxPointers) return false;
      const size_t to = size_t(b & 0x3f) << 8 | msg[pos + 1];
      if (to >= limit || to < kHeaderLen) return false;  // only backwards, never into the header: no loop, no forward reference
      if (!end) end = pos + 2;
      limit = to;
      pos = to;
      continue;
    }
    if (b & 0xc0) return false;  // 0x40/0x80: extended label types, not used
    if (b == 0) {
      if (w + 1 > kMaxName) return false;
      if (wire) wire[w] = 0;
      w++;
      if (!end) end = pos + 1;
      break;
    }
    if (b > kMaxLabel || pos + 1 + b > len || w + 1 + b + 1 > kMaxName) return false;
    if (wire) std::memcpy(wire + w, msg + pos, size_t(1) + b);
    w += size_t(1) + b;
    if (n) out[n++] = '.';
    for (size_t i = 0; i < b; i++) {
      const uint8_t c = msg[pos + 1 + i];
      if (c == '.' || c == 0) return false;  // a name we could not tell apart once dotted
      out[n++] = lower(c);
    }
    if (!end) limit = pos;  // before the first pointer: a pointer may point anywhere before it
    pos += size_t(1) + b;
  }
  out[n] = 0;
  *out_len = uint8_t(n);
  if (wire_len) *wire_len = uint8_t(w);
  *off = end;
  return true;
}

Parse parse_query(const uint8_t* msg, size_t len, Query* q) {
  if (len < kHeaderLen) return Parse::kIgnore;
  q->id = be16(msg);
  q->flags = be16(msg + 2);
  q->name[0] = 0;
  q->name_len = 0;
  q->qname_wire_len = 0;
  q->qtype = q->qclass = 0;
  q->edns = q->dnssec_ok = false;
  q->udp_size = kMaxUdpPlain;
  if (q->flags & 0x8000) return Parse::kIgnore;  // a response: never answered (no reflection loops)
  const uint16_t qd = be16(msg + 4), an = be16(msg + 6), ns = be16(msg + 8), ar = be16(msg + 10);
  if (((q->flags >> 11) & 0xf) != 0) return Parse::kNotImp;
  if (qd != 1 || an != 0 || ns != 0 || ar > 1 || len > kMaxUdpEdns) return Parse::kFormErr;
  size_t off = kHeaderLen;
  uint8_t wire_len = 0;
  if (!read_name(msg, len, &off, q->name, &q->name_len, q->qname_wire, &wire_len) || off + 4 > len) {
    q->name[0] = 0;
    q->name_len = 0;
    return Parse::kFormErr;
  }
  q->qname_wire_len = wire_len;  // the whole question was read: it may be echoed
  q->qtype = be16(msg + off);
  q->qclass = be16(msg + off + 2);
  off += 4;
  if (q->qtype == kTypeOpt || q->qtype == 0) return Parse::kFormErr;
  if (ar == 1) {  // must be EDNS: OPT for the root, nothing after it
    if (off + 11 > len || msg[off] != 0 || be16(msg + off + 1) != kTypeOpt) return Parse::kFormErr;
    // Its fixed part read: the answer carries OPT from here on, whatever follows (RFC 6891 7).
    const uint16_t size = be16(msg + off + 3);
    q->edns = true;
    q->udp_size = size < kMaxUdpPlain ? uint16_t(kMaxUdpPlain) : size > kMaxUdpEdns ? uint16_t(kMaxUdpEdns) : size;
    q->dnssec_ok = msg[off + 7] & 0x80;
    if (msg[off + 6] != 0) return Parse::kBadVers;  // its version: before its options, whose framing may differ
    const uint16_t rdlen = be16(msg + off + 9);
    if (off + 11 + rdlen != len) return Parse::kFormErr;
    // Options: each a 4-byte header and its data, exactly filling rdlen.
    for (size_t o = off + 11; o < len;) {
      if (o + 4 > len || o + 4 + be16(msg + o + 2) > len) return Parse::kFormErr;
      o += 4 + be16(msg + o + 2);
    }
  } else if (off != len) {
    return Parse::kFormErr;  // trailing bytes
  }
  return Parse::kOk;
}

namespace {
// A dotted name we can write: labels of 1..63 bytes, at most 255 on the wire.
bool writable_name(const char* name) {
  size_t wire = 1, label = 0;
  for (const char* p = name; *p; p++) {
    if (*p == '.') {
      if (label == 0) return false;
      wire += 1 + label;
      label = 0;
    } else if (++label > kMaxLabel) {
      return false;
    }
  }
  if (*name && label == 0) return false;  // a final dot
  return wire + (label ? 1 + label : 0) <= kMaxName;
}

// "a.b.c" (writable_name()) -> its wire form at out; 0 when it does not fit.
size_t encode_name(const char* name, uint8_t* out, size_t cap) {
  size_t w = 0;
  const char* p = name;
  while (*p) {
    const char* dot = p;
    while (*dot && *dot != '.') dot++;
    const size_t l = size_t(dot - p);
    if (l == 0 || l > kMaxLabel || w + 1 + l + 1 > cap || w + 1 + l + 1 > kMaxName) return 0;
    out[w] = uint8_t(l);
    std::memcpy(out + w + 1, p, l);
    w += 1 + l;
    p = *dot ? dot + 1 : dot;
  }
  if (w + 1 > cap) return 0;
  out[w++] = 0;
  return w;
}
}  // namespace

size_t write_response(const Query& q, Rcode rcode, bool authoritative, const Answer* answers, size_t n, uint8_t* out, size_t cap,
                      bool with_question) {
  const size_t max = cap < q.udp_size ? cap : q.udp_size;
  const size_t opt_len = q.edns ? 11 : 0;
  if (uint8_t(rcode) > 15 && !q.edns) rcode = Rcode::kServFail;  // an extended rcode needs OPT to carry it
  const bool question = with_question && q.qname_wire_len > 0;
  size_t len = kHeaderLen + (question ? q.qname_wire_len + 4u : 0u);
  if (len + opt_len > max) return 0;
  // Header: id, QR, the opcode and RD as asked, AA, RA (we answer or forward).
  put16(out, q.id);
  uint16_t flags = uint16_t(0x8000 | (q.flags & 0x7900) | 0x0080 | (uint8_t(rcode) & 0xf));
  if (authoritative) flags |= 0x0400;
  put16(out + 4, question ? 1 : 0);
  put16(out + 6, 0);
  put16(out + 8, 0);
  put16(out + 10, q.edns ? 1 : 0);
  if (question) {
    std::memcpy(out + kHeaderLen, q.qname_wire, q.qname_wire_len);
    put16(out + kHeaderLen + q.qname_wire_len, q.qtype);
    put16(out + kHeaderLen + q.qname_wire_len + 2, q.qclass);
  }
  // Answers: all of them or none (TC): the owner is a pointer to the question's name.
  size_t written = 0, pos = len;
  bool truncated = false;
  for (size_t i = 0; i < n && question; i++) {
    const Answer& a = answers[i];
    if (pos + 12 + opt_len > max) {
      truncated = true;
      break;
    }
    uint8_t* r = out + pos;
    put16(r, 0xc000 | kHeaderLen);
    put16(r + 2, a.type);
    put16(r + 4, kClassIn);
    put32(r + 6, a.ttl);
    size_t rdlen = 0;
    if (a.type == kTypeA) {
      if (pos + 12 + 4 + opt_len > max) {
        truncated = true;
        break;
      }
      put32(r + 12, a.a);
      rdlen = 4;
    } else if (a.type == kTypePtr && a.ptr && writable_name(a.ptr)) {
      rdlen = encode_name(a.ptr, r + 12, max - opt_len - pos - 12);
      if (!rdlen) {
        truncated = true;
        break;
      }
    } else {
      continue;  // nothing else is answered
    }
    put16(r + 10, uint16_t(rdlen));
    pos += 12 + rdlen;
    written++;
  }
  if (truncated) {
    written = 0;
    pos = len;
    flags |= 0x0200;  // TC: ask again over TCP
  }
  put16(out + 2, flags);
  put16(out + 6, uint16_t(written));
  if (q.edns) {  // OPT: our UDP size, extended rcode bits, version 0
    uint8_t* o = out + pos;
    o[0] = 0;
    put16(o + 1, kTypeOpt);
    put16(o + 3, kOurUdpSize);
    o[5] = uint8_t(uint8_t(rcode) >> 4);
    o[6] = 0;
    put16(o + 7, q.dnssec_ok ? 0x8000 : 0);  // DO echoed
    put16(o + 9, 0);
    pos += 11;
  }
  return pos;
}

bool parse_reverse_v4(const char* name, uint32_t* ip) {
  uint32_t octets[4];
  const char* p = name;
  for (int i = 0; i < 4; i++) {
    if (*p < '0' || *p > '9') return false;
    uint32_t v = 0;
    int digits = 0;
    while (*p >= '0' && *p <= '9') {
      v = v * 10 + uint32_t(*p++ - '0');
      if (++digits > 3 || v > 255) return false;
    }
    if (digits > 1 && p[-digits] == '0') return false;  // no leading zeros: one spelling per address
    if (*p++ != '.') return false;
    octets[i] = v;
  }
  if (std::strcmp(p, "in-addr.arpa") != 0) return false;
  *ip = octets[3] << 24 | octets[2] << 16 | octets[1] << 8 | octets[0];
  return true;
}

}  // namespace dpsw::dns
