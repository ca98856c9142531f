// Fuzz target of the DNS parser (issue 16): any bytes as a query; whatever
// parses is answered, and the answer must parse back as a response of the
// right shape. Built two ways (tests/meson.build): with libFuzzer when clang
// is there (`dns_wire_fuzz CORPUS_DIR`, for long runs), and as a unit test
// whose main() (fuzz_main.cc) replays seeds and a fixed number of random
// mutations, so CI and the sanitizer builds run it every time.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "dataplane/dns/dns_wire.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dpsw::dns;
  Query q;
  const Parse p = parse_query(data, size, &q);
  if (p == Parse::kIgnore) return 0;
  Answer answers[3];
  answers[0].a = 0x0a000001;
  answers[1].type = kTypePtr;
  answers[1].ptr = "x.example";
  answers[2].a = 0x0a000002;
  uint8_t out[kMaxUdpEdns];
  const Rcode rc = p == Parse::kOk ? Rcode::kNoError : p == Parse::kNotImp ? Rcode::kNotImp : p == Parse::kBadVers ? Rcode::kBadVers : Rcode::kFormErr;
  const size_t n = write_response(q, rc, true, p == Parse::kOk ? answers : nullptr, p == Parse::kOk ? 3 : 0, out, sizeof out,
                                  p == Parse::kOk);
  if (n == 0) return 0;
  // The answer is a response with our id, within the size the query allows.
  if (n < kHeaderLen || n > q.udp_size || !(out[2] & 0x80) || out[0] != uint8_t(q.id >> 8) || out[1] != uint8_t(q.id)) std::abort();
  if (p == Parse::kOk) {  // and its question reads back as the query's name
    size_t off = kHeaderLen;
    char name[kMaxName + 1];
    uint8_t len = 0;
    if (!read_name(out, n, &off, name, &len, nullptr, nullptr) || len != q.name_len) std::abort();
    uint32_t ip;
    parse_reverse_v4(q.name, &ip);
  }
  return 0;
}

#include <vector>

// Seeds for fuzz_main.cc: queries as glibc and dig send them.
const std::vector<std::vector<uint8_t>>& fuzz_seeds() {
  static const std::vector<std::vector<uint8_t>> seeds = {
      // A web (glibc: RD, one question)
      {0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 3, 'w', 'e', 'b', 0, 0, 1, 0, 1},
      // AAAA web.frontend with EDNS (1232) and a cookie option (dig)
      {0xbe, 0xef, 0x01, 0x20, 0, 1, 0, 0, 0, 0, 0, 1, 3, 'w', 'e', 'b', 8, 'f', 'r', 'o', 'n', 't', 'e', 'n', 'd', 0, 0, 28, 0, 1,
       0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 12, 0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8},
      // PTR 5.0.20.172.in-addr.arpa
      {0x00, 0x01, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 1, '5', 1, '0', 2, '2', '0', 3, '1', '7', '2', 7, 'i', 'n', '-', 'a', 'd',
       'd', 'r', 4, 'a', 'r', 'p', 'a', 0, 0, 12, 0, 1},
      // a compressed question (a pointer back into the header: malformed, but shaped)
      {0x00, 0x02, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 1, 'a', 0xc0, 0x0c, 0, 1, 0, 1},
  };
  return seeds;
}
