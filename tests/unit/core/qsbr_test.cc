#include "dataplane/core/qsbr.h"

#include <gtest/gtest.h>

#include <time.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "dataplane/core/dataplane.h"
#include "dataplane/ports/mem_port.h"
#include "tests/fixtures/frames.h"

namespace dpsw {
namespace {

TEST(Qsbr, RetiredStateWaitsForEveryOnlineThread) {
  Qsbr q(2);
  q.online(0);
  q.online(1);
  bool freed = false;
  q.retire([&] { freed = true; });
  q.reclaim();
  EXPECT_FALSE(freed);
  q.quiescent(0);
  q.reclaim();
  EXPECT_FALSE(freed);  // thread 1 has not passed a quiescent point yet
  q.quiescent(1);
  q.reclaim();
  EXPECT_TRUE(freed);
}

TEST(Qsbr, OfflineThreadsDoNotBlockReclamation) {
  Qsbr q(2);
  q.online(0);
  bool freed = false;
  q.retire([&] { freed = true; });
  q.offline(0);
  q.reclaim();
  EXPECT_TRUE(freed);
}

double thread_cpu_s() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

// Issue 14: synchronize() used to spin on the control thread for the whole
// grace period. A worker that takes 200 ms to reach a quiescent point must
// cost the waiting thread a few wake-ups, not 200 ms of CPU.
TEST(Qsbr, SynchronizeSleepsWhileAWorkerIsSlowToPass) {
  Qsbr q(2);
  q.online(0);
  q.online(1);
  q.offline(1);  // an offline worker never delays a grace period
  std::thread worker([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    q.quiescent(0);
  });
  const auto w0 = std::chrono::steady_clock::now();
  const double c0 = thread_cpu_s();
  q.synchronize();
  const double cpu = thread_cpu_s() - c0;
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count();
  worker.join();
  EXPECT_GE(wall, 0.15);      // it did wait for the worker...
  EXPECT_LT(cpu, wall / 10);  // ...asleep (a spin costs ~ the wall time)
}

TEST(Qsbr, SynchronizeReturnsAtOnceWhenEveryWorkerIsOffline) {
  Qsbr q(2);
  q.online(0);
  q.offline(0);
  const auto t0 = std::chrono::steady_clock::now();
  q.synchronize();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(100));
}

// Deferred work may defer more work (the daemon's deferred removals run
// from reclaim()); each runs after its own grace period.
TEST(Qsbr, DeferredWorkMayDeferMore) {
  Qsbr q(1);
  q.online(0);
  int first = 0, second = 0;
  q.retire([&] {
    first++;
    q.retire([&] { second++; });
  });
  q.quiescent(0);
  q.reclaim();
  EXPECT_EQ(first, 1);
  EXPECT_EQ(second, 0);  // its grace period started inside the first's run
  q.reclaim();
  EXPECT_EQ(second, 0);
  q.quiescent(0);
  q.reclaim();
  EXPECT_EQ(second, 1);
}

// Dataplane::defer(): the caller does not wait; the work runs from a later
// maintain() once the running worker has passed a quiescent point.
TEST(Qsbr, DataplaneDeferRunsAfterTheGracePeriodFromMaintain) {
  Dataplane::Options o;
  o.cores = {-1};
  Dataplane dp(o);
  dp.start();
  int ran = 0;  // the deferred fn runs on this (the control) thread
  dp.defer([&] { ran++; });
  EXPECT_EQ(ran, 0);  // defer() did not wait nor run it
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!ran && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    dp.maintain(0, 1000000);
  }
  dp.stop();
  EXPECT_EQ(ran, 1);
}

// Swap snapshots under a running worker thread: every frame injected is
// forwarded (none lost to the swaps) and old snapshots are reclaimed.
TEST(Qsbr, SnapshotSwapsUnderLoadLoseNothing) {
  Dataplane::Options o;
  o.cores = {-1};
  Dataplane dp(o);
  MemPort a("a"), b("b", MemPort::Options{32768, true});  // b never fills: any loss would be the swaps'
  auto build = [&](uint64_t gen) {
    auto s = std::make_unique<Snapshot>();
    s->generation = gen;
    s->bds.resize(1);
    s->bds[0].ports = {0, 1};
    s->rx_ports = {{0, 1}};
    s->ports.resize(2);
    s->ports[0] = {&a, 0, 0, 1514};
    s->ports[1] = {&b, 0, 0, 1514};
    return s;
  };
  dp.publish(build(1));
  dp.start();
  const int kFrames = 20000;
  int injected = 0, received = 0;
  uint64_t gen = 2;
  auto f = test::eth_frame(test::kBcast, test::station(1));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (received < kFrames && std::chrono::steady_clock::now() < deadline) {
    if (injected < kFrames && a.inject(f) && ++injected % 100 == 0) {
      dp.publish(build(gen++));  // a config change every 100 frames
      dp.maintain(0, 1000000);
    }
    received += int(b.take_tx().size());
  }
  dp.synchronize();
  dp.stop();
  EXPECT_EQ(received, kFrames);
  EXPECT_EQ(dp.port_totals(1).tx_packets, uint64_t(kFrames));
}

}  // namespace
}  // namespace dpsw
