// test_device.cpp - the tool's device module (device_buffers.h, device_call.h) and the
// direct Gaussian generator bench uses. Without a GPU every device operation must fail with
// one line naming the problem; the tests that need a card skip without one
// (ta_backend_available(TA_DEVICE_CUDA) == 0) and run on a GPU machine.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "device_call.h"
#include "host_array.h"
#include "taylor_attention/taylor_attention.h"
#include "workload.h"

#ifndef TA_TOOLS_EXPECT_CUDA
#error "TA_TOOLS_EXPECT_CUDA must say whether the build has the CUDA backend"
#endif

namespace {

using ta_cli::DeviceArray;
using ta_cli::DeviceBuffer;
using ta_cli::HostArray;

bool gpu_present() { return ta_backend_available(TA_DEVICE_CUDA) == 1; }

#define SKIP_WITHOUT_GPU() \
  if (!gpu_present()) GTEST_SKIP() << "no usable CUDA device (ta_backend_available == 0)"
#define SKIP_WITH_GPU() \
  if (gpu_present()) GTEST_SKIP() << "a CUDA device is usable: the failure paths cannot be hit"

void expect_one_line(const std::string &message) {
  EXPECT_FALSE(message.empty());
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
}

// ------------------------------------------------------------------ every build

TEST(ToolsDevice, CMakeSelectedTheImplementationOfThisBuild) {
  EXPECT_EQ(ta_cli::cuda_compiled(), static_cast<bool>(TA_TOOLS_EXPECT_CUDA));
}

TEST(ToolsDevice, ZeroBytesNeedNoDevice) {
  DeviceBuffer buffer;
  std::string error;
  EXPECT_TRUE(buffer.allocate(0, &error)) << error;
  EXPECT_EQ(buffer.data(), nullptr);
  EXPECT_EQ(buffer.size(), 0u);
  EXPECT_TRUE(buffer.upload(nullptr, 0, &error)) << error;
  EXPECT_TRUE(buffer.download(nullptr, 0, &error)) << error;
}

TEST(ToolsDevice, CudaVersionText) {
  EXPECT_EQ(ta_cli::cuda_version_text(12080), "12.8");
  EXPECT_EQ(ta_cli::cuda_version_text(13000), "13.0");
}

TEST(ToolsDevice, DeviceArrayViewIsContiguousOnTheCudaDevice) {
  DeviceArray a;
  a.dtype = TA_DTYPE_BF16;
  a.shape = {1, 3, 5, 7};
  EXPECT_EQ(a.numel(), 105);
  EXPECT_EQ(a.bytes(), 210u);
  const ta_tensor t = a.tensor();
  EXPECT_EQ(t.device, TA_DEVICE_CUDA);
  EXPECT_EQ(t.device_id, ta_cli::kCudaDeviceId);
  EXPECT_EQ(t.ndim, 4);
  EXPECT_EQ(t.strides[0], 105);
  EXPECT_EQ(t.strides[1], 35);
  EXPECT_EQ(t.strides[2], 7);
  EXPECT_EQ(t.strides[3], 1);
}

// Bench's generator writes gaussian_qkv's numbers straight into the arrays.
class ToolsGaussianCall : public ::testing::TestWithParam<ta_dtype> {};

TEST_P(ToolsGaussianCall, SameBytesAsLoadCallOfGaussianQkv) {
  const ta_dtype dtype = GetParam();
  ta_cli::AttentionCall direct, reference;
  ta_cli::load_gaussian_call(2, 3, 17, 5, 1.5, 7, dtype, &direct);
  ta_cli::load_call(ta_cli::gaussian_qkv(2, 3, 17, 5, 1.5, 7), dtype, &reference);
  EXPECT_EQ(direct.q.dtype, dtype);
  EXPECT_EQ(direct.q.shape, (std::vector<int64_t>{2, 3, 17, 5}));
  EXPECT_EQ(direct.q.bytes, reference.q.bytes);
  EXPECT_EQ(direct.k.bytes, reference.k.bytes);
  EXPECT_EQ(direct.v.bytes, reference.v.bytes);
  EXPECT_EQ(direct.out.shape, reference.out.shape);
  EXPECT_EQ(direct.out.dtype, dtype);
  EXPECT_NE(direct.q.bytes, direct.k.bytes);  // independent streams
}

INSTANTIATE_TEST_SUITE_P(ToolsDevice, ToolsGaussianCall,
                         ::testing::Values(TA_DTYPE_F32, TA_DTYPE_BF16, TA_DTYPE_F16),
                         [](const auto &info) {
                           return std::string(ta_cli::dtype_label(info.param));
                         });

// ------------------------------------------------------------------ without a GPU

TEST(ToolsDevice, WithoutAGpuTheQueryIsAOneLineError) {
  SKIP_WITH_GPU();
  ta_cli::CudaDeviceInfo info;
  std::string error;
  EXPECT_FALSE(ta_cli::cuda_device_query(&info, &error));
  expect_one_line(error);
  if (!ta_cli::cuda_compiled()) {
    EXPECT_NE(error.find("no CUDA backend"), std::string::npos) << error;
  } else {
    EXPECT_NE(error.find("CUDA device"), std::string::npos) << error;
  }
}

TEST(ToolsDevice, WithoutAGpuAllocationAndTimersFailWithOneLine) {
  SKIP_WITH_GPU();
  std::string error;
  DeviceBuffer buffer;
  EXPECT_FALSE(buffer.allocate(1024, &error));
  expect_one_line(error);
  EXPECT_EQ(buffer.data(), nullptr);

  error.clear();
  ta_cli::DeviceTimer timer;
  EXPECT_FALSE(timer.start(&error));
  expect_one_line(error);

  error.clear();
  ta_cli::AttentionCall host;
  ta_cli::load_call(ta_cli::gaussian_qkv(1, 1, 8, 4, 1.0, 0), TA_DTYPE_F32, &host);
  ta_cli::DeviceAttentionCall device;
  EXPECT_FALSE(device.upload(host, &error));
  expect_one_line(error);
  EXPECT_NE(error.find("q on the device"), std::string::npos) << error;
}

// ------------------------------------------------------------------ with a GPU

TEST(ToolsDevice, GpuQueryNamesTheCard) {
  SKIP_WITHOUT_GPU();
  ta_cli::CudaDeviceInfo info;
  std::string error;
  ASSERT_TRUE(ta_cli::cuda_device_query(&info, &error)) << error;
  EXPECT_FALSE(info.name.empty());
  EXPECT_GE(info.compute_major, 7);
  EXPECT_GT(info.memory_bytes, int64_t{1} << 30);
  EXPECT_GT(info.driver_version, 0);
  EXPECT_GT(info.runtime_version, 0);
  EXPECT_GE(info.device_count, 1);
}

TEST(ToolsDevice, GpuRoundTripAndMove) {
  SKIP_WITHOUT_GPU();
  std::vector<unsigned char> bytes(1000);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<unsigned char>(i * 7 + 3);
  std::string error;
  DeviceBuffer a;
  ASSERT_TRUE(a.allocate(bytes.size(), &error)) << error;
  ASSERT_NE(a.data(), nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data()) % 256, 0u);  // the workspace rule
  ASSERT_TRUE(a.upload(bytes.data(), bytes.size(), &error)) << error;
  DeviceBuffer b = std::move(a);
  EXPECT_EQ(a.data(), nullptr);
  std::vector<unsigned char> back(bytes.size());
  ASSERT_TRUE(b.download(back.data(), back.size(), &error)) << error;
  EXPECT_EQ(back, bytes);
  EXPECT_FALSE(b.upload(bytes.data(), bytes.size() + 1, &error));  // larger than the buffer
}

TEST(ToolsDevice, GpuAbsurdAllocationFailsAndTheNextOneWorks) {
  SKIP_WITHOUT_GPU();
  std::string error;
  DeviceBuffer huge;
  EXPECT_FALSE(huge.allocate(size_t{1} << 52, &error));
  expect_one_line(error);
  EXPECT_NE(error.find("cudaMalloc"), std::string::npos) << error;
  DeviceBuffer small;
  EXPECT_TRUE(small.allocate(4096, &error)) << error;
}

TEST(ToolsDevice, GpuTimerMeasuresNonNegativeTime) {
  SKIP_WITHOUT_GPU();
  ta_cli::DeviceTimer timer;
  std::string error;
  double ms = -1.0;
  ASSERT_TRUE(timer.start(&error)) << error;
  ASSERT_TRUE(timer.stop(&ms, &error)) << error;
  EXPECT_GE(ms, 0.0);
  EXPECT_LT(ms, 1000.0);
}

// The device call gives what the CPU engine gives on the same inputs (tolerance of
// tests/cuda: bf16 features on the tensor-core path, 2e-2, plus the f16 output rounding).
TEST(ToolsDevice, GpuAttentionCallMatchesTheCpu_B1_H2_N97_d32_P3_f16) {
  SKIP_WITHOUT_GPU();
  ta_cli::AttentionCall host;
  ta_cli::load_call(ta_cli::gaussian_qkv(1, 2, 97, 32, 1.0, 5), TA_DTYPE_F16, &host);
  ta_config config;
  std::memset(&config, 0, sizeof config);
  ta_config_defaults(&config);
  config.P = 3;
  config.sub_head_blocks = 1;
  config.min_tokens = 0;
  std::string error;
  ta_cli::DeviceAttentionCall device;
  ASSERT_TRUE(device.upload(host, &error)) << error;
  ta_stats stats;
  ta_stats_init(&stats);
  ASSERT_EQ(ta_attention_run(device.prepare(), &config, nullptr, 0, nullptr, &stats), TA_OK)
      << ta_last_error_message();
  EXPECT_EQ(stats.backend, TA_BACKEND_CUDA);
  ta_cli::AttentionCall from_gpu;
  ta_cli::load_call(ta_cli::gaussian_qkv(1, 2, 97, 32, 1.0, 5), TA_DTYPE_F16, &from_gpu);
  ASSERT_TRUE(device.download_out(&from_gpu, &error)) << error;
  ASSERT_EQ(ta_attention_run(host.prepare(), &config, nullptr, 0, nullptr, nullptr), TA_OK)
      << ta_last_error_message();
  const double rel = ta_cli::relative_l2(from_gpu.out, host.out);
  EXPECT_TRUE(std::isfinite(rel));
  EXPECT_LT(rel, 2e-2 + 1e-3);
}

}  // namespace
