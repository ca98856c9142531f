// Packet descriptor passed between ports and pipeline stages.
//
// A Packet never owns its bytes: `data` points into a buffer owned by the
// port that received it (an AF_XDP UMEM frame, a handoff-ring slot, a test
// buffer). The buffer stays valid until that port's release() is called for
// it (see port.h). Packets are plain structs held in the fixed Bursts of
// the worker's arena (burst.h): nothing on the fast path allocates.
#pragma once

#include <cstdint>

namespace dpsw {

constexpr uint16_t kBurst = 32;          // frames per rx burst
constexpr uint32_t kMaxFrame = 9216 + 18;  // largest L2 frame we carry (jumbo + header)
constexpr uint16_t kInvalidPort = 0xffff;
constexpr uint16_t kMaxPorts = 1024;     // port ids are dense indices below this

struct Packet {
  uint8_t* data = nullptr;  // first byte of the Ethernet header
  uint32_t len = 0;         // frame length in bytes (no FCS)
  uint16_t in_port = kInvalidPort;
  uint16_t bd = 0;          // bridge domain (network) index, set at input
  uint64_t handle = 0;      // private to the owning port (e.g. UMEM address)
  // Non-null when the frame sits whole in one DPDK mbuf (vhost-user rx): a
  // DPDK destination may then transmit that mbuf by reference, no copy.
  // Every port's rx_burst sets it (nullptr for non-DPDK ports).
  void* mbuf = nullptr;
};

}  // namespace dpsw
