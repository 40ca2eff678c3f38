// Fuzz target: the configuration. Every ta_config field takes values at and beyond its
// range (0, +-1, the documented limits and one past them, INT_MIN/INT_MAX, NaN, +-inf,
// denormals, DBL_MAX, raw bits, a wrong struct_size) and goes through ta_config_validate,
// then check / workspace_size / memory_estimate / run / the references on a tiny, valid,
// fully owned problem (any dtype, optional key mask).
//
// Oracles beyond the sanitizers:
//  - validate is the gate: when it refuses, every call refuses the same way
//    (TA_ERR_INVALID_ARGUMENT with a message); when it accepts, check answers TA_OK with
//    a guard reason or none;
//  - check and run agree (as in fuzz_api_args); TA_OK means every output is finite and
//    nothing outside out was written;
//  - a successful run is bit-identical when repeated with one worker thread.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "c_abi_calls.h"
#include "fuzz_common.h"

namespace {

using namespace tafuzz;

constexpr const char *kTarget = "fuzz_config";
OutcomeCounts g_counts(kTarget);
constexpr i128 kMaxWork = i128{1} << 22;            // feature-form work of one run (speed only)
constexpr size_t kMaxWorkspace = size_t{32} << 20;  // below libFuzzer's malloc limit

int32_t pick_field32(FuzzedDataProvider &f, int32_t lo, int32_t hi) {
  switch (f.ConsumeIntegralInRange<int>(0, 5)) {
    case 0: return lo;
    case 1: return hi;
    case 2: return lo - 1;
    case 3: return hi == std::numeric_limits<int32_t>::max() ? hi : hi + 1;
    case 4: return f.ConsumeIntegralInRange<int32_t>(lo, std::max(lo, std::min(hi, lo + 40)));
    default: return pick_int32(f);
  }
}

int64_t pick_field64(FuzzedDataProvider &f, int64_t lo, int64_t typical) {
  switch (f.ConsumeIntegralInRange<int>(0, 4)) {
    case 0: return lo;
    case 1: return lo - 1;
    case 2: return typical;
    case 3: return f.ConsumeIntegralInRange<int64_t>(lo, lo + 200);
    default: return pick_int64(f);
  }
}

// One owned tensor: [guard | elements | guard], contiguous.
struct Owned {
  std::vector<unsigned char> bytes;
  ta_tensor t{};
  static constexpr size_t kGuard = 64;
  Owned(int32_t dtype, std::vector<int64_t> shape) {
    const size_t es = element_size(dtype);
    int64_t n = 1;
    for (int64_t e : shape) n *= e;
    bytes.assign(kGuard + static_cast<size_t>(n) * es + kGuard, 0xFF);
    const int64_t s[TA_MAX_DIMS] = {shape.size() > 0 ? shape[0] : 1, shape.size() > 1 ? shape[1] : 1,
                                    shape.size() > 2 ? shape[2] : 1, shape.size() > 3 ? shape[3] : 1};
    ta_dtype dt;
    set_raw(&dt, dtype);
    ta_tensor_init_contiguous(&t, bytes.data() + kGuard, dt, TA_DEVICE_CPU, static_cast<int32_t>(shape.size()), s);
  }
  int64_t elements() const {
    int64_t n = 1;
    for (int i = 0; i < t.ndim; ++i) n *= t.shape[i];
    return n;
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  FuzzedDataProvider f(data, size);

  // ---- The tiny problem ----
  const int32_t dtype = f.ConsumeIntegralInRange<int32_t>(0, 3);
  const int64_t B = f.ConsumeIntegralInRange<int64_t>(1, 2), H = f.ConsumeIntegralInRange<int64_t>(1, 2);
  const int64_t Nq = f.ConsumeIntegralInRange<int64_t>(1, 8), Nk = f.ConsumeIntegralInRange<int64_t>(1, 8);
  static const int64_t kDims[] = {1, 2, 3, 4, 6, 8, 12};
  const int64_t d = kDims[f.ConsumeIntegralInRange<size_t>(0, 6)], dv = kDims[f.ConsumeIntegralInRange<size_t>(0, 6)];
  Owned q(dtype, {B, H, Nq, d}), k(dtype, {B, H, Nk, d}), v(dtype, {B, H, Nk, dv}), out(dtype, {B, H, Nq, dv});
  const uint32_t seed = f.ConsumeIntegral<uint32_t>();
  const double magnitude = f.ConsumeBool() ? 1.0 : std::ldexp(1.0, f.ConsumeIntegralInRange<int>(-20, 20));
  int64_t n = 0;
  for (Owned *o : {&q, &k, &v}) {
    for_each_offset(o->t, [&](int64_t off) {
      uint32_t h = (seed ^ static_cast<uint32_t>(n++)) * 2654435761u;
      h ^= h >> 13;
      store(static_cast<unsigned char *>(o->t.data), off, dtype,
            static_cast<double>(static_cast<int>(h % 33u) - 16) / 8.0 * magnitude);
    });
  }
  const bool has_mask = f.ConsumeIntegralInRange<int>(0, 3) == 0;
  Owned mask(TA_DTYPE_BOOL, {B, Nk});
  if (has_mask) {
    for_each_offset(mask.t, [&](int64_t off) {
      static_cast<unsigned char *>(mask.t.data)[off] = static_cast<unsigned char>(f.ConsumeIntegralInRange<int>(0, 3) != 0);
    });
  }
  const std::vector<unsigned char> q0 = q.bytes, k0 = k.bytes, v0 = v.bytes, m0 = mask.bytes;
  // A layout that fits Nq: text tokens then one 1-row grid (or none when Nq != Nk).
  ta_token_layout layout{};
  layout.text_tokens = f.ConsumeIntegralInRange<int64_t>(0, Nq);
  layout.num_grids = layout.text_tokens < Nq ? 1 : 0;
  layout.grid_height[0] = 1;
  layout.grid_width[0] = Nq - layout.text_tokens;
  const bool with_layout = Nq == Nk && f.ConsumeBool();
  ta_attention_args args{&q.t, &k.t, &v.t, has_mask ? &mask.t : nullptr, &out.t, with_layout ? &layout : nullptr};

  // ---- The config: each field at or beyond its range, or the default ----
  ta_config c;
  ta_config_defaults(&c);
  c.min_tokens = 0;  // the tiny problem would otherwise always fall back
  auto maybe = [&](auto *field, auto pick) {
    if (f.ConsumeBool()) *field = pick();
  };
  if (f.ConsumeIntegralInRange<int>(0, 15) == 0) c.struct_size = f.ConsumeIntegral<uint32_t>();
  maybe(&c.enabled, [&] { return pick_field32(f, 0, 1); });
  maybe(&c.P, [&] { return pick_field32(f, 1, 16); });
  maybe(&c.min_tokens, [&] { return pick_field64(f, 0, 100); });
  maybe(&c.max_feature_dim_R, [&] { return pick_field64(f, 1, 370000); });
  maybe(&c.sub_head_blocks, [&] { return pick_field32(f, 1, 12); });
  maybe(&c.qk_normalize, [&] { return pick_field32(f, 0, 1); });
  maybe(&c.scale_mul, [&] { return pick_double(f); });
  maybe(&c.scale, [&] { return pick_double(f); });
  maybe(&c.block_size_q, [&] { return pick_field32(f, 1, 64); });
  maybe(&c.block_size_k, [&] { return pick_field32(f, 1, 64); });
  maybe(&c.eps, [&] { return pick_double(f); });
  maybe(&c.fallback_on_negative, [&] { return pick_field32(f, 0, 1); });
  maybe(&c.allow_cross_attention, [&] { return pick_field32(f, 0, 1); });
  maybe(&c.max_head_dim, [&] { return pick_field32(f, 1, 128); });
  maybe(&c.force_fp32, [&] { return pick_field32(f, 0, 1); });
  maybe(&c.early_probe, [&] { return pick_field32(f, 0, 1); });
  maybe(&c.probe_samples, [&] { return pick_field32(f, 0, 16); });
  maybe(&c.denom_fp32, [&] { return pick_field32(f, 0, 1); });
  maybe(&c.quality_check, [&] { return pick_field32(f, 0, 1); });
  maybe(&c.quality_check_samples, [&] { return pick_field32(f, 0, 16); });
  maybe(&c.seed, [&] { return f.ConsumeIntegral<uint64_t>(); });
  maybe(&c.num_threads, [&] { return pick_field32(f, 0, 4); });
  maybe(&c.window_radius, [&] { return pick_field32(f, 0, 3); });
  maybe(&c.window_text_keys, [&] { return pick_field32(f, 0, 1); });
  maybe(&c.window_text_queries, [&] { return pick_field32(f, 0, 1); });

  // ---- validate is the gate ----
  const ta_status vs = ta_config_validate(&c);
  if (vs != TA_OK && vs != TA_ERR_INVALID_ARGUMENT) oracle_failed(kTarget, "validate: unexpected status");
  const std::string vmsg = ta_last_error_message();
  if ((vs == TA_OK) != vmsg.empty()) oracle_failed(kTarget, "validate: message '" + vmsg + "' with " + ta_status_string(vs));

  ta_reason reason = TA_REASON_COUNT_;
  const ta_status cs = ta_attention_check(&args, &c, &reason);
  size_t ws = 0;
  const ta_status wss = ta_attention_workspace_size(&args, &c, &ws);
  ta_memory_estimate est;
  const ta_status es = ta_attention_memory_estimate(&args, &c, &est);
  if (vs != TA_OK) {
    if (cs != TA_ERR_INVALID_ARGUMENT || wss != TA_ERR_INVALID_ARGUMENT || es != TA_ERR_INVALID_ARGUMENT) {
      oracle_failed(kTarget, "validate refused (" + vmsg + ") but check/workspace/estimate said " + ta_status_string(cs) +
                                 "/" + ta_status_string(wss) + "/" + ta_status_string(es));
    }
    ta_stats st;
    ta_stats_init(&st);
    if (ta_attention_run(&args, &c, nullptr, 0, nullptr, &st) != TA_ERR_INVALID_ARGUMENT) {
      oracle_failed(kTarget, "validate refused but run did not");
    }
    if (ta_reference_attention(&args, &c, TA_REFERENCE_EXACT_ORIGINAL) != TA_ERR_INVALID_ARGUMENT) {
      oracle_failed(kTarget, "validate refused but the reference did not");
    }
    if (std::string(ta_last_error_message()).empty()) oracle_failed(kTarget, "refusal without a message");
    return 0;
  }
  if (cs != TA_OK) oracle_failed(kTarget, std::string("valid config, valid problem, check said ") + ta_status_string(cs) +
                                              ": " + ta_last_error_message());
  if (get_raw(reason) < 0 || get_raw(reason) >= TA_REASON_COUNT_ || is_runtime_reason(reason)) {
    oracle_failed(kTarget, "check: reason out of range or a run-time reason");
  }
  if (!known_status(wss) || !known_status(es)) oracle_failed(kTarget, "workspace/estimate: unknown status");
  if (wss == TA_OK && ws > 0 && (es != TA_OK || est.workspace_bytes != static_cast<int64_t>(ws))) {
    oracle_failed(kTarget, "workspace_size and memory_estimate disagree");
  }

  // ---- run, when quick enough ----
  int64_t R = 0;
  const int64_t G = c.sub_head_blocks;
  if (d % G == 0 && dv % G == 0 && ta_feature_dim(d / G, c.P, &R) == TA_OK && reason == TA_REASON_NONE) {
    const i128 work = static_cast<i128>(B) * H * G * (Nq + Nk) * R * (dv / G + 1);
    if (work > kMaxWork) return 0;
  }
  if (wss == TA_OK && ws > kMaxWorkspace) return 0;
  auto run_once = [&](const ta_config &cfg, ta_stats *st) {
    std::fill(out.bytes.begin(), out.bytes.end(), 0xA5);
    ta_stats_init(st);
    return ta_attention_run(&args, &cfg, nullptr, 0, nullptr, st);
  };
  ta_stats st;
  const ta_status rs = run_once(c, &st);
  const std::string rmsg = ta_last_error_message();
  g_counts.add(get_raw(rs));
  if (!known_status(rs)) oracle_failed(kTarget, "run: unknown status");
  if ((rs == TA_OK) != rmsg.empty()) oracle_failed(kTarget, std::string("run: ") + ta_status_string(rs) + " with message '" + rmsg + "'");
  if (reason != TA_REASON_NONE && (rs != TA_FALLBACK || st.fallback_reason != reason)) {
    oracle_failed(kTarget, std::string("check said ") + ta_reason_name(reason) + ", run said " + ta_status_string(rs) + " / " +
                               ta_reason_name(st.fallback_reason));
  }
  if (reason == TA_REASON_NONE && rs == TA_FALLBACK && !is_runtime_reason(st.fallback_reason)) {
    oracle_failed(kTarget, std::string("clean check, run declined with guard ") + ta_reason_name(st.fallback_reason));
  }
  if (rs != TA_OK && rs != TA_FALLBACK && rs != TA_ERR_OUT_OF_MEMORY) {
    oracle_failed(kTarget, std::string("valid call, run said ") + ta_status_string(rs) + ": " + rmsg);
  }
  if (q.bytes != q0 || k.bytes != k0 || v.bytes != v0 || mask.bytes != m0) oracle_failed(kTarget, "run modified an input");
  for (size_t i = 0; i < Owned::kGuard; ++i) {
    if (out.bytes[i] != 0xA5 || out.bytes[out.bytes.size() - 1 - i] != 0xA5) oracle_failed(kTarget, "run wrote outside out");
  }
  if (rs == TA_OK) {
    for_each_offset(out.t, [&](int64_t off) {
      if (!finite_at(static_cast<unsigned char *>(out.t.data), off, dtype)) oracle_failed(kTarget, "TA_OK with a non-finite output");
    });
    // Determinism: one worker thread gives the same bits.
    const std::vector<unsigned char> first = out.bytes;
    ta_config one = c;
    one.num_threads = 1;
    ta_stats st1;
    if (run_once(one, &st1) != TA_OK || out.bytes != first) oracle_failed(kTarget, "num_threads changed the result");
  }

  // ---- The references ignore the guards; any kind value, including unknown ones ----
  const int32_t kind = f.ConsumeBool() ? f.ConsumeIntegralInRange<int32_t>(0, 2) : pick_int32(f);
  if (static_cast<i128>(B) * H * Nq * Nk * (d + dv) <= kMaxWork) {
    const ta_status ref = ta_fuzz_reference_attention(&args, &c, kind);
    if (!known_status(ref)) oracle_failed(kTarget, "reference: unknown status");
    for (size_t i = 0; i < Owned::kGuard; ++i) {
      if (out.bytes[i] != 0xA5 || out.bytes[out.bytes.size() - 1 - i] != 0xA5) oracle_failed(kTarget, "reference wrote outside out");
    }
  }
  return 0;
}
