// workload.cpp - see workload.h.
#include "workload.h"

#include <algorithm>
#include <cmath>
#include <system_error>
#include <thread>

namespace ta_cli {
namespace {

constexpr double kTwoPi = 6.283185307179586476925286766559;

// Independent streams per purpose, so adding draws to one never shifts another.
uint64_t mix_seed(uint64_t seed, uint64_t stream) {
  return seed * 0x9e3779b97f4a7c15ull + stream * 0xd1b54a32d192ed03ull + 0x632be59bd9b4e019ull;
}

void fill_normal(std::vector<double> *out, size_t n, double stddev, Rng &rng) {
  out->resize(n);
  for (double &x : *out) x = stddev * rng.normal();
}

}  // namespace

uint64_t Rng::next_u64() {
  // splitmix64 (Steele, Lea, Flood 2014): passes BigCrush, trivially seedable.
  uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

double Rng::uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

double Rng::normal() {
  if (spare_) {
    double v = *spare_;
    spare_.reset();
    return v;
  }
  double u1 = uniform();
  double u2 = uniform();
  double r = std::sqrt(-2.0 * std::log(1.0 - u1));  // 1 - u1 in (0, 1]: log is finite
  spare_ = r * std::sin(kTwoPi * u2);
  return r * std::cos(kTwoPi * u2);
}

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

Qkv flux_like_qkv(int64_t heads, const FluxLikeShape &shape, uint64_t seed) {
  // Hidden content: `channels` smooth fields on the grid, each a sum of `waves` plane waves
  // of at most `max_freq` cycles per side; text tokens get random hidden vectors.
  constexpr int kChannels = 32;
  constexpr int kWaves = 3;
  constexpr int kMaxFreq = 3;
  // Per-token noise relative to the projected content (before RMSNorm). 1.0 puts the
  // measured score std at 1.42 (seed 0), near the 1.4 of MATH.md section 6; 0.6 gave 1.74.
  // The demo prints the measured value.
  constexpr double kNoise = 1.0;
  // k's projection shares this much of q's, so q_i . k_j is large for similar content:
  // attention is local on the grid, as in real image models.
  constexpr double kQkShared = 0.8;

  const int64_t d = shape.head_dim;
  const int64_t image = shape.grid * shape.grid;
  const int64_t n = shape.text_tokens + image;
  Qkv w;
  w.batch = 1;
  w.heads = heads;
  w.tokens = n;
  w.head_dim = d;
  w.value_dim = d;
  w.q.assign(static_cast<size_t>(heads * n * d), 0.0);
  w.k.assign(w.q.size(), 0.0);
  w.v.assign(w.q.size(), 0.0);

  Rng content(mix_seed(seed, 10));
  std::vector<double> hidden(static_cast<size_t>(n * kChannels));
  for (int64_t t = 0; t < shape.text_tokens; ++t) {
    for (int c = 0; c < kChannels; ++c) {
      hidden[static_cast<size_t>(t * kChannels + c)] = content.normal();
    }
  }
  for (int c = 0; c < kChannels; ++c) {
    for (int wave = 0; wave < kWaves; ++wave) {
      auto freq = [&] {
        int64_t f = static_cast<int64_t>(content.next_u64() % (2 * kMaxFreq + 1)) - kMaxFreq;
        return static_cast<double>(f);
      };
      double fx = freq(), fy = freq();
      double phase = kTwoPi * content.uniform();
      // sqrt(2 / waves): each channel has unit variance over the grid.
      double amp = std::sqrt(2.0 / kWaves);
      for (int64_t y = 0; y < shape.grid; ++y) {
        for (int64_t x = 0; x < shape.grid; ++x) {
          double arg = kTwoPi * (fx * static_cast<double>(x) + fy * static_cast<double>(y)) /
                           static_cast<double>(shape.grid) +
                       phase;
          int64_t t = shape.text_tokens + y * shape.grid + x;
          hidden[static_cast<size_t>(t * kChannels + c)] += amp * std::sin(arg);
        }
      }
    }
  }

  Rng proj(mix_seed(seed, 11));
  Rng noise(mix_seed(seed, 12));
  const double wscale = 1.0 / std::sqrt(static_cast<double>(kChannels));
  std::vector<double> wq(static_cast<size_t>(d * kChannels)), wk(wq.size()), wv(wq.size());
  for (int64_t h = 0; h < heads; ++h) {
    for (size_t i = 0; i < wq.size(); ++i) {
      wq[i] = wscale * proj.normal();
      wk[i] = kQkShared * wq[i] + std::sqrt(1.0 - kQkShared * kQkShared) * wscale * proj.normal();
      wv[i] = wscale * proj.normal();
    }
    for (int64_t t = 0; t < n; ++t) {
      const double *hid = &hidden[static_cast<size_t>(t * kChannels)];
      size_t row = static_cast<size_t>((h * n + t) * d);
      double qq = 0.0, kk = 0.0;
      for (int64_t j = 0; j < d; ++j) {
        double sq = 0.0, sk = 0.0, sv = 0.0;
        for (int c = 0; c < kChannels; ++c) {
          size_t wi = static_cast<size_t>(j * kChannels + c);
          sq += wq[wi] * hid[c];
          sk += wk[wi] * hid[c];
          sv += wv[wi] * hid[c];
        }
        sq += kNoise * noise.normal();
        sk += kNoise * noise.normal();
        sv += kNoise * noise.normal();
        w.q[row + static_cast<size_t>(j)] = sq;
        w.k[row + static_cast<size_t>(j)] = sk;
        w.v[row + static_cast<size_t>(j)] = sv;
        qq += sq * sq;
        kk += sk * sk;
      }
      // RMSNorm with unit gain: x * sqrt(d) / ||x||.
      double fq = std::sqrt(static_cast<double>(d) / qq);
      double fk = std::sqrt(static_cast<double>(d) / kk);
      for (int64_t j = 0; j < d; ++j) {
        w.q[row + static_cast<size_t>(j)] *= fq;
        w.k[row + static_cast<size_t>(j)] *= fk;
      }
    }
  }
  return w;
}

double measured_score_std(const Qkv &qkv, double scale, int64_t pairs, uint64_t seed) {
  if (qkv.tokens == 0 || pairs <= 0) return 0.0;
  Rng rng(mix_seed(seed, 20));
  const int64_t groups = qkv.batch * qkv.heads;
  const int64_t n = qkv.tokens, d = qkv.head_dim;
  double sum = 0.0, sum2 = 0.0;
  for (int64_t p = 0; p < pairs; ++p) {
    int64_t g = static_cast<int64_t>(rng.next_u64() % static_cast<uint64_t>(groups));
    int64_t i = static_cast<int64_t>(rng.next_u64() % static_cast<uint64_t>(n));
    int64_t j = static_cast<int64_t>(rng.next_u64() % static_cast<uint64_t>(n));
    const double *q = &qkv.q[static_cast<size_t>((g * n + i) * d)];
    const double *k = &qkv.k[static_cast<size_t>((g * n + j) * d)];
    double s = 0.0;
    for (int64_t c = 0; c < d; ++c) s += q[c] * k[c];
    s *= scale;
    sum += s;
    sum2 += s * s;
  }
  double mean = sum / static_cast<double>(pairs);
  return std::sqrt(std::max(0.0, sum2 / static_cast<double>(pairs) - mean * mean));
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
