// How many units (B x H x G slices) the CUDA engine works on at once: the workspace holds
// the states (and on the prefix x block paths the prepared keys and values) of one batch
// of units. Plain C++ so host-only tests can check it.
//
// The batch is bounded by kStateBudgetBytes (1 GiB), which keeps P = 4 on full 128-dim
// heads (199 MB of state per head) inside a 24 GB card, and on the prefix x block paths
// also by the call's own size: the fp32 Taylor state R x (dv/G + 1) of every unit plus the
// output tensor (issue 4: extra device memory per call <= 1.1 x (state + output); the last
// 10% is left to the per-call parts: token factors, statistics, masks, the hybrid's). The
// generic kernels keep an fp32 state and its bf16 copy (1.5x the reference) and stay at
// the 1 GiB bound: at small N the call-size bound would run them one unit at a time.
// Batches are then evened out (units / batches rounded up), so the last batch is not a
// thin tail of a few units on an otherwise idle GPU.
#pragma once

#include <algorithm>
#include <cstdint>

namespace ta::cuda {

inline constexpr int64_t kStateBudgetBytes = int64_t{1} << 30;
inline constexpr int64_t kMaxUnitsPerBatch = 65535;  // gridDim.y

// The call's reference size: every unit's fp32 state plus the output, in bytes.
inline int64_t call_reference_bytes(int64_t units, int64_t R, int64_t dvs, int64_t B, int64_t H, int64_t Nq,
                                    int64_t dv, int64_t out_elem_bytes) {
  return units * R * (dvs + 1) * 4 + B * H * Nq * dv * out_elem_bytes;
}

// Units per batch for `units` units of `per_unit` workspace bytes each within `budget`
// bytes (at least one unit), evened out over the batches.
inline int64_t balanced_units_per_batch(int64_t units, int64_t per_unit, int64_t budget) {
  const int64_t cap = std::clamp<int64_t>(budget / std::max<int64_t>(1, per_unit), 1,
                                          std::min<int64_t>(std::max<int64_t>(units, 1), kMaxUnitsPerBatch));
  const int64_t batches = (units + cap - 1) / cap;
  return std::max<int64_t>(1, (units + batches - 1) / batches);
}

}  // namespace ta::cuda
