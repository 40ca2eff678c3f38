#include "core/combinatorics.h"

#include <limits>

#include "core/wide_int.h"

namespace ta {

std::optional<int64_t> binomial(int64_t n, int64_t k) {
  if (n < 0 || k < 0 || k > n) return 0;
  if (k > n - k) k = n - k;
  // C(n, i) = C(n, i-1) * (n - k + i) / i stays an integer at every step; the product
  // is formed in 128 bits so only the final value's range matters.
  i128 c = 1;
  for (int64_t i = 1; i <= k; ++i) {
    c = c * (n - k + i) / i;
    if (c > std::numeric_limits<int64_t>::max()) return std::nullopt;
  }
  return static_cast<int64_t>(c);
}

std::optional<int64_t> feature_dim(int64_t d, int32_t P) {
  if (d < 1 || P < 1) return std::nullopt;
  if (d > std::numeric_limits<int64_t>::max() - (P - 1)) return std::nullopt;  // d + P - 1 overflows
  return binomial(d + (P - 1), P - 1);  // d + P alone could overflow first
}

FeatureLayout make_feature_layout(int32_t d, int32_t P) {
  FeatureLayout layout;
  layout.d = d;
  layout.P = P;
  layout.degree_offset.assign(static_cast<size_t>(P) + 1, 0);
  for (int32_t p = 0; p < P; ++p) {
    layout.degree_offset[static_cast<size_t>(p) + 1] =
        layout.degree_offset[static_cast<size_t>(p)] + *binomial(d + p - 1, p);
  }
  layout.R = layout.degree_offset[static_cast<size_t>(P)];

  layout.prefix.assign(static_cast<size_t>(P), {});
  for (int32_t p = 2; p < P; ++p) {
    auto& row = layout.prefix[static_cast<size_t>(p)];
    row.resize(static_cast<size_t>(d));
    for (int32_t j = 0; j < d; ++j) row[static_cast<size_t>(j)] = *binomial(j + p - 1, p - 1);
  }

  // Weights follow the generation order: a degree-p monomial m = m' * x_j has
  // w(m) = w(m') / c_j(m), where c_j(m) = 1 + (trailing run of j in m'). The run
  // length of the last index is carried along as a second array.
  layout.weight.assign(static_cast<size_t>(layout.R), 1.0);
  std::vector<int32_t> last(static_cast<size_t>(layout.R), -1);
  std::vector<int32_t> run(static_cast<size_t>(layout.R), 0);
  if (P >= 2) {
    for (int32_t j = 0; j < d; ++j) {
      const size_t r = static_cast<size_t>(layout.degree_offset[1] + j);
      last[r] = j;
      run[r] = 1;
    }
  }
  for (int32_t p = 2; p < P; ++p) {
    const int64_t prev = layout.degree_offset[static_cast<size_t>(p) - 1];
    int64_t out = layout.degree_offset[static_cast<size_t>(p)];
    for (int32_t j = 0; j < d; ++j) {
      const int64_t len = layout.prefix_len(p, j);
      for (int64_t t = 0; t < len; ++t, ++out) {
        const size_t src = static_cast<size_t>(prev + t);
        const int32_t c = last[src] == j ? run[src] + 1 : 1;
        layout.weight[static_cast<size_t>(out)] = layout.weight[src] / c;
        last[static_cast<size_t>(out)] = j;
        run[static_cast<size_t>(out)] = c;
      }
    }
  }
  return layout;
}

}  // namespace ta
