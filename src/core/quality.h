// The sampled quality check: the Taylor output (as written, in the output dtype)
// against exact softmax of the ORIGINAL call and of the modified function.
#pragma once

#include "core/mask.h"
#include "core/problem.h"
#include "taylor_attention/taylor_attention.h"

namespace ta {

// Accumulates error metrics over rows; finish() turns sums into ta_quality.
class ErrorAccumulator {
 public:
  void add_row(const double* got, const double* ref, int64_t n);
  ta_quality finish(int32_t samples) const;

 private:
  double diff_sq_ = 0, ref_sq_ = 0, abs_sum_ = 0, abs_max_ = 0, rel_sum_ = 0;
  int64_t elements_ = 0, rows_ = 0;
};

// Samples min(quality_check_samples, Nq) query rows (seeded) and fills both metrics.
// out must hold the finished Taylor output (host memory).
void run_quality_check(const Problem& p, const ta_config& c, const KeyMask& mask, ta_quality* vs_original,
                       ta_quality* truncation);

}  // namespace ta
