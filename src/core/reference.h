// Plain fp64 references: exact softmax attention (of the original call or of the
// modified function) and the Taylor function in quadratic form (T_P on explicit
// scores). O(N^2 d); they check the fast paths and produce fallback outputs in tools.
#pragma once

#include <cstdint>
#include <vector>

#include "core/mask.h"
#include "core/problem.h"

namespace ta {

// Hybrid: exp on each query's exact set (Problem::window), T_P elsewhere (see window.h).
enum class RefKernel { Softmax, Taylor, Hybrid };

// What a reference computes: G slices (1 = full head), optional L2 normalisation of
// q and k slice vectors, the score scale per slice, and the kernel applied to scores.
struct RefSpec {
  int32_t G = 1;
  bool normalize = false;
  double eps = 1e-6;
  double scale = 1.0;
  RefKernel kernel = RefKernel::Softmax;
  int32_t P = 1;
};

RefSpec reference_spec(const Problem& p, const ta_config& c, ta_reference_kind kind);

// Computes rows `rows` of head (b, h) into out[rows.size()][dv] (row-major, fp64).
// den_out (optional) receives each row's denominator summed over slices.
void reference_rows(const Problem& p, const RefSpec& spec, const KeyMask& mask, int64_t b, int64_t h,
                    const std::vector<int64_t>& rows, double* out, double* den_out = nullptr);

// Truncated exponential T_P(s) = sum_{p<P} s^p / p!, by Horner's rule.
inline double taylor_exp(double s, int32_t P) {
  double inv_fact = 1.0;
  for (int32_t p = 2; p < P; ++p) inv_fact /= p;  // 1/(P-1)!
  double t = inv_fact;
  for (int32_t p = P - 2; p >= 0; --p) {
    inv_fact *= (p + 1);  // now 1/p!
    t = t * s + inv_fact;
  }
  return P >= 1 ? t : 0.0;
}

}  // namespace ta
