// device_call.h - the device counterpart of AttentionCall (workload.h): q, k, v, an optional
// mask and out as CUDA arrays, with the ta_tensor views and ta_attention_args pointing at
// them. Built on device_buffers.h, so it compiles (and fails cleanly) in every build.
#ifndef TAYLOR_ATTN_DEVICE_CALL_H_
#define TAYLOR_ATTN_DEVICE_CALL_H_

#include <optional>
#include <string>

#include "device_buffers.h"
#include "taylor_attention/taylor_attention.h"
#include "workload.h"

namespace ta_cli {

struct DeviceAttentionCall {
  DeviceArray q, k, v, out;
  std::optional<DeviceArray> mask;
  std::optional<ta_token_layout> layout;  // copied from the host call by upload()
  ta_tensor tq{}, tk{}, tv{}, tout{}, tmask{};
  ta_attention_args args{};

  DeviceAttentionCall() = default;
  DeviceAttentionCall(const DeviceAttentionCall &) = delete;
  DeviceAttentionCall &operator=(const DeviceAttentionCall &) = delete;

  // Uploads host.q, k, v (and mask), allocates out with host.out's dtype and shape and
  // copies host.layout.
  bool upload(const AttentionCall &host, std::string *error);
  // Copies the device output into host->out (same dtype and shape).
  bool download_out(AttentionCall *host, std::string *error) const;
  // Refreshes the views and args; call after upload and before each use.
  const ta_attention_args *prepare();
};

}  // namespace ta_cli

#endif  // TAYLOR_ATTN_DEVICE_CALL_H_
