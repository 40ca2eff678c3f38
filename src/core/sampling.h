// Deterministic sampling of query rows for the early probe and the quality check.
#pragma once

#include <cstdint>
#include <vector>

namespace ta {

// splitmix64: a tiny, well-mixed generator; the same seed gives the same rows on
// every platform and backend.
inline uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// min(k, n) distinct indices from [0, n), ascending; all of them when k >= n.
// Robert Floyd's algorithm: O(k log k) whatever n is.
std::vector<int64_t> sample_rows(int64_t n, int64_t k, uint64_t seed);

// Distinct streams for the two users of sampling, so changing probe_samples does not
// move the quality-check rows.
inline constexpr uint64_t kProbeStream = 0x70726f6265ull;    // "probe"
inline constexpr uint64_t kQualityStream = 0x7175616c69ull;  // "quali"

}  // namespace ta
