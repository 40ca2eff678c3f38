#include "core/problem.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <string>

#include "api/errors.h"
#include "core/combinatorics.h"
#include "core/dtype.h"
#include "core/wide_int.h"
#include "cuda/limits.h"

namespace ta {
namespace {

constexpr int32_t kMaxP = 16;

ta_status invalid(const std::string& message) { return fail(TA_ERR_INVALID_ARGUMENT, message); }

// A 4-D operand: extents > 0, data present (unless only shapes matter), and byte
// offsets that fit in 64 bits.
ta_status check_operand(const ta_tensor* t, const char* name, bool require_data) {
  const std::string n(name);
  if (t == nullptr) return invalid(n + " is NULL");
  if (t->ndim != 4) return invalid(n + " must have 4 dimensions [B,H,N,D], has " + std::to_string(t->ndim));
  for (int i = 0; i < 4; ++i) {
    if (t->shape[i] < 0) return invalid(n + ".shape[" + std::to_string(i) + "] is negative");
    if (t->shape[i] == 0) return invalid(n + ".shape[" + std::to_string(i) + "] is zero (empty tensors are not supported)");
  }
  if (!known_dtype(t->dtype)) return invalid(n + " has an unknown dtype " + std::to_string(raw_enum(t->dtype)));
  if (raw_enum(t->device) != TA_DEVICE_CPU && raw_enum(t->device) != TA_DEVICE_CUDA) {
    return invalid(n + " has an unknown device type " + std::to_string(raw_enum(t->device)));
  }
  const int64_t last = max_element_offset(*t);
  if (last < 0 || last >= INT64_MAX / static_cast<int64_t>(dtype_size(t->dtype))) {
    return invalid(n + ": shape x strides overflow 64-bit byte offsets");
  }
  if (require_data && t->data == nullptr) return invalid(n + ".data is NULL");
  return TA_OK;
}

bool has_negative_stride(const ta_tensor& t) {
  for (int i = 0; i < t.ndim && i < TA_MAX_DIMS; ++i) {
    if (t.strides[i] < 0) return true;
  }
  return false;
}

}  // namespace

// Distinct output elements must map to distinct addresses, or threads would race and
// results would overwrite each other.
bool elements_overlap(const ta_tensor& t) {
  std::array<int, 4> order{0, 1, 2, 3};
  std::sort(order.begin(), order.end(), [&](int a, int b) { return t.strides[a] < t.strides[b]; });
  int64_t span = 1;  // elements covered by the dims placed so far
  for (int i : order) {
    if (t.shape[i] == 1) continue;
    if (t.strides[i] < span) return true;
    // (shape-1)*stride fits in int64 (check_operand), shape*stride need not for a 1-byte
    // dtype; saturate: any later dim with extent > 1 would then overflow check_operand.
    if (__builtin_mul_overflow(t.strides[i], t.shape[i], &span)) span = INT64_MAX;
  }
  return false;
}

bool byte_ranges_overlap(const ta_tensor& a, const ta_tensor& b) {
  if (a.data == nullptr || b.data == nullptr || a.device != b.device) return false;
  const auto lo_a = reinterpret_cast<uintptr_t>(a.data);
  const auto lo_b = reinterpret_cast<uintptr_t>(b.data);
  const uintptr_t hi_a = lo_a + static_cast<uintptr_t>(max_element_offset(a) + 1) * dtype_size(a.dtype);
  const uintptr_t hi_b = lo_b + static_cast<uintptr_t>(max_element_offset(b) + 1) * dtype_size(b.dtype);
  return lo_a < hi_b && lo_b < hi_a;
}

int64_t max_element_offset(const ta_tensor& t) {
  i128 last = 0;
  for (int i = 0; i < t.ndim && i < TA_MAX_DIMS; ++i) {
    if (t.shape[i] <= 0) continue;
    const i128 stride = t.strides[i] < 0 ? -static_cast<i128>(t.strides[i]) : t.strides[i];
    last += static_cast<i128>(t.shape[i] - 1) * stride;
    if (last > INT64_MAX) return -1;
  }
  return static_cast<int64_t>(last);
}

ta_status validate_config(const ta_config* c) {
  if (c == nullptr) return invalid("config is NULL");
  if (c->struct_size != sizeof(ta_config)) {
    return invalid("config.struct_size is " + std::to_string(c->struct_size) + ", expected sizeof(ta_config) = " +
                   std::to_string(sizeof(ta_config)) + " (call ta_config_defaults first)");
  }
  if (c->P < 1 || c->P > kMaxP) return invalid("config.P must be in 1..16, is " + std::to_string(c->P));
  if (c->sub_head_blocks < 1) return invalid("config.sub_head_blocks must be >= 1");
  if (c->min_tokens < 0) return invalid("config.min_tokens must be >= 0");
  if (c->max_feature_dim_R < 1) return invalid("config.max_feature_dim_R must be >= 1");
  if (c->max_head_dim < 1) return invalid("config.max_head_dim must be >= 1");
  if (!std::isfinite(c->scale_mul)) return invalid("config.scale_mul must be finite");
  if (!(c->scale >= 0) || !std::isfinite(c->scale)) return invalid("config.scale must be finite and >= 0 (0 = d^-1/2)");
  if (!(c->eps > 0) || !std::isfinite(c->eps)) return invalid("config.eps must be finite and > 0");
  if (c->block_size_q < 1) return invalid("config.block_size_q must be >= 1");
  if (c->block_size_k < 1) return invalid("config.block_size_k must be >= 1");
  if (c->probe_samples < 0) return invalid("config.probe_samples must be >= 0");
  if (c->quality_check_samples < 0) return invalid("config.quality_check_samples must be >= 0");
  if (c->num_threads < 0) return invalid("config.num_threads must be >= 0 (0 = all hardware threads)");
  if (c->window_radius < 0) return invalid("config.window_radius must be >= 0 (0 = off)");
  return TA_OK;
}

ta_status describe_problem(const ta_attention_args* args, const ta_config* config, bool require_data,
                           Problem* p) {
  if (args == nullptr) return invalid("args is NULL");
  if (ta_status s = validate_config(config); s != TA_OK) return s;
  if (ta_status s = check_operand(args->q, "q", require_data); s != TA_OK) return s;
  if (ta_status s = check_operand(args->k, "k", require_data); s != TA_OK) return s;
  if (ta_status s = check_operand(args->v, "v", require_data); s != TA_OK) return s;
  if (ta_status s = check_operand(args->out, "out", require_data); s != TA_OK) return s;
  const ta_tensor& q = *args->q;
  const ta_tensor& k = *args->k;
  const ta_tensor& v = *args->v;
  const ta_tensor& o = *args->out;
  auto dims = [](const ta_tensor& t) {
    return std::to_string(t.shape[0]) + "," + std::to_string(t.shape[1]) + "," + std::to_string(t.shape[2]) + "," +
           std::to_string(t.shape[3]);
  };
  if (k.shape[0] != q.shape[0] || v.shape[0] != q.shape[0] || k.shape[1] != q.shape[1] || v.shape[1] != q.shape[1]) {
    return invalid("batch/head dims differ: q [" + dims(q) + "], k [" + dims(k) + "], v [" + dims(v) + "]");
  }
  if (k.shape[3] != q.shape[3]) return invalid("q and k head dims differ: q [" + dims(q) + "], k [" + dims(k) + "]");
  if (v.shape[2] != k.shape[2]) return invalid("k and v token counts differ: k [" + dims(k) + "], v [" + dims(v) + "]");
  if (o.shape[0] != q.shape[0] || o.shape[1] != q.shape[1] || o.shape[2] != q.shape[2] || o.shape[3] != v.shape[3]) {
    return invalid("out must be [B,H,Nq,dv] = [" + std::to_string(q.shape[0]) + "," + std::to_string(q.shape[1]) + "," +
                   std::to_string(q.shape[2]) + "," + std::to_string(v.shape[3]) + "], is [" + dims(o) + "]");
  }
  if (o.dtype != q.dtype) {
    return invalid(std::string("out dtype ") + dtype_name(o.dtype) + " differs from q dtype " + dtype_name(q.dtype));
  }
  if (o.device != q.device) return invalid("out is on a different device than q");
  for (int i = 0; i < 4; ++i) {
    if (o.strides[i] < 0) return invalid("out.strides[" + std::to_string(i) + "] is negative");
  }
  if (elements_overlap(o)) return invalid("out strides make distinct elements overlap");
  if (byte_ranges_overlap(o, q) || byte_ranges_overlap(o, k) || byte_ranges_overlap(o, v)) {
    return invalid("out memory overlaps q, k or v");
  }
  if (args->mask != nullptr) {
    const ta_tensor& m = *args->mask;
    if (m.ndim < 1 || m.ndim > 4) return invalid("mask must have 1 to 4 dimensions");
    for (int i = 0; i < m.ndim; ++i) {
      if (m.shape[i] <= 0) return invalid("mask.shape[" + std::to_string(i) + "] must be positive");
    }
    if (!known_dtype(m.dtype)) return invalid("mask has an unknown dtype " + std::to_string(raw_enum(m.dtype)));
    if (raw_enum(m.device) != TA_DEVICE_CPU && raw_enum(m.device) != TA_DEVICE_CUDA) {
      return invalid("mask has an unknown device type " + std::to_string(raw_enum(m.device)));
    }
    if (require_data && m.data == nullptr) return invalid("mask.data is NULL");
    const int64_t last = max_element_offset(m);
    if (last < 0 || last >= INT64_MAX / 8) return invalid("mask: shape x strides overflow 64-bit byte offsets");
  }
  if (args->layout != nullptr) {
    // A layout describes self-attention tokens; with Nq != Nk only its structure is checked
    // (the window then does not apply, with a named reason).
    const int64_t tokens = q.shape[2] == k.shape[2] ? q.shape[2] : -1;
    if (ta_status s = validate_layout(*args->layout, tokens); s != TA_OK) return s;
  }

  p->q = args->q;
  p->k = args->k;
  p->v = args->v;
  p->mask = args->mask;
  p->out = args->out;
  p->dtype = q.dtype;
  p->device = q.device;
  p->B = q.shape[0];
  p->H = q.shape[1];
  p->Nq = q.shape[2];
  p->Nk = k.shape[2];
  p->d = q.shape[3];
  p->dv = v.shape[3];
  p->G = config->sub_head_blocks;
  p->P = config->P;
  const bool divides = p->d % p->G == 0 && p->dv % p->G == 0;
  p->ds = divides ? p->d / p->G : 0;
  p->dvs = divides ? p->dv / p->G : 0;
  p->base_scale = config->scale > 0 ? config->scale : 1.0 / std::sqrt(static_cast<double>(p->d));
  p->slice_scale = p->base_scale * std::sqrt(static_cast<double>(p->G)) * config->scale_mul;
  const auto R = divides ? feature_dim(p->ds, config->P) : std::nullopt;
  p->R = R ? *R : -1;
  p->window = make_window(args->layout, *config, p->Nq, p->Nk);
  clear_error();
  return TA_OK;
}

ta_reason apply_guards(const Problem& p, const ta_config& c, KeyMask* mask_out, std::string* detail) {
  auto decline = [&](ta_reason reason, const std::string& why) {
    if (detail) *detail = std::string(reason_name(reason)) + ": " + why;
    return reason;
  };
  auto num = [](auto x) { return std::to_string(x); };
  if (!c.enabled) return decline(TA_REASON_DISABLED, "config.enabled is 0");
  if (!ta_backend_available(p.device)) {
    return decline(TA_REASON_UNSUPPORTED_DEVICE, "this build has no backend for CUDA tensors");
  }
  const ta_dtype dt = p.dtype;
  if (p.k->dtype != dt || p.v->dtype != dt || !is_float_dtype(dt)) {
    return decline(TA_REASON_UNSUPPORTED_DTYPE, std::string("q/k/v dtypes ") + dtype_name(dt) + "/" +
                                                    dtype_name(p.k->dtype) + "/" + dtype_name(p.v->dtype) +
                                                    " (need one of f16, bf16, f32, f64 for all three)");
  }
  if (dt == TA_DTYPE_F64 && p.device != TA_DEVICE_CPU) {
    return decline(TA_REASON_UNSUPPORTED_DTYPE, "f64 is supported on the CPU only");
  }
  if (p.k->device != p.device || p.v->device != p.device || p.k->device_id != p.q->device_id ||
      p.v->device_id != p.q->device_id || p.out->device_id != p.q->device_id) {
    return decline(TA_REASON_UNSUPPORTED_LAYOUT, "q, k, v and out are not on one device");
  }
  if (has_negative_stride(*p.q) || has_negative_stride(*p.k) || has_negative_stride(*p.v)) {
    return decline(TA_REASON_UNSUPPORTED_LAYOUT, "negative strides are not supported");
  }
  if (p.mask != nullptr) {
    const char* why = "";
    if (analyze_mask(*p.mask, p.B, p.H, p.Nq, p.Nk, mask_out, &why) != TA_REASON_NONE) {
      return decline(TA_REASON_UNSUPPORTED_MASK, why);
    }
  } else if (mask_out != nullptr) {
    *mask_out = KeyMask{};
  }
  if (p.ds == 0) {
    return decline(TA_REASON_SUB_HEAD_BLOCK_MISMATCH, "sub_head_blocks " + num(p.G) + " does not divide d=" +
                                                          num(p.d) + " and dv=" + num(p.dv));
  }
  if (p.Nq != p.Nk && !c.allow_cross_attention) {
    return decline(TA_REASON_CROSS_ATTENTION_DISABLED, "Nq=" + num(p.Nq) + " != Nk=" + num(p.Nk));
  }
  if (std::max(p.Nq, p.Nk) < c.min_tokens) {
    return decline(TA_REASON_BELOW_MIN_TOKENS,
                   "max(Nq, Nk)=" + num(std::max(p.Nq, p.Nk)) + " < min_tokens=" + num(c.min_tokens));
  }
  if (p.ds > c.max_head_dim) {
    return decline(TA_REASON_HEAD_DIM_TOO_LARGE, "slice dim " + num(p.ds) + " > max_head_dim=" + num(c.max_head_dim));
  }
  if (p.device == TA_DEVICE_CUDA && (p.ds > cuda::kMaxSliceDim || p.dvs > cuda::kMaxValueSliceDim)) {
    return decline(TA_REASON_HEAD_DIM_TOO_LARGE, "the CUDA kernels take slice dims up to " + num(cuda::kMaxSliceDim) +
                                                     " (d/G) and " + num(cuda::kMaxValueSliceDim) + " (dv/G)");
  }
  if (p.R < 0 || p.R > c.max_feature_dim_R) {
    return decline(TA_REASON_FEATURE_DIM_TOO_LARGE,
                   "R(" + num(p.ds) + ", P=" + num(p.P) + ") = " + (p.R < 0 ? std::string("overflow") : num(p.R)) +
                       " > max_feature_dim_R=" + num(c.max_feature_dim_R));
  }
  return TA_REASON_NONE;
}

}  // namespace ta
