// Built when the CUDA backend is not compiled: CUDA tensors are answered with
// TA_REASON_UNSUPPORTED_DEVICE by the guards, so these are never reached for work.
#include "api/errors.h"
#include "cuda/cuda_backend.h"
#include "cuda/prefix_block_plan.h"
#include "cuda/window_plan.h"

namespace ta::cuda {

bool available() { return false; }

bool plan_memory(const Problem&, const ta_config&, MemoryPlan*, const char** why) {
  if (why) *why = "this build has no CUDA backend";
  return false;
}

ta_status copy_mask_to_host(const ta_tensor&, std::vector<unsigned char>*, ta_tensor*) {
  return fail(TA_ERR_UNSUPPORTED, "this build has no CUDA backend");
}

ta_status run(const Problem&, const ta_config&, const KeyMask&, void*, size_t, void*, ta_stats*, ta_reason*) {
  return fail(TA_ERR_UNSUPPORTED, "this build has no CUDA backend");
}

void set_pass_smem_cap_for_testing(int64_t) {}

PassKernels last_pass_kernels() { return PassKernels::kGeneric; }

bool device_has_wgmma(int) { return false; }

int last_key_split() { return 1; }

void set_key_split_cap_for_testing(int) {}
bool last_key_pass_tma() { return false; }
void set_key_pass_tma_for_testing(bool) {}

void set_window_wgmma_for_testing(bool) {}

WindowKernel last_window_kernel() { return WindowKernel::kNone; }
void set_window_tma_for_testing(bool) {}
bool last_window_tma() { return false; }

}  // namespace ta::cuda
