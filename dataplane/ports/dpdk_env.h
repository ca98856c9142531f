// DPDK, initialised once per dpsw process, only when a DPDK port (vhost-user,
// later ethdev) is first needed.
//
// EAL runs without hugepages (`--no-huge`, `--no-shconf`, no PCI): dpsw's
// own buffers are copied into the application's memory, which vhost-user
// maps from the fds the application sends, so only the application needs
// shareable (hugepage/memfd) memory. One mbuf pool serves every DPDK port.
// Worker threads register with EAL lazily (register_this_thread()), so
// mempool per-thread caches work for them.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

struct rte_mempool;

namespace dpsw {

class DpdkEnv {
 public:
  // Initialises EAL on first use (control thread). Throws std::runtime_error.
  static DpdkEnv& get(const std::string& instance);
  static bool up() { return instance_.load(std::memory_order_acquire) != nullptr; }  // acquire: see a finished init
  static void shutdown();  // at process exit: rte_eal_cleanup + remove runtime dir

  rte_mempool* pool() const { return pool_; }
  uint32_t mbuf_data_room() const;
  uint64_t mbufs_total() const;
  uint64_t mbufs_available() const;  // includes per-thread caches
  // Any thread: make it an EAL thread (lcore id + mempool cache). Idempotent.
  static void register_this_thread();

 private:
  explicit DpdkEnv(const std::string& instance);
  // acquire/release: a non-null pointer is a fully built environment.
  static std::atomic<DpdkEnv*> instance_;
  rte_mempool* pool_ = nullptr;
  std::string runtime_dir_;
};

}  // namespace dpsw
