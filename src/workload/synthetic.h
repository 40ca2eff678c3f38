// The synthetic image-like workload behind ta_workload_generate: a Flux-shaped attention
// call with known structure (smooth image content, QK RMSNorm, 3-axis RoPE), used by
// tests, the CLI and the benchmarks to measure the approximation where it matters.
//
// What is generated, for q, k [B,H,N,d] and v [B,H,N,dv], N = text + sum_g h_g * w_g:
//
// 1. Hidden content, kChannels values per token, one draw per batch index b:
//    - text tokens (the first layout.text_tokens): i.i.d. N(0, 1) per channel;
//    - grid g (h x w, row-major after the text and the earlier grids): per channel, i.i.d.
//      N(0, 1) noise on the grid, blurred with a separable Gaussian of standard deviation
//      `smoothness` tokens (truncated at kBlurSigmas sigmas; at the edges divided by the sum
//      of the kernel weights that fell inside the grid), then standardised over the grid:
//      minus its mean, divided by its standard deviation (zero mean and unit variance, like
//      the text tokens; a channel with no variance left beyond rounding, e.g. a 1x1 grid,
//      is left as blurred).
// 2. Projections per (b, h), entries N(0, 1/kChannels): Wq, Wk_indep [kChannels x d] and
//    Wv [kChannels x dv]; Wk = alignment * Wq + sqrt(1 - alignment^2) * Wk_indep.
//    q = content Wq, k = content Wk, v = content Wv.
// 3. q and k: RMSNorm per token vector, x / sqrt(mean(x^2) + kRmsNormEps) (so |q| = |k| =
//    sqrt(d) up to the epsilon), times `gain`. v is left as projected.
// 4. RoPE (rope = 1) on q and k, Flux style (rope_axes, apply_rope): text tokens sit at
//    position (0, 0, 0), token (y, x) of grid g at (g, y, x).
//
// Randomness: splitmix64 + Box-Muller (Rng below), identical on every platform, with one
// independent stream per purpose (stream_seed): the content of batch b draws text tokens
// token-major (channel fastest), then for each grid, channel by channel, its h x w noise
// row-major; the projections of (b, h) draw Wq, Wk_indep, Wv row-major (output dim
// fastest). Everything is computed in double and rounded once into the output dtype.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "taylor_attention/taylor_attention.h"

namespace ta::workload {

constexpr int64_t kChannels = 64;      // hidden content values per token
constexpr double kBlurSigmas = 3.0;    // Gaussian kernel truncated at this many sigmas
constexpr double kRmsNormEps = 1e-6;   // Flux's QK RMSNorm epsilon
constexpr double kRopeTheta = 10000.0; // Flux's RoPE base

// The defaults of ta_workload_defaults, kept here so retuning them is one edit:
// 256 text tokens + one 64x64 grid (N = 4352), smoothness 3, gain 1, alignment 0.7,
// rope on, seed 0.
ta_workload_params default_params();

// splitmix64 (Steele, Lea, Flood 2014) + Box-Muller: the same numbers everywhere, unlike
// <random>'s distributions.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next_u64();
  double uniform();  // [0, 1)
  double normal();   // N(0, 1)

 private:
  uint64_t state_;
  double spare_ = 0.0;
  bool has_spare_ = false;
};

// Purposes of the random streams (part of the stream seed: never renumber).
enum class Stream : uint64_t { Content = 1, Projection = 2 };

// Seed of the stream for (purpose, a, b) under the user's seed: a hash, so streams of
// neighbouring indices or seeds are unrelated.
uint64_t stream_seed(uint64_t seed, Stream purpose, uint64_t a, uint64_t b);

// Widths of the three RoPE axis blocks of a d-dim head, Flux's split scaled to d:
// a0 = 2 floor(d/16), a1 = 2 floor((d - a0)/4), a2 = d - a0 - a1 (d = 128: 16, 56, 56).
std::array<int64_t, 3> rope_axes(int64_t d);

// Position (axis 0, 1, 2) of token t under the layout: (0, 0, 0) for text tokens,
// (g, y, x) for token (y, x) of grid g. t must be < the layout's token count.
std::array<int64_t, 3> token_position(const ta_token_layout& layout, int64_t t);

// Rotates x[0..d) in place (d even): within axis block k (dims [start_k, start_k + a_k)),
// pair (2i, 2i+1) for i < a_k/2 turns by angle pos[k] * theta^(-2i/a_k):
//   x'_2i = x_2i cos - x_2i+1 sin,  x'_2i+1 = x_2i sin + x_2i+1 cos.
// Positions may be negative (a rotation by -p undoes one by p).
void apply_rope(double* x, int64_t d, const std::array<int64_t, 3>& pos);

// The hidden content of batch b: [N][kChannels] row-major (step 1 above). Uses up to
// `workers` threads for the blur.
std::vector<double> batch_content(const ta_token_layout& layout, double smoothness, uint64_t seed, int64_t b,
                                  int workers);

// Fills q, k, v (step 1-4). Arguments must have been checked (c_api_workload.cpp):
// CPU float tensors, shapes [B,H,N,d] / [B,H,N,dv] with N the layout's count, d even
// when rope is on, non-negative strides, no two elements at one address.
void generate(const ta_workload_params& params, const ta_tensor& q, const ta_tensor& k, const ta_tensor& v,
              int workers);

}  // namespace ta::workload
