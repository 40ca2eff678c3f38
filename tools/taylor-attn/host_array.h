// host_array.h - owned CPU arrays that the CLI hands to the library as ta_tensor views.
//
// One representation for arrays read from .npy files, synthetic workloads and outputs, so
// every command converts, compares and writes them the same way.
#ifndef TAYLOR_ATTN_HOST_ARRAY_H_
#define TAYLOR_ATTN_HOST_ARRAY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "npy.h"
#include "taylor_attention/taylor_attention.h"

namespace ta_cli {

struct HostArray {
  ta_dtype dtype = TA_DTYPE_F32;
  std::vector<int64_t> shape;
  std::vector<unsigned char> bytes;  // contiguous, row-major

  int64_t numel() const;
  // Element i (row-major) read as double, whatever the dtype.
  double get(int64_t i) const;
  void set(int64_t i, double value);  // rounds to the dtype (nearest even)
  // Contiguous CPU view; the array must outlive the view. Shapes of more than
  // TA_MAX_DIMS dimensions are rejected before a view is made (see check_rank).
  ta_tensor tensor() const;
};

// Zero-filled array. Throws std::bad_alloc when memory runs out (main reports it).
HostArray make_array(ta_dtype dtype, const std::vector<int64_t> &shape);
// Values (row-major) rounded into a new array of the given dtype.
HostArray make_array(ta_dtype dtype, const std::vector<int64_t> &shape,
                     const std::vector<double> &values);

// .npy <-> host. Bool and f16/f32/f64 map one to one; bf16 has no .npy dtype.
bool from_npy(ta_npy::Array &&array, HostArray *out, std::string *error);
bool to_npy(const HostArray &array, ta_npy::Array *out, std::string *error);

// ||a - ref|| / ||ref|| over all elements, in double. NaN when the shapes differ or
// ref is all zeros (and a is not).
double relative_l2(const HostArray &a, const HostArray &ref);

// "f16", "f32", ... (ta_dtype_name is the library's; this one needs no library call).
const char *dtype_label(ta_dtype dtype);
bool parse_dtype_label(const std::string &label, ta_dtype *dtype);

}  // namespace ta_cli

#endif  // TAYLOR_ATTN_HOST_ARRAY_H_
