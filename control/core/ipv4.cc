#include "control/core/ipv4.h"

#include <charconv>

namespace dpsw {

std::optional<uint32_t> ipv4_parse(std::string_view s) {
  uint32_t a = 0;
  for (int i = 0; i < 4; i++) {
    if (i) {
      if (s.empty() || s[0] != '.') return std::nullopt;
      s.remove_prefix(1);
    }
    unsigned v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    size_t used = size_t(p - s.data());
    if (ec != std::errc() || used == 0 || used > 3 || v > 255 || (used > 1 && s[0] == '0')) return std::nullopt;
    a = a << 8 | v;
    s.remove_prefix(used);
  }
  if (!s.empty()) return std::nullopt;
  return a;
}

std::optional<Ipv4Prefix> prefix_parse(std::string_view s) {
  auto slash = s.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  auto a = ipv4_parse(s.substr(0, slash));
  auto ls = s.substr(slash + 1);
  unsigned len = 0;
  auto [p, ec] = std::from_chars(ls.data(), ls.data() + ls.size(), len);
  if (!a || ec != std::errc() || p != ls.data() + ls.size() || ls.empty() || len > 32) return std::nullopt;
  return Ipv4Prefix{*a, uint8_t(len)};
}

std::string ipv4_to_string(uint32_t a) {
  return std::to_string(a >> 24) + "." + std::to_string((a >> 16) & 255) + "." + std::to_string((a >> 8) & 255) +
         "." + std::to_string(a & 255);
}

std::string prefix_to_string(const Ipv4Prefix& p) { return ipv4_to_string(p.addr) + "/" + std::to_string(p.len); }

}  // namespace dpsw
