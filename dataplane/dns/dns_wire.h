// DNS messages on the wire (RFC 1035, EDNS0 RFC 6891): reading a query and
// writing its answer, for the embedded responder (issue 16). Pure functions
// over caller-owned buffers: no allocation, no exception, bounded work per
// message (a name is at most 255 bytes and a query follows at most
// kMaxPointers compression pointers), so that the worker may run them on
// the fast path and a fuzzer may run them on anything.
//
// What a query may be (everything else is FORMERR or NOTIMP, never a crash):
// QR = 0; opcode QUERY (else NOTIMP); exactly one question (QDCOUNT = 1);
// no answer or authority records; at most one additional record, and that
// one an EDNS OPT record with version 0 (else BADVERS) for the root name;
// names of at most 255 bytes in labels of at most 63, compression pointers
// only backwards and never into the header; at most 4096
// bytes (without EDNS a valid query cannot pass 271). Any class parses (the
// responder refuses what is not IN or ANY). Answers stay within 512
// bytes, or the advertised EDNS size capped at 4096. Names are compared in lower
// case (RFC 4343); the question is echoed as the asker wrote it (0x20).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace dpsw::dns {

constexpr size_t kHeaderLen = 12;
constexpr size_t kMaxName = 255;         // wire length of a name (RFC 1035 2.3.4)
constexpr size_t kMaxLabel = 63;
constexpr unsigned kMaxPointers = 16;    // compression pointers followed in one name
constexpr size_t kMaxUdpPlain = 512;     // without EDNS
constexpr size_t kMaxUdpEdns = 4096;     // the most we read or answer with EDNS
constexpr uint16_t kOurUdpSize = 1232;   // what we advertise (the DNS flag day's size)

constexpr uint16_t kTypeA = 1, kTypePtr = 12, kTypeAaaa = 28, kTypeOpt = 41, kTypeAny = 255;
constexpr uint16_t kClassIn = 1, kClassAny = 255;

enum class Rcode : uint8_t { kNoError = 0, kFormErr = 1, kServFail = 2, kNxDomain = 3, kNotImp = 4, kRefused = 5, kBadVers = 16 };

struct Query {
  uint16_t id = 0;
  uint16_t flags = 0;          // as received (RD is echoed)
  uint16_t qtype = 0, qclass = 0;
  char name[kMaxName + 1] = {};  // lower case, dotted, no final dot ("" for the root), NUL-terminated
  uint8_t name_len = 0;
  uint8_t qname_wire[kMaxName] = {};  // the question's name as sent, uncompressed (echoed in the answer)
  uint8_t qname_wire_len = 0;
  bool edns = false;           // an OPT record came
  bool dnssec_ok = false;      // its DO bit (echoed, RFC 3225)
  uint16_t udp_size = kMaxUdpPlain;  // the answer may be this long (512, or the EDNS size within [512, 4096])
};

enum class Parse : uint8_t {
  kOk,       // a query this responder answers (or refuses) by its name
  kIgnore,   // not a query (QR = 1) or shorter than a header: no answer at all
  kFormErr,  // answer FORMERR (header and id known)
  kNotImp,   // answer NOTIMP (an opcode other than QUERY)
  kBadVers,  // answer BADVERS (EDNS version other than 0)
};

// Reads the name at *off in msg[0, len) (following compression pointers,
// each strictly backwards, at most kMaxPointers): dotted lower case into
// out (kMaxName + 1 bytes), its uncompressed wire form into wire (kMaxName
// bytes, may be null), and moves *off past the name as it sits at *off.
// False for a malformed, looping or overlong name.
bool read_name(const uint8_t* msg, size_t len, size_t* off, char* out, uint8_t* out_len, uint8_t* wire, uint8_t* wire_len);

// Moves *off past the name at *off without following pointers (labels up
// to the final zero or a pointer). False when it runs past len or a label
// type is not a length or a pointer.
bool skip_name(const uint8_t* msg, size_t len, size_t* off);

// The offset of the last resource record of a message (the last of the
// answer, authority and additional sections, by their counts), walking the
// question and every record; 0 when it has none or does not read exactly
// (a record past len, bytes left after the last).
size_t last_record(const uint8_t* msg, size_t len);

// Parses a query (kOk fills q entirely; kFormErr/kNotImp/kBadVers fill id,
// flags, the EDNS fields once the OPT record's fixed part is read, and the
// question only when all of it was read: qname_wire_len is 0 otherwise).
Parse parse_query(const uint8_t* msg, size_t len, Query* q);

// One answer record: its owner is the question's name (a pointer to it).
struct Answer {
  uint16_t type = kTypeA;
  uint32_t ttl = 0;
  uint32_t a = 0;                 // kTypeA: the address (host order)
  const char* ptr = nullptr;      // kTypePtr: the dotted target name
};

// Writes the response to q into out (at most cap bytes, and at most
// q.udp_size): header, the question as asked (when q has one and
// with_question), the answers (TC set and none written when they do not all
// fit; a PTR whose target is not a valid name is left out), and an OPT record
// when the query had one (RFC 6891: also with FORMERR and BADVERS). Returns
// its length, 0 when not even the header, question and OPT fit. An extended
// rcode (BADVERS) without EDNS is sent as SERVFAIL.
size_t write_response(const Query& q, Rcode rcode, bool authoritative, const Answer* answers, size_t n, uint8_t* out, size_t cap,
                      bool with_question = true);

// "d.c.b.a.in-addr.arpa" (lower case, as read_name() gives it) -> a.b.c.d
// (host order). False for any other name, or a partial one.
bool parse_reverse_v4(const char* name, uint32_t* ip);

}  // namespace dpsw::dns
