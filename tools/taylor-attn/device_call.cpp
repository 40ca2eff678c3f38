// device_call.cpp - see device_call.h; also the parts of device_buffers.h that need no CUDA
// header (array views and copies on top of DeviceBuffer), shared by both implementations.
#include "device_call.h"

namespace ta_cli {

std::string cuda_version_text(int version) {
  return std::to_string(version / 1000) + "." + std::to_string(version % 1000 / 10);
}

int64_t DeviceArray::numel() const {
  int64_t n = 1;
  for (int64_t e : shape) n *= e;
  return n;
}

size_t DeviceArray::bytes() const { return static_cast<size_t>(numel()) * ta_dtype_size(dtype); }

ta_tensor DeviceArray::tensor() const {
  ta_tensor t{};
  t.data = buffer.data();
  t.dtype = dtype;
  t.device = TA_DEVICE_CUDA;
  t.device_id = kCudaDeviceId;
  t.ndim = static_cast<int32_t>(shape.size());
  int64_t stride = 1;
  for (int i = t.ndim - 1; i >= 0; --i) {
    t.shape[i] = shape[static_cast<size_t>(i)];
    t.strides[i] = stride;
    stride *= shape[static_cast<size_t>(i)];
  }
  return t;
}

bool allocate_array(ta_dtype dtype, const std::vector<int64_t> &shape, const std::string &what,
                    DeviceArray *out, std::string *error) {
  out->dtype = dtype;
  out->shape = shape;
  if (!out->buffer.allocate(out->bytes(), error)) {
    *error = what + " on the device: " + *error;
    return false;
  }
  return true;
}

bool upload_array(const HostArray &host, const std::string &what, DeviceArray *out,
                  std::string *error) {
  if (!allocate_array(host.dtype, host.shape, what, out, error)) return false;
  if (!out->buffer.upload(host.bytes.data(), host.bytes.size(), error)) {
    *error = "uploading " + what + ": " + *error;
    return false;
  }
  return true;
}

bool download_array(const DeviceArray &device, const std::string &what, HostArray *out,
                    std::string *error) {
  *out = make_array(device.dtype, device.shape);
  if (!device.buffer.download(out->bytes.data(), out->bytes.size(), error)) {
    *error = "downloading " + what + ": " + *error;
    return false;
  }
  return true;
}

bool DeviceAttentionCall::upload(const AttentionCall &host, std::string *error) {
  if (!upload_array(host.q, "q", &q, error) || !upload_array(host.k, "k", &k, error) ||
      !upload_array(host.v, "v", &v, error) ||
      !allocate_array(host.out.dtype, host.out.shape, "out", &out, error)) {
    return false;
  }
  mask.reset();
  if (host.mask) {
    mask.emplace();
    if (!upload_array(*host.mask, "mask", &*mask, error)) return false;
  }
  layout = host.layout;  // plain host struct: the library reads it on the host
  prepare();
  return true;
}

bool DeviceAttentionCall::download_out(AttentionCall *host, std::string *error) const {
  // The library ran on the default stream: a synchronous copy on it waits for the call.
  return download_array(out, "out", &host->out, error);
}

const ta_attention_args *DeviceAttentionCall::prepare() {
  return bind_call_args(*this);
}

}  // namespace ta_cli
