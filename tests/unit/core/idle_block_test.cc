// Idle blocking: workers that block while idle must wake for traffic on
// their own ports and for frames another worker hands them. The block
// timeout is infinite here, so a missed wake-up hangs and fails the deadline
// instead of being hidden by the 100 ms safety net.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "dataplane/core/dataplane.h"
#include "dataplane/ports/mem_port.h"
#include "tests/fixtures/frames.h"

namespace dpsw {
namespace {

using namespace std::chrono_literals;

struct BlockingRig {
  std::unique_ptr<Dataplane> dp;
  std::vector<std::unique_ptr<MemPort>> ports;
  explicit BlockingRig(std::vector<uint16_t> owner) {
    Dataplane::Options o;
    unsigned workers = 0;
    for (auto w : owner) workers = std::max<unsigned>(workers, w + 1u);
    o.cores.assign(workers, -1);
    o.idle = Dataplane::Options::Idle::kBlock;
    o.idle_after_us = 0;
    o.block_timeout_ms = -1;
    dp = std::make_unique<Dataplane>(o);
    auto s = std::make_unique<Snapshot>();
    s->bds.resize(1);
    s->rx_ports.resize(workers);
    for (size_t i = 0; i < owner.size(); i++) {
      ports.push_back(std::make_unique<MemPort>("p" + std::to_string(i), MemPort::Options{1024, true, true}));
      s->ports.push_back({ports.back().get(), 0, owner[i], 1514});
      s->bds[0].ports.push_back(uint16_t(i));
      s->rx_ports[owner[i]].push_back(uint16_t(i));
    }
    dp->publish(std::move(s));
    dp->start();
  }
  ~BlockingRig() { dp->stop(); }
  void wait_all_asleep(uint64_t at_least) {
    auto deadline = std::chrono::steady_clock::now() + 10s;
    for (;;) {
      bool all = true;
      for (unsigned w = 0; w < dp->workers(); w++) all &= dp->worker(w).counters().sleeps.get() >= at_least;
      if (all) return;
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "workers never blocked";
      std::this_thread::sleep_for(1ms);
    }
  }
  std::vector<std::vector<uint8_t>> wait_tx(size_t p, size_t n) {
    std::vector<std::vector<uint8_t>> got;
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (got.size() < n && std::chrono::steady_clock::now() < deadline) {
      for (auto& f : ports[p]->take_tx()) got.push_back(f);
      std::this_thread::sleep_for(200us);
    }
    return got;
  }
};

// 20 rounds: wait until every worker sleeps, inject on port 0, expect the frame on port 1.
void frames_wake_sleepers(std::vector<uint16_t> owners, const char* what) {
  BlockingRig r(std::move(owners));
  for (int round = 1; round <= 20; round++) {
    r.wait_all_asleep(uint64_t(round));
    auto f = test::eth_frame(test::kBcast, test::station(1), 0x0800, size_t(60 + round));
    ASSERT_TRUE(r.ports[0]->inject(f));
    auto got = r.wait_tx(1, 1);
    ASSERT_EQ(got.size(), 1u) << "round " << round << ": " << what;
    EXPECT_EQ(got[0], f);
  }
}

TEST(IdleBlock, BlockedWorkerWakesForItsOwnPorts) {
  frames_wake_sleepers({0, 0}, "frame not forwarded by a blocked worker");
}

TEST(IdleBlock, HandoffRingsTheDoorbellOfASleepingWorker) {
  // Port 0 on worker 0, port 1 on worker 1: every frame crosses.
  frames_wake_sleepers({0, 1}, "handed-off frame stuck at a sleeping worker");
}

TEST(IdleBlock, StopWakesBlockedWorkers) {
  auto r = std::make_unique<BlockingRig>(std::vector<uint16_t>{0, 1});
  r->wait_all_asleep(1);
  r.reset();  // joins: would hang if stop() did not wake them
  SUCCEED();
}

}  // namespace
}  // namespace dpsw
