// The DNS wire codec of the embedded responder: queries as real resolvers
// send them (glibc, dig with EDNS and cookies), every malformed shape the
// issue names (compression loops, truncation, QDCOUNT != 1, oversized, odd
// EDNS), answers that fit or are truncated, and reverse names.
#include "dataplane/dns/dns_wire.h"

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

Bytes name_wire(const std::string& name) {
  Bytes b;
  size_t s = 0;
  while (s < name.size()) {
    size_t dot = name.find('.', s);
    if (dot == std::string::npos) dot = name.size();
    b.push_back(uint8_t(dot - s));
    b.insert(b.end(), name.begin() + long(s), name.begin() + long(dot));
    s = dot + 1;
  }
  b.push_back(0);
  return b;
}

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
  // Compression: a pointer to itself, a pointer forward, a loop of two.
  Bytes loop = {0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1};
  EXPECT_EQ(parse_query(loop.data(), loop.size(), &q), Parse::kFormErr);
  Bytes fwd = {0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 18, 0, 1, 0, 1, 1, 'a', 0};
  EXPECT_EQ(parse_query(fwd.data(), fwd.size(), &q), Parse::kFormErr);
  Bytes two = {0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 1, 'a', 0xc0, 12, 0, 1, 0, 1};
  EXPECT_EQ(parse_query(two.data(), two.size(), &q), Parse::kFormErr);
  // A label over 63, a name over 255.
  Bytes big = query(std::string(64, 'x'));
  EXPECT_EQ(parse_query(big.data(), big.size(), &q), Parse::kFormErr);
  std::string longname;
  for (int i = 0; i < 5; i++) longname += std::string(60, 'y') + ".";
  Bytes lng = query(longname.substr(0, longname.size() - 1));
  EXPECT_EQ(parse_query(lng.data(), lng.size(), &q), Parse::kFormErr);
  // Oversized without EDNS; odd EDNS: a bad option length, another version, OPT as the question.
  Bytes over = query(std::string(60, 'z') + "." + std::string(60, 'z'));
  over.resize(600, 0);
  EXPECT_EQ(parse_query(over.data(), over.size(), &q), Parse::kFormErr);
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
