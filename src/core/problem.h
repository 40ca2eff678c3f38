// Argument validation, guards and the derived description of one attention call.
// Shared by every backend so that the C API answers "can it run?" identically.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/mask.h"
#include "core/window.h"
#include "taylor_attention/taylor_attention.h"

namespace ta {

struct Problem {
  const ta_tensor* q = nullptr;
  const ta_tensor* k = nullptr;
  const ta_tensor* v = nullptr;
  const ta_tensor* mask = nullptr;
  const ta_tensor* out = nullptr;
  ta_dtype dtype = TA_DTYPE_F32;
  ta_device_type device = TA_DEVICE_CPU;
  int64_t B = 0, H = 0, Nq = 0, Nk = 0, d = 0, dv = 0;
  int32_t G = 1;
  int64_t ds = 0, dvs = 0;   // slice dims d/G, dv/G (0 when G does not divide)
  double base_scale = 0;     // config.scale or d^-1/2: the ORIGINAL call's scale
  double slice_scale = 0;    // base_scale * sqrt(G) * scale_mul: the modified function's
  int64_t R = -1;            // features per slice; -1 when it overflows int64
  int32_t P = 0;
  Window window;             // the local-exact hybrid (inactive unless asked for and applicable)
};

// Checks the arguments and the config and fills *problem. Returns TA_OK or an error
// (with the message set). require_data = false accepts NULL data pointers (memory
// estimates from shapes alone).
ta_status describe_problem(const ta_attention_args* args, const ta_config* config,
                           bool require_data, Problem* problem);

// Applies the guards in their documented order; when mask_out is non-NULL and the call
// is runnable, the analysed key mask is returned there. Reads host masks. When a guard
// declines, *detail (if given) explains it with the numbers involved.
ta_reason apply_guards(const Problem& problem, const ta_config& config, KeyMask* mask_out,
                       std::string* detail = nullptr);

ta_status validate_config(const ta_config* config);

// Largest element offset a tensor reaches (sum of (extent-1)*|stride|), or -1 when it
// overflows; the byte span is then (offset+1)*itemsize.
int64_t max_element_offset(const ta_tensor& t);

// True when two distinct elements of t share an address (strides that overlap).
bool elements_overlap(const ta_tensor& t);
// True when the byte ranges a and b reach intersect (same device, both non-NULL).
bool byte_ranges_overlap(const ta_tensor& a, const ta_tensor& b);

}  // namespace ta
