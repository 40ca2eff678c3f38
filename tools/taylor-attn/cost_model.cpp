// cost_model.cpp - see cost_model.h.
#include "cost_model.h"

#include "taylor_attention/taylor_attention.h"

namespace ta_cli {

double CostModel::state_bytes_per_slice() const {
  return static_cast<double>(feature_dim) * static_cast<double>(slice_value_dim + 1) * 4.0;
}

double CostModel::state_bytes_per_head() const { return sub_head_blocks * state_bytes_per_slice(); }

double CostModel::taylor_flops_per_head(double tokens) const {
  return sub_head_blocks * 4.0 * static_cast<double>(feature_dim) *
         static_cast<double>(slice_value_dim + 1) * tokens;
}

double CostModel::exact_flops_per_head(double tokens) const {
  return 4.0 * tokens * tokens * static_cast<double>(head_dim);
}

double CostModel::break_even_tokens() const {
  return sub_head_blocks * static_cast<double>(feature_dim) *
         static_cast<double>(slice_value_dim + 1) / static_cast<double>(head_dim);
}

bool make_cost_model(int64_t head_dim, int64_t value_dim, int32_t P, int32_t sub_head_blocks,
                     CostModel *model, std::string *error) {
  if (head_dim < 1 || value_dim < 1 || sub_head_blocks < 1) {
    *error = "head dim, value dim and sub-head blocks must be at least 1";
    return false;
  }
  if (head_dim % sub_head_blocks != 0 || value_dim % sub_head_blocks != 0) {
    *error = "sub-head blocks G=" + std::to_string(sub_head_blocks) + " must divide the head dim " +
             std::to_string(head_dim) + " and the value dim " + std::to_string(value_dim);
    return false;
  }
  model->head_dim = head_dim;
  model->value_dim = value_dim;
  model->P = P;
  model->sub_head_blocks = sub_head_blocks;
  model->slice_dim = head_dim / sub_head_blocks;
  model->slice_value_dim = value_dim / sub_head_blocks;
  ta_status st = ta_feature_dim(model->slice_dim, P, &model->feature_dim);
  if (st != TA_OK) {
    *error = std::string("ta_feature_dim(") + std::to_string(model->slice_dim) + ", " +
             std::to_string(P) + "): " + ta_status_string(st) + ": " + ta_last_error_message();
    return false;
  }
  return true;
}

}  // namespace ta_cli
