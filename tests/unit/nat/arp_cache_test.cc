#include "dataplane/nat/arp_cache.h"

#include <gtest/gtest.h>

#include <vector>

namespace dpsw {
namespace {

constexpr uint32_t kNet = 0xc6336400;  // 198.51.100.0/24
constexpr uint32_t kPeer = kNet + 13;
constexpr Mac kOld = 0x020000000013ULL, kNew = 0x020000000031ULL;

std::vector<uint32_t> probes(ArpCache& c, uint32_t now) {
  std::vector<uint32_t> out;
  c.tick(now);
  c.for_each_wanted([&](uint32_t ip) { out.push_back(ip); });
  return out;
}

// A neighbour whose MAC changed is followed within the refresh time, not
// kept forever (issue 19: traffic to a peer was lost for 50 s).
TEST(ArpCache, StaleEntriesAreProbedAndAChangedMacFollowed) {
  ArpCache c(kNet, 24);
  c.tick(1000);
  c.learn(kPeer, kOld);
  EXPECT_EQ(c.lookup(kPeer), kOld);
  EXPECT_TRUE(probes(c, 1000 + ArpCache::kRefreshMs - 1).empty());  // reachable: nothing to ask
  EXPECT_EQ(c.lookup(kPeer), kOld);
  EXPECT_TRUE(probes(c, 1000 + ArpCache::kRefreshMs - 1).empty());
  // Stale: still used, and probed (once per kProbeEveryMs).
  const uint32_t t = 1000 + ArpCache::kRefreshMs + 1;
  c.tick(t);
  EXPECT_EQ(c.lookup(kPeer), kOld);
  EXPECT_EQ(probes(c, t), std::vector<uint32_t>{kPeer});
  EXPECT_TRUE(probes(c, t + 10).empty());
  EXPECT_EQ(probes(c, t + ArpCache::kProbeEveryMs), std::vector<uint32_t>{kPeer});
  // The neighbour answers from its new MAC: followed, and no more probes.
  c.learn(kPeer, kNew);
  EXPECT_EQ(c.lookup(kPeer), kNew);
  EXPECT_TRUE(probes(c, t + 2 * ArpCache::kProbeEveryMs).empty());
}

TEST(ArpCache, UnansweredProbesFailTheEntry) {
  ArpCache c(kNet, 24);
  c.tick(0);
  c.learn(kPeer, kOld);
  uint32_t t = ArpCache::kRefreshMs + 1;
  c.tick(t);
  EXPECT_EQ(c.lookup(kPeer), kOld);
  for (uint32_t dt = 0; dt < ArpCache::kFailMs; dt += 100) probes(c, t + dt);
  EXPECT_EQ(c.peek(kPeer), kOld);  // still within kFailMs of the first probe
  probes(c, t + ArpCache::kFailMs);
  EXPECT_EQ(c.peek(kPeer), 0u);  // failed: resolved again from scratch
  EXPECT_EQ(c.lookup(kPeer), 0u);
}

// After a long quiet spell (a worker that slept), the first use probes but
// does not drop traffic: the stale entry is used while it is re-confirmed.
TEST(ArpCache, AQuietSpellDoesNotFailAnEntry) {
  ArpCache c(kNet, 24);
  c.tick(0);
  c.learn(kPeer, kOld);
  c.tick(600000);
  EXPECT_EQ(c.lookup(kPeer), kOld);
  EXPECT_EQ(probes(c, 600000), std::vector<uint32_t>{kPeer});
  c.learn(kPeer, kOld);
  EXPECT_TRUE(probes(c, 600100).empty());
}

}  // namespace
}  // namespace dpsw
