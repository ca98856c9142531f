#include "dataplane/services/maglev.h"

#include <cstddef>

#include "dataplane/core/hash.h"

namespace dpsw {

uint64_t Maglev::key_of(const char* name) {
  uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a, then mixed
  for (const char* p = name; *p; p++) h = (h ^ uint8_t(*p)) * 0x100000001b3ULL;
  return mix64(h);
}

std::vector<uint16_t> Maglev::build(const std::vector<uint64_t>& keys, uint32_t size) {
  const size_t n = keys.size();
  if (!n || n > 65535 || size < 2) return {};
  std::vector<uint32_t> offset(n), skip(n), next(n, 0);
  for (size_t i = 0; i < n; i++) {
    offset[i] = uint32_t(mix64(keys[i] ^ 0x6d61676c65763031ULL) % size);
    skip[i] = uint32_t(mix64(keys[i] ^ 0x6d61676c65763032ULL) % (size - 1)) + 1;
  }
  std::vector<uint16_t> table(size, UINT16_MAX);
  uint32_t filled = 0;
  for (;;) {
    for (size_t i = 0; i < n; i++) {
      // Backend i's next preferred entry that is still free (size is prime:
      // offset + j * skip visits every entry once).
      uint32_t c = uint32_t((offset[i] + uint64_t(next[i]) * skip[i]) % size);
      while (table[c] != UINT16_MAX) {
        next[i]++;
        c = uint32_t((offset[i] + uint64_t(next[i]) * skip[i]) % size);
      }
      table[c] = uint16_t(i);
      next[i]++;
      if (++filled == size) return table;
    }
  }
}

}  // namespace dpsw
