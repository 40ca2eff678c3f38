// workload.cpp - see workload.h.
#include "workload.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <system_error>
#include <thread>

namespace ta_cli {
namespace {

// Independent streams per purpose, so adding draws to one never shifts another.
uint64_t mix_seed(uint64_t seed, uint64_t stream) {
  return seed * 0x9e3779b97f4a7c15ull + stream * 0xd1b54a32d192ed03ull + 0x632be59bd9b4e019ull;
}

void fill_normal(std::vector<double> *out, size_t n, double stddev, Rng &rng) {
  out->resize(n);
  for (double &x : *out) x = stddev * rng.normal();
}

}  // namespace


Qkv gaussian_qkv(int64_t batch, int64_t heads, int64_t tokens, int64_t head_dim, double spread,
                 uint64_t seed) {
  Qkv w;
  w.batch = batch;
  w.heads = heads;
  w.tokens = tokens;
  w.head_dim = head_dim;
  w.value_dim = head_dim;
  size_t n = static_cast<size_t>(batch * heads * tokens * head_dim);
  double sigma = std::sqrt(spread);
  Rng rq(mix_seed(seed, 1)), rk(mix_seed(seed, 2)), rv(mix_seed(seed, 3));
  fill_normal(&w.q, n, sigma, rq);
  fill_normal(&w.k, n, sigma, rk);
  fill_normal(&w.v, n, 1.0, rv);
  return w;
}

Qkv aligned_qkv(int64_t batch, int64_t heads, int64_t tokens, int64_t head_dim, double spread,
                uint64_t seed) {
  Qkv w = gaussian_qkv(batch, heads, tokens, head_dim, spread, seed);
  Rng noise(mix_seed(seed, 4));
  double sigma = std::sqrt(spread);
  for (size_t i = 0; i < w.q.size(); ++i) w.q[i] = w.k[i] + sigma * noise.normal();
  return w;
}

bool flux_qkv(const ta_workload_params &params, int64_t heads, int64_t head_dim, Qkv *out,
              std::string *error) {
  AttentionCall call;
  if (!load_flux_call(params, 1, heads, head_dim, TA_DTYPE_F64, &call, error)) return false;
  Qkv w;
  w.batch = 1;
  w.heads = heads;
  w.tokens = call.q.shape[2];
  w.head_dim = head_dim;
  w.value_dim = head_dim;
  auto doubles = [](const HostArray &a) {
    std::vector<double> v(static_cast<size_t>(a.numel()));
    std::memcpy(v.data(), a.bytes.data(), v.size() * sizeof(double));
    return v;
  };
  w.q = doubles(call.q);
  w.k = doubles(call.k);
  w.v = doubles(call.v);
  *out = std::move(w);
  return true;
}

namespace {

// Shared by both overloads: q(g, i, c) and k(g, j, c) read element c of token i / j in
// (batch, head) group g.
template <class Q, class K>
double score_std(int64_t groups, int64_t n, int64_t d, Q q, K k, double scale, int64_t pairs,
                 uint64_t seed) {
  if (n == 0 || groups == 0 || pairs <= 0) return 0.0;
  Rng rng(mix_seed(seed, 20));
  double sum = 0.0, sum2 = 0.0;
  for (int64_t p = 0; p < pairs; ++p) {
    int64_t g = static_cast<int64_t>(rng.next_u64() % static_cast<uint64_t>(groups));
    int64_t i = static_cast<int64_t>(rng.next_u64() % static_cast<uint64_t>(n));
    int64_t j = static_cast<int64_t>(rng.next_u64() % static_cast<uint64_t>(n));
    double s = 0.0;
    for (int64_t c = 0; c < d; ++c) s += q(g, i, c) * k(g, j, c);
    s *= scale;
    sum += s;
    sum2 += s * s;
  }
  double mean = sum / static_cast<double>(pairs);
  return std::sqrt(std::max(0.0, sum2 / static_cast<double>(pairs) - mean * mean));
}

}  // namespace

double measured_score_std(const Qkv &qkv, double scale, int64_t pairs, uint64_t seed) {
  const int64_t n = qkv.tokens, d = qkv.head_dim;
  auto at = [n, d](const std::vector<double> &x) {
    return [&x, n, d](int64_t g, int64_t i, int64_t c) {
      return x[static_cast<size_t>((g * n + i) * d + c)];
    };
  };
  return score_std(qkv.batch * qkv.heads, n, d, at(qkv.q), at(qkv.k), scale, pairs, seed);
}

double measured_score_std(const HostArray &q, const HostArray &k, double scale, int64_t pairs,
                          uint64_t seed) {
  const int64_t n = q.shape[2], d = q.shape[3];
  auto at = [n, d](const HostArray &x) {
    return [&x, n, d](int64_t g, int64_t i, int64_t c) { return x.get((g * n + i) * d + c); };
  };
  return score_std(q.shape[0] * q.shape[1], n, d, at(q), at(k), scale, pairs, seed);
}

const ta_attention_args *AttentionCall::prepare() {
  return bind_call_args(*this);
}

void load_call(const Qkv &qkv, ta_dtype dtype, AttentionCall *call) {
  call->q = make_array(dtype, qkv.qk_shape(), qkv.q);
  call->k = make_array(dtype, qkv.qk_shape(), qkv.k);
  call->v = make_array(dtype, qkv.v_shape(), qkv.v);
  call->out = make_array(dtype, qkv.v_shape());
  call->mask.reset();
  call->prepare();
}

bool load_flux_call(const ta_workload_params &params, int64_t batch, int64_t heads,
                    int64_t head_dim, ta_dtype dtype, AttentionCall *call, std::string *error) {
  int64_t tokens = params.layout.text_tokens;
  for (int g = 0; g < params.layout.num_grids && g < TA_MAX_GRIDS; ++g) {
    tokens += params.layout.grid_height[g] * params.layout.grid_width[g];
  }
  const std::vector<int64_t> shape = {batch, heads, tokens, head_dim};
  call->q = make_array(dtype, shape);
  call->k = make_array(dtype, shape);
  call->v = make_array(dtype, shape);
  call->out = make_array(dtype, shape);
  call->mask.reset();
  call->layout = params.layout;
  const ta_tensor tq = call->q.tensor(), tk = call->k.tensor(), tv = call->v.tensor();
  const ta_status st = ta_workload_generate(&params, &tq, &tk, &tv);
  if (st != TA_OK) {
    *error = std::string("ta_workload_generate: ") + ta_status_string(st) + ": " +
             ta_last_error_message();
    return false;
  }
  call->prepare();
  return true;
}

void load_gaussian_call(int64_t batch, int64_t heads, int64_t tokens, int64_t head_dim,
                        double spread, uint64_t seed, ta_dtype dtype, AttentionCall *call) {
  const std::vector<int64_t> shape = {batch, heads, tokens, head_dim};
  call->q = make_array(dtype, shape);
  call->k = make_array(dtype, shape);
  call->v = make_array(dtype, shape);
  call->out = make_array(dtype, shape);
  call->mask.reset();
  // The streams and draws of gaussian_qkv: q and k ~ N(0, spread), v ~ N(0, 1).
  const double sigma = std::sqrt(spread);
  auto fill = [](HostArray *a, double stddev, uint64_t stream_seed) {
    Rng rng(stream_seed);
    const int64_t n = a->numel();
    for (int64_t i = 0; i < n; ++i) a->set(i, stddev * rng.normal());
  };
  // k and v on helper threads when they can be started; whatever could not runs here.
  std::vector<std::thread> helpers;
  try {
    helpers.emplace_back(fill, &call->k, sigma, mix_seed(seed, 2));
    helpers.emplace_back(fill, &call->v, 1.0, mix_seed(seed, 3));
  } catch (const std::system_error &) {
  }
  if (helpers.size() < 1) fill(&call->k, sigma, mix_seed(seed, 2));
  if (helpers.size() < 2) fill(&call->v, 1.0, mix_seed(seed, 3));
  fill(&call->q, sigma, mix_seed(seed, 1));
  for (std::thread &t : helpers) t.join();
  call->prepare();
}

}  // namespace ta_cli
