// Fuzz target of the DNS parser (issue 16): any bytes as a query; whatever
// parses is answered, with a room, a number of answers and a PTR target
// taken from the input too (so truncation, the OPT record's room and bad
// targets are reached), and the answer must read back, record by record,
// as a well-formed response that fills exactly the bytes written. Built two
// ways (tests/meson.build): with libFuzzer when clang is there
// (`ninja -C build tests/dns_wire_fuzz`, then `build/tests/dns_wire_fuzz
// CORPUS_DIR`), and as a unit test whose main() (fuzz_main.cc) replays seeds
// and a fixed number of random mutations, so CI and the sanitizer builds
// run it every time.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "dataplane/dns/dns_wire.h"

namespace {
using namespace dpsw::dns;

uint16_t be16(const uint8_t* p) { return uint16_t(p[0] << 8 | p[1]); }

[[noreturn]] void fail() { std::abort(); }

// Walks a response: header, question, answers, OPT; every record inside n.
void check_response(const Query& q, const uint8_t* out, size_t n, bool with_question) {
  if (n < kHeaderLen || n > q.udp_size) fail();
  if (!(out[2] & 0x80) || be16(out) != q.id) fail();
  const uint16_t qd = be16(out + 4), an = be16(out + 6), ns = be16(out + 8), ar = be16(out + 10);
  if (ns != 0 || ar != (q.edns ? 1 : 0) || qd != (with_question && q.qname_wire_len ? 1 : 0)) fail();
  if ((out[2] & 0x02) && an != 0) fail();  // TC: no answers
  size_t off = kHeaderLen;
  if (qd) {
    char name[kMaxName + 1];
    uint8_t len = 0;
    if (!read_name(out, n, &off, name, &len, nullptr, nullptr) || len != q.name_len || off + 4 > n) fail();
    off += 4;
  }
  for (unsigned i = 0; i < an; i++) {
    if (off + 12 > n || be16(out + off) != (0xc000 | kHeaderLen)) fail();
    const uint16_t type = be16(out + off + 2), rdlen = be16(out + off + 10);
    if (off + 12 + rdlen > n) fail();
    if (type == kTypeA && rdlen != 4) fail();
    if (type == kTypePtr) {  // its target reads back as a name filling rdlen
      size_t t = off + 12;
      char name[kMaxName + 1];
      uint8_t len = 0;
      if (!read_name(out, off + 12 + rdlen, &t, name, &len, nullptr, nullptr) || t != off + 12 + rdlen) fail();
    }
    off += 12 + rdlen;
  }
  if (ar) {
    if (off + 11 > n || out[off] != 0 || be16(out + off + 1) != kTypeOpt || be16(out + off + 9) != 0) fail();
    if (((out[off + 7] & 0x80) != 0) != q.dnssec_ok) fail();
    off += 11;
  }
  if (off != n) fail();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Any message (an upstream's answer is as untrusted as a query): its last record, if it reads, lies within it.
  if (const size_t last = last_record(data, size); last && (last < kHeaderLen || last + 11 > size)) fail();
  Query q;
  const Parse p = parse_query(data, size, &q);
  if (p == Parse::kIgnore) return 0;
  // The answer's shape from the input's bytes (a hash: any input reaches any shape).
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < size; i++) h = (h ^ data[i]) * 16777619u;
  static const char* const kTargets[] = {"x.example", "", "a..b", "trailing.", "", "web.frontend"};
  static const std::string kLong = [] {
    std::string s;
    for (int i = 0; i < 5; i++) s += std::string(60, 'n') + ".";
    return s.substr(0, s.size() - 1);  // 304 bytes: more than a name may be
  }();
  std::vector<Answer> answers(h % 64);
  for (size_t i = 0; i < answers.size(); i++) {
    answers[i].a = uint32_t(i);
    answers[i].ttl = h;
    if ((h >> (i % 24)) & 1) {
      answers[i].type = kTypePtr;
      const unsigned t = (h >> 8) % 7;
      answers[i].ptr = t == 6 ? kLong.c_str() : t == 4 ? "l23456789012345678901234567890123456789012345678901234567890123456789" : kTargets[t];
    }
  }
  const size_t cap = (h >> 16) % (kMaxUdpEdns + 64);
  static uint8_t out[kMaxUdpEdns + 64];
  const Rcode rc = p == Parse::kOk ? Rcode::kNoError : p == Parse::kNotImp ? Rcode::kNotImp : p == Parse::kBadVers ? Rcode::kBadVers : Rcode::kFormErr;
  const bool with_question = p == Parse::kOk || (h & 0x100);
  const size_t n = write_response(q, rc, true, p == Parse::kOk ? answers.data() : nullptr, p == Parse::kOk ? answers.size() : 0, out, cap,
                                  with_question);
  if (n == 0) return 0;
  if (n > cap) fail();
  check_response(q, out, n, with_question);
  if ((out[6] | out[7] | out[10] | out[11]) && !last_record(out, n)) fail();  // our own answers walk to their last record
  uint32_t ip;
  parse_reverse_v4(q.name, &ip);
  return 0;
}

// Seeds for fuzz_main.cc: queries as glibc and dig send them.
const std::vector<std::vector<uint8_t>>& fuzz_seeds() {
  static const std::vector<std::vector<uint8_t>> seeds = {
      // A web (glibc: RD, one question)
      {0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 3, 'w', 'e', 'b', 0, 0, 1, 0, 1},
      // AAAA web.frontend with EDNS (1232, DO) and a cookie option (dig)
      {0xbe, 0xef, 0x01, 0x20, 0, 1, 0, 0, 0, 0, 0, 1, 3, 'w', 'e', 'b', 8, 'f', 'r', 'o', 'n', 't', 'e', 'n', 'd', 0, 0, 28, 0, 1,
       0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 12, 0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8},
      // PTR 5.0.20.172.in-addr.arpa
      {0x00, 0x01, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 1, '5', 1, '0', 2, '2', '0', 3, '1', '7', '2', 7, 'i', 'n', '-', 'a', 'd',
       'd', 'r', 4, 'a', 'r', 'p', 'a', 0, 0, 12, 0, 1},
      // a question that is a pointer into the header (refused)
      {0x00, 0x02, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x04, 0, 1, 0, 1},
      // EDNS version 1 with an option that does not fit version 0's framing (BADVERS)
      {0x00, 0x03, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 1, 0, 0, 41, 0x10, 0x00, 0, 1, 0, 0, 0, 3, 9, 9, 9},
  };
  return seeds;
}
