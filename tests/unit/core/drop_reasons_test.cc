// The drop-reason table (dataplane/core/counters.h) is the one list: names are
// unique and well-formed, and the README's counters section explains each
// one (so a new reason cannot land undocumented).
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "dataplane/core/counters.h"
#include "dataplane/core/graph.h"

namespace dpsw {
namespace {

TEST(DropReasons, NamesAreUniqueSnakeCaseAndExplained) {
  std::set<std::string_view> seen;
  for (const DropReason& r : kDropReasonTable) {
    EXPECT_TRUE(seen.insert(r.name).second) << r.name << " twice";
    EXPECT_FALSE(r.name.empty());
    for (char c : r.name) EXPECT_TRUE((c >= 'a' && c <= 'z') || c == '_') << r.name;
    EXPECT_GT(r.text.size(), 10u) << r.name;
  }
  EXPECT_EQ(drop_reason_name(Drop::kRunt), "runt");
  EXPECT_EQ(drop_reason_name(Drop::kCount), "?");
}

TEST(DropReasons, EveryReasonIsInTheReadme) {
  const char* root = std::getenv("DPSW_SOURCE_ROOT");
  if (!root) GTEST_SKIP() << "DPSW_SOURCE_ROOT not set (meson sets it)";
  std::ifstream f(std::string(root) + "/README.md");
  ASSERT_TRUE(f) << "cannot read README.md";
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string text = ss.str();
  const size_t at = text.find("| `DROPS` |");
  ASSERT_NE(at, std::string::npos) << "README.md has no `DROPS` row in its counters table";
  const std::string row = text.substr(at, text.find('\n', at) - at);
  for (const DropReason& r : kDropReasonTable)
    EXPECT_NE(row.find("`" + std::string(r.name) + "`"), std::string::npos) << r.name << " is not explained in README.md's DROPS row";
}

// The `nodes` column names where each reason is counted: packet-graph nodes
// or the graph's entry points, nothing else (a renamed node fails here).
TEST(DropReasons, EachNamesTheNodesThatCountIt) {
  std::set<std::string_view> known(std::begin(graph::kNodeNames), std::end(graph::kNodeNames));
  known.insert(std::begin(graph::kEntryPoints), std::end(graph::kEntryPoints));
  for (const DropReason& r : kDropReasonTable) {
    EXPECT_FALSE(r.nodes.empty()) << r.name;
    std::istringstream words{std::string(r.nodes)};
    for (std::string w; words >> w;) EXPECT_TRUE(known.count(w)) << r.name << ": no node or entry point '" << w << "'";
  }
}

}  // namespace
}  // namespace dpsw
