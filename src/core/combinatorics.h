// Counting symmetric monomial features, with overflow reported instead of wrapped.
//
// Feature order (the same on every backend): degree 0, 1, ..., P-1 blocks; inside
// degree p the monomials x_i1*...*x_ip (i1 <= ... <= ip) are grouped by their LAST
// index ascending, and the group of last index j is the whole prefix of degree p-1
// whose last index is <= j, times x_j. That prefix has C(j + p - 1, p - 1) entries, so
// degree p is generated from degree p-1 with one multiply per feature and no index
// gathers (see docs/math.md).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace ta {

// C(n, k) when it fits in int64, nullopt otherwise (never wraps).
std::optional<int64_t> binomial(int64_t n, int64_t k);

// R(d, P) = C(d + P - 1, P - 1): features of a d-dim vector with P Taylor terms.
std::optional<int64_t> feature_dim(int64_t d, int32_t P);

// The static description of one slice's feature map: offsets of each degree block
// and the weight 1 / prod(c_u!) of every monomial (c_u = multiplicity of index u).
// With x pre-scaled by sqrt(scale), T_P(scale * q.k) = sum_r w_r phi_r(q) phi_r(k).
struct FeatureLayout {
  int32_t d = 0;
  int32_t P = 0;
  int64_t R = 0;
  std::vector<int64_t> degree_offset;  // size P + 1; degree p occupies [off[p], off[p+1])
  std::vector<double> weight;          // size R

  // Number of degree-(p-1) features whose last index is <= j: C(j + p - 1, p - 1).
  // Only valid for p >= 2.
  int64_t prefix_len(int32_t p, int32_t j) const { return prefix[static_cast<size_t>(p)][static_cast<size_t>(j)]; }

  std::vector<std::vector<int64_t>> prefix;  // prefix[p][j]
};

// Builds the layout; the caller has checked that R fits (feature_dim returned a value).
FeatureLayout make_feature_layout(int32_t d, int32_t P);

}  // namespace ta
