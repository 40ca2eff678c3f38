/* Calls into the C ABI the way a C caller (or ctypes) does: in C an enum parameter is a
 * plain int, so any value can be passed. The C++ tests cannot form an out-of-range enum
 * value without undefined behaviour of their own, so they go through these wrappers. */
#include "taylor_attention/taylor_attention.h"

const char *tatest_c_status_string(int raw) { return ta_status_string((ta_status)raw); }
const char *tatest_c_reason_name(int raw) { return ta_reason_name((ta_reason)raw); }
const char *tatest_c_dtype_name(int raw) { return ta_dtype_name((ta_dtype)raw); }
size_t tatest_c_dtype_size(int raw) { return ta_dtype_size((ta_dtype)raw); }
const char *tatest_c_backend_name(int raw) { return ta_backend_name((ta_backend)raw); }
int tatest_c_backend_available(int raw) { return ta_backend_available((ta_device_type)raw); }
ta_status tatest_c_tensor_init_contiguous(ta_tensor *t, void *data, int dtype, int device, int32_t ndim,
                                          const int64_t *shape) {
  return ta_tensor_init_contiguous(t, data, (ta_dtype)dtype, (ta_device_type)device, ndim, shape);
}
ta_status tatest_c_reference_attention(const ta_attention_args *args, const ta_config *config, int kind) {
  return ta_reference_attention(args, config, (ta_reference_kind)kind);
}
