// Shared helpers of the black-box C API tests (header-only): a problem (q, k, v, out,
// optional mask) built from a shape, a checked run that verifies the invariants every
// call must keep, the link to the independent fp64 reference, and tolerances.
#ifndef TA_TESTS_COMMON_TA_API_HELPERS_H_
#define TA_TESTS_COMMON_TA_API_HELPERS_H_

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "common/ta_test_reference.h"
#include "common/ta_test_tensor.h"
#include "taylor_attention/taylor_attention.h"

namespace tatest {

struct Shape {
  int64_t B = 1, H = 1, Nq = 1, Nk = 1, d = 4, dv = 4;
  std::string name() const {
    return "B" + std::to_string(B) + "_H" + std::to_string(H) + "_Nq" + std::to_string(Nq) + "_Nk" +
           std::to_string(Nk) + "_d" + std::to_string(d) + "_dv" + std::to_string(dv);
  }
};

// Defaults of the tests: the library's defaults, but no min_tokens guard, full heads,
// P=3 (a positive kernel), quality check off, a fixed seed.
inline ta_config test_config(int P = 3, int G = 1) {
  ta_config c;
  ta_config_defaults(&c);
  c.min_tokens = 0;
  c.P = P;
  c.sub_head_blocks = G;
  c.quality_check = 0;
  c.seed = 1234;
  return c;
}

inline RefParams params_of(const ta_config &c) {
  RefParams p;
  p.P = c.P;
  p.G = c.sub_head_blocks;
  p.normalize = c.qk_normalize != 0;
  p.scale_mul = c.scale_mul;
  p.scale = c.scale;
  p.eps = c.eps;
  p.clamp = c.fallback_on_negative == 0;
  return p;
}

struct Problem {
  Shape s;
  TestTensor q, k, v, out;
  std::optional<TestTensor> mask;
  std::vector<uint8_t> keep;  // [B*Nk] keys the mask keeps (empty: all)
  std::optional<ta_token_layout> layout;  // args.layout when set

  ta_attention_args args() const {
    ta_attention_args a{};
    a.q = q.ptr();
    a.k = k.ptr();
    a.v = v.ptr();
    a.mask = mask ? mask->ptr() : nullptr;
    a.out = out.ptr();
    a.layout = layout ? &*layout : nullptr;
    return a;
  }
};

// Contiguous q, k, v filled with N(0, std^2) in dtype, an out of the same dtype.
inline Problem make_problem(const Shape &s, ta_dtype dt, uint64_t seed, double std_dev = 0.8) {
  Problem p;
  p.s = s;
  p.q = TestTensor(dt, {s.B, s.H, s.Nq, s.d});
  p.k = TestTensor(dt, {s.B, s.H, s.Nk, s.d});
  p.v = TestTensor(dt, {s.B, s.H, s.Nk, s.dv});
  p.out = TestTensor(dt, {s.B, s.H, s.Nq, s.dv});
  Rng rng(seed);
  p.q.fill_normal(rng, std_dev);
  p.k.fill_normal(rng, std_dev);
  p.v.fill_normal(rng, 1.0);
  return p;
}

// The independent reference on the values the problem's tensors hold.
inline RefOutput reference_of(const Problem &p, const ta_config &c, RefKind kind) {
  const std::vector<double> q = p.q.dense(), k = p.k.dense(), v = p.v.dense();
  RefInput in;
  in.B = p.s.B; in.H = p.s.H; in.Nq = p.s.Nq; in.Nk = p.s.Nk; in.d = p.s.d; in.dv = p.s.dv;
  in.q = q.data(); in.k = k.data(); in.v = v.data();
  in.keep = p.keep.empty() ? nullptr : p.keep.data();
  return reference_attention(in, params_of(c), kind);
}

struct RunResult {
  ta_status status = TA_ERR_INTERNAL;
  ta_reason check_reason = TA_REASON_COUNT_;
  ta_stats stats{};
  std::string message;
};

inline bool is_runtime_reason(ta_reason r) {
  return r == TA_REASON_DENOMINATOR_TOO_SMALL || r == TA_REASON_DENOMINATOR_INVALID ||
         r == TA_REASON_NON_FINITE_OUTPUT || r == TA_REASON_OUT_OF_MEMORY;
}

// Runs one call and checks what every call must keep:
//  - out is canary-filled before; afterwards no byte outside its elements changed;
//  - q, k, v and mask buffers are unchanged;
//  - ta_attention_check agrees with ta_attention_run (a guard reason -> TA_FALLBACK with it);
//  - TA_OK: backend CPU, reason NONE, every output element finite, message "";
//  - TA_FALLBACK: backend NONE and a named reason.
inline RunResult run_checked(Problem &p, const ta_config &c, void *workspace = nullptr,
                             size_t workspace_bytes = 0) {
  RunResult r;
  p.out.fill_bytes(0xA5);
  const auto sq = p.q.snapshot(), sk = p.k.snapshot(), sv = p.v.snapshot();
  std::vector<std::byte> sm;
  if (p.mask) sm = p.mask->snapshot();
  const ta_attention_args a = p.args();
  ta_reason reason = TA_REASON_COUNT_;
  const ta_status cs = ta_attention_check(&a, &c, &reason);
  EXPECT_EQ(cs, TA_OK) << "ta_attention_check: " << ta_last_error_message();
  r.check_reason = reason;
  ta_stats_init(&r.stats);
  r.status = ta_attention_run(&a, &c, workspace, workspace_bytes, nullptr, &r.stats);
  r.message = ta_last_error_message();
  std::string where;
  EXPECT_TRUE(p.out.canaries_intact(0xA5, &where)) << "write outside out: " << where;
  EXPECT_TRUE(p.q.same_bytes(sq)) << "q buffer modified";
  EXPECT_TRUE(p.k.same_bytes(sk)) << "k buffer modified";
  EXPECT_TRUE(p.v.same_bytes(sv)) << "v buffer modified";
  if (p.mask) {
    EXPECT_TRUE(p.mask->same_bytes(sm)) << "mask buffer modified";
  }
  if (cs == TA_OK && reason != TA_REASON_NONE) {
    EXPECT_EQ(r.status, TA_FALLBACK) << "check said " << ta_reason_name(reason);
    EXPECT_EQ(r.stats.fallback_reason, reason)
        << "check said " << ta_reason_name(reason) << ", run said " << ta_reason_name(r.stats.fallback_reason);
  }
  if (r.status == TA_OK) {
    EXPECT_EQ(reason, TA_REASON_NONE);
    EXPECT_EQ(r.stats.backend, TA_BACKEND_CPU);
    EXPECT_EQ(r.stats.fallback_reason, TA_REASON_NONE);
    EXPECT_STREQ(r.message.c_str(), "") << "message after a success";
    int64_t non_finite = 0;
    p.out.for_each([&](const std::array<int64_t, 4> &, int64_t off) {
      if (!std::isfinite(p.out.get_at(off))) ++non_finite;
    });
    EXPECT_EQ(non_finite, 0) << "TA_OK with non-finite output elements";
  } else if (r.status == TA_FALLBACK) {
    EXPECT_EQ(r.stats.backend, TA_BACKEND_NONE);
    EXPECT_NE(r.stats.fallback_reason, TA_REASON_NONE);
    if (reason == TA_REASON_NONE) {
      EXPECT_TRUE(is_runtime_reason(r.stats.fallback_reason))
          << "check passed but run declined with guard reason " << ta_reason_name(r.stats.fallback_reason);
    }
  }
  return r;
}

inline const char *rname(ta_reason r) { return ta_reason_name(r); }

// Unit roundoff of the computation and storage precision of each dtype.
inline double unit_roundoff(ta_dtype dt) {
  switch (dt) {
    case TA_DTYPE_F16: return std::ldexp(1.0, -11);
    case TA_DTYPE_BF16: return std::ldexp(1.0, -8);
    case TA_DTYPE_F32: return std::ldexp(1.0, -24);
    default: return std::ldexp(1.0, -53);
  }
}

// Relative-L2 tolerance of the library output against the fp64 reference computed on the
// same (dtype-rounded) inputs.
//  - f64: 1e-9 (the state form agrees with the quadratic form to ~1e-12).
//  - f32 and below compute in fp32: the feature form sums products whose magnitudes add up to
//    err_scale (see RefOutput::err_scale: the absolute-value Taylor weights, which grow with P
//    and d because (q.k)^p is expanded into monomials of |q||k|), so fp32 rounding gives an
//    error of a small multiple of u32 * ||err_scale|| / ||out||. 32 covers the few roundings per
//    term (feature product of up to P-1 factors, coefficient, two accumulations, the division);
//    real errors average out and sit well below it, while any mistake in the function (a wrong
//    coefficient, scale or slice) is orders of magnitude above it.
//  - f16 / bf16 additionally round the output: 2 ulp of the dtype, relative (2^-9, 2^-6).
inline double rel_tolerance(ta_dtype dt, const RefOutput &ref) {
  if (dt == TA_DTYPE_F64) return 1e-9;
  const double u32 = std::ldexp(1.0, -24);
  const double cond = l2(ref.err_scale) / std::max(l2(ref.out), 1e-300);
  double tol = 32.0 * u32 * cond + 8.0 * u32;
  if (dt == TA_DTYPE_F16) tol += std::ldexp(1.0, -9);
  if (dt == TA_DTYPE_BF16) tol += std::ldexp(1.0, -6);
  return tol;
}

inline ::testing::AssertionResult close_rel_l2(const std::vector<double> &got,
                                               const std::vector<double> &want, double tol) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << "size " << got.size() << " vs " << want.size();
  for (size_t i = 0; i < got.size(); ++i)
    if (!std::isfinite(got[i])) return ::testing::AssertionFailure() << "non-finite output at " << i;
  const double e = rel_l2(got, want);
  if (e <= tol) return ::testing::AssertionSuccess() << "rel_l2 " << e << " <= " << tol;
  return ::testing::AssertionFailure() << "rel_l2 " << e << " > tol " << tol
                                       << " (max abs diff " << max_abs_diff(got, want) << ")";
}

// Bitwise equality of two outputs' elements.
inline ::testing::AssertionResult same_bits(const TestTensor &a, const TestTensor &b) {
  const auto ea = a.element_bytes(), eb = b.element_bytes();
  if (ea == eb) return ::testing::AssertionSuccess();
  size_t i = 0;
  while (i < ea.size() && i < eb.size() && ea[i] == eb[i]) ++i;
  return ::testing::AssertionFailure() << "outputs differ from byte " << i << " of " << ea.size();
}

inline std::vector<uint8_t> copy_bytes(const TestTensor &t) { return t.element_bytes(); }

// Relative comparison of a statistic.
inline ::testing::AssertionResult near_rel(double got, double want, double rel, double abs_tol = 0.0) {
  const double diff = std::fabs(got - want);
  if (diff <= rel * std::fabs(want) + abs_tol) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "got " << got << " want " << want << " (diff " << diff << ")";
}

// Key-padding mask forms the header accepts.
enum class MaskForm {
  Nk,          // [Nk]
  B_Nk,        // [B, Nk]
  One_Nk,      // [1, Nk]
  B_1_1_Nk,    // [B, 1, 1, Nk]
  One_1_1_Nk,  // [1, 1, 1, Nk]
  B_H_Nq_Nk,   // [B, H, Nq, Nk] materialised, identical over heads and queries
  B_1_Nq_Nk,   // [B, 1, Nq, Nk]
  One_H_1_Nk,  // [1, H, 1, Nk]
  B_1_Nk,      // 3-D [B, 1, Nk]
  One_Nq_Nk,   // 3-D [1, Nq, Nk]
  B_Nq_Nk      // 3-D [B, Nq, Nk]
};

inline const char *mask_form_name(MaskForm f) {
  switch (f) {
    case MaskForm::Nk: return "Nk";
    case MaskForm::B_Nk: return "B_Nk";
    case MaskForm::One_Nk: return "1_Nk";
    case MaskForm::B_1_1_Nk: return "B_1_1_Nk";
    case MaskForm::One_1_1_Nk: return "1_1_1_Nk";
    case MaskForm::B_H_Nq_Nk: return "B_H_Nq_Nk";
    case MaskForm::B_1_Nq_Nk: return "B_1_Nq_Nk";
    case MaskForm::One_H_1_Nk: return "1_H_1_Nk";
    case MaskForm::B_1_Nk: return "B_1_Nk";
    case MaskForm::One_Nq_Nk: return "1_Nq_Nk";
    case MaskForm::B_Nq_Nk: return "B_Nq_Nk";
  }
  return "?";
}

inline void PrintTo(MaskForm f, std::ostream *os) { *os << mask_form_name(f); }

// True when the form has no batch dimension (the keep pattern must be batch-independent).
inline bool mask_form_batch_shared(MaskForm f) {
  return f == MaskForm::Nk || f == MaskForm::One_Nk || f == MaskForm::One_1_1_Nk ||
         f == MaskForm::One_H_1_Nk || f == MaskForm::One_Nq_Nk;
}

inline std::vector<int64_t> mask_shape(MaskForm f, const Shape &s) {
  switch (f) {
    case MaskForm::Nk: return {s.Nk};
    case MaskForm::B_Nk: return {s.B, s.Nk};
    case MaskForm::One_Nk: return {1, s.Nk};
    case MaskForm::B_1_1_Nk: return {s.B, 1, 1, s.Nk};
    case MaskForm::One_1_1_Nk: return {1, 1, 1, s.Nk};
    case MaskForm::B_H_Nq_Nk: return {s.B, s.H, s.Nq, s.Nk};
    case MaskForm::B_1_Nq_Nk: return {s.B, 1, s.Nq, s.Nk};
    case MaskForm::One_H_1_Nk: return {1, s.H, 1, s.Nk};
    case MaskForm::B_1_Nk: return {s.B, 1, s.Nk};
    case MaskForm::One_Nq_Nk: return {1, s.Nq, s.Nk};
    case MaskForm::B_Nq_Nk: return {s.B, s.Nq, s.Nk};
  }
  return {};
}

// Blocking values of a float mask in each dtype (all <= -1e4 once stored; bf16 cannot hold
// -1e4 itself: it rounds to -9984, which is not a blocking value).
inline std::vector<double> blocking_values(ta_dtype dt) {
  const double inf = std::numeric_limits<double>::infinity();
  switch (dt) {
    case TA_DTYPE_F16: return {-inf, -1e4, -65504.0};
    case TA_DTYPE_BF16: return {-inf, -1e30, -3e38};
    default: return {-inf, -1e4, -1e9};
  }
}

// A mask tensor of the given form holding `keep` ([B*Nk]; row 0 for batch-shared forms):
// bool masks store 1 (or other nonzero bytes) for attend, float masks 0 / blocking values.
inline TestTensor make_mask(MaskForm f, ta_dtype dt, const Shape &s, const std::vector<uint8_t> &keep) {
  TestTensor m(dt, mask_shape(f, s));
  const auto blk = blocking_values(dt);
  const size_t nd = m.shape().size();
  int64_t n = 0;
  m.for_each([&](const std::array<int64_t, 4> &idx, int64_t off) {
    const int64_t j = idx[nd - 1];
    const int64_t b = (nd >= 2 && m.shape()[0] == s.B && !mask_form_batch_shared(f)) ? idx[0] : 0;
    const bool k = keep[static_cast<size_t>(b * s.Nk + j)] != 0;
    if (dt == TA_DTYPE_BOOL)
      m.set_at(off, k ? static_cast<double>(1 + (n % 3) * 60) : 0.0);  // 1, 61, 121: any nonzero attends
    else
      m.set_at(off, k ? 0.0 : blk[static_cast<size_t>(n % static_cast<int64_t>(blk.size()))]);
    ++n;
  });
  return m;
}

}  // namespace tatest

#endif  // TA_TESTS_COMMON_TA_API_HELPERS_H_
