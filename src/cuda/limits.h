// What the CUDA kernels can index, known to the guards without including CUDA headers.
#pragma once

#include <cstdint>

namespace ta::cuda {

// Feature tables hold coordinate indices as uint8.
inline constexpr int64_t kMaxSliceDim = 255;
// Columns of the state a kernel instantiation holds: dv/G values, z, z's low part.
inline constexpr int64_t kMaxStateColumns = 136;
inline constexpr int64_t kMaxValueSliceDim = kMaxStateColumns - 2;

}  // namespace ta::cuda
