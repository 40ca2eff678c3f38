#include "core/mask.h"

#include <algorithm>
#include <cmath>

#include "core/dtype.h"

namespace ta {
namespace {

// 0 = block, 1 = attend, -1 = a value a key mask cannot express. `blocking` is -1e4 as
// the mask's dtype stores it (bf16 keeps -9984), so a mask built with -1e4 blocks.
int classify(double value, bool is_bool, double blocking) {
  if (is_bool) return value != 0.0 ? 1 : 0;
  if (value == 0.0) return 1;
  if (value <= blocking) return 0;  // includes -inf; NaN compares false
  return -1;
}

double blocking_bias_in(ta_dtype dtype) {
  double stored = 0;
  unsigned char buf[8];
  store_from_double(buf, 0, dtype, kBlockingBias);
  stored = load_as_double(buf, 0, dtype);
  return std::max(stored, kBlockingBias);
}

}  // namespace

ta_reason analyze_mask(const ta_tensor& mask, int64_t B, int64_t H, int64_t Nq, int64_t Nk,
                       KeyMask* out, const char** why) {
  auto refuse = [&](const char* message) {
    if (why) *why = message;
    return TA_REASON_UNSUPPORTED_MASK;
  };
  if (mask.dtype != TA_DTYPE_BOOL && !is_float_dtype(mask.dtype)) {
    return refuse("mask dtype must be bool or float");
  }
  if (mask.device != TA_DEVICE_CPU) return refuse("masks are read on the host: CPU masks only");
  if (mask.ndim < 1 || mask.ndim > 4) return refuse("mask must have 1 to 4 dimensions");
  // Right-align the mask's dims into [Bm, Hm, Qm, Nk] (missing leading dims broadcast).
  int64_t ext[4] = {1, 1, 1, 1};
  int64_t str[4] = {0, 0, 0, 0};
  if (mask.ndim == 2) {  // [B|1, Nk]: the batch dim, not a query dim
    ext[0] = mask.shape[0];
    str[0] = mask.strides[0];
    ext[3] = mask.shape[1];
    str[3] = mask.strides[1];
  } else if (mask.ndim == 3) {  // [B|1, 1|Nq, Nk]
    ext[0] = mask.shape[0];
    str[0] = mask.strides[0];
    ext[2] = mask.shape[1];
    str[2] = mask.strides[1];
    ext[3] = mask.shape[2];
    str[3] = mask.strides[2];
  } else {
    const int off = 4 - mask.ndim;
    for (int i = 0; i < mask.ndim; ++i) {
      ext[off + i] = mask.shape[i];
      str[off + i] = mask.strides[i];
    }
  }
  for (int i = 0; i < 4; ++i) {
    if (ext[i] < 0 || str[i] < 0) return refuse("mask has a negative extent or stride");
  }
  if (ext[3] != Nk) return refuse("mask's last dimension must equal the key count Nk");
  if (ext[0] != 1 && ext[0] != B) return refuse("mask's batch dimension must be 1 or B");
  if (ext[1] != 1 && ext[1] != H) return refuse("mask's head dimension must be 1 or H");
  if (ext[2] != 1 && ext[2] != Nq) return refuse("mask's query dimension must be 1 or Nq");
  if (mask.data == nullptr) return refuse("mask data is NULL");

  const bool is_bool = mask.dtype == TA_DTYPE_BOOL;
  const double blocking = is_bool ? 0.0 : blocking_bias_in(mask.dtype);
  KeyMask result;
  result.batch_stride = ext[0] == 1 ? 0 : Nk;
  result.keep.assign(static_cast<size_t>(ext[0] * Nk), 0);
  bool any_blocked = false;
  for (int64_t b = 0; b < ext[0]; ++b) {
    for (int64_t j = 0; j < Nk; ++j) {
      const int64_t first = b * str[0] + j * str[3];
      const int decision = classify(load_as_double(mask.data, first, mask.dtype), is_bool, blocking);
      if (decision < 0) return refuse("float mask holds a graded bias (only 0 and <= -1e4 allowed)");
      // Every head and query must agree with the first: a key mask, not a score bias.
      for (int64_t h = 0; h < ext[1]; ++h) {
        for (int64_t i = 0; i < ext[2]; ++i) {
          if (h == 0 && i == 0) continue;
          const int64_t at = first + h * str[1] + i * str[2];
          const int other = classify(load_as_double(mask.data, at, mask.dtype), is_bool, blocking);
          if (other < 0) return refuse("float mask holds a graded bias (only 0 and <= -1e4 allowed)");
          if (other != decision) return refuse("mask varies over heads or queries (not a key mask)");
        }
      }
      result.keep[static_cast<size_t>(b * Nk + j)] = static_cast<uint8_t>(decision);
      any_blocked = any_blocked || decision == 0;
    }
  }
  if (!any_blocked) result = KeyMask{};  // all keys kept: same as no mask, bit for bit
  if (out) *out = std::move(result);
  return TA_REASON_NONE;
}

}  // namespace ta
