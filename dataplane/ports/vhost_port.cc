#include "dataplane/ports/vhost_port.h"

#include <rte_bus_vdev.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "dataplane/ports/dpdk_env.h"

namespace dpsw {

namespace {
std::atomic<unsigned> g_vdev_seq{0};  // relaxed: only makes names unique
constexpr uint16_t kRingSize = 1024;
}  // namespace

VhostPort::VhostPort(std::string name, Options opt)
    : Port(std::move(name)), opt_(std::move(opt)), bounce_(new uint8_t[size_t(kBurst) * kMaxFrame]) {
  DpdkEnv& env = DpdkEnv::get(opt_.instance);
  pool_ = env.pool();
  room_ = env.mbuf_data_room();
  vdev_ = "net_vhost_" + opt_.instance + "_" + std::to_string(g_vdev_seq.fetch_add(1, std::memory_order_relaxed));
  std::string args = "iface=" + opt_.socket + ",queues=1,client=" + (opt_.client ? "1" : "0");
  auto fail = [&](const std::string& what, int err) {
    throw std::runtime_error("vhost-user port " + opt_.socket + ": " + what + ": " + rte_strerror(err < 0 ? -err : err));
  };
  if (int r = rte_vdev_init(vdev_.c_str(), args.c_str()); r < 0) fail("cannot create", r);
  if (rte_eth_dev_get_port_by_name(vdev_.c_str(), &port_id_) != 0) {
    rte_vdev_uninit(vdev_.c_str());
    fail("no ethdev", ENODEV);
  }
  rte_eth_conf conf{};
  conf.intr_conf.lsc = 1;  // link up/down when the application (dis)connects
  int r = rte_eth_dev_callback_register(port_id_, RTE_ETH_EVENT_INTR_LSC,
                                        reinterpret_cast<rte_eth_dev_cb_fn>(&VhostPort::on_event), this);
  if (r == 0) r = rte_eth_dev_configure(port_id_, 1, 1, &conf);
  if (r == 0) r = rte_eth_rx_queue_setup(port_id_, 0, kRingSize, SOCKET_ID_ANY, nullptr, pool_);
  if (r == 0) r = rte_eth_tx_queue_setup(port_id_, 0, kRingSize, SOCKET_ID_ANY, nullptr);
  if (r == 0) r = rte_eth_dev_start(port_id_);
  if (r != 0) {
    rte_eth_dev_callback_unregister(port_id_, RTE_ETH_EVENT_INTR_LSC,
                                    reinterpret_cast<rte_eth_dev_cb_fn>(&VhostPort::on_event), this);
    rte_eth_dev_close(port_id_);
    rte_vdev_uninit(vdev_.c_str());
    fail("cannot start", r);
  }
  started_ = true;
  rte_eth_link link{};
  if (rte_eth_link_get_nowait(port_id_, &link) == 0) link_up_.store(link.link_status, std::memory_order_relaxed);
}

VhostPort::~VhostPort() {
  if (!started_) return;
  rte_eth_dev_callback_unregister(port_id_, RTE_ETH_EVENT_INTR_LSC,
                                  reinterpret_cast<rte_eth_dev_cb_fn>(&VhostPort::on_event), this);
  rte_eth_dev_stop(port_id_);
  rte_eth_dev_close(port_id_);
  rte_vdev_uninit(vdev_.c_str());  // unregisters the socket (and removes it in server mode)
}

int VhostPort::on_event(uint16_t port_id, int, void* arg, void*) {
  auto* self = static_cast<VhostPort*>(arg);
  rte_eth_link link{};
  if (rte_eth_link_get_nowait(port_id, &link) != 0) return 0;
  bool up = link.link_status;
  // relaxed: status for display; the exchange only detects a real change.
  if (self->link_up_.exchange(up, std::memory_order_relaxed) != up) self->link_changes_.fetch_add(1, std::memory_order_relaxed);
  return 0;
}

uint16_t VhostPort::rx_burst(Packet* pkts, uint16_t max) {
  uint16_t n = rte_eth_rx_burst(port_id_, 0, rx_, std::min<uint16_t>(max, kBurst));
  for (uint16_t i = 0; i < n; i++) {
    rte_mbuf* m = rx_[i];
    pkts[i].handle = reinterpret_cast<uint64_t>(m);
    pkts[i].len = m->pkt_len;
    if (m->nb_segs == 1) {
      pkts[i].data = rte_pktmbuf_mtod(m, uint8_t*);
      pkts[i].mbuf = m;
      continue;
    }
    pkts[i].mbuf = nullptr;
    // Mergeable jumbo frame: make it contiguous for the pipeline. One larger
    // than any frame dpsw carries keeps its true length (counted as such and
    // dropped as oversize by eth_input, which reads only its header).
    uint8_t* dst = bounce_.get() + size_t(i) * kMaxFrame;
    uint32_t len = std::min<uint32_t>(m->pkt_len, kMaxFrame);
    const void* p = rte_pktmbuf_read(m, 0, len, dst);
    if (p != dst) std::memcpy(dst, p, len);
    pkts[i].data = dst;
    pkts[i].len = m->pkt_len;
  }
  return n;
}

void VhostPort::release(const Packet* pkts, uint16_t n) {
  rte_mbuf* m[kBurst];
  for (uint16_t i = 0; i < n; i++) m[i] = reinterpret_cast<rte_mbuf*>(pkts[i].handle);
  rte_pktmbuf_free_bulk(m, n);
}

uint16_t VhostPort::tx_chained(const Packet* p, rte_mbuf** head) {
  const uint32_t room = room_;
  uint32_t nseg = (p->len + room - 1) / room;
  rte_mbuf* seg[8];
  if (nseg > 8 || rte_pktmbuf_alloc_bulk(pool_, seg, nseg) != 0) return 0;
  uint32_t off = 0;
  for (uint32_t s = 0; s < nseg; s++) {
    uint32_t chunk = std::min(room, p->len - off);
    std::memcpy(rte_pktmbuf_mtod(seg[s], uint8_t*), p->data + off, chunk);
    seg[s]->data_len = uint16_t(chunk);
    seg[s]->next = s + 1 < nseg ? seg[s + 1] : nullptr;
    off += chunk;
  }
  seg[0]->nb_segs = uint16_t(nseg);
  seg[0]->pkt_len = p->len;
  *head = seg[0];
  return 1;
}

uint16_t VhostPort::tx_burst(const Packet* const* pkts, uint16_t n) {
  const uint32_t room = room_;
  rte_mbuf* m[TxQueueMax];
  n = std::min<uint16_t>(n, TxQueueMax);
  uint16_t built = 0;
  bool all_small = true, all_mbufs = true;
  for (uint16_t i = 0; i < n; i++) {
    all_small &= pkts[i]->len <= room;
    all_mbufs &= pkts[i]->mbuf != nullptr;
  }
  if (all_mbufs) {
    // Zero copy between DPDK ports: send the received mbuf itself, holding
    // one more reference (the rx side's release() drops its own).
    for (uint16_t i = 0; i < n; i++) {
      m[i] = static_cast<rte_mbuf*>(pkts[i]->mbuf);
      rte_mbuf_refcnt_update(m[i], 1);
    }
    built = n;
  } else if (all_small) {
    if (rte_pktmbuf_alloc_bulk(pool_, m, n) != 0) return 0;  // pool empty: counted as tx_full by the caller
    for (uint16_t i = 0; i < n; i++) {
      std::memcpy(rte_pktmbuf_mtod(m[i], uint8_t*), pkts[i]->data, pkts[i]->len);
      m[i]->data_len = uint16_t(pkts[i]->len);
      m[i]->pkt_len = pkts[i]->len;
    }
    built = n;
  } else {
    while (built < n && tx_chained(pkts[built], &m[built])) built++;
  }
  uint16_t sent = rte_eth_tx_burst(port_id_, 0, m, built);
  if (sent < built) rte_pktmbuf_free_bulk(m + sent, built - sent);  // application absent or ring full
  return sent;
}

}  // namespace dpsw
