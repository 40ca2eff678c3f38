/* See c_abi_calls.c: raw-int wrappers of the C ABI's enum-taking functions. */
#ifndef TA_FUZZ_C_ABI_CALLS_H_
#define TA_FUZZ_C_ABI_CALLS_H_

#include "taylor_attention/taylor_attention.h"

#ifdef __cplusplus
extern "C" {
#endif

ta_status ta_fuzz_tensor_init_contiguous(ta_tensor *t, void *data, int32_t dtype, int32_t device, int32_t ndim,
                                         const int64_t *shape);
ta_status ta_fuzz_reference_attention(const ta_attention_args *args, const ta_config *config, int32_t kind);
void ta_fuzz_names(int32_t raw);

#ifdef __cplusplus
}
#endif

#endif /* TA_FUZZ_C_ABI_CALLS_H_ */
