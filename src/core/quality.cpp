#include "core/quality.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/dtype.h"
#include "core/reference.h"
#include "core/sampling.h"

namespace ta {

void ErrorAccumulator::add_row(const double* got, const double* ref, int64_t n) {
  double row_diff = 0, row_ref = 0;
  for (int64_t c = 0; c < n; ++c) {
    const double diff = got[c] - ref[c];
    row_diff += diff * diff;
    row_ref += ref[c] * ref[c];
    abs_sum_ += std::fabs(diff);
    abs_max_ = std::max(abs_max_, std::fabs(diff));
  }
  diff_sq_ += row_diff;
  ref_sq_ += row_ref;
  // A zero reference row (all values 0) would divide by zero: its absolute error stands in.
  rel_sum_ += std::sqrt(row_diff) / std::max(std::sqrt(row_ref), 1e-300);
  elements_ += n;
  rows_ += 1;
}

ta_quality ErrorAccumulator::finish(int32_t samples) const {
  ta_quality q{};
  q.samples = samples;
  if (rows_ == 0) return q;
  q.rel_l2 = std::sqrt(diff_sq_) / std::max(std::sqrt(ref_sq_), 1e-300);
  q.mean_abs = abs_sum_ / static_cast<double>(elements_);
  q.max_abs = abs_max_;
  q.mean_rel = rel_sum_ / static_cast<double>(rows_);
  return q;
}

void run_quality_check(const Problem& p, const ta_config& c, const KeyMask& mask, ta_quality* vs_original,
                       ta_quality* truncation) {
  const std::vector<int64_t> rows = sample_rows(p.Nq, c.quality_check_samples, c.seed ^ kQualityStream);
  const auto n = static_cast<int64_t>(rows.size());
  const RefSpec original = reference_spec(p, c, TA_REFERENCE_EXACT_ORIGINAL);
  const RefSpec modified = reference_spec(p, c, TA_REFERENCE_EXACT_MODIFIED);
  std::vector<double> ref_o(static_cast<size_t>(n * p.dv)), ref_m(ref_o.size()), got(static_cast<size_t>(p.dv));
  ErrorAccumulator acc_o, acc_m;
  const ta_tensor& o = *p.out;
  for (int64_t b = 0; b < p.B; ++b) {
    for (int64_t h = 0; h < p.H; ++h) {
      reference_rows(p, original, mask, b, h, rows, ref_o.data());
      reference_rows(p, modified, mask, b, h, rows, ref_m.data());
      for (int64_t r = 0; r < n; ++r) {
        const int64_t base = b * o.strides[0] + h * o.strides[1] + rows[static_cast<size_t>(r)] * o.strides[2];
        for (int64_t col = 0; col < p.dv; ++col) {
          got[static_cast<size_t>(col)] = load_as_double(o.data, base + col * o.strides[3], o.dtype);
        }
        acc_o.add_row(got.data(), &ref_o[static_cast<size_t>(r * p.dv)], p.dv);
        acc_m.add_row(got.data(), &ref_m[static_cast<size_t>(r * p.dv)], p.dv);
      }
    }
  }
  *vs_original = acc_o.finish(static_cast<int32_t>(n));
  *truncation = acc_m.finish(static_cast<int32_t>(n));
}

}  // namespace ta
