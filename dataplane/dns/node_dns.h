// Node dns (per frame; reached from l3_local's kDns exit). Two kinds of frame:
//  * a query, UDP to port 53 of a network's gateway: stage::dns_answer
//    answers it from the snapshot's DnsTable; a name the asker's networks do
//    not hold is relayed upstream (DnsRelay, from the uplink's address), or
//    answered SERVFAIL when there is no upstream or no free relay slot;
//  * on the uplink's segment, UDP from port 53 to a relay port of the uplink
//    address: an upstream's answer, relayed back to the container that asked
//    (any worker may receive it: DnsRelay's slots are shared). One that no
//    slot waits for goes on to l3_route (kRoute), as it would without DNS.
// Frames it writes are built in the arena's scratch (burst.h) and queued on
// the tx stage, as vxlan_output does; the received frame is left untouched.
// Counted in WorkerCounters::dns; drops on the input port.
#pragma once

#include "dataplane/core/node.h"
#include "dataplane/dns/stage_dns.h"
#include "dataplane/dns/stage_dns_relay.h"
#include "dataplane/dns/stage_dns_tcp.h"
#include "dataplane/nat/stage_l3_route.h"

namespace dpsw::graph {

enum class DnsExit : uint8_t { kRoute };

struct Dns : Node<DnsExit, 1> {

  template <class Emit>
  [[gnu::always_inline]] static void run(Ctx& c, uint16_t i, uint16_t, Emit&& emit) {
    if (c.from_uplink || !c.bd.dns) {  // an upstream's answer, or something else for the host's address from its segment
      if (!c.from_uplink || !relay_answer(c.s, c.tx, c.wc, c.arena, c.arp, c.relay, c.worker, c.now, c.pkt(i))) emit(i, Next::kRoute, 0);
      return;
    }
    const uint8_t proto = c.pkt(i).data[kEthHdrLen + 9];
    if (c.s.l3.enabled && c.pkt(i).bd == c.s.l3.uplink_bd && stage::published(c.s.l3, proto, 53)) {
      emit(i, Next::kRoute, 0);  // a macvlan endpoint to the host's port 53, which a container publishes: that one's
      return;
    }
    if (proto == 6) {
      tcp_answer(c.s, c.tx, c.wc, c.arena, c.arp, c.relay, c.worker, c.now, c.pkt(i), c.bd);
      return;
    }
    answer(c.s, c.tx, c.wc, c.arena, c.arp, c.relay, c.worker, c.now, c.pkt(i), c.bd);
  }

  // A scratch frame (burst.h) to write into; flushes the tx stage first when all are in use.
  struct Out {
    Burst& b;
    uint16_t i;
    uint8_t* buf;
  };
  static Out scratch(const Snapshot& s, stage::TxStage& tx, BurstArena& a) {
    if (a.scratch_full()) {
      tx.flush(s);  // sends (copies) every queued frame: the buffers are free again
      a.scratch_reset();
    }
    return {a.scratch_burst(), a.scratch_index(), a.scratch_data()};
  }
  // Queues the len bytes written in o.buf for port `to`.
  static void send(const Snapshot& s, stage::TxStage& tx, BurstArena& a, const Out& o, uint32_t len, uint16_t from, uint16_t to) {
    Packet& p = o.b[o.i];
    p.data = o.buf;
    p.len = len;
    p.in_port = from;
    p.bd = 0;
    p.mbuf = nullptr;
    a.scratch_commit();
    tx.enqueue(s, to, o.b, o.i);
  }

  // Out of line: DNS is a rare frame next to forwarding, and its Query is
  // large. Takes the services, not the Ctx (node.h).
  [[gnu::noinline]] static void answer(const Snapshot& s, stage::TxStage& tx, WorkerCounters& wc, BurstArena& a, ArpCache* arp,
                                       DnsRelay* relay, unsigned worker, uint32_t now, const Packet& p, const BdEntry& bd) {
    WorkerCounters::Dns& dc = wc.dns;
    dc.queries.add(1);
    const Out o = scratch(s, tx, a);
    dns::Query q;
    uint32_t len = 0;
    dns::Rcode rc = dns::Rcode::kNoError;
    Drop d = Drop::kCount;
    const PortEntry* in = s.port(p.in_port);
    const uint32_t cap = std::min<uint32_t>(BurstArena::kScratchBytes, in ? in->max_frame : 1514);  // past it: TC, not a frame too long
    switch (stage::dns_answer(p, s.dns, bd, &q, o.buf, cap, &len, &rc, &d, dc.queries.get())) {
      case stage::DnsNext::kDrop:
        wc.ports[p.in_port].drops[size_t(d)].add(1);
        return;
      case stage::DnsNext::kForward:
        if (uint32_t plen = 0; const uint8_t* msg = stage::udp_payload(p, &plen))
          if (may_relay(bd) && relay_query(s, tx, a, arp, relay, worker, now, asker_of(p), msg, plen, &o)) {
            dc.forwarded.add(1);
            return;
          }
        dc.servfail.add(1);
        len = stage::dns_reply_frame(p, bd, q, dns::Rcode::kServFail, false, nullptr, 0, o.buf, cap);
        if (!len) return;
        break;
      case stage::DnsNext::kReply:
        count(dc, rc, o.buf + stage::kUdpHdrs, len - stage::kUdpHdrs);
        break;
    }
    send(s, tx, a, o, len, p.in_port, p.in_port);
  }

  // Whether an asker on network bd may have names relayed (BdEntry::relay_names:
  // an internal network has no way out, DNS included).
  static bool may_relay(const BdEntry& bd) { return bd.relay_names; }

  // The asker of query frame p (UDP or TCP), as a relay slot holds it.
  static DnsRelay::Asker asker_of(const Packet& p) {
    const uint8_t* ip = p.data + kEthHdrLen;
    DnsRelay::Asker k;
    k.ip = csum::load32(ip + 12);
    k.sport = load_be16(ip + uint32_t(ip[0] & 0x0f) * 4);  // UDP's and TCP's source port alike
    k.mac = mac_from_bytes(p.data + 6);
    k.port = p.in_port;
    k.bd = p.bd;
    return k;
  }

  // The query msg (plen bytes) of asker k (its TCP fields set when it asked
  // over TCP) to an upstream (first try, into *o or a scratch frame of its
  // own); false: not relayed.
  static bool relay_query(const Snapshot& s, stage::TxStage& tx, BurstArena& a, ArpCache* arp, DnsRelay* relay, unsigned worker,
                          uint32_t now, DnsRelay::Asker k, const uint8_t* msg, uint32_t plen, const Out* o) {
    if (!relay || !arp || !s.l3.enabled || s.dns.upstream.empty() || plen > DnsRelay::kQueryMax || plen < dns::kHeaderLen) return false;
    const int slot = relay->claim(worker);
    if (slot < 0) return false;
    k.id = load_be16(msg);
    k.relay_id = relay->next_id(worker);
    k.question = stage::question_hash(msg, plen);
    k.opt_added = stage::relay_adds_opt(k.tcp, msg, plen);
    relay->publish(unsigned(slot), k, now, msg, plen);
    send_upstream(s, tx, a, *arp, unsigned(slot), k, msg, plen, 1, o);
    return true;
  }

  // Try `tries` (1...) of a relayed query goes to upstream[(tries - 1) % n]
  // (into o, or a scratch frame of its own); nothing is sent while the next
  // hop is being resolved (the next try will be).
  static void send_upstream(const Snapshot& s, stage::TxStage& tx, BurstArena& a, ArpCache& arp, unsigned slot, const DnsRelay::Asker& k,
                            const uint8_t* query, uint32_t len, unsigned tries, const Out* o) {
    if (s.dns.upstream.empty() || !s.l3.enabled) return;
    const uint32_t server = s.dns.upstream[(tries - 1) % s.dns.upstream.size()];
    const uint32_t nh = arp.on_segment(server) ? server : s.l3.gateway;
    const Mac mac = nh ? arp.lookup(nh) : 0;
    if (!mac) {
      if (nh) arp.want(nh);
      return;
    }
    const Out out = o ? *o : scratch(s, tx, a);
    if (uint32_t len2 = stage::relay_query_frame(s.l3, mac, server, slot, k.relay_id, query, len, k.tcp, out.buf, BurstArena::kScratchBytes))
      send(s, tx, a, out, len2, s.l3.uplink_port, s.l3.uplink_port);
  }

  // An upstream's answer: to its asker, if a relay slot waits for it.
  [[gnu::noinline]] static bool relay_answer(const Snapshot& s, stage::TxStage& tx, WorkerCounters& wc, BurstArena& a, ArpCache* arp,
                                             DnsRelay* relay, unsigned worker, uint32_t now, const Packet& p) {
    uint32_t len = 0;
    const uint8_t* msg = stage::udp_payload(p, &len);
    if (!relay || !msg || len < dns::kHeaderLen) return false;
    const uint8_t* ip = p.data + kEthHdrLen;
    const uint32_t from = csum::load32(ip + 12);
    if (std::find(s.dns.upstream.begin(), s.dns.upstream.end(), from) == s.dns.upstream.end()) return false;  // only our servers answer
    const unsigned slot = load_be16(ip + uint32_t(ip[0] & 0x0f) * 4 + 2) - DnsRelay::kPortLo;
    DnsRelay::Asker k;
    if (!(msg[2] & 0x80) || !relay->take(slot, load_be16(msg), stage::question_hash(msg, len), &k)) return false;  // an answer, to this very question
    wc.dns.relayed.add(1);
    const PortEntry* to = s.port(k.port);
    if (!to || k.bd >= s.bds.size() || to->bd != k.bd) return true;  // the asker left meanwhile: answered to nobody
    if (k.tcp) {
      uint8_t m[2 + BurstArena::kScratchBytes];  // (an answer longer than this, from a jumbo uplink: SERVFAIL)
      bool servfail = false;
      const uint32_t n = stage::relay_tcp_message(k, msg, len, m, sizeof m, &servfail);
      if (servfail) wc.dns.servfail.add(1);
      tcp_relayed(s, tx, wc, a, arp, relay, worker, now, k, m, n);
      return true;
    }
    const Out o = scratch(s, tx, a);
    if (uint32_t n = stage::relay_answer_frame(s.bds[k.bd], k, msg, len, to->max_frame, o.buf, BurstArena::kScratchBytes))
      send(s, tx, a, o, n, p.in_port, k.port);
    return true;
  }

  // An answer of ours (msg: the DNS message) in the counters.
  static void count(WorkerCounters::Dns& dc, dns::Rcode rc, const uint8_t* msg, uint32_t len) {
    if (rc == dns::Rcode::kNxDomain) return dc.nxdomain.add(1);
    if (rc != dns::Rcode::kNoError) return dc.errors.add(1);
    const bool records = len >= 8 && (msg[6] | msg[7]);  // ANCOUNT
    (records ? dc.answered : dc.nodata).add(1);
  }

  // DNS over TCP (stage_dns_tcp.h): the segments answering one segment.
  [[gnu::noinline]] static void tcp_answer(const Snapshot& s, stage::TxStage& tx, WorkerCounters& wc, BurstArena& a, ArpCache* arp,
                                           DnsRelay* relay, unsigned worker, uint32_t now, const Packet& p, const BdEntry& bd) {
    using K = stage::DnsTcpReply::Kind;
    const PortEntry* in = s.port(p.in_port);
    const uint32_t max_frame = std::min<uint32_t>(in ? in->max_frame : 1514, BurstArena::kScratchBytes);
    stage::DnsTcpReply r;
    Drop d = Drop::kCount;
    if (stage::dns_tcp(p, s.dns, max_frame, &r, &d) == stage::DnsNext::kDrop) {
      wc.ports[p.in_port].drops[size_t(d)].add(1);
      return;
    }
    auto segment = [&](uint8_t flags, uint16_t mss) {
      const Out o = scratch(s, tx, a);
      send(s, tx, a, o, stage::tcp_reply_frame(p.data, bd, r.seq, r.ack, flags, mss, nullptr, 0, o.buf), p.in_port, p.in_port);
    };
    switch (r.kind) {
      case K::kNone:
        return;
      case K::kSynAck:
        return segment(stage::kTcpSyn | stage::kTcpAck, r.mss);
      case K::kAck:
        return segment(stage::kTcpAck, 0);
      case K::kRst:
        return segment(stage::kTcpRst | stage::kTcpAck, 0);
      case K::kAnswer:
        break;
    }
    DnsRelay::Asker k = asker_of(p);
    k.tcp = true;
    k.ack = r.ack;
    if (!tcp_queries(s, tx, wc, a, arp, relay, worker, now, k, r.seq, r.data, r.data_len, true))
      segment(stage::kTcpRst | stage::kTcpAck, 0);  // not even one answer fits
  }

  // The length-prefixed queries q[0, len) of TCP asker k (k.ack set), whose
  // answers start at seq in the gateway's stream: answered in order, up to
  // a name not ours, which is relayed with the queries after it (its
  // answer comes back to relay_answer, which answers them then: tcp_relayed);
  // FIN after the last answer. `first`: the segment just came (the queries
  // are counted, and a relayed one alone is acknowledged at once). False
  // when nothing at all could be sent.
  static bool tcp_queries(const Snapshot& s, stage::TxStage& tx, WorkerCounters& wc, BurstArena& a, ArpCache* arp, DnsRelay* relay,
                          unsigned worker, uint32_t now, DnsRelay::Asker& k, uint32_t seq, const uint8_t* q, uint32_t len, bool first) {
    const PortEntry* to = s.port(k.port);
    if (!to || k.bd >= s.bds.size() || to->bd != k.bd) return true;  // the asker left meanwhile
    const BdEntry& bd = s.bds[k.bd];
    uint8_t in[DnsRelay::kRestMax];  // the queries, when they are k's rest (which the queries after a relayed one replace)
    if (q == k.rest) q = static_cast<const uint8_t*>(std::memcpy(in, q, len = std::min<uint32_t>(len, sizeof in)));
    uint8_t msg[16384];  // the answers, length-prefixed, before they are cut into segments
    const bool relay_ok =
        relay && arp && s.l3.enabled && !s.dns.upstream.empty() && may_relay(bd) && k.hops < DnsRelay::kMaxHops;
    const uint64_t rr = wc.dns.queries.get();
    stage::DnsTcpBatch b = stage::dns_tcp_batch(q, len, s.dns, k.port, k.bd, relay_ok, msg, sizeof msg, rr);
    uint32_t queries = b.queries;
    if (b.relay) {
      if (b.rest_len <= DnsRelay::kRestMax) {
        k.seq = seq + b.len;
        k.hops++;
        k.rest_len = uint16_t(b.rest_len);
        std::memcpy(k.rest, b.rest, b.rest_len);
        if (relay_query(s, tx, a, arp, relay, worker, now, k, b.relay, b.relay_len, nullptr)) {
          wc.dns.forwarded.add(1);
          tally(wc, b.tally);
          wc.dns.queries.add(queries);
          if (b.len || first) tcp_segments(s, tx, a, bd, k, seq, msg, b.len, false, to->max_frame);  // (none: the query's ACK)
          return true;
        }
      }
      // Not relayed (no slot free, too many queries after it): SERVFAIL for it, the rest answered here.
      const stage::DnsTcpBatch b2 = stage::dns_tcp_batch(b.relay - 2, 2 + b.relay_len + b.rest_len, s.dns, k.port, k.bd, false,
                                                         msg + b.len, uint32_t(sizeof msg - b.len), rr);
      tally(wc, b2.tally);
      queries += b2.queries - 1;
      b.len += b2.len;
    }
    tally(wc, b.tally);
    wc.dns.queries.add(queries);
    if (first && (b.full || !b.len)) return false;  // (an answer past the buffer: RST, as for a query we cannot take)
    tcp_segments(s, tx, a, bd, k, seq, msg, b.len, true, to->max_frame);
    return true;
  }

  // A relayed answer (length-prefixed, n bytes; 0: none could be made) to
  // its TCP asker k, then the queries that came after it.
  static void tcp_relayed(const Snapshot& s, stage::TxStage& tx, WorkerCounters& wc, BurstArena& a, ArpCache* arp, DnsRelay* relay,
                          unsigned worker, uint32_t now, DnsRelay::Asker& k, const uint8_t* m, uint32_t n) {
    const PortEntry* to = s.port(k.port);
    if (!to || k.bd >= s.bds.size() || to->bd != k.bd) return;  // the asker left meanwhile
    if (n || !k.rest_len) tcp_segments(s, tx, a, s.bds[k.bd], k, k.seq, m, n, !k.rest_len, to->max_frame);
    if (k.rest_len) tcp_queries(s, tx, wc, a, arp, relay, worker, now, k, k.seq + n, k.rest, k.rest_len, false);
  }

  static void tally(WorkerCounters& wc, const stage::DnsTcpBatch::Tally& t) {
    wc.dns.answered.add(t.answered), wc.dns.nodata.add(t.nodata), wc.dns.nxdomain.add(t.nxdomain);
    wc.dns.errors.add(t.errors), wc.dns.servfail.add(t.servfail);  // servfail: names not ours, not relayed
  }

  // Length-prefixed answers (len bytes) to TCP asker k from seq on, in
  // segments of at most its port's frames (max_frame), FIN on the last when
  // `fin` (an empty one when there is nothing to send; nothing to send
  // without FIN: a bare ACK of the queries).
  static void tcp_segments(const Snapshot& s, stage::TxStage& tx, BurstArena& a, const BdEntry& bd, const DnsRelay::Asker& k,
                           uint32_t seq, const uint8_t* msg, uint32_t len, bool fin, uint32_t max_frame) {
    const uint32_t mss = std::min<uint32_t>(max_frame, BurstArena::kScratchBytes) - stage::kTcpHdrs;
    uint32_t off = 0;
    do {
      const uint32_t n = std::min(mss, len - off);
      const bool last = off + n == len;
      const uint8_t flags = uint8_t(stage::kTcpAck | (n ? stage::kTcpPsh : 0) | (last && fin ? stage::kTcpFin : 0));
      const Out o = scratch(s, tx, a);
      send(s, tx, a, o, stage::tcp_frame(bd, k.mac, k.ip, k.sport, seq + off, k.ack, flags, 0, msg + off, n, o.buf), k.port, k.port);
      off += n;
    } while (off < len);
  }

  // SERVFAIL to the asker k of a relayed query (every try timed out), over
  // UDP or TCP as it asked (then the queries after it follow).
  static void servfail(const Snapshot& s, stage::TxStage& tx, WorkerCounters& wc, BurstArena& a, ArpCache* arp, DnsRelay* relay,
                       unsigned worker, uint32_t now, DnsRelay::Asker& k, const uint8_t* query, uint32_t len) {
    const PortEntry* to = s.port(k.port);
    dns::Query q;
    if (!to || k.bd >= s.bds.size() || to->bd != k.bd || !s.bds[k.bd].dns || dns::parse_query(query, len, &q) != dns::Parse::kOk) return;
    q.id = k.id;
    const BdEntry& bd = s.bds[k.bd];
    const uint32_t room = std::min<uint32_t>(BurstArena::kScratchBytes, to->max_frame) - stage::kUdpHdrs;
    if (k.tcp) {
      uint8_t m[2 + BurstArena::kScratchBytes];
      const size_t n = dns::write_response(q, dns::Rcode::kServFail, false, nullptr, 0, m + 2, room);
      store_be16(m, uint16_t(n));
      tcp_relayed(s, tx, wc, a, arp, relay, worker, now, k, m, n ? uint32_t(n + 2) : 0);
      return;
    }
    const Out o = scratch(s, tx, a);
    if (const size_t n = dns::write_response(q, dns::Rcode::kServFail, false, nullptr, 0, o.buf + stage::kUdpHdrs, room))
      send(s, tx, a, o, stage::udp_frame(o.buf, k.mac, bd.router_mac, bd.local_ip, k.ip, 53, k.sport, uint32_t(n)), k.port, k.port);
  }
};

}  // namespace dpsw::graph
