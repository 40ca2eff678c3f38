#include "core/sampling.h"

#include <algorithm>
#include <set>

namespace ta {

std::vector<int64_t> sample_rows(int64_t n, int64_t k, uint64_t seed) {
  std::vector<int64_t> rows;
  if (n <= 0 || k <= 0) return rows;
  if (k >= n) {
    rows.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) rows[static_cast<size_t>(i)] = i;
    return rows;
  }
  uint64_t state = seed;
  std::set<int64_t> chosen;
  for (int64_t j = n - k; j < n; ++j) {
    const auto t = static_cast<int64_t>(splitmix64(state) % static_cast<uint64_t>(j + 1));
    if (!chosen.insert(t).second) chosen.insert(j);
  }
  rows.assign(chosen.begin(), chosen.end());
  return rows;
}

}  // namespace ta
