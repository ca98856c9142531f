#include "control/core/view.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string_view>

namespace dpsw::view {

using nlohmann::json;

Block Block::only_if(std::string condition) const {
  Block b = *this;
  b.when = std::move(condition);
  return b;
}

Block Block::for_each(std::string list) const {
  Block b = *this;
  b.each = std::move(list);
  return b;
}

Block Block::or_else(std::string text_if_empty) const {
  Block b = *this;
  b.empty = std::move(text_if_empty);
  return b;
}

Column col(std::string header, std::string key, std::string format) {
  return Column{std::move(header), std::move(key), std::move(format), {}};
}

Column pick(std::string header, std::vector<Case> cases) { return Column{std::move(header), "", "", std::move(cases)}; }

Block table(std::string rows, std::vector<Column> columns) {
  Block b;
  b.kind = "table";
  b.rows = std::move(rows);
  b.columns = std::move(columns);
  return b;
}

Block line(std::string text) {
  Block b;
  b.kind = "line";
  b.text = std::move(text);
  return b;
}

json View::describe() const {
  json out = json::array();
  for (const auto& b : blocks) {
    json j = {{"kind", b.kind}};
    if (!b.when.empty()) j["when"] = b.when;
    if (b.kind == "table") {
      json cols = json::array();
      for (const auto& c : b.columns) {
        json jc = {{"header", c.header}};
        if (c.cases.empty()) jc["key"] = c.key;
        if (!c.format.empty()) jc["format"] = c.format;
        if (!c.cases.empty()) {
          jc["cases"] = json::array();
          for (const auto& k : c.cases) jc["cases"].push_back({{"when", k.when}, {"text", k.text}});
        }
        cols.push_back(jc);
      }
      j["rows"] = b.rows;
      if (!b.each.empty()) j["each"] = b.each;
      j["columns"] = cols;
      if (!b.empty.empty()) j["empty"] = b.empty;
    } else {
      j["text"] = b.text;
    }
    out.push_back(j);
  }
  return {{"name", name}, {"args", args}, {"about", about}, {"blocks", out}};
}

namespace {

// A row and, when the rows are an object's members, its name ("@key").
struct Row {
  json value;
  json key;  // null unless the row has a name
};

std::string str(const json& j, const char* member) {
  if (!j.is_object()) return "";
  auto it = j.find(member);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

const json* resolve(const json& root, const json& key, std::string_view path) {
  if (path == "@key") return key.is_null() ? nullptr : &key;
  const json* at = &root;
  while (!path.empty()) {
    const size_t dot = path.find('.');
    const std::string part(path.substr(0, dot));
    path = dot == std::string_view::npos ? std::string_view() : path.substr(dot + 1);
    if (at->is_object()) {
      auto it = at->find(part);
      if (it == at->end()) return nullptr;
      at = &*it;
    } else if (at->is_array() && !part.empty() && part.find_first_not_of("0123456789") == std::string::npos && part.size() < 10) {
      const size_t i = std::stoul(part);
      if (i >= at->size()) return nullptr;
      at = &(*at)[i];
    } else {
      return nullptr;
    }
  }
  return at;
}

bool is_set(const json* v) {
  if (!v || v->is_null()) return false;
  if (v->is_boolean()) return v->get<bool>();
  if (v->is_number()) return v->get<double>() != 0;
  if (v->is_string()) return !v->get_ref<const std::string&>().empty();
  if (v->is_array() || v->is_object()) return !v->empty();
  return true;
}

bool holds(const Row& r, const std::string& condition) {
  size_t a = 0;
  while (a < condition.size()) {
    size_t b = condition.find(' ', a);
    if (b == std::string::npos) b = condition.size();
    std::string_view tok(condition.data() + a, b - a);
    a = b + 1;
    if (tok.empty()) continue;
    const bool negate = tok[0] == '!';
    if (negate) tok.remove_prefix(1);
    if (is_set(resolve(r.value, r.key, tok)) == negate) return false;
  }
  return true;
}

std::string fixed1(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f", std::isfinite(v) ? v : 0.0);
  return buf;
}

std::string auto_text(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "-";
    case json::value_t::string:
      return v.get<std::string>().empty() ? "-" : v.get<std::string>();
    case json::value_t::boolean:
      return v.get<bool>() ? "yes" : "no";
    case json::value_t::array: {
      std::string s;
      for (const auto& e : v) s += (s.empty() ? "" : ",") + auto_text(e);
      return s.empty() ? "-" : s;
    }
    case json::value_t::object: {
      std::string s;
      for (const auto& [k, e] : v.items()) s += (s.empty() ? "" : ",") + k + "=" + auto_text(e);
      return s.empty() ? "-" : s;
    }
    default:
      return v.dump(-1, ' ', false, json::error_handler_t::replace);  // numbers
  }
}

// One line per cell: control characters (a newline in a name) would break the table.
std::string printable(std::string s) {
  for (char& c : s)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  return s;
}

std::string expand(const std::string& text, const Row& r) {
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    const size_t open = text.find('{', i);
    const size_t close = open == std::string::npos ? open : text.find('}', open);
    if (close == std::string::npos) {
      out += text.substr(i);
      break;
    }
    out += text.substr(i, open - i);
    const std::string inner = text.substr(open + 1, close - open - 1);
    const size_t colon = inner.find(':');
    const std::string path = inner.substr(0, colon), format = colon == std::string::npos ? "" : inner.substr(colon + 1);
    out += cell(resolve(r.value, r.key, path), format);
    i = close + 1;
  }
  return printable(out);
}

size_t width(const std::string& s) {  // code points: a UTF-8 name is one column per character
  size_t n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xc0) != 0x80;
  return n;
}

std::vector<Row> gather(const json& result, const json& block) {
  std::vector<Row> rows;
  const json* src = resolve(result, nullptr, str(block, "rows"));
  if (src && src->is_array())
    for (const auto& e : *src) rows.push_back({e, nullptr});
  else if (src && src->is_object())
    for (const auto& [k, e] : src->items()) rows.push_back({e, k});
  const std::string each = str(block, "each");
  if (each.empty()) return rows;
  std::vector<Row> out;
  for (auto& r : rows) {
    const json* list = r.value.is_object() && r.value.contains(each) ? &r.value[each] : nullptr;
    if (!list || !list->is_array() || list->empty()) {
      if (r.value.is_object()) r.value[each] = nullptr;
      out.push_back(std::move(r));
      continue;
    }
    const json items = *list;
    for (const auto& item : items) {
      Row c = r;
      c.value[each] = item;
      out.push_back(std::move(c));
    }
  }
  return out;
}

std::string render_table(const json& block, const std::vector<Row>& rows) {
  const json& cols = block.contains("columns") && block["columns"].is_array() ? block["columns"] : json::array();
  std::vector<std::vector<std::string>> cells;
  std::vector<std::string> head;
  for (const auto& c : cols) head.push_back(printable(str(c, "header")));
  for (const auto& r : rows) {
    std::vector<std::string> line;
    for (const auto& c : cols) {
      if (c.is_object() && c.contains("cases") && c["cases"].is_array()) {
        std::string text = "-";
        for (const auto& k : c["cases"])
          if (holds(r, str(k, "when"))) {
            text = expand(str(k, "text"), r);
            break;
          }
        line.push_back(text);
      } else {
        line.push_back(printable(cell(resolve(r.value, r.key, str(c, "key")), str(c, "format"))));
      }
    }
    cells.push_back(std::move(line));
  }
  std::vector<size_t> w(head.size());
  for (size_t i = 0; i < head.size(); i++) w[i] = width(head[i]);
  for (const auto& l : cells)
    for (size_t i = 0; i < l.size(); i++) w[i] = std::max(w[i], width(l[i]));
  std::string out;
  auto emit = [&](const std::vector<std::string>& l) {
    std::string s;
    for (size_t i = 0; i < l.size(); i++) {
      s += l[i];
      if (i + 1 < l.size()) s += std::string(w[i] - width(l[i]) + 2, ' ');
    }
    out += s + "\n";
  };
  emit(head);
  for (const auto& l : cells) emit(l);
  return out;
}

}  // namespace

std::string cell(const json* v, const std::string& format) {
  if (format == "count") {
    if (!v || v->is_null()) return "0";
    return v->is_array() || v->is_object() ? std::to_string(v->size()) : "-";
  }
  if (!v) return "-";
  if (v->is_number()) {
    if (format == "ms_as_s") {
      if (v->is_number_unsigned()) return std::to_string(v->get<uint64_t>() / 1000);
      if (v->is_number_integer()) return std::to_string(v->get<int64_t>() < 0 ? 0 : v->get<int64_t>() / 1000);
      const double d = v->get<double>();
      return std::to_string(std::isfinite(d) && d > 0 ? uint64_t(d / 1000) : 0);
    }
    if (format == "percent") return fixed1(v->get<double>()) + "%";
    if (format == "ratio") return fixed1(v->get<double>());
  }
  return auto_text(*v);
}

std::string render(const json& view, const json& result) {
  if (!view.is_object() || !view.contains("blocks") || !view["blocks"].is_array())
    return result.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
  const Row root{result, nullptr};
  std::string out;
  bool after_table = false;  // a blank line separates a table from what follows
  for (const auto& b : view["blocks"]) {
    if (!b.is_object() || !holds(root, str(b, "when"))) continue;
    const std::string kind = str(b, "kind");
    std::string text;
    bool is_table = false;
    if (kind == "table") {
      const std::vector<Row> rows = gather(result, b);
      if (rows.empty() && !str(b, "empty").empty()) {
        text = expand(str(b, "empty"), root) + "\n";
      } else {
        text = render_table(b, rows);
        is_table = true;
      }
    } else if (kind == "line") {
      text = expand(str(b, "text"), root) + "\n";
    } else {
      continue;  // from a newer daemon
    }
    if (after_table) out += "\n";
    out += text;
    after_table = is_table;
  }
  return out;
}

}  // namespace dpsw::view
