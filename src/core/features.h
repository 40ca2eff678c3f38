// Symmetric monomial features of a block of tokens, generated degree by degree.
//
// Layout is feature-major, F[r * ld + t] for feature r of token t, so the loops that
// use the features (S += F^T [V,1], O = F S) read them contiguously. Degree p is built
// from degree p-1 with exactly one multiply per feature: the group of monomials whose
// last index is j is the degree-(p-1) prefix of length C(j+p-1, p-1) times x_j (see
// core/combinatorics.h). Weights 1/prod(c_u!) are NOT applied here: backends fold
// them into the state rows once per call.
#pragma once

#include <cstdint>

#include "core/combinatorics.h"

namespace ta {

// xT: the tokens' (pre-scaled) vectors transposed, xT[c * ld + t] for c < L.d.
// Writes features for tokens [0, T) into F (L.R rows of stride ld).
template <class A>
void generate_features(const FeatureLayout& L, const A* xT, int64_t T, int64_t ld, A* F) {
  for (int64_t t = 0; t < T; ++t) F[t] = A(1);
  if (L.P < 2) return;
  for (int32_t c = 0; c < L.d; ++c) {
    const A* src = xT + c * ld;
    A* dst = F + (1 + c) * ld;
    for (int64_t t = 0; t < T; ++t) dst[t] = src[t];
  }
  for (int32_t p = 2; p < L.P; ++p) {
    const int64_t prev = L.degree_offset[static_cast<size_t>(p) - 1];
    int64_t out = L.degree_offset[static_cast<size_t>(p)];
    for (int32_t j = 0; j < L.d; ++j) {
      const A* xj = xT + j * ld;
      const int64_t len = L.prefix_len(p, j);
      for (int64_t s = 0; s < len; ++s) {
        const A* src = F + (prev + s) * ld;
        A* dst = F + (out + s) * ld;
        for (int64_t t = 0; t < T; ++t) dst[t] = src[t] * xj[t];
      }
      out += len;
    }
  }
}

}  // namespace ta
