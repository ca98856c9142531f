// The DNS wire codec of the embedded responder: queries as real resolvers
// send them (glibc, dig with EDNS and cookies), every malformed shape the
// issue names (compression loops, truncation, QDCOUNT != 1, oversized, odd
// EDNS), answers that fit or are truncated, and reverse names.
#include "dataplane/dns/dns_wire.h"
#include "tests/fixtures/frames.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace dpsw::dns {
namespace {

using Bytes = std::vector<uint8_t>;

void put16(Bytes& b, uint16_t v) {
  b.push_back(uint8_t(v >> 8));
  b.push_back(uint8_t(v));
}

using dpsw::test::name_wire;

// A query as glibc sends it: id, RD, one question; with EDNS as dig does (a cookie option).
Bytes query(const std::string& name, uint16_t type = kTypeA, bool edns = false, uint16_t qd = 1) {
  Bytes b;
  put16(b, 0x1234);
  put16(b, 0x0100);
  put16(b, qd);
  put16(b, 0);
  put16(b, 0);
  put16(b, edns ? 1 : 0);
  Bytes n = name_wire(name);
  b.insert(b.end(), n.begin(), n.end());
  put16(b, type);
  put16(b, kClassIn);
  if (edns) {
    b.push_back(0);
    put16(b, kTypeOpt);
    put16(b, 1232);
    b.insert(b.end(), {0, 0, 0, 0});
    put16(b, 12);  // rdlen: one COOKIE option (code 10) of 8 bytes
    put16(b, 10);
    put16(b, 8);
    b.insert(b.end(), {1, 2, 3, 4, 5, 6, 7, 8});
  }
  return b;
}

TEST(DnsWire, ReadsQueriesAsResolversSendThem) {
  Query q;
  Bytes m = query("Web.Frontend");
  ASSERT_EQ(parse_query(m.data(), m.size(), &q), Parse::kOk);
  EXPECT_STREQ(q.name, "web.frontend");  // case-insensitive
  EXPECT_EQ(q.qtype, kTypeA);
  EXPECT_FALSE(q.edns);
  EXPECT_EQ(q.udp_size, 512);
  m = query("web", kTypeAaaa, true);
  ASSERT_EQ(parse_query(m.data(), m.size(), &q), Parse::kOk);
  EXPECT_TRUE(q.edns);
  EXPECT_EQ(q.udp_size, 1232);
  m = query("", kTypeA);  // the root
  ASSERT_EQ(parse_query(m.data(), m.size(), &q), Parse::kOk);
  EXPECT_STREQ(q.name, "");
}

TEST(DnsWire, MalformedQueriesAreFormErrOrIgnored) {
  Query q;
  Bytes m = query("web");
  EXPECT_EQ(parse_query(m.data(), 11, &q), Parse::kIgnore);  // shorter than a header
  Bytes r = m;
  r[2] |= 0x80;  // a response
  EXPECT_EQ(parse_query(r.data(), r.size(), &q), Parse::kIgnore);
  r = m;
  r[2] |= 0x10;  // opcode 2 (STATUS)
  EXPECT_EQ(parse_query(r.data(), r.size(), &q), Parse::kNotImp);
  for (uint16_t qd : {0, 2}) {
    Bytes x = query("web", kTypeA, false, qd);
    EXPECT_EQ(parse_query(x.data(), x.size(), &q), Parse::kFormErr) << qd;
  }
  for (size_t cut = kHeaderLen; cut < m.size(); cut++) EXPECT_EQ(parse_query(m.data(), cut, &q), Parse::kFormErr) << cut;  // truncated
  r = m;
  r.push_back(0);  // trailing byte
  EXPECT_EQ(parse_query(r.data(), r.size(), &q), Parse::kFormErr);
  // Compression: a pointer to its own name (a loop), a pointer forward (the
  // start of any loop), a label then a pointer back to it, a pointer into the header.
  Bytes self = {0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1};
  EXPECT_EQ(parse_query(self.data(), self.size(), &q), Parse::kFormErr);
  Bytes fwd = {0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 18, 0, 1, 0, 1, 1, 'a', 0};
  EXPECT_EQ(parse_query(fwd.data(), fwd.size(), &q), Parse::kFormErr);
  Bytes back = {0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 1, 'a', 0xc0, 12, 0, 1, 0, 1};
  EXPECT_EQ(parse_query(back.data(), back.size(), &q), Parse::kFormErr);
  Bytes hdr = {0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 4, 0, 1, 0, 1};
  EXPECT_EQ(parse_query(hdr.data(), hdr.size(), &q), Parse::kFormErr);
  // A label length over 63 (0x40 and 0x80 are extended label types), a name of 256 bytes.
  Bytes big = query(std::string(64, 'x'));
  EXPECT_EQ(parse_query(big.data(), big.size(), &q), Parse::kFormErr);
  std::string n253 = std::string(63, 'a') + "." + std::string(63, 'b') + "." + std::string(63, 'c') + "." + std::string(61, 'd');
  Bytes ok255 = query(n253);  // 255 bytes on the wire: the most there is
  ASSERT_EQ(name_wire(n253).size(), 255u);
  EXPECT_EQ(parse_query(ok255.data(), ok255.size(), &q), Parse::kOk);
  Bytes over256 = query(n253 + "d");
  EXPECT_EQ(parse_query(over256.data(), over256.size(), &q), Parse::kFormErr);
  // Over 4096 bytes (an EDNS option padding it out); odd EDNS: a bad option length, another version, OPT as the question.
  Bytes huge = query("web", kTypeA, true);
  huge[huge.size() - 14] = 0x10;  // rdlen 4096 + 12
  huge.resize(huge.size() + 4096, 0);
  EXPECT_EQ(parse_query(huge.data(), huge.size(), &q), Parse::kFormErr);
  Bytes e = query("web", kTypeA, true);
  Bytes bad = e;
  bad[bad.size() - 9] = 9;  // the cookie option claims 9 bytes of 8
  EXPECT_EQ(parse_query(bad.data(), bad.size(), &q), Parse::kFormErr);
  bad = e;
  bad[bad.size() - 17] = 1;  // EDNS version 1
  EXPECT_EQ(parse_query(bad.data(), bad.size(), &q), Parse::kBadVers);
  Bytes opt = query("web", kTypeOpt);
  EXPECT_EQ(parse_query(opt.data(), opt.size(), &q), Parse::kFormErr);
  // A name with a dot or NUL inside a label cannot be told apart once dotted.
  Bytes dot = query("web");
  dot[kHeaderLen + 2] = '.';
  EXPECT_EQ(parse_query(dot.data(), dot.size(), &q), Parse::kFormErr);
}

TEST(DnsWire, AnswersEchoTheQuestionAndFitOrTruncate) {
  Query q;
  Bytes m = query("WeB", kTypeA, true);
  ASSERT_EQ(parse_query(m.data(), m.size(), &q), Parse::kOk);
  Answer a;
  a.ttl = 600;
  a.a = 0x0a000005;
  uint8_t out[600];
  size_t n = write_response(q, Rcode::kNoError, true, &a, 1, out, sizeof out);
  ASSERT_EQ(n, kHeaderLen + 5 + 4 + 16 + 11);
  EXPECT_EQ(out[0], 0x12);
  EXPECT_EQ(out[2], 0x85);  // QR, AA, RD
  EXPECT_EQ(out[3], 0x80);  // RA, NOERROR
  EXPECT_EQ(out[7], 1);     // one answer
  EXPECT_EQ(out[11], 1);    // OPT
  EXPECT_EQ(std::string(reinterpret_cast<char*>(out + 13), 3), "WeB");  // as asked (0x20)
  EXPECT_EQ(out[kHeaderLen + 9], 0xc0);
  const uint8_t* rd = out + kHeaderLen + 9 + 12;
  EXPECT_EQ(rd[0], 10);
  EXPECT_EQ(rd[3], 5);
  // 40 answers do not fit in 512 bytes: none, and TC.
  ASSERT_EQ(parse_query(query("web").data(), query("web").size(), &q), Parse::kOk);
  std::vector<Answer> many(40, a);
  n = write_response(q, Rcode::kNoError, true, many.data(), many.size(), out, sizeof out);
  EXPECT_EQ(out[2] & 0x02, 0x02);
  EXPECT_EQ(out[7], 0);
  EXPECT_EQ(n, kHeaderLen + 5 + 4);
  // PTR, NXDOMAIN, and FORMERR without a question.
  Answer p;
  p.type = kTypePtr;
  p.ptr = "web.frontend";
  n = write_response(q, Rcode::kNoError, true, &p, 1, out, sizeof out);
  EXPECT_EQ(n, kHeaderLen + 5 + 4 + 12 + 14);
  n = write_response(q, Rcode::kNxDomain, true, nullptr, 0, out, sizeof out);
  EXPECT_EQ(out[3] & 0xf, 3);
  n = write_response(q, Rcode::kFormErr, false, nullptr, 0, out, sizeof out, false);
  EXPECT_EQ(n, kHeaderLen);
  EXPECT_EQ(out[5], 0);
  EXPECT_EQ(write_response(q, Rcode::kNoError, true, &a, 1, out, 8), 0u);  // no room even for the header
}

TEST(DnsWire, PointersBackwardsAreFollowed) {
  // A message with "web" at 12 and, later, "x" + a pointer to it: x.web.
  Bytes m = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 'w', 'e', 'b', 0, 1, 'X', 0xc0, 12};
  size_t off = 17;
  char name[kMaxName + 1];
  uint8_t len = 0, wire[kMaxName], wire_len = 0;
  ASSERT_TRUE(read_name(m.data(), m.size(), &off, name, &len, wire, &wire_len));
  EXPECT_STREQ(name, "x.web");
  EXPECT_EQ(off, m.size());  // past the pointer, not past the name it points to
  EXPECT_EQ(wire_len, 7);    // uncompressed: 1 X 3 w e b 0
  EXPECT_EQ(wire[1], 'X');   // the case as written
}

TEST(DnsWire, EdnsAnswersCarryOptDoAndExtendedRcodes) {
  Query q;
  Bytes m = query("web", kTypeA, true);
  m[m.size() - 16] = 0x80;  // DO
  ASSERT_EQ(parse_query(m.data(), m.size(), &q), Parse::kOk);
  EXPECT_TRUE(q.dnssec_ok);
  uint8_t out[600];
  size_t n = write_response(q, Rcode::kBadVers, false, nullptr, 0, out, sizeof out);
  ASSERT_EQ(n, kHeaderLen + 5 + 4 + 11);
  EXPECT_EQ(out[3] & 0xf, 0);        // BADVERS = 16: 0 in the header...
  EXPECT_EQ(out[n - 11 + 5], 1);     // ...1 in OPT's extended rcode
  EXPECT_EQ(out[n - 11 + 7], 0x80);  // DO echoed
  // A bad option still gets OPT back with FORMERR; a version 1 query gets BADVERS before its options are read.
  Bytes bad = query("web", kTypeA, true);
  bad[bad.size() - 9] = 9;
  EXPECT_EQ(parse_query(bad.data(), bad.size(), &q), Parse::kFormErr);
  EXPECT_TRUE(q.edns);
  n = write_response(q, Rcode::kFormErr, false, nullptr, 0, out, sizeof out, false);
  EXPECT_EQ(n, kHeaderLen + 11);
  bad[bad.size() - 17] = 1;
  EXPECT_EQ(parse_query(bad.data(), bad.size(), &q), Parse::kBadVers);
  // Without EDNS an extended rcode cannot be carried: SERVFAIL.
  Bytes plain = query("web");
  ASSERT_EQ(parse_query(plain.data(), plain.size(), &q), Parse::kOk);
  n = write_response(q, Rcode::kBadVers, false, nullptr, 0, out, sizeof out);
  EXPECT_EQ(out[3] & 0xf, 2);
  // Answers that fit without the OPT record but not with it: TC.
  ASSERT_EQ(parse_query(m.data(), m.size(), &q), Parse::kOk);
  Answer a;
  std::vector<Answer> many(30, a);  // 21 + 30 * 16 = 501 bytes; + 11 for OPT = 512
  n = write_response(q, Rcode::kNoError, true, many.data(), many.size(), out, 511);
  EXPECT_EQ(out[2] & 0x02, 0x02);
  EXPECT_EQ(out[7], 0);
  n = write_response(q, Rcode::kNoError, true, many.data(), many.size(), out, 512);
  EXPECT_EQ(n, 512u);
  EXPECT_EQ(out[7], 30);
  // A PTR whose target is not a name is left out (not a TC: TCP would not help).
  Answer p[2];
  p[0].type = p[1].type = kTypePtr;
  p[0].ptr = "a..b";
  p[1].ptr = "good.name";
  n = write_response(q, Rcode::kNoError, true, p, 2, out, sizeof out);
  EXPECT_EQ(out[2] & 0x02, 0);
  EXPECT_EQ(out[7], 1);
}

TEST(DnsWire, ReverseNames) {
  uint32_t ip = 0;
  ASSERT_TRUE(parse_reverse_v4("5.0.20.172.in-addr.arpa", &ip));
  EXPECT_EQ(ip, 0xac140005u);
  for (const char* bad : {"5.0.20.in-addr.arpa", "5.0.20.172.in-addr.arpa.x", "256.0.20.172.in-addr.arpa", "05.0.20.172.in-addr.arpa",
                          "5.0.20.172.ip6.arpa", "a.0.20.172.in-addr.arpa", "", "1.2.3.4.5.in-addr.arpa"})
    EXPECT_FALSE(parse_reverse_v4(bad, &ip)) << bad;
}

}  // namespace
}  // namespace dpsw::dns
