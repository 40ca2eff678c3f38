// workload.h - seeded synthetic attention inputs shared by check, bench and demo.
//
// Everything is generated in double with a private generator (splitmix64 + Box-Muller)
// rather than <random>'s distributions, whose output differs between standard libraries:
// the same seed gives the same numbers on every platform, so a reported case can be rerun.
#ifndef TAYLOR_ATTN_WORKLOAD_H_
#define TAYLOR_ATTN_WORKLOAD_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "host_array.h"
#include "taylor_attention/taylor_attention.h"
#include "workload/synthetic.h"

namespace ta_cli {

// The library's generator (splitmix64 + Box-Muller), so the CLI's workloads and
// ta_workload_generate draw numbers the same way on every platform.
using Rng = ta::workload::Rng;

// q, k [B,H,N,D], v [B,H,N,DV], row-major doubles.
struct Qkv {
  int64_t batch = 1, heads = 1, tokens = 0, head_dim = 0, value_dim = 0;
  std::vector<double> q, k, v;

  std::vector<int64_t> qk_shape() const { return {batch, heads, tokens, head_dim}; }
  std::vector<int64_t> v_shape() const { return {batch, heads, tokens, value_dim}; }
};

// q, k ~ N(0, spread) elementwise, so scale * q.k with scale = d^-1/2 has standard deviation
// `spread` (std(q.k) = sigma^2 sqrt(d) with sigma^2 = spread); v ~ N(0, 1).
Qkv gaussian_qkv(int64_t batch, int64_t heads, int64_t tokens, int64_t head_dim, double spread,
                 uint64_t seed);

// "Peaky" inputs: k as in gaussian_qkv, q_i = k_i + noise of the same size, so every query
// scores its own key far above the rest (self score ~ spread * sqrt(d)).
Qkv aligned_qkv(int64_t batch, int64_t heads, int64_t tokens, int64_t head_dim, double spread,
                uint64_t seed);

// The library's synthetic image-like workload (ta_workload_generate: smooth content on the
// layout's grids, QK RMSNorm, Flux's 3-axis RoPE; see taylor_attention.h), batch 1, in
// doubles: q, k [1,H,N,d] and v [1,H,N,d], N from params.layout. False with the library's
// message when it rejects the parameters.
bool flux_qkv(const ta_workload_params &params, int64_t heads, int64_t head_dim, Qkv *out,
              std::string *error);

// Standard deviation of scale * q_i . k_j over `pairs` random (i, j) pairs of the same
// batch and head: the "score spread" the accuracy tables in MATH.md are organised by.
double measured_score_std(const Qkv &qkv, double scale, int64_t pairs, uint64_t seed);
// The same for q, k host arrays [B,H,N,D] (any dtype).
double measured_score_std(const HostArray &q, const HostArray &k, double scale, int64_t pairs,
                          uint64_t seed);

// q, k, v as host arrays of one dtype plus an output array, and the ta_tensor views and
// ta_attention_args pointing at them. Not copyable: the views point into the arrays.
struct AttentionCall {
  HostArray q, k, v, out;
  std::optional<HostArray> mask;
  std::optional<ta_token_layout> layout;  // args.layout (the local-exact hybrid) when set
  ta_tensor tq{}, tk{}, tv{}, tout{}, tmask{};
  ta_attention_args args{};

  AttentionCall() = default;
  AttentionCall(const AttentionCall &) = delete;
  AttentionCall &operator=(const AttentionCall &) = delete;

  // Refreshes the views and args; call after filling the arrays and before each use.
  const ta_attention_args *prepare();
};

// Points call.args at fresh views of call's arrays; shared by AttentionCall (host arrays)
// and DeviceAttentionCall (device arrays), whose members have the same names.
template <class Call>
const ta_attention_args *bind_call_args(Call &call) {
  call.tq = call.q.tensor();
  call.tk = call.k.tensor();
  call.tv = call.v.tensor();
  call.tout = call.out.tensor();
  call.args.q = &call.tq;
  call.args.k = &call.tk;
  call.args.v = &call.tv;
  call.args.out = &call.tout;
  call.args.mask = nullptr;
  if (call.mask) {
    call.tmask = call.mask->tensor();
    call.args.mask = &call.tmask;
  }
  call.args.layout = call.layout ? &*call.layout : nullptr;
  return &call.args;
}

// Fills call->q/k/v from the workload in `dtype` and allocates out [B,H,N,DV] in `dtype`.
void load_call(const Qkv &qkv, ta_dtype dtype, AttentionCall *call);

// The library's synthetic workload (as flux_qkv, any batch) written straight into q, k, v
// of `dtype` (dv = head_dim), out allocated, call->layout set to params.layout. For bench
// sizes (24 heads at N = 66048) where doubles would not fit. False with the library's
// message when it rejects the parameters.
bool load_flux_call(const ta_workload_params &params, int64_t batch, int64_t heads,
                    int64_t head_dim, ta_dtype dtype, AttentionCall *call, std::string *error);

// load_call(gaussian_qkv(batch, heads, tokens, head_dim, spread, seed), dtype, call) without
// the double copies: the same numbers, written straight into arrays of `dtype` (q, k and v on
// three threads, one generator stream each). For bench sizes such as 24 heads at N = 66048,
// where the doubles alone would take 4.9 GB.
void load_gaussian_call(int64_t batch, int64_t heads, int64_t tokens, int64_t head_dim,
                        double spread, uint64_t seed, ta_dtype dtype, AttentionCall *call);

}  // namespace ta_cli

#endif  // TAYLOR_ATTN_WORKLOAD_H_
