#include "dataplane/core/ether.h"

#include <cstdio>

namespace dpsw {

std::string mac_to_string(Mac m) {
  char buf[18];
  uint8_t b[6];
  mac_to_bytes(m, b);
  std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4], b[5]);
  return buf;
}

std::optional<Mac> mac_parse(std::string_view s) {
  if (s.size() != 17) return std::nullopt;
  Mac m = 0;
  for (int i = 0; i < 6; i++) {
    if (i > 0 && s[i * 3 - 1] != ':') return std::nullopt;
    unsigned v = 0;
    for (int j = 0; j < 2; j++) {
      char c = s[i * 3 + j];
      unsigned d;
      if (c >= '0' && c <= '9') d = unsigned(c - '0');
      else if (c >= 'a' && c <= 'f') d = unsigned(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') d = unsigned(c - 'A' + 10);
      else return std::nullopt;
      v = v * 16 + d;
    }
    m = (m << 8) | v;
  }
  return m;
}

}  // namespace dpsw
