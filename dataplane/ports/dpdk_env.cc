#include "dataplane/ports/dpdk_env.h"

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <sched.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <vector>

namespace dpsw {

std::atomic<DpdkEnv*> DpdkEnv::instance_{nullptr};

namespace {
constexpr unsigned kMbufs = 16384;
constexpr unsigned kMbufCache = 256;
thread_local bool t_registered = false;
}  // namespace

DpdkEnv& DpdkEnv::get(const std::string& instance) {
  if (DpdkEnv* e = instance_.load(std::memory_order_acquire)) return *e;
  auto* e = new DpdkEnv(instance);
  instance_.store(e, std::memory_order_release);  // release: publish the finished environment
  return *e;
}

DpdkEnv::DpdkEnv(const std::string& instance) {
  // EAL pins the calling thread to its main lcore: keep the control thread's mask.
  cpu_set_t saved;
  sched_getaffinity(0, sizeof saved, &saved);
  int main_core = 0;
  while (main_core < CPU_SETSIZE && !CPU_ISSET(main_core, &saved)) main_core++;
  std::string prefix = "dpsw-" + instance;
  // A run killed with -9 leaves its runtime dir; we hold the instance lock, so it is ours.
  std::error_code ec;
  std::filesystem::remove_all("/var/run/dpdk/" + prefix, ec);
  std::vector<std::string> args = {"dpsw", "-l", std::to_string(main_core), "--no-huge", "-m", "512", "--no-pci",
                                   "--no-shconf", "--no-telemetry", "--file-prefix", prefix, "--log-level", "*:warning",
                                   "--log-level", "pmd.net.vhost:error", "--log-level", "lib.vhost.config:error"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  int r = rte_eal_init(int(argv.size()), argv.data());
  sched_setaffinity(0, sizeof saved, &saved);
  if (r < 0) throw std::runtime_error(std::string("DPDK EAL init failed: ") + rte_strerror(rte_errno));
  t_registered = true;  // the control thread is EAL's main lcore
  runtime_dir_ = rte_eal_get_runtime_dir();
  pool_ = rte_pktmbuf_pool_create("dpsw_mbufs", kMbufs, kMbufCache, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
  if (!pool_) throw std::runtime_error(std::string("DPDK mbuf pool: ") + rte_strerror(rte_errno));
}

void DpdkEnv::shutdown() {
  DpdkEnv* e = instance_.exchange(nullptr, std::memory_order_acq_rel);  // acq_rel: last user tears down
  if (!e) return;
  std::string dir = e->runtime_dir_;
  rte_mempool_free(e->pool_);
  rte_eal_cleanup();
  delete e;
  std::error_code ec;
  if (!dir.empty()) std::filesystem::remove_all(dir, ec);
}

uint32_t DpdkEnv::mbuf_data_room() const { return rte_pktmbuf_data_room_size(pool_) - RTE_PKTMBUF_HEADROOM; }
uint64_t DpdkEnv::mbufs_total() const { return pool_->size; }
uint64_t DpdkEnv::mbufs_available() const { return rte_mempool_avail_count(pool_); }

void DpdkEnv::register_this_thread() {
  if (t_registered || !up()) return;
  t_registered = rte_thread_register() == 0;  // no free lcore id: the thread still works, without a cache
}

}  // namespace dpsw
