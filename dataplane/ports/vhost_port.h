// vhost-user port: a virtio-user application (DPDK app, QEMU/Kata VM) on the
// other end of a unix socket, through DPDK's net_vhost PMD.
//
// Modes: server (dpsw creates the socket; the application connects) or
// client (the application serves the socket; dpsw connects and reconnects
// whenever it goes away or dpsw restarts).
//
// Buffers: rx_burst() lends the PMD's mbufs (the PMD copied the frame out of
// the application's ring); a frame that spans several mbufs (jumbo, with
// mergeable buffers) is linearised into a per-port bounce area. tx_burst()
// sends a burst of received mbufs by reference (vhost↔vhost: zero copy in
// dpsw, the PMD copies in and out of the applications' rings), otherwise
// copies into mbufs from the shared pool (one bulk get per burst; chained
// mbufs for frames above one mbuf's room). Nothing is malloc'ed per packet.
// The socket here is the PMD's private one: applications talk to
// control/ports/vhost_relay.h. Threading: see port.h; the link-state callback runs on DPDK's
// interrupt thread and only touches the two atomics.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "dataplane/ports/port.h"

struct rte_mbuf;
struct rte_mempool;

namespace dpsw {

class VhostPort final : public Port {
 public:
  struct Options {
    std::string socket;    // unix socket path
    bool client = false;   // dpsw connects (and reconnects) instead of listening
    std::string instance;  // dpsw instance name (EAL file prefix, vdev names)
  };
  // Throws std::runtime_error naming the socket.
  VhostPort(std::string name, Options opt);
  ~VhostPort() override;

  std::string_view kind() const override { return "vhost"; }
  uint16_t rx_burst(Packet* pkts, uint16_t max) override;
  void release(const Packet* pkts, uint16_t n) override;
  uint16_t tx_burst(const Packet* const* pkts, uint16_t n) override;
  // relaxed: link state is a status display; the PMD itself gates traffic.
  bool link_up() const override { return link_up_.load(std::memory_order_relaxed); }
  uint64_t link_changes() const override { return link_changes_.load(std::memory_order_relaxed); }

 private:
  static int on_event(uint16_t port_id, int event, void* arg, void* ret);
  uint16_t tx_chained(const Packet* p, rte_mbuf** head);
  static constexpr uint16_t TxQueueMax = 64;  // TxStage::kPerPort

  Options opt_;
  rte_mempool* pool_ = nullptr;  // the shared mbuf pool (DpdkEnv), fixed for the port's life
  uint32_t room_ = 0;            // data bytes per mbuf
  std::string vdev_;
  uint16_t port_id_ = 0;
  bool started_ = false;
  rte_mbuf* rx_[kBurst];
  std::unique_ptr<uint8_t[]> bounce_;  // kBurst frames of kMaxFrame, for multi-segment rx
  std::atomic<bool> link_up_{false};
  std::atomic<uint64_t> link_changes_{0};
};

}  // namespace dpsw
