#include "core/reference.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/dtype.h"

namespace ta {
namespace {

double element(const ta_tensor& t, int64_t b, int64_t h, int64_t n, int64_t c) {
  const int64_t off = b * t.strides[0] + h * t.strides[1] + n * t.strides[2] + c * t.strides[3];
  return load_as_double(t.data, off, t.dtype);
}

// Loads slice [c0, c0+len) of token n into dst, L2-normalised when asked.
void load_slice(const ta_tensor& t, int64_t b, int64_t h, int64_t n, int64_t c0, int64_t len, bool normalize,
                double eps, double* dst) {
  double sq = 0;
  for (int64_t c = 0; c < len; ++c) {
    dst[c] = element(t, b, h, n, c0 + c);
    sq += dst[c] * dst[c];
  }
  if (normalize) {
    const double inv = 1.0 / (std::sqrt(sq) + eps);
    for (int64_t c = 0; c < len; ++c) dst[c] *= inv;
  }
}

// Turns scores into the hybrid's explicit weights for query i: exp(s - m) on the exact
// set, T_P(s) exp(-m) elsewhere, with m = max(0, largest exact score).
void hybrid_weights(const Window& w, int64_t i, int64_t Nk, const std::vector<int64_t>& slot, int32_t P,
                    std::vector<char>* exact, std::vector<double>* scores) {
  double m = 0;
  w.for_each_exact_key(i, Nk, [&](int64_t j) {
    const int64_t jj = slot[static_cast<size_t>(j)];
    if (jj < 0) return;
    (*exact)[static_cast<size_t>(jj)] = 1;
    m = std::max(m, (*scores)[static_cast<size_t>(jj)]);
  });
  const double em = std::exp(-m);
  for (size_t jj = 0; jj < scores->size(); ++jj) {
    double& s = (*scores)[jj];
    s = (*exact)[jj] ? std::exp(s - m) : taylor_exp(s, P) * em;
    (*exact)[jj] = 0;
  }
}

}  // namespace

RefSpec reference_spec(const Problem& p, const ta_config& c, ta_reference_kind kind) {
  RefSpec s;
  s.eps = c.eps;
  if (kind == TA_REFERENCE_EXACT_ORIGINAL) {
    s.G = 1;
    s.normalize = false;
    s.scale = p.base_scale;
    s.kernel = RefKernel::Softmax;
  } else {
    s.G = p.G;
    s.normalize = c.qk_normalize != 0;
    s.scale = p.slice_scale;
    s.kernel = kind == TA_REFERENCE_EXACT_MODIFIED ? RefKernel::Softmax : RefKernel::Taylor;
    if (kind == TA_REFERENCE_HYBRID_QUADRATIC && p.window.active) s.kernel = RefKernel::Hybrid;
    s.P = c.P;
  }
  return s;
}

void reference_rows(const Problem& p, const RefSpec& spec, const KeyMask& mask, int64_t b, int64_t h,
                    const std::vector<int64_t>& rows, double* out, double* den_out) {
  const int64_t ds = p.d / spec.G;
  const int64_t dvs = p.dv / spec.G;
  std::vector<int64_t> kept;
  kept.reserve(static_cast<size_t>(p.Nk));
  for (int64_t j = 0; j < p.Nk; ++j) {
    if (mask.attends(b, j)) kept.push_back(j);
  }
  const auto nk = static_cast<int64_t>(kept.size());
  const size_t nrows = rows.size();
  if (den_out) std::fill(den_out, den_out + nrows, 0.0);

  // Keys transposed [ds][nk] so the score loop runs over keys (vectorisable, no reduction).
  std::vector<double> kt(static_cast<size_t>(ds * nk));
  std::vector<double> vals(static_cast<size_t>(nk * dvs));
  std::vector<double> tmp(static_cast<size_t>(std::max(ds, dvs)));
  std::vector<double> qrow(static_cast<size_t>(ds));
  std::vector<double> scores(static_cast<size_t>(nk));
  std::vector<double> acc(static_cast<size_t>(dvs));
  // Position of key j in `kept`, -1 when masked (hybrid only).
  std::vector<int64_t> slot;
  std::vector<char> exact;
  if (spec.kernel == RefKernel::Hybrid) {
    slot.assign(static_cast<size_t>(p.Nk), -1);
    for (int64_t jj = 0; jj < nk; ++jj) slot[static_cast<size_t>(kept[static_cast<size_t>(jj)])] = jj;
    exact.assign(static_cast<size_t>(nk), 0);
  }
  for (int32_t g = 0; g < spec.G; ++g) {
    for (int64_t jj = 0; jj < nk; ++jj) {
      load_slice(*p.k, b, h, kept[static_cast<size_t>(jj)], g * ds, ds, spec.normalize, spec.eps, tmp.data());
      for (int64_t c = 0; c < ds; ++c) kt[static_cast<size_t>(c * nk + jj)] = tmp[static_cast<size_t>(c)] * spec.scale;
      load_slice(*p.v, b, h, kept[static_cast<size_t>(jj)], g * dvs, dvs, false, 0, &vals[static_cast<size_t>(jj * dvs)]);
    }
    for (size_t r = 0; r < nrows; ++r) {
      load_slice(*p.q, b, h, rows[r], g * ds, ds, spec.normalize, spec.eps, qrow.data());
      std::fill(scores.begin(), scores.end(), 0.0);
      for (int64_t c = 0; c < ds; ++c) {
        const double qc = qrow[static_cast<size_t>(c)];
        // kt.data() + offset, not &kt[offset]: with every key masked (nk == 0) kt is empty.
        const double* krow = kt.data() + c * nk;
        for (int64_t j = 0; j < nk; ++j) scores[static_cast<size_t>(j)] += qc * krow[j];
      }
      if (spec.kernel == RefKernel::Softmax) {
        double m = -std::numeric_limits<double>::infinity();
        for (double s : scores) m = std::max(m, s);
        for (double& s : scores) s = std::exp(s - m);
      } else if (spec.kernel == RefKernel::Taylor) {
        for (double& s : scores) s = taylor_exp(s, spec.P);
      } else {
        hybrid_weights(p.window, rows[r], p.Nk, slot, spec.P, &exact, &scores);
      }
      double den = 0;
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t j = 0; j < nk; ++j) {
        const double w = scores[static_cast<size_t>(j)];
        den += w;
        const double* vrow = &vals[static_cast<size_t>(j * dvs)];
        for (int64_t c = 0; c < dvs; ++c) acc[static_cast<size_t>(c)] += w * vrow[c];
      }
      // No keys at all: 0/0 = NaN, as exact attention over an empty set gives.
      double* o = out + r * static_cast<size_t>(p.dv) + static_cast<size_t>(g * dvs);
      for (int64_t c = 0; c < dvs; ++c) o[c] = acc[static_cast<size_t>(c)] / den;
      if (den_out) den_out[r] += den;
    }
  }
}

}  // namespace ta
