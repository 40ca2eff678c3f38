// TA_HD marks the plain C++ that host code and CUDA kernels share (the plan headers of
// the fast paths and the window kernels): __host__ __device__ under nvcc, nothing else.
#pragma once

#if defined(__CUDACC__)
#define TA_HD __host__ __device__
#else
#define TA_HD
#endif
