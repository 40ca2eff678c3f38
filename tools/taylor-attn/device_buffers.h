// device_buffers.h - device (CUDA) copies of host arrays, CUDA-event timers and the card's
// facts, for `run`, `bench` and `demo --device cuda`.
//
// No CUDA header appears here: this header compiles in every build. CMake picks one of two
// implementations (tools/taylor-attn/CMakeLists.txt): device_buffers_cuda.cpp, compiled as
// C++ against the CUDA runtime when the library has its CUDA backend (TA_HAVE_CUDA), or
// device_buffers_none.cpp, whose functions all answer "this build has no CUDA backend".
// Every CUDA error becomes a one-line message naming the call and the runtime's error
// string; nothing here throws, exits or aborts. Everything runs on device 0 (the first of
// CUDA_VISIBLE_DEVICES) and on the legacy default stream, the stream the tools hand the
// library (stream NULL).
#ifndef TAYLOR_ATTN_DEVICE_BUFFERS_H_
#define TAYLOR_ATTN_DEVICE_BUFFERS_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "host_array.h"
#include "taylor_attention/taylor_attention.h"

namespace ta_cli {

// The CUDA ordinal every device tensor of the tool lives on.
constexpr int32_t kCudaDeviceId = 0;

// True when this build of the tool was compiled with the CUDA runtime (the library has its
// CUDA backend); says nothing about whether a GPU is present.
bool cuda_compiled();

// Facts about the card, for report headers and JSON (style: record card, driver, versions).
struct CudaDeviceInfo {
  std::string name;              // "NVIDIA H100 80GB HBM3"
  int compute_major = 0, compute_minor = 0;
  int64_t memory_bytes = 0;      // total global memory
  int driver_version = 0;        // as cudaDriverGetVersion: 12080 = 12.8
  int runtime_version = 0;       // as cudaRuntimeGetVersion
  int device_count = 0;          // visible devices
};

// Selects device 0 and fills *info. False with a one-line message when the build has no
// CUDA backend or no device is usable (no driver, no visible device, ...).
bool cuda_device_query(CudaDeviceInfo *info, std::string *error);

// "12.8" from 12080.
std::string cuda_version_text(int version);

// Waits for all work on the device; false with the pending (asynchronous) error, if any.
bool cuda_synchronize(std::string *error);

// One cudaMalloc allocation, freed by the destructor. Move-only.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer &&other) noexcept;
  DeviceBuffer &operator=(DeviceBuffer &&other) noexcept;
  DeviceBuffer(const DeviceBuffer &) = delete;
  DeviceBuffer &operator=(const DeviceBuffer &) = delete;

  // Frees what was held and allocates `bytes` (0 allocates nothing and succeeds).
  // cudaMalloc's alignment (256 bytes at least) meets ta_attention_run's workspace rule.
  bool allocate(size_t bytes, std::string *error);
  // Synchronous copies of `bytes` from the start of the buffer; bytes <= size().
  bool upload(const void *host, size_t bytes, std::string *error);
  bool download(void *host, size_t bytes, std::string *error) const;
  void reset();

  void *data() const { return data_; }
  size_t size() const { return size_; }

 private:
  void *data_ = nullptr;
  size_t size_ = 0;
};

// A contiguous device array with the dtype and shape of a host array.
struct DeviceArray {
  ta_dtype dtype = TA_DTYPE_F32;
  std::vector<int64_t> shape;
  DeviceBuffer buffer;

  int64_t numel() const;
  size_t bytes() const;
  // Contiguous view on device kCudaDeviceId; the array must outlive the view.
  ta_tensor tensor() const;
};

// Device copy of a host array (allocate + upload). `what` names it in messages ("q").
bool upload_array(const HostArray &host, const std::string &what, DeviceArray *out,
                  std::string *error);
// Device array of that dtype and shape, contents unspecified.
bool allocate_array(ta_dtype dtype, const std::vector<int64_t> &shape, const std::string &what,
                    DeviceArray *out, std::string *error);
// Copies a device array into a host array of the same dtype and shape (made here).
bool download_array(const DeviceArray &device, const std::string &what, HostArray *out,
                    std::string *error);

// Elapsed time between two CUDA events recorded on the default stream.
class DeviceTimer {
 public:
  DeviceTimer() = default;
  ~DeviceTimer();
  DeviceTimer(const DeviceTimer &) = delete;
  DeviceTimer &operator=(const DeviceTimer &) = delete;

  bool start(std::string *error);
  // Records the stop event, waits for it and returns the milliseconds since start().
  bool stop(double *ms, std::string *error);

 private:
  bool create(std::string *error);
  void *start_ = nullptr;  // cudaEvent_t
  void *stop_ = nullptr;
};

}  // namespace ta_cli

#endif  // TAYLOR_ATTN_DEVICE_BUFFERS_H_
