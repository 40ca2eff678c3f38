// The CUDA backend behind the C API. Plain C++ interface (no CUDA types), so the API
// layer compiles without nvcc; cuda_stub.cpp provides it when CUDA is not built.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/mask.h"
#include "core/problem.h"
#include "taylor_attention/taylor_attention.h"

namespace ta::cuda {

// True when the backend was compiled in and a CUDA device is visible.
bool available();

struct MemoryPlan {
  int64_t units_per_batch = 0;  // (batch, head, slice) units whose states live at once
  int64_t state_bytes = 0;      // those states: S and z in fp32
  int64_t workspace_bytes = 0;  // everything, alignment slack included
};

// Sizes for a runnable problem. False when the call cannot be planned on this backend
// (sizes overflow, or a slice dim the kernels cannot index); *why then says why.
bool plan_memory(const Problem& p, const ta_config& c, MemoryPlan* plan, const char** why);

// Copies a device mask's bytes to the host and returns a host view of it, so the
// host mask analysis serves both backends. TA_ERR_DEVICE on a CUDA error.
ta_status copy_mask_to_host(const ta_tensor& mask, std::vector<unsigned char>* storage, ta_tensor* host_view);

// Runs the call on `stream` with the caller's device workspace (or allocates one when
// workspace is NULL). Returns TA_OK, TA_FALLBACK with *reason, or an error status.
ta_status run(const Problem& p, const ta_config& c, const KeyMask& mask, void* workspace, size_t workspace_bytes,
              void* stream, ta_stats* stats, ta_reason* reason);

}  // namespace ta::cuda
