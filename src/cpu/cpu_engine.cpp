#include "cpu/cpu_engine.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <limits>
#include <vector>

#include "core/wide_int.h"
#include "core/combinatorics.h"
#include "core/dtype.h"
#include "core/features.h"
#include "core/parallel.h"
#include "core/reference.h"
#include "core/sampling.h"

namespace ta::cpu {
namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

constexpr int64_t kAlign = 256;
constexpr i128 kMaxBytes = static_cast<i128>(1) << 62;

i128 align_up(i128 x) { return (x + kAlign - 1) / kAlign * kAlign; }

// Accumulation type: fp64 for fp64 inputs, fp32 otherwise (CPUs have no fast half
// arithmetic, so f16/bf16 are widened on load; this also honours force_fp32 and
// denom_fp32 by construction).
size_t acc_size(ta_dtype dtype) { return dtype == TA_DTYPE_F64 ? sizeof(double) : sizeof(float); }

struct Blocks {
  int64_t bq, bk, bmax;
};

Blocks blocks_for(const Problem& p, const ta_config& c) {
  Blocks b{};
  b.bq = std::min<int64_t>(c.block_size_q, p.Nq);
  b.bk = std::min<int64_t>(c.block_size_k, p.Nk);
  // The probe evaluates its sampled queries in query blocks too.
  b.bmax = std::max(b.bq, b.bk);
  return b;
}

// Element counts of one worker's buffers, in the order they are carved.
struct WorkerCounts {
  i128 S, z, F, xT, V, acc, den, idx;
  i128 Kw, Vw;  // the hybrid's prepared keys and values of one unit (0 without a window)
};

WorkerCounts worker_counts(const Problem& p, const Blocks& b) {
  WorkerCounts w{};
  w.S = static_cast<i128>(p.R) * p.dvs;
  w.z = p.R;
  w.F = static_cast<i128>(p.R) * b.bmax;
  w.xT = static_cast<i128>(p.ds) * b.bmax;
  w.V = static_cast<i128>(b.bk) * p.dvs;
  w.acc = static_cast<i128>(b.bq) * p.dvs;
  w.den = b.bq;
  w.idx = b.bmax;
  // Every key is scored by some query's exact set: prepared once per unit rather than
  // reloaded (normalised, converted) for each of the ~100-300 pairs it takes part in.
  w.Kw = p.window.active ? static_cast<i128>(p.Nk) * p.ds : 0;
  w.Vw = p.window.active ? static_cast<i128>(p.Nk) * p.dvs : 0;
  return w;
}

i128 worker_bytes(const WorkerCounts& w, size_t a) {
  const auto as = static_cast<i128>(a);
  return align_up(w.S * as) + align_up(w.z * as) + align_up(w.F * as) + align_up(w.xT * as) + align_up(w.V * as) +
         align_up(w.acc * as) + align_up(w.den * as) + align_up(w.idx * static_cast<i128>(sizeof(int64_t))) +
         align_up(w.Kw * as) + align_up(w.Vw * as);
}

int worker_count(const Problem& p, const ta_config& c) {
  const int64_t units = p.B * p.H * p.G;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(resolve_threads(c.num_threads), units)));
}

template <class A>
struct WorkerBuffers {
  A *S, *z, *F, *xT, *V, *acc, *den;
  int64_t* idx;
  A *Kw, *Vw;
};

template <class A>
WorkerBuffers<A> carve(unsigned char* base, const WorkerCounts& w) {
  WorkerBuffers<A> buf{};
  auto take = [&base](i128 count, size_t elem) {
    unsigned char* at = base;
    base += static_cast<size_t>(align_up(count * static_cast<i128>(elem)));
    return at;
  };
  buf.S = reinterpret_cast<A*>(take(w.S, sizeof(A)));
  buf.z = reinterpret_cast<A*>(take(w.z, sizeof(A)));
  buf.F = reinterpret_cast<A*>(take(w.F, sizeof(A)));
  buf.xT = reinterpret_cast<A*>(take(w.xT, sizeof(A)));
  buf.V = reinterpret_cast<A*>(take(w.V, sizeof(A)));
  buf.acc = reinterpret_cast<A*>(take(w.acc, sizeof(A)));
  buf.den = reinterpret_cast<A*>(take(w.den, sizeof(A)));
  buf.idx = reinterpret_cast<int64_t*>(take(w.idx, sizeof(int64_t)));
  buf.Kw = reinterpret_cast<A*>(take(w.Kw, sizeof(A)));
  buf.Vw = reinterpret_cast<A*>(take(w.Vw, sizeof(A)));
  return buf;
}

// What one (batch, head, slice) unit reports; merged in unit order for determinism.
struct UnitStats {
  double den_min = std::numeric_limits<double>::infinity();
  double den_max = -std::numeric_limits<double>::infinity();
  double den_sum = 0;
  int64_t den_count = 0, le_eps = 0, non_finite = 0;
  double probe_min = std::numeric_limits<double>::infinity();
  ta_reason reason = TA_REASON_NONE;
  double key_ms = 0, query_ms = 0, window_ms = 0;
  int64_t exact_pairs = 0;
};

// S[r, :] += sum_t F[r, t] V[t, :] and z[r] += sum_t F[r, t] for one key block.
// DV is the slice value dim when it is one of the hot sizes (a compile-time constant
// lets the compiler keep the state row in registers), 0 for the generic loop.
template <int DV, class A>
void accumulate_state(const A* F, int64_t ld, int64_t R, int64_t T, const A* V, int64_t dvs_runtime, A* S, A* z) {
  const int64_t dvs = DV > 0 ? DV : dvs_runtime;
  for (int64_t r = 0; r < R; ++r) {
    const A* f = F + r * ld;
    A* srow = S + r * dvs;
    A zr = z[r];
    for (int64_t t = 0; t < T; ++t) {
      const A ft = f[t];
      zr += ft;
      const A* vt = V + t * dvs;
      for (int64_t col = 0; col < dvs; ++col) srow[col] += ft * vt[col];
    }
    z[r] = zr;
  }
}

// acc[t, :] = sum_r F[r, t] S[r, :], den[t] = sum_r F[r, t] z[r] for one query block.
template <int DV, class A>
void apply_state(const A* F, int64_t ld, int64_t R, int64_t T, const A* S, const A* z, int64_t dvs_runtime, A* acc,
                 A* den) {
  const int64_t dvs = DV > 0 ? DV : dvs_runtime;
  std::fill(acc, acc + T * dvs, A(0));
  std::fill(den, den + T, A(0));
  for (int64_t r = 0; r < R; ++r) {
    const A* f = F + r * ld;
    const A* srow = S + r * dvs;
    const A zr = z[r];
    for (int64_t t = 0; t < T; ++t) {
      const A ft = f[t];
      den[t] += ft * zr;
      A* at = acc + t * dvs;
      for (int64_t col = 0; col < dvs; ++col) at[col] += ft * srow[col];
    }
  }
}

// The one place where the slice value dim becomes a compile-time constant.
template <class A>
void dispatch_accumulate(int64_t dvs, const A* F, int64_t ld, int64_t R, int64_t T, const A* V, A* S, A* z) {
  switch (dvs) {
    case 16: return accumulate_state<16>(F, ld, R, T, V, dvs, S, z);
    case 32: return accumulate_state<32>(F, ld, R, T, V, dvs, S, z);
    case 64: return accumulate_state<64>(F, ld, R, T, V, dvs, S, z);
    case 128: return accumulate_state<128>(F, ld, R, T, V, dvs, S, z);
    default: return accumulate_state<0>(F, ld, R, T, V, dvs, S, z);
  }
}

template <class A>
void dispatch_apply(int64_t dvs, const A* F, int64_t ld, int64_t R, int64_t T, const A* S, const A* z, A* acc,
                    A* den) {
  switch (dvs) {
    case 16: return apply_state<16>(F, ld, R, T, S, z, dvs, acc, den);
    case 32: return apply_state<32>(F, ld, R, T, S, z, dvs, acc, den);
    case 64: return apply_state<64>(F, ld, R, T, S, z, dvs, acc, den);
    case 128: return apply_state<128>(F, ld, R, T, S, z, dvs, acc, den);
    default: return apply_state<0>(F, ld, R, T, S, z, dvs, acc, den);
  }
}

// Runs the phases of one unit on one worker's buffers.
template <class A>
class UnitRunner {
 public:
  UnitRunner(const Problem& p, const ta_config& c, const KeyMask& mask, const FeatureLayout& layout,
             const Blocks& blocks, WorkerBuffers<A> buf)
      : p_(p), c_(c), mask_(mask), L_(layout), blk_(blocks), buf_(buf) {
    // sqrt(|scale|) on both sides keeps feature magnitudes balanced; the sign goes to q.
    const double root = std::sqrt(std::fabs(p.slice_scale));
    k_mul_ = root;
    q_mul_ = p.slice_scale < 0 ? -root : root;
  }

  void set_unit(int64_t unit) {
    b_ = unit / (p_.H * p_.G);
    h_ = (unit / p_.G) % p_.H;
    g_ = unit % p_.G;
  }

  // Phase 1 of early_probe: z alone, then the sampled queries' denominators.
  void probe(const std::vector<int64_t>& rows, UnitStats* st) {
    if (p_.window.active) prepare_window_keys();
    std::fill(buf_.z, buf_.z + p_.R, A(0));
    for_each_key_block([&](int64_t T) {
      generate_features(L_, buf_.xT, T, blk_.bmax, buf_.F);
      for (int64_t r = 0; r < p_.R; ++r) {
        const A* f = buf_.F + r * blk_.bmax;
        A zr = buf_.z[r];
        for (int64_t t = 0; t < T; ++t) zr += f[t];
        buf_.z[r] = zr;
      }
    });
    apply_weights(/*with_state=*/false);
    for (size_t start = 0; start < rows.size(); start += static_cast<size_t>(blk_.bq)) {
      const auto T = static_cast<int64_t>(std::min(rows.size() - start, static_cast<size_t>(blk_.bq)));
      load_block(*p_.q, rows.data() + start, T, q_mul_);
      generate_features(L_, buf_.xT, T, blk_.bmax, buf_.F);
      for (int64_t t = 0; t < T; ++t) {
        A den = 0;
        for (int64_t r = 0; r < p_.R; ++r) den += buf_.F[r * blk_.bmax + t] * buf_.z[r];
        double d = static_cast<double>(den);
        if (p_.window.active) apply_window(rows[start + static_cast<size_t>(t)], t, nullptr, &d, nullptr);
        st->probe_min = std::min(st->probe_min, d);
        note_reason(st, denominator_reason(d));
      }
    }
  }

  void key_pass(UnitStats* st) {
    const auto t0 = Clock::now();
    if (p_.window.active) prepare_window_keys();
    std::fill(buf_.S, buf_.S + p_.R * p_.dvs, A(0));
    std::fill(buf_.z, buf_.z + p_.R, A(0));
    for_each_key_block([&](int64_t T) {
      generate_features(L_, buf_.xT, T, blk_.bmax, buf_.F);
      dispatch_accumulate(p_.dvs, buf_.F, blk_.bmax, p_.R, T, buf_.V, buf_.S, buf_.z);
    });
    apply_weights(/*with_state=*/true);
    st->key_ms += ms_since(t0);
  }

  void query_pass(UnitStats* st) {
    const auto t0 = Clock::now();
    const ta_tensor& o = *p_.out;
    for (int64_t start = 0; start < p_.Nq; start += blk_.bq) {
      const int64_t T = std::min(blk_.bq, p_.Nq - start);
      for (int64_t t = 0; t < T; ++t) buf_.idx[t] = start + t;
      load_block(*p_.q, buf_.idx, T, q_mul_);
      generate_features(L_, buf_.xT, T, blk_.bmax, buf_.F);
      dispatch_apply(p_.dvs, buf_.F, blk_.bmax, p_.R, T, buf_.S, buf_.z, buf_.acc, buf_.den);
      for (int64_t t = 0; t < T; ++t) {
        double den = static_cast<double>(buf_.den[t]);
        const A* at = buf_.acc + t * p_.dvs;
        if (p_.window.active) {
          const auto tw = Clock::now();
          apply_window(start + t, t, buf_.acc + t * p_.dvs, &den, st);
          at = win_acc_.data();
          st->window_ms += ms_since(tw);
        }
        record_denominator(st, den);
        const ta_reason why = denominator_reason(den);
        note_reason(st, why);
        if (den <= c_.eps && std::isfinite(den)) den = c_.eps;  // clamp (fallback_on_negative = 0)
        const int64_t base = b_ * o.strides[0] + h_ * o.strides[1] + (start + t) * o.strides[2] +
                             g_ * p_.dvs * o.strides[3];
        for (int64_t col = 0; col < p_.dvs; ++col) {
          const int64_t off = base + col * o.strides[3];
          store_from_double(o.data, off, o.dtype, static_cast<double>(at[col]) / den);
          // Check the stored value: a finite quotient can still overflow f16.
          if (!std::isfinite(load_as_double(o.data, off, o.dtype))) note_reason(st, TA_REASON_NON_FINITE_OUTPUT);
        }
      }
    }
    st->query_ms += ms_since(t0);
  }

 private:
  // The local-exact hybrid for query `row`, whose prepared vector is column t of xT:
  // turns the Taylor numerator acc (NULL in the probe) and denominator *den over all keys
  // into the hybrid's (window.h). The numerator goes to win_acc_ (dvs values).
  void apply_window(int64_t row, int64_t t, const A* acc, double* den, UnitStats* st) {
    win_keys_.clear();
    win_scores_.clear();
    double m = 0;
    for (int64_t c = 0; c < p_.ds; ++c) qrow_[static_cast<size_t>(c)] = buf_.xT[c * blk_.bmax + t];
    p_.window.for_each_exact_key(row, p_.Nk, [&](int64_t j) {
      if (!mask_.attends(b_, j)) return;
      const A* krow = buf_.Kw + j * p_.ds;
      A s = 0;
      for (int64_t c = 0; c < p_.ds; ++c) s += qrow_[static_cast<size_t>(c)] * krow[c];
      win_keys_.push_back(j);
      win_scores_.push_back(static_cast<double>(s));
      m = std::max(m, static_cast<double>(s));
    });
    if (st) st->exact_pairs += static_cast<int64_t>(win_keys_.size());
    // Rows whose exact set is every key have no Taylor part (no cancellation to risk).
    const bool taylor_part = !p_.window.row_all_exact(row);
    const double em = std::exp(-m);
    double d_taylor = taylor_part ? *den : 0, d_exact = 0;
    if (acc) {
      for (int64_t c = 0; c < p_.dvs; ++c) win_num_[static_cast<size_t>(c)] = taylor_part ? static_cast<double>(acc[c]) : 0;
      std::fill(win_exact_.begin(), win_exact_.end(), 0.0);
    }
    for (size_t n = 0; n < win_keys_.size(); ++n) {
      const double s = win_scores_[n];
      const double tw = taylor_part ? taylor_exp(s, p_.P) : 0, ew = std::exp(s - m);
      d_taylor -= tw;
      d_exact += ew;
      if (!acc) continue;
      const A* vrow = buf_.Vw + win_keys_[n] * p_.dvs;
      for (int64_t c = 0; c < p_.dvs; ++c) {
        const double vc = static_cast<double>(vrow[c]);
        win_num_[static_cast<size_t>(c)] -= tw * vc;
        win_exact_[static_cast<size_t>(c)] += ew * vc;
      }
    }
    *den = em * d_taylor + d_exact;
    if (!acc) return;
    for (int64_t c = 0; c < p_.dvs; ++c) {
      const auto cc = static_cast<size_t>(c);
      win_acc_[cc] = static_cast<A>(em * win_num_[cc] + win_exact_[cc]);
    }
  }

  ta_reason denominator_reason(double den) const {
    if (!std::isfinite(den)) return TA_REASON_DENOMINATOR_INVALID;
    if (den <= c_.eps && c_.fallback_on_negative) return TA_REASON_DENOMINATOR_TOO_SMALL;
    return TA_REASON_NONE;
  }

  static void note_reason(UnitStats* st, ta_reason why) {
    if (st->reason == TA_REASON_NONE) st->reason = why;  // the first one, in row order
  }

  void record_denominator(UnitStats* st, double den) const {
    st->den_count += 1;
    if (!std::isfinite(den)) {
      st->non_finite += 1;
      return;
    }
    st->den_min = std::min(st->den_min, den);
    st->den_max = std::max(st->den_max, den);
    st->den_sum += den;
    if (den <= c_.eps) st->le_eps += 1;
  }

  // Fold the monomial weights 1/prod(c_u!) into the state rows once per unit.
  void apply_weights(bool with_state) {
    for (int64_t r = 0; r < p_.R; ++r) {
      const A w = static_cast<A>(L_.weight[static_cast<size_t>(r)]);
      buf_.z[r] *= w;
      if (!with_state) continue;
      A* srow = buf_.S + r * p_.dvs;
      for (int64_t col = 0; col < p_.dvs; ++col) srow[col] *= w;
    }
  }

  // Gathers up to bk attended keys at a time into xT (and their values into V), then
  // calls fn(count). Masked keys are skipped entirely: they contribute nothing.
  template <class Fn>
  void for_each_key_block(Fn&& fn) {
    int64_t j = 0;
    while (j < p_.Nk) {
      int64_t T = 0;
      for (; j < p_.Nk && T < blk_.bk; ++j) {
        if (mask_.attends(b_, j)) buf_.idx[T++] = j;
      }
      if (T == 0) break;
      load_block(*p_.k, buf_.idx, T, k_mul_);
      load_values(buf_.idx, T);
      fn(T);
    }
  }

  // dst[c] = mul * x'_c of token n, x' the (optionally normalised) slice, in double.
  void load_row(const ta_tensor& x, int64_t n, double mul, double* dst) const {
    const int64_t row = b_ * x.strides[0] + h_ * x.strides[1] + g_ * p_.ds * x.strides[3] + n * x.strides[2];
    double sq = 0;
    for (int64_t col = 0; col < p_.ds; ++col) {
      const double val = load_as_double(x.data, row + col * x.strides[3], x.dtype);
      dst[col] = val;
      sq += val * val;
    }
    const double scale = c_.qk_normalize ? mul / (std::sqrt(sq) + c_.eps) : mul;
    for (int64_t col = 0; col < p_.ds; ++col) dst[col] *= scale;
  }

  // xT[c * bmax + t] = load_row(x, rows[t], mul)[c], rounded to the accumulation type.
  void load_block(const ta_tensor& x, const int64_t* rows, int64_t T, double mul) {
    for (int64_t t = 0; t < T; ++t) {
      load_row(x, rows[t], mul, tmp_.data());
      for (int64_t col = 0; col < p_.ds; ++col) {
        buf_.xT[col * blk_.bmax + t] = static_cast<A>(tmp_[static_cast<size_t>(col)]);
      }
    }
  }

  // The hybrid's per-unit copies: Kw[j] = the key slice as the features see it (normalised,
  // times sqrt|scale|), Vw[j] = the value slice, both in the accumulation type.
  void prepare_window_keys() {
    const ta_tensor& v = *p_.v;
    for (int64_t j = 0; j < p_.Nk; ++j) {
      load_row(*p_.k, j, k_mul_, tmp_.data());
      A* krow = buf_.Kw + j * p_.ds;
      for (int64_t c = 0; c < p_.ds; ++c) krow[c] = static_cast<A>(tmp_[static_cast<size_t>(c)]);
      const int64_t base = b_ * v.strides[0] + h_ * v.strides[1] + g_ * p_.dvs * v.strides[3] + j * v.strides[2];
      A* vrow = buf_.Vw + j * p_.dvs;
      for (int64_t c = 0; c < p_.dvs; ++c) vrow[c] = static_cast<A>(load_as_double(v.data, base + c * v.strides[3], v.dtype));
    }
  }

  void load_values(const int64_t* rows, int64_t T) {
    const ta_tensor& v = *p_.v;
    const int64_t base = b_ * v.strides[0] + h_ * v.strides[1] + g_ * p_.dvs * v.strides[3];
    for (int64_t t = 0; t < T; ++t) {
      const int64_t row = base + rows[t] * v.strides[2];
      for (int64_t col = 0; col < p_.dvs; ++col) {
        buf_.V[t * p_.dvs + col] = static_cast<A>(load_as_double(v.data, row + col * v.strides[3], v.dtype));
      }
    }
  }

  const Problem& p_;
  const ta_config& c_;
  const KeyMask& mask_;
  const FeatureLayout& L_;
  Blocks blk_;
  WorkerBuffers<A> buf_;
  std::vector<double> tmp_ = std::vector<double>(static_cast<size_t>(p_.ds));
  // Hybrid scratch (small: one query's exact set and one value row at a time).
  std::vector<int64_t> win_keys_;
  std::vector<double> win_scores_;
  std::vector<A> qrow_ = std::vector<A>(static_cast<size_t>(p_.ds));
  std::vector<double> win_num_ = std::vector<double>(static_cast<size_t>(p_.dvs));
  std::vector<double> win_exact_ = std::vector<double>(static_cast<size_t>(p_.dvs));
  std::vector<A> win_acc_ = std::vector<A>(static_cast<size_t>(p_.dvs));
  double q_mul_ = 1, k_mul_ = 1;
  int64_t b_ = 0, h_ = 0, g_ = 0;
};

template <class A>
ta_status run_typed(const Problem& p, const ta_config& c, const KeyMask& mask, unsigned char* ws,
                    ta_stats* stats, ta_reason* reason) {
  const auto t_start = Clock::now();
  const Blocks blocks = blocks_for(p, c);
  const WorkerCounts counts = worker_counts(p, blocks);
  const auto per_worker = static_cast<size_t>(worker_bytes(counts, sizeof(A)));
  const int workers = worker_count(p, c);
  const FeatureLayout layout = make_feature_layout(static_cast<int32_t>(p.ds), p.P);
  const int64_t units = p.B * p.H * p.G;
  std::vector<UnitStats> unit_stats(static_cast<size_t>(units));

  auto make_runner = [&](int worker) {
    return UnitRunner<A>(p, c, mask, layout, blocks, carve<A>(ws + per_worker * static_cast<size_t>(worker), counts));
  };
  auto first_reason = [&] {
    for (const UnitStats& u : unit_stats) {
      if (u.reason != TA_REASON_NONE) return u.reason;
    }
    return TA_REASON_NONE;
  };

  // Phase 1 (early_probe): z, then sampled denominators, before the expensive state.
  if (c.early_probe && c.probe_samples > 0) {
    const auto t0 = Clock::now();
    const std::vector<int64_t> rows = sample_rows(p.Nq, c.probe_samples, c.seed ^ kProbeStream);
    parallel_for(units, workers, [&](int64_t unit, int worker) {
      UnitRunner<A> runner = make_runner(worker);
      runner.set_unit(unit);
      runner.probe(rows, &unit_stats[static_cast<size_t>(unit)]);
    });
    if (stats) {
      stats->probe_ran = 1;
      stats->probe_samples = static_cast<int32_t>(rows.size());
      double probe_min = std::numeric_limits<double>::infinity();
      for (const UnitStats& u : unit_stats) probe_min = std::min(probe_min, u.probe_min);
      stats->probe_denom_min = probe_min;
      stats->time_probe_ms = ms_since(t0);
    }
    if (const ta_reason why = first_reason(); why != TA_REASON_NONE) {
      *reason = why;
      if (stats) stats->time_total_ms = ms_since(t_start);
      return TA_FALLBACK;
    }
    for (UnitStats& u : unit_stats) u = UnitStats{};
  }

  // Phase 2: key pass then query pass per unit, one state per worker.
  const auto t_passes = Clock::now();
  parallel_for(units, workers, [&](int64_t unit, int worker) {
    UnitRunner<A> runner = make_runner(worker);
    runner.set_unit(unit);
    UnitStats* st = &unit_stats[static_cast<size_t>(unit)];
    runner.key_pass(st);
    runner.query_pass(st);
  });
  const double passes_ms = ms_since(t_passes);

  UnitStats total;
  double key_ms = 0, query_ms = 0;
  for (const UnitStats& u : unit_stats) {
    total.den_min = std::min(total.den_min, u.den_min);
    total.den_max = std::max(total.den_max, u.den_max);
    total.den_sum += u.den_sum;
    total.den_count += u.den_count;
    total.le_eps += u.le_eps;
    total.non_finite += u.non_finite;
    key_ms += u.key_ms;
    query_ms += u.query_ms;
    total.window_ms += u.window_ms;
    total.exact_pairs += u.exact_pairs;
  }
  if (stats) {
    stats->denom_count = total.den_count;
    const int64_t finite = total.den_count - total.non_finite;
    stats->denom_min = finite > 0 ? total.den_min : std::nan("");
    stats->denom_max = finite > 0 ? total.den_max : std::nan("");
    stats->denom_mean = finite > 0 ? total.den_sum / static_cast<double>(finite) : std::nan("");
    stats->denom_le_eps = total.le_eps;
    stats->denom_non_finite = total.non_finite;
    // Workers overlap, so the wall time of the passes is split in proportion to the
    // per-thread time each pass took.
    const double busy = key_ms + query_ms;
    stats->time_key_pass_ms = busy > 0 ? passes_ms * key_ms / busy : 0;
    stats->time_query_pass_ms = busy > 0 ? passes_ms * query_ms / busy : 0;
    // The window's share of the query pass, scaled the same way.
    stats->time_window_ms = busy > 0 ? passes_ms * total.window_ms / busy : 0;
    stats->window_active = p.window.active ? 1 : 0;
    stats->window_exact_pairs = total.exact_pairs;
  }
  if (const ta_reason why = first_reason(); why != TA_REASON_NONE) {
    *reason = why;
    if (stats) stats->time_total_ms = ms_since(t_start);
    return TA_FALLBACK;
  }
  *reason = TA_REASON_NONE;
  return TA_OK;
}

}  // namespace

bool plan_memory(const Problem& p, const ta_config& c, MemoryPlan* plan) {
  const Blocks blocks = blocks_for(p, c);
  const WorkerCounts counts = worker_counts(p, blocks);
  const size_t a = acc_size(p.dtype);
  const int workers = worker_count(p, c);
  const i128 state = (counts.S + counts.z) * static_cast<i128>(a) * workers;
  // kAlign of slack lets the engine align a caller's pointer itself.
  const i128 total = worker_bytes(counts, a) * workers + kAlign;
  if (state > kMaxBytes || total > kMaxBytes) return false;
  plan->workers = workers;
  plan->state_bytes = static_cast<int64_t>(state);
  plan->workspace_bytes = static_cast<int64_t>(total);
  return true;
}

ta_status run(const Problem& p, const ta_config& c, const KeyMask& mask, void* workspace, size_t workspace_bytes,
              ta_stats* stats, ta_reason* reason) {
  (void)workspace_bytes;  // checked by the caller against plan_memory
  auto addr = reinterpret_cast<uintptr_t>(workspace);
  auto* ws = reinterpret_cast<unsigned char*>((addr + kAlign - 1) / kAlign * kAlign);
  if (p.dtype == TA_DTYPE_F64) return run_typed<double>(p, c, mask, ws, stats, reason);
  return run_typed<float>(p, c, mask, ws, stats, reason);
}

}  // namespace ta::cpu
