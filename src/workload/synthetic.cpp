#include "workload/synthetic.h"

#include <algorithm>
#include <cmath>
#include <memory>

#include "core/dtype.h"
#include "core/parallel.h"

namespace ta::workload {
namespace {

constexpr double kTwoPi = 6.283185307179586476925286766559;

uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Frequency of pair i in an axis block of width n: theta^(-2i/n). One expression shared by
// apply_rope and the table of generate(), so both rotate by bit-identical angles.
double rope_frequency(int64_t i, int64_t n) {
  return std::pow(kRopeTheta, -2.0 * static_cast<double>(i) / static_cast<double>(n));
}

// cos and sin of every angle generate() needs: per axis, per position value (0 .. count-1),
// per pair. Positions are small integers (grid index, row, column), so a table replaces
// two transcendental calls per pair and token.
struct RopeTable {
  std::array<int64_t, 3> width{}, start{}, count{};
  std::array<std::vector<double>, 3> cos_sin;  // [position][pair][2]

  RopeTable(const ta_token_layout& layout, int64_t d) {
    width = rope_axes(d);
    start = {0, width[0], width[0] + width[1]};
    count = {1, 1, 1};
    count[0] = std::max<int64_t>(1, layout.num_grids);
    for (int g = 0; g < layout.num_grids; ++g) {
      count[1] = std::max(count[1], layout.grid_height[g]);
      count[2] = std::max(count[2], layout.grid_width[g]);
    }
    for (int a = 0; a < 3; ++a) {
      const int64_t pairs = width[a] / 2;
      auto& table = cos_sin[static_cast<size_t>(a)];
      table.resize(static_cast<size_t>(count[a] * pairs * 2));
      for (int64_t i = 0; i < pairs; ++i) {
        const double freq = rope_frequency(i, width[a]);
        for (int64_t p = 0; p < count[a]; ++p) {
          const double angle = static_cast<double>(p) * freq;
          table[static_cast<size_t>((p * pairs + i) * 2)] = std::cos(angle);
          table[static_cast<size_t>((p * pairs + i) * 2 + 1)] = std::sin(angle);
        }
      }
    }
  }

  void apply(double* x, const std::array<int64_t, 3>& pos) const {
    for (int a = 0; a < 3; ++a) {
      const int64_t pairs = width[a] / 2;
      const double* cs = cos_sin[static_cast<size_t>(a)].data() + pos[static_cast<size_t>(a)] * pairs * 2;
      double* block = x + start[a];
      for (int64_t i = 0; i < pairs; ++i) {
        const double c = cs[2 * i], s = cs[2 * i + 1];
        const double x0 = block[2 * i], x1 = block[2 * i + 1];
        block[2 * i] = x0 * c - x1 * s;
        block[2 * i + 1] = x0 * s + x1 * c;
      }
    }
  }
};

// Half of a Gaussian kernel, w[k] = exp(-k^2 / (2 sigma^2)) for k = 0..r, truncated at
// kBlurSigmas sigmas and at the grid's extent (taps beyond it never land inside).
std::vector<double> half_kernel(double sigma, int64_t extent) {
  const double reach = std::min(std::ceil(kBlurSigmas * sigma), static_cast<double>(extent - 1));
  const int64_t r = static_cast<int64_t>(std::max(0.0, reach));
  std::vector<double> w(static_cast<size_t>(r + 1));
  for (int64_t k = 0; k <= r; ++k) {
    const double u = static_cast<double>(k) / sigma;
    w[static_cast<size_t>(k)] = std::exp(-0.5 * u * u);
  }
  return w;
}

// One 1-D pass of the blur over n lines of `len` samples, `step` apart inside a line and
// `line_step` apart between lines, in place (through `line`, a scratch of len samples).
// Each output is divided by the kernel weight that fell inside the line, so edges keep
// the same scale as the interior.
void blur_lines(double* f, int64_t n, int64_t len, int64_t step, int64_t line_step, const std::vector<double>& w,
                std::vector<double>& line) {
  const int64_t r = static_cast<int64_t>(w.size()) - 1;
  line.resize(static_cast<size_t>(len));
  for (int64_t l = 0; l < n; ++l) {
    double* base = f + l * line_step;
    for (int64_t i = 0; i < len; ++i) line[static_cast<size_t>(i)] = base[i * step];
    for (int64_t i = 0; i < len; ++i) {
      const int64_t lo = std::max<int64_t>(0, i - r), hi = std::min(len - 1, i + r);
      double sum = 0.0, norm = 0.0;
      for (int64_t j = lo; j <= hi; ++j) {
        const double wk = w[static_cast<size_t>(j > i ? j - i : i - j)];
        sum += wk * line[static_cast<size_t>(j)];
        norm += wk;
      }
      base[i * step] = sum / norm;  // norm >= w[0] = 1
    }
  }
}

// Blurs one channel's h x w field (row-major) and standardises it over the grid (zero mean,
// unit variance). Centring matters: a mean kept per channel is a component every grid token
// shares, which pulls all of a head's keys one way; then some queries score every key far
// below zero, T_4's denominators there come out near zero or negative, and the node's
// default P=4, G=4 declines (denominator_too_small; 2e7 error when forced, taylor-attn demo).
// Zero-mean content, like the text tokens', keeps the score spread the only knob.
void smooth_channel(double* f, int64_t h, int64_t w, double sigma, std::vector<double>& scratch) {
  const std::vector<double> kernel = half_kernel(sigma, std::max(h, w));
  blur_lines(f, h, w, 1, w, kernel, scratch);  // along x, one line per row
  blur_lines(f, w, h, w, 1, kernel, scratch);  // along y, one line per column
  const int64_t n = h * w;
  double mean = 0.0;
  for (int64_t i = 0; i < n; ++i) mean += f[i];
  mean /= static_cast<double>(n);
  double var = 0.0;
  for (int64_t i = 0; i < n; ++i) var += (f[i] - mean) * (f[i] - mean);
  var /= static_cast<double>(n);
  // A field the blur made constant (a 1x1 grid, smoothness far beyond the grid) has only
  // rounding noise left: scaling that up would turn it into huge values, so it stays.
  if (var > 1e-24 * std::max(1.0, mean * mean)) {
    const double inv = 1.0 / std::sqrt(var);
    for (int64_t i = 0; i < n; ++i) f[i] = (f[i] - mean) * inv;
  }
}

// x / sqrt(mean(x^2) + eps) * gain.
void rms_norm(double* x, int64_t d, double gain) {
  double ss = 0.0;
  for (int64_t j = 0; j < d; ++j) ss += x[j] * x[j];
  const double f = gain / std::sqrt(ss / static_cast<double>(d) + kRmsNormEps);
  for (int64_t j = 0; j < d; ++j) x[j] *= f;
}

void store_row(const ta_tensor& t, int64_t b, int64_t h, int64_t token, const double* x, int64_t n) {
  const int64_t base = b * t.strides[0] + h * t.strides[1] + token * t.strides[2];
  for (int64_t j = 0; j < n; ++j) store_from_double(t.data, base + j * t.strides[3], t.dtype, x[j]);
}

// Head (b, h): projections from its own stream, then every token's q, k, v.
void write_head(const ta_workload_params& params, const std::vector<double>& content, const RopeTable* rope,
                int64_t b, int64_t h, const ta_tensor& q, const ta_tensor& k, const ta_tensor& v) {
  const int64_t N = q.shape[2], d = q.shape[3], dv = v.shape[3];
  const auto C = static_cast<size_t>(kChannels);
  Rng rng(stream_seed(params.seed, Stream::Projection, static_cast<uint64_t>(b), static_cast<uint64_t>(h)));
  const double sd = 1.0 / std::sqrt(static_cast<double>(kChannels));
  std::vector<double> wq(C * static_cast<size_t>(d)), wk(wq.size()), wv(C * static_cast<size_t>(dv));
  for (double& x : wq) x = sd * rng.normal();
  for (double& x : wk) x = sd * rng.normal();
  for (double& x : wv) x = sd * rng.normal();
  const double a = params.alignment, rest = std::sqrt(1.0 - a * a);
  for (size_t i = 0; i < wk.size(); ++i) wk[i] = a * wq[i] + rest * wk[i];

  std::vector<double> rq(static_cast<size_t>(d)), rk(rq.size()), rv(static_cast<size_t>(dv));
  for (int64_t t = 0; t < N; ++t) {
    const double* c = &content[static_cast<size_t>(t) * C];
    std::fill(rq.begin(), rq.end(), 0.0);
    std::fill(rk.begin(), rk.end(), 0.0);
    std::fill(rv.begin(), rv.end(), 0.0);
    // Channel-outer order keeps the inner loops contiguous (they vectorise).
    for (size_t ch = 0; ch < C; ++ch) {
      const double x = c[ch];
      const double* wq_row = &wq[ch * static_cast<size_t>(d)];
      const double* wk_row = &wk[ch * static_cast<size_t>(d)];
      const double* wv_row = &wv[ch * static_cast<size_t>(dv)];
      for (int64_t j = 0; j < d; ++j) {
        rq[static_cast<size_t>(j)] += x * wq_row[j];
        rk[static_cast<size_t>(j)] += x * wk_row[j];
      }
      for (int64_t j = 0; j < dv; ++j) rv[static_cast<size_t>(j)] += x * wv_row[j];
    }
    rms_norm(rq.data(), d, params.gain);
    rms_norm(rk.data(), d, params.gain);
    if (rope != nullptr) {
      const auto pos = token_position(params.layout, t);
      rope->apply(rq.data(), pos);
      rope->apply(rk.data(), pos);
    }
    store_row(q, b, h, t, rq.data(), d);
    store_row(k, b, h, t, rk.data(), d);
    store_row(v, b, h, t, rv.data(), dv);
  }
}

}  // namespace

ta_workload_params default_params() {
  ta_workload_params p{};
  p.struct_size = sizeof(ta_workload_params);
  p.layout.text_tokens = 256;
  p.layout.num_grids = 1;
  p.layout.grid_height[0] = 64;
  p.layout.grid_width[0] = 64;
  p.smoothness = 3.0;
  p.gain = 1.0;
  p.alignment = 0.7;
  p.rope = 1;
  p.seed = 0;
  return p;
}

uint64_t Rng::next_u64() {
  state_ += 0x9e3779b97f4a7c15ull;
  return mix64(state_);
}

double Rng::uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

double Rng::normal() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  const double u1 = uniform(), u2 = uniform();
  const double r = std::sqrt(-2.0 * std::log(1.0 - u1));  // 1 - u1 in (0, 1]: log is finite
  spare_ = r * std::sin(kTwoPi * u2);
  has_spare_ = true;
  return r * std::cos(kTwoPi * u2);
}

uint64_t stream_seed(uint64_t seed, Stream purpose, uint64_t a, uint64_t b) {
  uint64_t z = mix64(seed + 0x632be59bd9b4e019ull);
  z = mix64(z ^ (static_cast<uint64_t>(purpose) * 0x9e3779b97f4a7c15ull));
  z = mix64(z ^ (a * 0xd1b54a32d192ed03ull + 0x8cb92ba72f3d8dd7ull));
  return mix64(z ^ (b * 0xaef17502108ef2d9ull + 0x2545f4914f6cdd1dull));
}

std::array<int64_t, 3> rope_axes(int64_t d) {
  const int64_t a0 = 2 * (d / 16);
  const int64_t a1 = 2 * ((d - a0) / 4);
  return {a0, a1, d - a0 - a1};
}

std::array<int64_t, 3> token_position(const ta_token_layout& layout, int64_t t) {
  if (t < layout.text_tokens) return {0, 0, 0};
  int64_t local = t - layout.text_tokens;
  for (int g = 0; g < layout.num_grids; ++g) {
    const int64_t size = layout.grid_height[g] * layout.grid_width[g];
    if (local < size) return {g, local / layout.grid_width[g], local % layout.grid_width[g]};
    local -= size;
  }
  return {0, 0, 0};  // past the layout: not reached for checked arguments
}

void apply_rope(double* x, int64_t d, const std::array<int64_t, 3>& pos) {
  const std::array<int64_t, 3> width = rope_axes(d);
  int64_t start = 0;
  for (int a = 0; a < 3; ++a) {
    const int64_t n = width[static_cast<size_t>(a)];
    for (int64_t i = 0; i < n / 2; ++i) {
      const double angle = static_cast<double>(pos[static_cast<size_t>(a)]) * rope_frequency(i, n);
      const double c = std::cos(angle), s = std::sin(angle);
      const double x0 = x[start + 2 * i], x1 = x[start + 2 * i + 1];
      x[start + 2 * i] = x0 * c - x1 * s;
      x[start + 2 * i + 1] = x0 * s + x1 * c;
    }
    start += n;
  }
}

std::vector<double> batch_content(const ta_token_layout& layout, double smoothness, uint64_t seed, int64_t b,
                                  int workers) {
  int64_t tokens = layout.text_tokens;
  for (int g = 0; g < layout.num_grids; ++g) tokens += layout.grid_height[g] * layout.grid_width[g];
  const auto C = static_cast<size_t>(kChannels);
  std::vector<double> out(static_cast<size_t>(tokens) * C);
  Rng rng(stream_seed(seed, Stream::Content, static_cast<uint64_t>(b), 0));
  const auto text = static_cast<size_t>(layout.text_tokens);
  for (size_t i = 0; i < text * C; ++i) out[i] = rng.normal();

  int64_t start = layout.text_tokens;
  std::vector<double> fields;
  for (int g = 0; g < layout.num_grids; ++g) {
    const int64_t h = layout.grid_height[g], w = layout.grid_width[g], n = h * w;
    // Noise drawn serially (one stream), blurred per channel in parallel.
    fields.resize(C * static_cast<size_t>(n));
    for (double& x : fields) x = rng.normal();
    std::vector<std::vector<double>> scratch(static_cast<size_t>(std::max(1, workers)));
    parallel_for(kChannels, workers, [&](int64_t ch, int worker) {
      double* f = &fields[static_cast<size_t>(ch * n)];
      smooth_channel(f, h, w, smoothness, scratch[static_cast<size_t>(worker)]);
      for (int64_t i = 0; i < n; ++i) out[static_cast<size_t>(start + i) * C + static_cast<size_t>(ch)] = f[i];
    });
    start += n;
  }
  return out;
}

void generate(const ta_workload_params& params, const ta_tensor& q, const ta_tensor& k, const ta_tensor& v,
              int workers) {
  const int64_t B = q.shape[0], H = q.shape[1];
  std::unique_ptr<RopeTable> rope;
  if (params.rope) rope = std::make_unique<RopeTable>(params.layout, q.shape[3]);
  for (int64_t b = 0; b < B; ++b) {
    // One batch's content at a time: B x N x 64 doubles at once would be 34 MB per batch
    // index at N = 66048.
    const std::vector<double> content = batch_content(params.layout, params.smoothness, params.seed, b, workers);
    parallel_for(H, workers, [&](int64_t h, int) { write_head(params, content, rope.get(), b, h, q, k, v); });
  }
}

}  // namespace ta::workload
