/* Calls into the C ABI the way a C caller does: enum parameters are plain ints in C, so
 * any value can be passed. The C++ harnesses cannot form an out-of-range enum value
 * without undefined behaviour of their own, so they pass raw values through here. */
#include "c_abi_calls.h"

ta_status ta_fuzz_tensor_init_contiguous(ta_tensor *t, void *data, int32_t dtype, int32_t device, int32_t ndim,
                                         const int64_t *shape) {
  return ta_tensor_init_contiguous(t, data, (ta_dtype)dtype, (ta_device_type)device, ndim, shape);
}

ta_status ta_fuzz_reference_attention(const ta_attention_args *args, const ta_config *config, int32_t kind) {
  return ta_reference_attention(args, config, (ta_reference_kind)kind);
}

void ta_fuzz_names(int32_t raw) {
  /* The name functions must answer any value with a string ("unknown" out of range). */
  const char *s[4];
  s[0] = ta_status_string((ta_status)raw);
  s[1] = ta_reason_name((ta_reason)raw);
  s[2] = ta_dtype_name((ta_dtype)raw);
  s[3] = ta_backend_name((ta_backend)raw);
  for (int i = 0; i < 4; ++i) {
    if (s[i] == 0 || s[i][0] == '\0') __builtin_trap();
  }
  (void)ta_dtype_size((ta_dtype)raw);
  (void)ta_backend_available((ta_device_type)raw);
}
