// A device copy of a host test tensor for the GPU tests (header-only; needs the CUDA runtime).
#ifndef TA_TESTS_COMMON_TA_CUDA_COPY_H_
#define TA_TESTS_COMMON_TA_CUDA_COPY_H_

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>

#include "common/ta_test_tensor.h"
#include "taylor_attention/taylor_attention.h"

namespace tatest {

// A device copy of a host test tensor's whole span (gaps included, so the output's canaries
// travel to the GPU and back and a write outside the elements shows after the download),
// viewed with the host tensor's shape and strides.
class DeviceCopy {
 public:
  explicit DeviceCopy(TestTensor &host) : bytes_(host.span_bytes()) {
    EXPECT_EQ(cudaMalloc(&dev_, std::max<size_t>(bytes_, 1)), cudaSuccess);
    upload(host);
    t_ = host.desc();
    t_.data = dev_;
    t_.device = TA_DEVICE_CUDA;
    t_.device_id = 0;
  }
  ~DeviceCopy() { cudaFree(dev_); }
  DeviceCopy(const DeviceCopy &) = delete;
  DeviceCopy &operator=(const DeviceCopy &) = delete;
  void upload(TestTensor &host) {
    EXPECT_EQ(cudaMemcpy(dev_, host.data(), bytes_, cudaMemcpyHostToDevice), cudaSuccess);
  }
  void download(TestTensor &host) const {
    EXPECT_EQ(cudaMemcpy(host.data(), dev_, bytes_, cudaMemcpyDeviceToHost), cudaSuccess);
  }
  ta_tensor &desc() { return t_; }
  const ta_tensor *ptr() const { return &t_; }

 private:
  size_t bytes_;
  void *dev_ = nullptr;
  ta_tensor t_{};
};

}  // namespace tatest

#endif  // TA_TESTS_COMMON_TA_CUDA_COPY_H_
