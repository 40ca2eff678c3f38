// Key-padding masks: the only masks the linear form can honour (a key either
// contributes to every query of a batch entry, or to none).
#pragma once

#include <cstdint>
#include <vector>

#include "taylor_attention/taylor_attention.h"

namespace ta {

struct KeyMask {
  std::vector<uint8_t> keep;  // empty: every key attended; else [Bm][Nk], Bm = 1 or B
  int64_t batch_stride = 0;   // Nk when the mask differs per batch entry, 0 when shared
  bool attends(int64_t b, int64_t j) const {
    return keep.empty() || keep[static_cast<size_t>(b * batch_stride + j)] != 0;
  }
  bool empty() const { return keep.empty(); }
};

// Additive float masks: entries at or below this (as the mask dtype rounds it: bf16
// stores -9984) block the key; 0 keeps it.
inline constexpr double kBlockingBias = -1.0e4;

// Converts a mask in one of ComfyUI's broadcast forms into a key mask:
// [Nk], [B|1, Nk], [B|1, 1|Nq, Nk], [B|1, 1|H, 1|Nq, Nk]; bool (nonzero = attend) or
// additive float (0 = attend, <= -1e4 in the mask dtype, or -inf = block). The mask must not vary over
// heads or queries. Returns TA_REASON_NONE or TA_REASON_UNSUPPORTED_MASK; on the latter
// *why names the problem. Reads host memory.
ta_reason analyze_mask(const ta_tensor& mask, int64_t B, int64_t H, int64_t Nq, int64_t Nk,
                       KeyMask* out, const char** why);

}  // namespace ta
