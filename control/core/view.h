// Views of `show`: how a person reads a JSON answer, declared once.
//
// The daemon declares each view next to the code that makes its rows
// (Daemon::show, or a control module's views()) and sends the declaration with the answer, as the reply's
// "view" member beside "result". dpswctl renders any view from that
// description alone (render()), so a new view or a new column is a change to
// the daemon only. The result itself is unchanged by this: scripts read it
// (`dpswctl --json`) as before.
//
// A view is a list of blocks, each printed if its condition holds:
//   table  rows taken from the result at `rows` (a list, or an object whose
//          members are the rows), one column per Column; a blank line follows
//          a table when something else is printed after it
//   line   a line of text with {placeholders}
//
// Paths are dotted ("counters.rx_packets"), relative to the row for columns
// and to the result for everything else; "" is the row (result) itself, and
// "@key" is the row's name when the rows are an object's members.
// A condition is a space-separated list of paths that must all be set;
// "!path" must be unset. Unset: missing, null, false, 0, "", [] or {}.
// A placeholder is {path} or {path:format}. A column shows `key` written in
// its `format`, or, if it has cases, the text of the first case whose
// condition holds.
//
// Formats (unknown ones are written as auto, so an older client still prints
// a newer daemon's view):
//   auto     strings as they are, numbers, booleans yes/no, a list "a,b", an
//            object "k=v,k2=v2" (so a nested value is one cell); unset
//            values other than false and 0 as "-"
//   ms_as_s  milliseconds written as whole seconds
//   percent  a number as "12.3%"
//   ratio    a number with one decimal
//   count    the number of elements of a list or object
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace dpsw::view {

struct Case {
  std::string when;  // condition ("" = always)
  std::string text;  // with {placeholders} resolved in the row
};

struct Column {
  std::string header;
  std::string key;           // path in the row
  std::string format;        // "" = auto
  std::vector<Case> cases;   // instead of key: the first case that holds gives the cell ("-" if none)
};

struct Block {
  std::string kind;  // "table" or "line" (a client skips kinds it does not know)
  std::string when;  // condition on the result ("" = always)
  // table
  std::string rows;      // path of the rows in the result
  std::string each;      // one table row per element of this list in each row, the element in its place ("" = off)
  std::vector<Column> columns;
  std::string empty;     // printed instead of the table when there are no rows ("" = the header alone)
  // line
  std::string text;

  Block only_if(std::string condition) const;
  Block for_each(std::string list) const;
  Block or_else(std::string text_if_empty) const;
};

struct View {
  std::string name;
  std::string args;   // synopsis of the arguments ("" = none), e.g. "[NETWORK]"
  std::string about;  // one line, for the list of views
  std::vector<Block> blocks;

  nlohmann::json describe() const;  // the reply's "view" member
};

// Builders for declarations.
Column col(std::string header, std::string key, std::string format = "");
Column pick(std::string header, std::vector<Case> cases);
Block table(std::string rows, std::vector<Column> columns);
Block line(std::string text);

// The text of `result` as `view` (a describe()d View) shows it: never throws
// on a malformed view or result (what cannot be read is written as "-" or
// skipped). Ends with a newline unless empty.
std::string render(const nlohmann::json& view, const nlohmann::json& result);

// One value in one format (auto = "").
std::string cell(const nlohmann::json* value, const std::string& format);

}  // namespace dpsw::view
