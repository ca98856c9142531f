// A main() for a libFuzzer target without libFuzzer: replays built-in seeds
// and then DPSW_FUZZ_RUNS (default 1000000) random mutations of them (bit
// flips, byte changes, truncation, insertion, splicing) from a fixed seed,
// so that a unit test (and its ASan/UBSan build) runs the target every time.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
// Seeds: the target's file defines them next to the target.
extern const std::vector<std::vector<uint8_t>>& fuzz_seeds();

int main() {
  const char* env = std::getenv("DPSW_FUZZ_RUNS");
  const long runs = env ? std::atol(env) : 1000000;
  std::mt19937_64 rng(0x64707377);  // fixed: a failure reproduces
  const auto& seeds = fuzz_seeds();
  for (const auto& s : seeds) LLVMFuzzerTestOneInput(s.data(), s.size());
  std::vector<uint8_t> buf;
  for (long i = 0; i < runs; i++) {
    buf = seeds[rng() % seeds.size()];
    const int edits = 1 + int(rng() % 8);
    for (int e = 0; e < edits; e++) {
      switch (rng() % 6) {
        case 0:
          if (!buf.empty()) buf[rng() % buf.size()] ^= uint8_t(1u << (rng() % 8));
          break;
        case 1:
          if (!buf.empty()) buf[rng() % buf.size()] = uint8_t(rng());
          break;
        case 2:
          if (!buf.empty()) buf.resize(rng() % buf.size());
          break;
        case 3:
          buf.insert(buf.begin() + long(buf.empty() ? 0 : rng() % buf.size()), uint8_t(rng()));
          break;
        case 4: {  // splice the tail of another seed
          const auto& o = seeds[rng() % seeds.size()];
          if (!o.empty()) buf.insert(buf.end(), o.begin() + long(rng() % o.size()), o.end());
          break;
        }
        case 5:
          if (buf.size() > 13) buf[12 + rng() % (buf.size() - 12)] = uint8_t(0xc0 | (rng() & 0x3f));  // a pointer
          break;
      }
    }
    LLVMFuzzerTestOneInput(buf.data(), buf.size());
  }
  std::printf("fuzz: %zu seeds and %ld mutations, no failure\n", seeds.size(), runs);
  return 0;
}
