// An independent fp64 reference of the function the library computes, in plain loops
// (header-only). It shares no code with src/: it is written from the semantics alone,
// so that it cross-checks the library rather than restating it.
//
//   slice g of G: q[..., g*d/G:(g+1)*d/G], k likewise, v[..., g*dv/G:(g+1)*dv/G]
//   c = base * sqrt(G) * scale_mul, base = scale > 0 ? scale : d^-1/2
//   q', k' = x / (||x|| + eps) per slice vector when normalize
//   s_ij = c q'_i.k'_j,  w_ij = T_P(s_ij) = sum_{p<P} s^p/p!   (or exp for the exact kinds)
//   out_i = sum_j w_ij v_j / sum_j w_ij over kept keys j; den_i = sum_j w_ij
//   Hybrid: w_ij = exp(s_ij - m_i) when j is in query i's exact set, T_P(s_ij) exp(-m_i)
//   otherwise, m_i = max(0, max exact s_ij); membership is a predicate on the tokens'
//   positions (RefWindow::exact), not an enumeration like the library's.
#ifndef TA_TESTS_COMMON_TA_TEST_REFERENCE_H_
#define TA_TESTS_COMMON_TA_TEST_REFERENCE_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

namespace tatest {

enum class RefKind {
  Taylor,         // T_P weights on the modified function's scores
  ExactModified,  // softmax on the modified function's scores (slices, normalize, scale_mul)
  ExactOriginal,  // softmax of the original call: full head, base scale, nothing else
  Hybrid          // exp on each query's exact set (RefParams::window), T_P elsewhere
};

// The local-exact window: text tokens first, then row-major grids.
struct RefWindow {
  int64_t text = 0;
  std::vector<std::pair<int64_t, int64_t>> grids;  // (height, width)
  int64_t radius = 0;
  bool text_keys = true, text_queries = true;

  // grid index (-1: text), row and column of token n.
  void locate(int64_t n, int64_t *g, int64_t *y, int64_t *x) const {
    *g = -1;
    if (n < text) return;
    int64_t start = text;
    for (size_t gi = 0; gi < grids.size(); ++gi) {
      const int64_t size = grids[gi].first * grids[gi].second;
      if (n < start + size) {
        *g = static_cast<int64_t>(gi);
        *y = (n - start) / grids[gi].second;
        *x = (n - start) % grids[gi].second;
        return;
      }
      start += size;
    }
  }
  bool exact(int64_t i, int64_t j) const {
    int64_t gi = -1, yi = 0, xi = 0, gj = -1, yj = 0, xj = 0;
    locate(i, &gi, &yi, &xi);
    locate(j, &gj, &yj, &xj);
    if (gi < 0) return text_queries || (text_keys && gj < 0);
    if (gj < 0) return text_keys;
    return gi == gj && std::llabs(yi - yj) <= radius && std::llabs(xi - xj) <= radius;
  }
};

struct RefParams {
  int P = 3;
  int G = 1;
  bool normalize = false;
  double scale_mul = 1.0;
  double scale = 0.0;  // 0: d^-1/2
  double eps = 1e-6;
  bool clamp = false;  // den = max(den, eps) (fallback_on_negative == 0)
  RefWindow window;    // RefKind::Hybrid only
};

// Dense row-major inputs, all as double.
struct RefInput {
  int64_t B = 0, H = 0, Nq = 0, Nk = 0, d = 0, dv = 0;
  const double *q = nullptr;      // [B,H,Nq,d]
  const double *k = nullptr;      // [B,H,Nk,d]
  const double *v = nullptr;      // [B,H,Nk,dv]
  const uint8_t *keep = nullptr;  // [B,Nk], 1 = attend; nullptr = all keys
};

struct RefOutput {
  std::vector<double> out;  // [B,H,Nq,dv]
  // Unclamped denominators sum_j w_ij, index ((b*H + h)*G + g)*Nq + i (Taylor only;
  // for the exact kinds the sum of exp(s - max)).
  std::vector<double> den;
  // Rounding-error scale of the feature (state) form, element-wise [B,H,Nq,dv] (Taylor only):
  //   (sum_j |T|_P(t_ij) |v_je| + |o_ie| sum_j |T|_P(t_ij)) / |den_i|,
  // t_ij = |c| sum_m |q'_im||k'_jm|, |T|_P(t) = sum_{p<P} t^p/p!. Every product the
  // monomial-feature form sums has magnitude bounded by these terms (the features expand
  // (q.k)^p into monomials whose absolute values add up to (sum_m |q_m||k_m|)^p), so a
  // floating-point evaluation of it errs by a small multiple of u * this scale.
  std::vector<double> err_scale;
};

inline double taylor_poly(double s, int P) {
  double sum = 0.0, term = 1.0;
  for (int p = 0; p < P; ++p) {
    sum += term;
    term *= s / static_cast<double>(p + 1);
  }
  return sum;
}

inline RefOutput reference_attention(const RefInput &in, const RefParams &prm, RefKind kind) {
  const bool original = kind == RefKind::ExactOriginal;
  const int64_t G = original ? 1 : prm.G;
  const bool normalize = original ? false : prm.normalize;
  const int64_t ds = in.d / G, dvs = in.dv / G;
  const double base = prm.scale > 0.0 ? prm.scale : 1.0 / std::sqrt(static_cast<double>(in.d));
  const double c =
      original ? base : base * std::sqrt(static_cast<double>(G)) * prm.scale_mul;

  RefOutput r;
  r.out.assign(static_cast<size_t>(in.B * in.H * in.Nq * in.dv), 0.0);
  r.den.assign(static_cast<size_t>(in.B * in.H * G * in.Nq), 0.0);
  r.err_scale.assign(r.out.size(), 0.0);

  std::vector<double> qs(static_cast<size_t>(in.Nq * ds)), ks(static_cast<size_t>(in.Nk * ds));
  std::vector<double> w(static_cast<size_t>(in.Nk)), wabs(static_cast<size_t>(in.Nk));
  auto load = [&](const double *src, int64_t n_rows, int64_t row_len, int64_t off,
                  std::vector<double> &dst) {
    for (int64_t i = 0; i < n_rows; ++i) {
      double nrm = 0.0;
      for (int64_t m = 0; m < ds; ++m) {
        const double x = src[i * row_len + off + m];
        dst[static_cast<size_t>(i * ds + m)] = x;
        nrm += x * x;
      }
      if (normalize) {
        const double div = std::sqrt(nrm) + prm.eps;
        for (int64_t m = 0; m < ds; ++m) dst[static_cast<size_t>(i * ds + m)] /= div;
      }
    }
  };

  for (int64_t b = 0; b < in.B; ++b) {
    for (int64_t h = 0; h < in.H; ++h) {
      const double *qbh = in.q + (b * in.H + h) * in.Nq * in.d;
      const double *kbh = in.k + (b * in.H + h) * in.Nk * in.d;
      const double *vbh = in.v + (b * in.H + h) * in.Nk * in.dv;
      for (int64_t g = 0; g < G; ++g) {
        load(qbh, in.Nq, in.d, g * ds, qs);
        load(kbh, in.Nk, in.d, g * ds, ks);
        for (int64_t i = 0; i < in.Nq; ++i) {
          double smax = -std::numeric_limits<double>::infinity();
          for (int64_t j = 0; j < in.Nk; ++j) {
            if (in.keep && !in.keep[b * in.Nk + j]) continue;
            double dot = 0.0, adot = 0.0;
            for (int64_t m = 0; m < ds; ++m) {
              const double a = qs[static_cast<size_t>(i * ds + m)];
              const double bb = ks[static_cast<size_t>(j * ds + m)];
              dot += a * bb;
              adot += std::fabs(a) * std::fabs(bb);
            }
            w[static_cast<size_t>(j)] = c * dot;
            wabs[static_cast<size_t>(j)] = taylor_poly(std::fabs(c) * adot, prm.P);
            smax = std::max(smax, c * dot);
          }
          // Hybrid: the stabiliser is the largest exact score (at least 0).
          double hm = 0.0;
          if (kind == RefKind::Hybrid) {
            for (int64_t j = 0; j < in.Nk; ++j) {
              if (in.keep && !in.keep[b * in.Nk + j]) continue;
              if (prm.window.exact(i, j)) hm = std::max(hm, w[static_cast<size_t>(j)]);
            }
          }
          double den = 0.0, aden = 0.0;
          for (int64_t j = 0; j < in.Nk; ++j) {
            if (in.keep && !in.keep[b * in.Nk + j]) continue;
            double &wj = w[static_cast<size_t>(j)];
            if (kind == RefKind::Hybrid) {
              wj = prm.window.exact(i, j) ? std::exp(wj - hm) : taylor_poly(wj, prm.P) * std::exp(-hm);
              wabs[static_cast<size_t>(j)] *= std::exp(-hm);
            } else {
              wj = kind == RefKind::Taylor ? taylor_poly(wj, prm.P) : std::exp(wj - smax);
            }
            den += wj;
            aden += wabs[static_cast<size_t>(j)];
          }
          r.den[static_cast<size_t>(((b * in.H + h) * G + g) * in.Nq + i)] = den;
          const bool taylor_like = kind == RefKind::Taylor || kind == RefKind::Hybrid;
          const double den_used = (taylor_like && prm.clamp) ? std::max(den, prm.eps) : den;
          double *o = &r.out[static_cast<size_t>(((b * in.H + h) * in.Nq + i) * in.dv + g * dvs)];
          double *es = &r.err_scale[static_cast<size_t>(((b * in.H + h) * in.Nq + i) * in.dv + g * dvs)];
          for (int64_t e = 0; e < dvs; ++e) {
            double num = 0.0, anum = 0.0;
            for (int64_t j = 0; j < in.Nk; ++j) {
              if (in.keep && !in.keep[b * in.Nk + j]) continue;
              const double ve = vbh[j * in.dv + g * dvs + e];
              num += w[static_cast<size_t>(j)] * ve;
              anum += wabs[static_cast<size_t>(j)] * std::fabs(ve);
            }
            o[e] = num / den_used;
            es[e] = (anum + std::fabs(o[e]) * aden) / std::fabs(den_used);
          }
        }
      }
    }
  }
  return r;
}

// ||a - b||_2 / ||b||_2 (inf when b is zero and a is not).
inline double rel_l2(const std::vector<double> &a, const std::vector<double> &b) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  if (a.size() != b.size()) return std::numeric_limits<double>::infinity();
  if (den == 0.0) return num == 0.0 ? 0.0 : std::numeric_limits<double>::infinity();
  return std::sqrt(num / den);
}

inline double l2(const std::vector<double> &a) {
  double s = 0.0;
  for (double x : a) s += x * x;
  return std::sqrt(s);
}

inline double max_abs_diff(const std::vector<double> &a, const std::vector<double> &b) {
  double m = 0.0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

// The quality metrics as the header defines them, over the given rows (each of length dv).
struct RefQuality {
  double rel_l2 = 0, mean_abs = 0, max_abs = 0, mean_rel = 0;
};

inline RefQuality quality_metrics(const std::vector<double> &o, const std::vector<double> &ref,
                                  int64_t dv, const std::vector<int64_t> &rows) {
  RefQuality q;
  double num = 0, den = 0, sum_abs = 0, sum_rel = 0;
  for (int64_t r : rows) {
    double rn = 0, rd = 0;
    for (int64_t e = 0; e < dv; ++e) {
      const double a = o[static_cast<size_t>(r * dv + e)], b = ref[static_cast<size_t>(r * dv + e)];
      const double diff = std::fabs(a - b);
      rn += diff * diff;
      rd += b * b;
      sum_abs += diff;
      q.max_abs = std::max(q.max_abs, diff);
    }
    num += rn;
    den += rd;
    sum_rel += std::sqrt(rn) / std::sqrt(rd);
  }
  q.rel_l2 = std::sqrt(num) / std::sqrt(den);
  q.mean_abs = sum_abs / static_cast<double>(rows.size() * static_cast<size_t>(dv));
  q.mean_rel = sum_rel / static_cast<double>(rows.size());
  return q;
}

}  // namespace tatest

#endif  // TA_TESTS_COMMON_TA_TEST_REFERENCE_H_
