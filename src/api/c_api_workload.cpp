// The C ABI of the synthetic workload (ta_workload_defaults, ta_workload_generate): argument
// checks with messages naming the failing field; the math is in workload/synthetic.cpp.
// Like every entry point, nothing escapes as an exception.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <new>
#include <string>
#include <utility>

#include "api/errors.h"
#include "core/dtype.h"
#include "core/parallel.h"
#include "core/problem.h"
#include "core/window.h"
#include "taylor_attention/taylor_attention.h"
#include "workload/synthetic.h"

using namespace ta;

namespace {

ta_status invalid(const std::string& message) { return fail(TA_ERR_INVALID_ARGUMENT, message); }

std::string number(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", x);
  return buf;
}

// Built by append: `"[" + std::to_string(...)` trips a GCC 12 -Wrestrict false positive
// (GCC bug 105329).
std::string dims(const ta_tensor& t) {
  std::string s(1, '[');
  for (int i = 0; i < 4; ++i) {
    if (i > 0) s += ',';
    s += std::to_string(t.shape[i]);
  }
  s += ']';
  return s;
}

ta_status check_params(const ta_workload_params* p) {
  if (p == nullptr) return invalid("params is NULL");
  if (p->struct_size != sizeof(ta_workload_params)) {
    return invalid("params.struct_size is " + std::to_string(p->struct_size) +
                   ", expected sizeof(ta_workload_params) = " + std::to_string(sizeof(ta_workload_params)) +
                   " (call ta_workload_defaults first)");
  }
  if (!(p->smoothness > 0) || !std::isfinite(p->smoothness)) {
    return invalid("params.smoothness must be finite and > 0, is " + number(p->smoothness));
  }
  if (!std::isfinite(p->gain)) return invalid("params.gain must be finite, is " + number(p->gain));
  if (!(p->alignment >= 0 && p->alignment <= 1)) {
    return invalid("params.alignment must be in [0, 1], is " + number(p->alignment));
  }
  if (p->rope != 0 && p->rope != 1) return invalid("params.rope must be 0 or 1, is " + std::to_string(p->rope));
  return validate_layout(p->layout, -1);
}

ta_status check_tensor(const ta_tensor* t, const char* name) {
  const std::string n(name);
  if (t == nullptr) return invalid(n + " is NULL");
  if (raw_enum(t->device) != TA_DEVICE_CPU) {
    return invalid(n + " must be a CPU tensor (the generator writes host memory), device type is " +
                   std::to_string(raw_enum(t->device)));
  }
  if (t->ndim != 4) return invalid(n + " must have 4 dimensions [B,H,N,D], has " + std::to_string(t->ndim));
  for (int i = 0; i < 4; ++i) {
    if (t->shape[i] < 1) {
      return invalid(n + ".shape[" + std::to_string(i) + "] is " + std::to_string(t->shape[i]) + " (need >= 1)");
    }
    if (t->strides[i] < 0) {
      return invalid(n + ".strides[" + std::to_string(i) + "] is negative (" + std::to_string(t->strides[i]) + ")");
    }
  }
  if (!known_dtype(t->dtype) || !is_float_dtype(t->dtype)) {
    const std::string what = known_dtype(t->dtype) ? std::string(dtype_name(t->dtype))
                                                   : "unknown (" + std::to_string(raw_enum(t->dtype)) + ")";
    return invalid(n + " dtype " + what + " is not supported (f16, bf16, f32 or f64)");
  }
  if (t->data == nullptr) return invalid(n + ".data is NULL");
  const int64_t last = max_element_offset(*t);
  if (last < 0 || last >= INT64_MAX / static_cast<int64_t>(dtype_size(t->dtype))) {
    return invalid(n + ": shape x strides overflow 64-bit byte offsets");
  }
  // Heads are written by different threads: distinct elements need distinct addresses.
  if (elements_overlap(*t)) return invalid(n + " strides make distinct elements overlap");
  return TA_OK;
}

ta_status check_arguments(const ta_workload_params* params, const ta_tensor* q, const ta_tensor* k,
                          const ta_tensor* v) {
  if (ta_status s = check_params(params); s != TA_OK) return s;
  if (ta_status s = check_tensor(q, "q"); s != TA_OK) return s;
  if (ta_status s = check_tensor(k, "k"); s != TA_OK) return s;
  if (ta_status s = check_tensor(v, "v"); s != TA_OK) return s;
  for (int i = 0; i < 4; ++i) {
    if (k->shape[i] != q->shape[i]) return invalid("q and k shapes differ: q " + dims(*q) + ", k " + dims(*k));
  }
  for (int i = 0; i < 3; ++i) {
    if (v->shape[i] != q->shape[i]) {
      return invalid("v must be [B,H,N,dv] with q's B, H, N: q " + dims(*q) + ", v " + dims(*v));
    }
  }
  if (ta_status s = validate_layout(params->layout, q->shape[2]); s != TA_OK) return s;
  if (params->rope && q->shape[3] % 2 != 0) {
    return invalid("rope needs an even head dim (pairs of dims rotate), q " + dims(*q) + " has d = " +
                   std::to_string(q->shape[3]) + " (set params.rope = 0)");
  }
  const std::pair<const char*, std::pair<const ta_tensor*, const ta_tensor*>> pairs[] = {
      {"q and k", {q, k}}, {"q and v", {q, v}}, {"k and v", {k, v}}};
  for (const auto& [what, ab] : pairs) {
    if (byte_ranges_overlap(*ab.first, *ab.second)) return invalid(std::string(what) + " memory overlaps");
  }
  return TA_OK;
}

// True when every element of a (validated, CPU) 4-D tensor is finite.
bool all_finite(const ta_tensor& t) {
  for (int64_t i0 = 0; i0 < t.shape[0]; ++i0)
    for (int64_t i1 = 0; i1 < t.shape[1]; ++i1)
      for (int64_t i2 = 0; i2 < t.shape[2]; ++i2)
        for (int64_t i3 = 0; i3 < t.shape[3]; ++i3) {
          const int64_t off = i0 * t.strides[0] + i1 * t.strides[1] + i2 * t.strides[2] + i3 * t.strides[3];
          if (!std::isfinite(load_as_double(t.data, off, t.dtype))) return false;
        }
  return true;
}

}  // namespace

extern "C" {

ta_status ta_workload_defaults(ta_workload_params* params) {
  if (params == nullptr) return fail(TA_ERR_INVALID_ARGUMENT, "params is NULL");
  *params = workload::default_params();
  clear_error();
  return TA_OK;
}

ta_status ta_workload_generate(const ta_workload_params* params, const ta_tensor* q, const ta_tensor* k,
                               const ta_tensor* v) {
  return guarded([&]() -> ta_status {
    if (ta_status s = check_arguments(params, q, k, v); s != TA_OK) return s;
    workload::generate(*params, *q, *k, *v, resolve_threads(0));
    // A finite but huge gain can overflow the output dtype (f16 ends at 65504): say so
    // rather than hand out infinities (found by fuzz/fuzz_workload).
    if (!all_finite(*q) || !all_finite(*k)) {
      return invalid("params.gain = " + number(params->gain) + " makes q or k overflow " + dtype_name(q->dtype) +
                     " (elements reach about |gain| * sqrt(d))");
    }
    clear_error();
    return TA_OK;
  });
}

}  // extern "C"
