// The one burst-level port interface every kind of port implements
// (AF_XDP, vhost-user, the fast tier's FastPort, in-memory; DPDK ethdev later).
//
// Ownership and threading contract
// --------------------------------
// * The control thread creates a Port, publishes it in a snapshot, and
//   destroys it only after it has been removed from the snapshot AND a QSBR
//   grace period has elapsed (no worker can still be polling it).
// * Exactly one worker owns a port at a time (Snapshot::owner). Only the owner
//   calls rx_burst(), release(), tx_burst() and maintain(). Other workers
//   never touch the port: frames for it travel through a handoff ring to its
//   owner. Hence no method needs a lock.
// * rx_burst() lends buffers: the Packets it fills point into port-owned
//   memory, valid until the owner passes them back with release(). A worker
//   releases every received burst before the end of its loop iteration.
// * tx_burst() COPIES the frames into port-owned memory before returning, so
//   the caller keeps ownership of its Packets (one rx buffer may be flooded
//   to several ports). Exception, still safe for the caller: a DPDK port may
//   take a reference on Packet::mbuf instead of copying (frames are never
//   written after rx, and release() only drops the rx reference). It returns
//   how many of the first n were accepted; the caller counts the rest as
//   drops (Drop::kTxFull).
// * The fast-path methods never block, allocate, throw or log.
// * Calls are per burst, never per packet (virtual dispatch is amortised).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "dataplane/core/packet.h"

namespace dpsw {

class Port {
 public:
  explicit Port(std::string name) : name_(std::move(name)) {}
  virtual ~Port() = default;
  Port(const Port&) = delete;
  Port& operator=(const Port&) = delete;

  const std::string& name() const { return name_; }
  virtual std::string_view kind() const = 0;

  // Fast path, owner worker only (see above).
  virtual uint16_t rx_burst(Packet* pkts, uint16_t max) = 0;
  virtual void release(const Packet* pkts, uint16_t n) = 0;
  virtual uint16_t tx_burst(const Packet* const* pkts, uint16_t n) = 0;
  // tx_burst() with an 802.1Q tag (TPID 0x8100, `tci`) inserted after the
  // MAC addresses of every frame: how the fast tier's punt port addresses
  // its endpoints (fast_port.h). Ports that cannot accept none.
  virtual uint16_t tx_burst_vlan(const Packet* const*, uint16_t, uint16_t /*tci*/) { return 0; }
  // Once per poll-loop iteration: reap tx completions, refill rx, kick.
  virtual void maintain() {}
  // Owner worker, at most once per burst: frames waiting in rx right now
  // (0 if the port cannot tell), and frames the port's rx has lost so far
  // because nobody read them in time (a syscall for AF_XDP: call it rarely).
  // How a worker notices it is falling behind (dataplane/fast/punt_share.h).
  virtual uint32_t rx_backlog() const { return 0; }
  virtual uint32_t rx_capacity() const { return 0; }  // frames the rx ring holds
  virtual uint64_t rx_dropped() const { return 0; }
  // A file descriptor that polls readable when frames wait in rx, so an idle
  // worker can block instead of spinning; -1 if the port has none (then its
  // worker never blocks). Stable for the port's lifetime.
  virtual int wait_fd() const { return -1; }

  // Control thread, for `show ports`: is the peer there (a vhost-user
  // application connected), and how often did that change.
  virtual bool link_up() const { return true; }
  virtual uint64_t link_changes() const { return 0; }

 private:
  std::string name_;
};

}  // namespace dpsw
