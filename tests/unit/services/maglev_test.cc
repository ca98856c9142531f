// Maglev's two promises, measured: every backend gets an even share of the
// table (and so of new connections), and removing one of N moves about 1/N
// of the entries and no more.
#include "dataplane/services/maglev.h"

#include <gtest/gtest.h>

#include <string>

namespace dpsw {
namespace {

std::vector<uint64_t> keys(int n, int skip = -1) {
  std::vector<uint64_t> k;
  for (int i = 0; i < n; i++)
    if (i != skip) k.push_back(Maglev::key_of(("web" + std::to_string(i)).c_str()));
  return k;
}

TEST(Maglev, EvenShares) {
  for (int n : {1, 2, 3, 5, 10, 100}) {
    auto t = Maglev::build(keys(n));
    ASSERT_EQ(t.size(), Maglev::kSize);
    std::vector<uint32_t> share(size_t(n), 0);
    for (uint16_t b : t) {
      ASSERT_LT(b, n);
      share[b]++;
    }
    for (uint32_t s : share) {
      EXPECT_GE(s, Maglev::kSize / n - 1) << n << " backends";
      EXPECT_LE(s, Maglev::kSize / n + 1) << n << " backends";
    }
  }
  EXPECT_TRUE(Maglev::build({}).empty());
}

TEST(Maglev, RemovingOneOfNMovesAboutOneNth) {
  for (int n : {3, 5, 10, 50}) {
    auto all = keys(n), less = keys(n, 1);
    auto a = Maglev::build(all), b = Maglev::build(less);
    uint32_t moved = 0, moved_from_others = 0;
    for (uint32_t e = 0; e < Maglev::kSize; e++) {
      const uint64_t before = all[a[e]], after = less[b[e]];
      if (before == after) continue;
      moved++;
      if (before != all[1]) moved_from_others++;
    }
    const double frac = double(moved) / Maglev::kSize;
    const double others = double(moved_from_others) / Maglev::kSize;
    RecordProperty("moved_" + std::to_string(n), std::to_string(frac));
    EXPECT_NEAR(frac, 1.0 / n, 0.02 + 0.5 / n) << n << " backends: the removed one's entries, and few more";
    EXPECT_LT(others, 0.5 / n + 0.01) << n << " backends: entries of the backends that stayed should stay";
    std::printf("N=%d: %.4f of the entries moved (1/N = %.4f), %.4f of them from backends that stayed\n", n, frac, 1.0 / n, others);
  }
}

TEST(Maglev, KeysNotPositionsDecide) {
  auto k = keys(4);
  auto a = Maglev::build(k);
  std::vector<uint64_t> r(k.rbegin(), k.rend());
  auto b = Maglev::build(r);
  uint32_t same = 0;
  for (uint32_t e = 0; e < Maglev::kSize; e++) same += k[a[e]] == r[b[e]];
  EXPECT_GT(same, Maglev::kSize * 9 / 10) << "the same backends listed in another order give (nearly) the same table";
}

}  // namespace
}  // namespace dpsw
