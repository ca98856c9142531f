// A fast-tier endpoint as the poll-mode dataplane sees it.
//
// The fast tier (bpf/fast_l2.bpf.c, control: fast_tier.h) forwards known
// unicast between local containers inside the kernel. What it cannot decide
// it punts to dpsw through ONE shared AF_XDP port, the punt port, tagging
// each frame with an 802.1Q VID = ingress port id + 1. The worker owning the
// punt port strips the tag and runs the frames through the pipeline as
// received on that port (Worker::process_punt). In the other direction a
// FastPort transmits through the punt port with its own tag, and the fast
// tier delivers the untagged frame into the container.
//
// So a FastPort has no rx of its own (it is never polled) and no memory:
// it only names the punt port and its tag. Threading: the punt port's owner
// worker is this port's owner too (see port.h); the punt port outlives every
// FastPort (the control thread frees them first).
#pragma once

#include "bpf/dpsw_abi.h"
#include "dataplane/ports/port.h"

namespace dpsw {

// VID of a port's frames on the punt port (0 and 4095 are reserved by 802.1Q).
constexpr uint16_t punt_vid(uint16_t port) { return uint16_t(DPSW_PUNT_VID(port)); }
constexpr uint16_t punt_port(uint16_t vid) { return uint16_t(DPSW_PUNT_PORT(vid)); }
static_assert(kMaxPorts == DPSW_MAX_PORTS, "bpf/dpsw_abi.h and packet.h disagree on the port limit");
static_assert(punt_vid(kMaxPorts - 1) < 4095 && punt_vid(0) > 0, "port ids must fit an 802.1Q VID");

class FastPort final : public Port {
 public:
  FastPort(std::string name, Port* punt, uint16_t id) : Port(std::move(name)), punt_(punt), vid_(punt_vid(id)) {}

  std::string_view kind() const override { return "fast"; }
  uint16_t rx_burst(Packet*, uint16_t) override { return 0; }
  void release(const Packet*, uint16_t) override {}
  uint16_t tx_burst(const Packet* const* pkts, uint16_t n) override { return punt_->tx_burst_vlan(pkts, n, vid_); }

 private:
  Port* punt_;
  uint16_t vid_;
};

}  // namespace dpsw
