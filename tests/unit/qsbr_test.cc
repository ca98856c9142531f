#include "dataplane/qsbr.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "dataplane/dataplane.h"
#include "dataplane/mem_port.h"
#include "frames.h"

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
