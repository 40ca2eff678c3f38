// Compiled by check_wgmma_pipelined.cmake only (not linked into any test binary): the three
// wgmma kernels, whose ptxas report must not say that their wgmmas are serialized (C7513).
#include "cuda/kernels/pb4_wg_query_pass.cuh"
#include "cuda/kernels/pb_wg_key_pass.cuh"
#include "cuda/kernels/pb_wg_query_pass.cuh"
