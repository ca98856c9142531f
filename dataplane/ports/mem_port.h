// In-memory port for unit tests and benchmarks.
//
// A test thread injects frames (inject()) and reads transmitted frames
// (take_tx()); the owning worker calls the Port methods. Each direction is an
// SPSC ring, so exactly one injector thread and one reader thread may be used.
// Replay mode (benchmarks) hands out the same preloaded burst on every
// rx_burst() and only counts transmitted frames.
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

#include "dataplane/ports/port.h"
#include "dataplane/core/spsc_ring.h"

namespace dpsw {

class MemPort final : public Port {
 public:
  struct Options {
    size_t ring_size = 1024;  // frames per direction (power of two)
    bool capture_tx = true;   // keep copies of transmitted frames for take_tx()
    bool wait_fd = false;     // expose an eventfd that inject() signals (idle blocking tests)
  };
  MemPort(std::string name, Options opt);
  explicit MemPort(std::string name) : MemPort(std::move(name), Options{}) {}
  ~MemPort() override;

  std::string_view kind() const override { return "mem"; }
  uint16_t rx_burst(Packet* pkts, uint16_t max) override;
  void release(const Packet* pkts, uint16_t n) override;
  uint16_t tx_burst(const Packet* const* pkts, uint16_t n) override { return tx(pkts, n, -1); }
  uint16_t tx_burst_vlan(const Packet* const* pkts, uint16_t n, uint16_t tci) override { return tx(pkts, n, tci); }
  int wait_fd() const override { return efd_; }
  uint32_t rx_backlog() const override;
  uint32_t rx_capacity() const override { return uint32_t(opt_.ring_size); }

  // Test side. inject() returns false when the rx ring is full.
  bool inject(const std::vector<uint8_t>& frame);
  std::vector<std::vector<uint8_t>> take_tx();
  // Benchmark side: rx_burst() returns these frames forever (no copies).
  void set_replay(std::vector<std::vector<uint8_t>> frames);
  uint64_t tx_count() const { return tx_count_.load(std::memory_order_relaxed); }

 private:
  uint16_t tx(const Packet* const* pkts, uint16_t n, int tci);  // tci < 0: untagged
  struct Slot {
    uint32_t len = 0;
    std::vector<uint8_t> buf;
  };
  Options opt_;
  mutable SpscRing<Slot> rx_;  // mutable: rx_backlog() refreshes the consumer's cached head
  SpscRing<Slot> tx_;
  size_t rx_lent_ = 0;  // slots handed out by rx_burst, not yet released
  int efd_ = -1;
  std::vector<std::vector<uint8_t>> replay_;
  size_t replay_pos_ = 0;
  // relaxed: a statistic read by the benchmark thread after the run.
  std::atomic<uint64_t> tx_count_{0};
};

}  // namespace dpsw
