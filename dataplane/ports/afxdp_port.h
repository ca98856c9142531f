// AF_XDP port: drives one interface queue (the host end of a container's
// veth) through an AF_XDP socket with its own UMEM.
//
// Buffers: the UMEM is split into fixed frames. Received frames are lent to
// the worker and go straight back to the fill ring on release(). tx_burst()
// copies each frame into a free UMEM frame (the kernel copies again in copy
// mode, which is what veth offers), and completed frames return to the free
// list in maintain(). Threading: see port.h (owner worker only).
//
// XdpProgram: the one BPF object (bpf/xsk_redirect.bpf.c) that steers every
// port's frames to its socket. It is loaded once by the control thread and
// attached in native (driver) mode to each port's interface; libxdp's
// multi-program dispatcher is not used (it cannot load on kernels that
// refuse freplace), so dpsw owns the interface's single XDP slot.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dataplane/ports/port.h"

struct xsk_socket;
struct xsk_umem;
struct bpf_object;

namespace dpsw {

class XdpProgram {
 public:
  // Loads the object; throws std::runtime_error naming the file on failure.
  // nat_entries: the size of its routed-flow map (dpsw_fast_nat, shared with
  // the fast tier: 0 = the default); the connection table's.
  explicit XdpProgram(const std::string& object_path, uint32_t nat_entries = 0);
  ~XdpProgram();
  XdpProgram(const XdpProgram&) = delete;
  XdpProgram& operator=(const XdpProgram&) = delete;

  // Attach in native mode (falls back to generic/skb mode if the driver has
  // no native XDP). Replaces a stale dpsw program left by a crashed run.
  void attach(int ifindex, const std::string& ifname);
  void detach(int ifindex);
  // Steer ifindex's frames to socket fd `xsk_fd` (slot = port id).
  void bind_socket(int ifindex, uint32_t slot, int xsk_fd);
  void unbind_socket(int ifindex, uint32_t slot);
  // Frames redirected / passed because no socket was bound (summed over CPUs).
  std::pair<uint64_t, uint64_t> stats() const;
  uint64_t nat_passed() const;  // replies of kernel-tier flows passed up to the fast tier (uplink)
  // The routed-flow map the fast tier reuses, and the uplink whose replies
  // of those flows the program passes up (0: none) and its dpsw port id.
  int nat_map_fd() const { return nat_fd_; }
  void set_uplink(int ifindex, uint16_t port = 0);

 private:
  bpf_object* obj_ = nullptr;
  int prog_fd_ = -1, xsks_fd_ = -1, ports_fd_ = -1, stats_fd_ = -1, nat_fd_ = -1, conf_fd_ = -1;
  std::vector<int> attached_;
};

class AfxdpPort final : public Port {
 public:
  struct Options {
    uint32_t frames = 4096;      // UMEM frames
    uint32_t frame_size = 4096;  // bytes per frame (one page: no multi-buffer)
    uint32_t ring_size = 2048;   // rx, tx, fill and completion rings
    uint32_t queue = 0;
  };
  // Creates UMEM + socket bound to ifname/queue (copy mode, need_wakeup).
  // Throws std::runtime_error with the interface name and errno text.
  AfxdpPort(const std::string& ifname, Options opt);
  ~AfxdpPort() override;

  std::string_view kind() const override { return "afxdp"; }
  uint16_t rx_burst(Packet* pkts, uint16_t max) override;
  void release(const Packet* pkts, uint16_t n) override;
  uint16_t tx_burst(const Packet* const* pkts, uint16_t n) override { return tx(pkts, n, -1); }
  uint16_t tx_burst_vlan(const Packet* const* pkts, uint16_t n, uint16_t tci) override { return tx(pkts, n, tci); }
  void maintain() override;
  uint32_t rx_backlog() const override;
  uint64_t rx_dropped() const override;
  uint32_t rx_capacity() const override { return opt_.ring_size; }

  int fd() const;
  int wait_fd() const override { return fd(); }
  uint32_t max_frame() const { return opt_.frame_size - 256; }  // minus XDP headroom

 private:
  void reap_completions();
  uint16_t tx(const Packet* const* pkts, uint16_t n, int tci);  // tci < 0: untagged
  struct Rings;
  Options opt_;
  uint8_t* area_ = nullptr;
  size_t area_len_ = 0;
  xsk_umem* umem_ = nullptr;
  xsk_socket* xsk_ = nullptr;
  std::unique_ptr<Rings> r_;
  std::vector<uint64_t> free_;  // free frame addresses (stack), sized once
  uint32_t tx_outstanding_ = 0;
};

}  // namespace dpsw
