// Helpers shared by the hardening tests (header-only): problems with masks and strided
// views, a record of everything one call answers (statuses, reason, message, stats that
// must be reproducible, output bits) and exact-size heap buffers for workspaces, so that
// AddressSanitizer sees any byte read or written past what the caller handed in.
#ifndef TA_TESTS_HARDENING_HARDENING_HELPERS_H_
#define TA_TESTS_HARDENING_HARDENING_HELPERS_H_

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "common/ta_api_helpers.h"
#include "taylor_attention/taylor_attention.h"

namespace tahard {

using tatest::Problem;
using tatest::Shape;
using tatest::TestTensor;

// Strides of a logical [B,H,N,D] tensor stored as [B,N,H,D+pad] (ComfyUI's layout seen
// through .transpose(1, 2)); the pad leaves NaN-filled gaps a wrong read would pick up.
inline std::vector<int64_t> bnhd_strides(int64_t H, int64_t N, int64_t D, int64_t pad) {
  const int64_t row = D + pad;
  return {N * H * row, row, H * row, 1};
}

// Replaces a problem's tensor by a strided copy (same logical values).
inline void restride(TestTensor *t, const std::vector<int64_t> &strides) {
  const std::vector<double> vals = t->dense();
  TestTensor s(t->dtype(), t->shape(), strides);
  s.set_dense(vals);
  *t = std::move(s);
}

// A [B, Nk] bool key-padding mask that blocks key j of batch b when (j + b) % every == 0,
// recorded in p->keep for the reference.
inline void add_bool_key_mask(Problem *p, int every) {
  const Shape &s = p->s;
  p->keep.assign(static_cast<size_t>(s.B * s.Nk), 1);
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t j = 0; j < s.Nk; ++j)
      if ((j + b) % every == 0) p->keep[static_cast<size_t>(b * s.Nk + j)] = 0;
  p->mask = tatest::make_mask(tatest::MaskForm::B_Nk, TA_DTYPE_BOOL, s, p->keep);
}

// An additive float mask [1, 1, 1, Nk] (shared by every batch) holding 0 or -inf.
inline void add_float_key_mask(Problem *p, ta_dtype dt, int every) {
  const Shape &s = p->s;
  p->keep.assign(static_cast<size_t>(s.B * s.Nk), 1);
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t j = 0; j < s.Nk; ++j)
      if (j % every == 1) p->keep[static_cast<size_t>(b * s.Nk + j)] = 0;
  p->mask = tatest::make_mask(tatest::MaskForm::One_1_1_Nk, dt, s, p->keep);
}

// The fields of ta_stats that must not depend on timing, thread count or workspace:
// copied bitwise (NaN denominators compare equal when their bits do).
struct StatsKey {
  ta_backend backend;
  ta_reason reason;
  int32_t G, ds, dvs;
  int64_t R, denom_count, le_eps, non_finite;
  double denom_min, denom_max, denom_mean;
  int32_t probe_ran, probe_samples;
  double probe_min;
  ta_quality q_orig, q_trunc;
};

inline std::vector<uint8_t> stats_key(const ta_stats &st) {
  StatsKey k;
  std::memset(&k, 0, sizeof k);  // padding bytes too, so the byte compare is exact
  k.backend = st.backend;
  k.reason = st.fallback_reason;
  k.G = st.sub_head_blocks;
  k.ds = st.slice_dim;
  k.dvs = st.slice_value_dim;
  k.R = st.feature_dim;
  k.denom_count = st.denom_count;
  k.le_eps = st.denom_le_eps;
  k.non_finite = st.denom_non_finite;
  k.denom_min = st.denom_min;
  k.denom_max = st.denom_max;
  k.denom_mean = st.denom_mean;
  k.probe_ran = st.probe_ran;
  k.probe_samples = st.probe_samples;
  k.probe_min = st.probe_denom_min;
  std::memcpy(&k.q_orig, &st.quality_vs_original, sizeof k.q_orig);
  std::memcpy(&k.q_trunc, &st.quality_truncation, sizeof k.q_trunc);
  std::vector<uint8_t> bytes(sizeof k);
  std::memcpy(bytes.data(), &k, sizeof k);
  return bytes;
}

// A heap buffer of exactly `bytes` usable bytes starting `misalign` bytes past a 256-byte
// boundary: the byte after the last one handed to the library is past the allocation, so
// ASan reports a one-byte overrun.
class ExactBuffer {
 public:
  explicit ExactBuffer(size_t bytes, size_t misalign = 0) : bytes_(bytes) {
    void *p = nullptr;
    // posix_memalign, not aligned_alloc: the size need not be a multiple of the alignment.
    if (posix_memalign(&p, 256, std::max<size_t>(1, bytes + misalign)) != 0) p = nullptr;
    raw_.reset(static_cast<unsigned char *>(p));
    if (!raw_) throw std::bad_alloc();
    data_ = raw_.get() + misalign;
    std::memset(data_, 0xC3, bytes_);
  }
  unsigned char *data() { return data_; }
  size_t size() const { return bytes_; }

 private:
  struct Free {
    void operator()(unsigned char *p) const { std::free(p); }
  };
  size_t bytes_;
  std::unique_ptr<unsigned char, Free> raw_;
  unsigned char *data_ = nullptr;
};

}  // namespace tahard

#endif  // TA_TESTS_HARDENING_HARDENING_HELPERS_H_
