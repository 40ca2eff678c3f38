// The CPU state form against the quadratic Taylor form (both through the C API) in
// fp64 on awkward shapes: they are the same function, so they agree to rounding.
#include <gtest/gtest.h>

#include <cmath>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "taylor_attention/taylor_attention.h"

namespace {

struct Case {
  int64_t B, H, Nq, Nk, d, dv;
  int32_t P, G;
  bool normalize;
  bool strided;  // q, k, v as [B,N,H,D] buffers viewed as [B,H,N,D]; v padded
};

std::string name_of(const Case& c) {
  return "B" + std::to_string(c.B) + "_H" + std::to_string(c.H) + "_Nq" + std::to_string(c.Nq) + "_Nk" +
         std::to_string(c.Nk) + "_d" + std::to_string(c.d) + "_dv" + std::to_string(c.dv) + "_P" +
         std::to_string(c.P) + "_G" + std::to_string(c.G) + (c.normalize ? "_norm" : "") +
         (c.strided ? "_strided" : "");
}

// A [B,H,N,D] view; when strided the memory is [B,N,H,Dpad] (ComfyUI's [B,N,H*D]).
struct Operand {
  std::vector<double> data;
  ta_tensor t{};
  Operand(int64_t B, int64_t H, int64_t N, int64_t D, bool strided, double stddev, std::mt19937_64& rng) {
    const int64_t pad = strided ? D + 3 : D;
    data.assign(static_cast<size_t>(B * H * N * pad), std::nan(""));  // padding stays NaN: must never be read
    // stddev 0 (outputs, overwritten by the calls) fills zeros: normal_distribution
    // requires stddev > 0 (libstdc++ asserts it under _GLIBCXX_ASSERTIONS).
    std::normal_distribution<double> dist(0.0, stddev > 0 ? stddev : 1.0);
    t.data = data.data();
    t.dtype = TA_DTYPE_F64;
    t.device = TA_DEVICE_CPU;
    t.ndim = 4;
    t.shape[0] = B, t.shape[1] = H, t.shape[2] = N, t.shape[3] = D;
    if (strided) {
      t.strides[0] = N * H * pad, t.strides[1] = pad, t.strides[2] = H * pad, t.strides[3] = 1;
    } else {
      t.strides[0] = H * N * D, t.strides[1] = N * D, t.strides[2] = D, t.strides[3] = 1;
    }
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t n = 0; n < N; ++n)
          for (int64_t c = 0; c < D; ++c)
            data[static_cast<size_t>(b * t.strides[0] + h * t.strides[1] + n * t.strides[2] + c)] =
                stddev > 0 ? dist(rng) : 0.0;
  }
};

void PrintTo(const Case& c, std::ostream* os) { *os << name_of(c); }

class StateVsQuadratic : public ::testing::TestWithParam<Case> {};

TEST_P(StateVsQuadratic, AgreeInFp64) {
  const Case c = GetParam();
  std::mt19937_64 rng(1234 + static_cast<uint64_t>(c.Nq * 31 + c.d));
  // Inputs of unit norm-ish so scores stay O(1) and P odd keeps denominators positive.
  Operand q(c.B, c.H, c.Nq, c.d, c.strided, 1.0, rng);
  Operand k(c.B, c.H, c.Nk, c.d, c.strided, 1.0, rng);
  Operand v(c.B, c.H, c.Nk, c.dv, c.strided, 1.0, rng);
  Operand fast(c.B, c.H, c.Nq, c.dv, false, 0.0, rng);
  Operand ref(c.B, c.H, c.Nq, c.dv, false, 0.0, rng);
  ta_config cfg;
  ta_config_defaults(&cfg);
  cfg.P = c.P;
  cfg.sub_head_blocks = c.G;
  cfg.qk_normalize = c.normalize;
  cfg.min_tokens = 0;
  cfg.fallback_on_negative = 0;
  cfg.max_feature_dim_R = 1 << 30;
  cfg.max_head_dim = 1 << 20;
  cfg.block_size_q = 7;  // awkward blocks: partial tails everywhere
  cfg.block_size_k = 5;
  ta_attention_args args{&q.t, &k.t, &v.t, nullptr, &fast.t};
  ta_stats stats;
  ta_stats_init(&stats);
  ASSERT_EQ(ta_attention_run(&args, &cfg, nullptr, 0, nullptr, &stats), TA_OK) << ta_last_error_message();
  ASSERT_GT(stats.denom_min, cfg.eps) << "the test needs unclamped denominators";
  args.out = &ref.t;
  ASSERT_EQ(ta_reference_attention(&args, &cfg, TA_REFERENCE_TAYLOR_QUADRATIC), TA_OK) << ta_last_error_message();
  double diff = 0, norm = 0;
  for (size_t i = 0; i < fast.data.size(); ++i) {
    diff += (fast.data[i] - ref.data[i]) * (fast.data[i] - ref.data[i]);
    norm += ref.data[i] * ref.data[i];
  }
  // Sums of up to R*Nk fp64 terms of size O(1): rounding stays near 1e-14.
  EXPECT_LT(std::sqrt(diff / norm), 1e-12);
}

INSTANTIATE_TEST_SUITE_P(
    AwkwardShapes, StateVsQuadratic,
    ::testing::Values(Case{1, 1, 1, 1, 3, 3, 3, 1, false, false}, Case{1, 2, 97, 97, 3, 5, 5, 1, false, false},
                      Case{2, 3, 97, 64, 6, 4, 3, 2, false, true}, Case{1, 1, 1025, 1025, 3, 2, 3, 1, false, false},
                      Case{1, 2, 33, 50, 59, 17, 3, 1, true, true}, Case{1, 1, 40, 40, 128, 128, 2, 1, false, false},
                      Case{1, 1, 20, 30, 128, 64, 3, 4, true, false}, Case{2, 1, 13, 9, 8, 8, 4, 2, true, true}),
    [](const auto& info) { return name_of(info.param); });

}  // namespace
