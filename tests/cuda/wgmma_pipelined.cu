// Compiled by check_wgmma_pipelined.cmake only (not linked into any test binary): the wgmma
// kernels, whose ptxas report must not say that their wgmmas are serialized (C7513): the
// prefix x block passes (the P = 3 key pass in both stagings), the window kernel with
// wgmma text stages and the 2-D grid kernel (instantiated here by taking their addresses:
// the library instantiates them through their launchers).
#include "cuda/kernels/pb4_wg_query_pass.cuh"
#include "cuda/kernels/pb_wg_key_pass.cuh"
#include "cuda/kernels/pb_wg_key_pass_tma.cuh"
#include "cuda/kernels/pb_wg_query_pass.cuh"
#include "cuda/kernels/window_grid_wg.cuh"
#include "cuda/kernels/window_mma.cuh"

namespace ta::cuda {
const void* const kWindowKernels[] = {reinterpret_cast<const void*>(&window_mma<__nv_bfloat16, 128, true>),
                                      reinterpret_cast<const void*>(&window_mma<__half, 64, true>),
                                      reinterpret_cast<const void*>(&window_grid_wg<__nv_bfloat16, 128>),
                                      reinterpret_cast<const void*>(&window_grid_wg<__half, 64>)};
}  // namespace ta::cuda
