// The generic renderer of `show` views (issue 14): any view the daemon
// declares is printed from its description alone, so a new view or column
// never touches dpswctl.
#include "control/core/view.h"

#include <gtest/gtest.h>

namespace dpsw::view {
namespace {

using nlohmann::json;

// What dpswctl does with a reply: render its "view" (sent as JSON) over its "result".
std::string print(const View& v, const json& result) { return render(json::parse(v.describe().dump()), result); }

TEST(View, ANewViewWithAnyColumnsRendersAsATable) {
  const View v{"pets", "", "a view no client knows", {table("", {col("NAME", "name"), col("LEGS", "legs"), col("TAME", "tame")})}};
  const json rows = {{{"name", "cat"}, {"legs", 4}, {"tame", true}}, {{"name", "centipede"}, {"legs", 100}, {"tame", false}}};
  EXPECT_EQ(print(v, rows),
            "NAME       LEGS  TAME\n"
            "cat        4     yes\n"
            "centipede  100   no\n");
}

TEST(View, NestedValuesAndFormats) {
  const View v{"t", "", "", {table("", {col("RX", "counters.rx"), col("DROPS", "drops"), col("PEERS", "peers"),
                                          col("AGE", "age_ms", "ms_as_s"), col("BUSY", "busy", "percent"),
                                          col("AVG", "avg", "ratio"), col("N", "peers", "count"), col("FIRST", "peers.0"),
                                          col("MISSING", "no.such.path")})}};
  const json rows = {{{"counters", {{"rx", 7}}},
                      {"drops", {{"runt", 2}, {"ttl", 1}}},
                      {"peers", {"198.51.100.2", "198.51.100.3"}},
                      {"age_ms", 61999},
                      {"busy", 12.345},
                      {"avg", 3},
                      {"no", {{"such", 1}}}},
                     {{"counters", json::object()}, {"drops", json::object()}, {"peers", json::array()},
                      {"age_ms", -5}, {"busy", 0}, {"avg", nullptr}}};
  EXPECT_EQ(print(v, rows),
            "RX  DROPS         PEERS                      AGE  BUSY   AVG  N  FIRST         MISSING\n"
            "7   runt=2,ttl=1  198.51.100.2,198.51.100.3  61   12.3%  3.0  2  198.51.100.2  -\n"
            "-   -             -                          0    0.0%   -    0  -             -\n");
}

TEST(View, EmptyRows) {
  const View plain{"t", "", "", {table("", {col("A", "a"), col("BB", "b")})}};
  EXPECT_EQ(print(plain, json::array()), "A  BB\n");
  EXPECT_EQ(print(plain, json()), "A  BB\n");  // no rows at all: still the header
  const View said{"t", "", "", {table("", {col("A", "a")}).or_else("nothing to show"), line("total {#}")}};
  EXPECT_EQ(print(said, json::array()), "nothing to show\ntotal -\n");  // not a table: no blank line
}

TEST(View, RowsFromAnObjectAreNamedByKey) {
  const View v{"t", "", "", {table("ports", {col("PORT", "@key"), col("RX", "rx")})}};
  const json r = {{"ports", {{"b0", {{"rx", 1}}}, {"a0", {{"rx", 22}}}}}};
  EXPECT_EQ(print(v, r), "PORT  RX\na0    22\nb0    1\n");
}

TEST(View, OneRowPerElementOfAList) {
  const View v{"t", "", "", {table("", {col("NAME", "name"), col("NET", "att.net"), col("IP", "att.ip")}).for_each("att")}};
  const json rows = {{{"name", "c1"}, {"att", {{{"net", "a"}, {"ip", "10.0.0.2"}}, {{"net", "b"}, {"ip", "10.1.0.2"}}}}},
                     {{"name", "c2"}, {"att", json::array()}}};
  EXPECT_EQ(print(v, rows),
            "NAME  NET  IP\n"
            "c1    a    10.0.0.2\n"
            "c1    b    10.1.0.2\n"
            "c2    -    -\n");
}

TEST(View, CasesConditionsAndLines) {
  const View v{"t", "", "",
               {line("off").only_if("!enabled"),
                table("items", {col("ID", "id"), pick("WHERE", {{"joins", "container:{joins}"}, {"netns", "{netns}"}, {"", "(host)"}}),
                                pick("X", {{"vni", "vni {vni}"}})})
                    .only_if("enabled"),
                line("{items:count} items; cores {cores}").only_if("enabled"),
                line("no cores").only_if("enabled !cores"),
                line("to {cores}").only_if("enabled cores")}};
  const json on = {{"enabled", true},
                   {"cores", {1, 3}},
                   {"items", {{{"id", 1}, {"joins", "web"}, {"netns", "/x"}}, {{"id", 2}, {"netns", "/run/netns/n"}, {"vni", 42}},
                              {{"id", 3}, {"netns", ""}}}}};
  EXPECT_EQ(print(v, on),
            "ID  WHERE          X\n"
            "1   container:web  -\n"
            "2   /run/netns/n   vni 42\n"
            "3   (host)         -\n"
            "\n"  // a blank line after a table, before what follows
            "3 items; cores 1,3\n"
            "to 1,3\n");
  EXPECT_EQ(print(v, {{"enabled", false}}), "off\n");
  EXPECT_EQ(print(v, {{"enabled", true}, {"cores", json::array()}}), "ID  WHERE  X\n\n0 items; cores -\nno cores\n");
}

TEST(View, TwoTablesAreSeparatedByABlankLine) {
  const View v{"t", "", "", {table("a", {col("A", "x")}), table("b", {col("B", "x")}), line("end")}};
  EXPECT_EQ(print(v, {{"a", {{{"x", 1}}}}, {"b", {{{"x", 2}}}}}), "A\n1\n\nB\n2\n\nend\n");
}

TEST(View, WidthCountsCharactersAndCellsStayOnOneLine) {
  const View v{"t", "", "", {table("", {col("NAME", "n"), col("V", "v")})}};
  EXPECT_EQ(print(v, {{{"n", "caf\xc3\xa9"}, {"v", 1}}, {{"n", "a\nb"}, {"v", 2}}}), "NAME  V\ncaf\xc3\xa9  1\na?b   2\n");
}

TEST(View, WhatAnOlderClientDoesNotKnowIsTolerated) {
  // A newer daemon's block kind is skipped, its format written as auto; a malformed view never throws.
  const json view = {{"blocks", {{{"kind", "chart"}, {"rows", ""}},
                                 {{"kind", "table"}, {"rows", ""}, {"columns", {{{"header", "N"}, {"key", "n"}, {"format", "bytes_si"}}}}},
                                 {{"kind", "line"}, {"text", "unclosed {n"}},
                                 42}}};
  EXPECT_EQ(render(view, {{{"n", 1500}}}), "N\n1500\n\nunclosed {n\n");
  EXPECT_NO_THROW(render({{"blocks", {{{"kind", "table"}, {"columns", 7}}}}}, json::array({1, 2})));
  EXPECT_NO_THROW(render({{"blocks", {{{"kind", "table"}, {"rows", 3}, {"when", false}}}}}, json::array()));
  EXPECT_NO_THROW(render({{"blocks", {{{"kind", "line"}, {"text", "{a.99999999999999}"}}}}}, {{"a", {1}}}));
  // No view (an older daemon): the JSON itself.
  EXPECT_EQ(render(nullptr, {{"a", 1}}), "{\n  \"a\": 1\n}\n");
}

TEST(View, DescribeIsTheWireForm) {
  const View v{"mac", "[NETWORK]", "the MAC table",
               {table("", {col("AGE(s)", "age_ms", "ms_as_s"), pick("S", {{"static", "yes"}})}).for_each("x").or_else("none"),
                line("{a}").only_if("a !b")}};
  EXPECT_EQ(v.describe(), json::parse(R"j({"name":"mac","args":"[NETWORK]","about":"the MAC table","blocks":[
      {"kind":"table","rows":"","each":"x","empty":"none","columns":[
        {"header":"AGE(s)","key":"age_ms","format":"ms_as_s"},{"header":"S","cases":[{"when":"static","text":"yes"}]}]},
      {"kind":"line","when":"a !b","text":"{a}"}]})j"));
}

TEST(View, CellAlone) {
  const json big = uint64_t(1) << 63;
  EXPECT_EQ(cell(&big, ""), "9223372036854775808");
  EXPECT_EQ(cell(&big, "ms_as_s"), "9223372036854775");
  EXPECT_EQ(cell(nullptr, ""), "-");
  EXPECT_EQ(cell(nullptr, "count"), "0");
  const json f = false, zero = 0, s = "x";
  EXPECT_EQ(cell(&f, ""), "no");
  EXPECT_EQ(cell(&zero, ""), "0");
  EXPECT_EQ(cell(&s, "percent"), "x");
}

}  // namespace
}  // namespace dpsw::view
