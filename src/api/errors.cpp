#include "api/errors.h"

#include <array>
#include <utility>

namespace ta {
namespace {
// thread_local: concurrent callers never see (or corrupt) each other's message.
thread_local std::string g_message;
}  // namespace

ta_status fail(ta_status status, std::string message) {
  g_message = std::move(message);
  return status;
}

void clear_error() { g_message.clear(); }

const char* last_error() { return g_message.c_str(); }

const char* status_name(ta_status status) {
  switch (status) {
    case TA_OK: return "ok";
    case TA_FALLBACK: return "fallback";
    case TA_ERR_INVALID_ARGUMENT: return "invalid_argument";
    case TA_ERR_WORKSPACE_TOO_SMALL: return "workspace_too_small";
    case TA_ERR_OUT_OF_MEMORY: return "out_of_memory";
    case TA_ERR_UNSUPPORTED: return "unsupported";
    case TA_ERR_DEVICE: return "device";
    case TA_ERR_INTERNAL: return "internal";
  }
  return "unknown";
}

const char* reason_name(ta_reason reason) {
  // Indexed by the enum value; the names are part of the ABI (logs and tests use them).
  static constexpr std::array<const char*, TA_REASON_COUNT_> kNames = {
      "none",
      "disabled",
      "below_min_tokens",
      "cross_attention_disabled",
      "head_dim_too_large",
      "feature_dim_too_large",
      "sub_head_block_mismatch",
      "unsupported_mask",
      "unsupported_dtype",
      "unsupported_layout",
      "unsupported_device",
      "denominator_too_small",
      "denominator_invalid",
      "non_finite_output",
      "out_of_memory",
      "window_no_layout",
      "window_cross_attention",
  };
  const int i = static_cast<int>(reason);
  if (i < 0 || i >= TA_REASON_COUNT_) return "unknown";
  return kNames[static_cast<size_t>(i)];
}

}  // namespace ta
