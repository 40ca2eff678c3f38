// Failure injection on the GPU (issue 5): a CUDA error or an allocation failure in one call
// returns a status, leaves no pending CUDA error behind (PyTorch checks cudaGetLastError()
// after its own launches and would blame us), keeps the caller's current device, and does
// not poison the next call, which must produce the right output. Compiled with the CUDA
// backend; skipped when no GPU is visible.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "common/ta_api_helpers.h"
#include "taylor_attention/taylor_attention.h"

namespace {

#define SKIP_WITHOUT_GPU() \
  if (ta_backend_available(TA_DEVICE_CUDA) != 1) GTEST_SKIP() << "no CUDA device"

// A host problem and device copies of q, k, v and an output buffer.
struct GpuCall {
  tatest::Problem host;
  void *dq = nullptr, *dk = nullptr, *dv = nullptr, *dout = nullptr;
  ta_tensor q{}, k{}, v{}, out{};

  explicit GpuCall(const tatest::Shape &s) : host(tatest::make_problem(s, TA_DTYPE_F32, 77)) {
    // Contiguous f32 tensors: the device copy holds dense() as floats.
    auto upload = [](const tatest::TestTensor &t, void **dev, ta_tensor *view) {
      const std::vector<double> vals = t.dense();
      const std::vector<float> f(vals.begin(), vals.end());
      EXPECT_EQ(cudaMalloc(dev, f.size() * sizeof(float)), cudaSuccess);
      EXPECT_EQ(cudaMemcpy(*dev, f.data(), f.size() * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
      *view = *t.ptr();
      view->data = *dev;
      view->device = TA_DEVICE_CUDA;
      view->device_id = 0;
    };
    upload(host.q, &dq, &q);
    upload(host.k, &dk, &k);
    upload(host.v, &dv, &v);
    upload(host.out, &dout, &out);
  }
  ~GpuCall() {
    for (void *p : {dq, dk, dv, dout}) cudaFree(p);
  }
  ta_attention_args args() const { return ta_attention_args{&q, &k, &v, nullptr, &out, nullptr}; }

  // The device output against the CPU engine on the same inputs.
  void expect_matches_cpu(const ta_config &c) {
    std::vector<float> got(host.out.dense().size());
    ASSERT_EQ(cudaMemcpy(got.data(), dout, got.size() * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
    const ta_attention_args a = host.args();
    ASSERT_EQ(ta_attention_run(&a, &c, nullptr, 0, nullptr, nullptr), TA_OK) << ta_last_error_message();
    // The GPU computes features and products in bf16 with fp32 accumulation.
    EXPECT_TRUE(tatest::close_rel_l2(std::vector<double>(got.begin(), got.end()), host.out.dense(), 2e-2));
  }
};

ta_config gpu_config() {
  ta_config c = tatest::test_config(3, 1);
  c.early_probe = 0;
  return c;
}

void expect_clean_cuda_state(int device_before) {
  EXPECT_EQ(cudaGetLastError(), cudaSuccess) << "the library left a pending CUDA error";
  int device_after = -1;
  EXPECT_EQ(cudaGetDevice(&device_after), cudaSuccess);
  EXPECT_EQ(device_after, device_before) << "the library changed the caller's current device";
}

TEST(CudaFailures, BadDeviceOrdinalFailsCleanlyAndTheNextCallWorks) {
  SKIP_WITHOUT_GPU();
  GpuCall call(tatest::Shape{1, 2, 150, 150, 32, 32});
  const ta_config c = gpu_config();
  int device = -1;
  ASSERT_EQ(cudaGetDevice(&device), cudaSuccess);
  int count = 0;
  ASSERT_EQ(cudaGetDeviceCount(&count), cudaSuccess);
  for (ta_tensor *t : {&call.q, &call.k, &call.v, &call.out}) t->device_id = count + 7;
  ta_attention_args a = call.args();
  ta_stats st;
  ta_stats_init(&st);
  EXPECT_EQ(ta_attention_run(&a, &c, nullptr, 0, nullptr, &st), TA_ERR_DEVICE);
  EXPECT_NE(std::string(ta_last_error_message()).find("cudaSetDevice"), std::string::npos) << ta_last_error_message();
  expect_clean_cuda_state(device);

  for (ta_tensor *t : {&call.q, &call.k, &call.v, &call.out}) t->device_id = device;
  a = call.args();
  ta_stats_init(&st);
  ASSERT_EQ(ta_attention_run(&a, &c, nullptr, 0, nullptr, &st), TA_OK) << ta_last_error_message();
  EXPECT_EQ(st.backend, TA_BACKEND_CUDA);
  call.expect_matches_cpu(c);
}

TEST(CudaFailures, AllocationFailureIsOutOfMemoryAndTheNextCallWorks) {
  SKIP_WITHOUT_GPU();
  // P=4 on 64-dim heads: a 12 MB state per head, so the call wants ~100 MB of workspace.
  GpuCall call(tatest::Shape{1, 8, 300, 300, 64, 64});
  ta_config c = gpu_config();
  c.P = 4;
  c.sub_head_blocks = 1;
  const ta_attention_args a = call.args();
  size_t need = 0;
  ASSERT_EQ(ta_attention_workspace_size(&a, &c, &need), TA_OK);
  ASSERT_GT(need, size_t{64} << 20);
  int device = -1;
  ASSERT_EQ(cudaGetDevice(&device), cudaSuccess);

  // Take all but 16 MB of free device memory (big chunks first, then smaller ones).
  std::vector<void *> hog;
  for (size_t chunk = size_t{1} << 30; chunk >= (size_t{4} << 20); chunk /= 2) {
    for (;;) {
      size_t free_bytes = 0, total = 0;
      ASSERT_EQ(cudaMemGetInfo(&free_bytes, &total), cudaSuccess);
      if (free_bytes < chunk + (size_t{16} << 20)) break;
      void *p = nullptr;
      if (cudaMalloc(&p, chunk) != cudaSuccess) {
        cudaGetLastError();
        break;
      }
      hog.push_back(p);
    }
  }
  ta_stats st;
  ta_stats_init(&st);
  const ta_status s = ta_attention_run(&a, &c, nullptr, 0, nullptr, &st);
  for (void *p : hog) cudaFree(p);
  EXPECT_EQ(s, TA_ERR_OUT_OF_MEMORY) << ta_last_error_message();
  EXPECT_EQ(st.fallback_reason, TA_REASON_OUT_OF_MEMORY);
  expect_clean_cuda_state(device);

  ta_stats_init(&st);
  ASSERT_EQ(ta_attention_run(&a, &c, nullptr, 0, nullptr, &st), TA_OK) << ta_last_error_message();
  call.expect_matches_cpu(c);
}

TEST(CudaFailures, WorkspaceTooSmallThenRightSizeWorks) {
  SKIP_WITHOUT_GPU();
  GpuCall call(tatest::Shape{2, 2, 130, 130, 32, 32});
  const ta_config c = gpu_config();
  const ta_attention_args a = call.args();
  size_t need = 0;
  ASSERT_EQ(ta_attention_workspace_size(&a, &c, &need), TA_OK);
  void *ws = nullptr;
  ASSERT_EQ(cudaMalloc(&ws, need), cudaSuccess);
  int device = -1;
  ASSERT_EQ(cudaGetDevice(&device), cudaSuccess);
  EXPECT_EQ(ta_attention_run(&a, &c, ws, need - 1, nullptr, nullptr), TA_ERR_WORKSPACE_TOO_SMALL);
  expect_clean_cuda_state(device);
  EXPECT_EQ(ta_attention_run(&a, &c, ws, need, nullptr, nullptr), TA_OK) << ta_last_error_message();
  cudaFree(ws);
  call.expect_matches_cpu(c);
}

// Non-finite inputs on the GPU: the named fallback, never a NaN output reported as OK.
TEST(CudaFailures, NonFiniteInputIsANamedFallbackAndTheNextCallWorks) {
  SKIP_WITHOUT_GPU();
  GpuCall call(tatest::Shape{1, 2, 140, 140, 32, 32});
  const ta_config c = gpu_config();
  const float nan = std::nanf("");
  ASSERT_EQ(cudaMemcpy(call.dk, &nan, sizeof nan, cudaMemcpyHostToDevice), cudaSuccess);
  const ta_attention_args a = call.args();
  ta_stats st;
  ta_stats_init(&st);
  EXPECT_EQ(ta_attention_run(&a, &c, nullptr, 0, nullptr, &st), TA_FALLBACK);
  EXPECT_TRUE(st.fallback_reason == TA_REASON_DENOMINATOR_INVALID || st.fallback_reason == TA_REASON_NON_FINITE_OUTPUT)
      << ta_reason_name(st.fallback_reason);
  const float good = 0.25f;
  ASSERT_EQ(cudaMemcpy(call.dk, &good, sizeof good, cudaMemcpyHostToDevice), cudaSuccess);
  call.host.k.set_at(0, good);
  ASSERT_EQ(ta_attention_run(&a, &c, nullptr, 0, nullptr, &st), TA_OK) << ta_last_error_message();
  call.expect_matches_cpu(c);
}

}  // namespace
