// Node dns (per frame; reached from l3_local's kDns exit: UDP to port 53 of
// a network's gateway): wraps stage::dns_answer. The answer is built in the
// arena's scratch (burst.h) and queued on the tx stage back to the port the
// query came in on, as vxlan_output does; the query frame itself is left
// untouched. A name the network does not know is answered SERVFAIL until
// the upstream relay takes it. Counted in WorkerCounters::dns, drops on the
// input port. No exits.
#pragma once

#include "dataplane/core/node.h"
#include "dataplane/dns/stage_dns.h"

namespace dpsw::graph {

struct Dns : Node<NoExit, 0> {

  template <class Emit>
  [[gnu::always_inline]] static void run(Ctx& c, uint16_t i, uint16_t, Emit&&) {
    answer(c.s, c.tx, c.wc, c.arena, c.pkt(i), c.bd);
  }

  // Out of line: DNS is a rare frame next to forwarding, and its Query is
  // large. Takes the services, not the Ctx (node.h).
  [[gnu::noinline]] static void answer(const Snapshot& s, stage::TxStage& tx, WorkerCounters& wc, BurstArena& a, const Packet& p,
                                       const BdEntry& bd) {
    if (a.scratch_full()) {
      tx.flush(s);  // sends (copies) every queued frame: the buffers are free again
      a.scratch_reset();
    }
    WorkerCounters::Dns& dc = wc.dns;
    dc.queries.add(1);
    Burst& ob = a.scratch_burst();
    const uint16_t oi = a.scratch_index();
    Packet& o = ob[oi];
    uint8_t* const buf = a.scratch_data();
    dns::Query q;
    uint32_t len = 0;
    dns::Rcode rc = dns::Rcode::kNoError;
    Drop d = Drop::kCount;
    switch (stage::dns_answer(p, s.dns, bd, &q, buf, BurstArena::kScratchBytes, &len, &rc, &d)) {
      case stage::DnsNext::kDrop:
        wc.ports[p.in_port].drops[size_t(d)].add(1);
        return;
      case stage::DnsNext::kForward:
        dc.servfail.add(1);
        len = stage::dns_reply_frame(p, bd, q, dns::Rcode::kServFail, false, nullptr, 0, buf, BurstArena::kScratchBytes);
        if (!len) return;
        break;
      case stage::DnsNext::kReply:
        count(dc, rc, buf, len);
        break;
    }
    o.data = buf;
    o.len = len;
    o.in_port = p.in_port;
    o.bd = p.bd;
    o.mbuf = nullptr;
    a.scratch_commit();
    tx.enqueue(s, p.in_port, ob, oi);
  }

  static void count(WorkerCounters::Dns& dc, dns::Rcode rc, const uint8_t* frame, uint32_t len) {
    if (rc == dns::Rcode::kNxDomain) return dc.nxdomain.add(1);
    if (rc != dns::Rcode::kNoError) return dc.errors.add(1);
    const bool records = len >= stage::kUdpHdrs + 8 && (frame[stage::kUdpHdrs + 6] | frame[stage::kUdpHdrs + 7]);  // ANCOUNT
    (records ? dc.answered : dc.nodata).add(1);
  }
};

}  // namespace dpsw::graph
