// cost_model.h - the FLOP and memory formulas of MATH.md section 3, in one place, so info,
// bench and demo count the same way.
//
//   Taylor, per head:  sum over G slices of 4 * R * (dv/G + 1) * N   (key pass + query pass)
//   exact, per head:   4 * N^2 * d
//   state, per head:   G * R * (dv/G + 1) * 4 bytes (S and z in fp32)
//   break-even N:      G * R * (dv/G + 1) / d  (exact FLOPs = Taylor FLOPs)
// Feature generation (~1/dv of the work) and the softmax are not counted.
// Doubles throughout: R can be astronomically large for big P, and these are estimates.
#ifndef TAYLOR_ATTN_COST_MODEL_H_
#define TAYLOR_ATTN_COST_MODEL_H_

#include <cstdint>
#include <string>

namespace ta_cli {

struct CostModel {
  int64_t head_dim = 0, value_dim = 0;
  int32_t P = 0, sub_head_blocks = 1;
  int64_t slice_dim = 0, slice_value_dim = 0;
  int64_t feature_dim = 0;  // R per slice, from ta_feature_dim

  double state_bytes_per_slice() const;
  double state_bytes_per_head() const;
  double taylor_flops_per_head(double tokens) const;
  double exact_flops_per_head(double tokens) const;
  double break_even_tokens() const;
};

// Fills the model; false (with the library's message) when d or dv is not divisible by G
// or R does not fit in int64.
bool make_cost_model(int64_t head_dim, int64_t value_dim, int32_t P, int32_t sub_head_blocks,
                     CostModel *model, std::string *error);

}  // namespace ta_cli

#endif  // TAYLOR_ATTN_COST_MODEL_H_
