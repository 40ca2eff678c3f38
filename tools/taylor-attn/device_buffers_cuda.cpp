// device_buffers_cuda.cpp - device_buffers.h on the CUDA runtime. The only file of the tool
// that includes a CUDA header; CMake compiles it (as C++, linked to CUDA::cudart_static)
// instead of device_buffers_none.cpp when the library has its CUDA backend.
#include <cuda_runtime.h>

#include <string>
#include <utility>

#include "device_buffers.h"
#include "units.h"

namespace ta_cli {
namespace {

// "what: cudaErrorMemoryAllocation: out of memory". cudaGetLastError clears the error
// state afterwards, so a failed call does not poison the next one (sticky errors stay).
bool cuda_fail(cudaError_t e, const std::string &what, std::string *error) {
  cudaGetLastError();
  if (error) *error = what + ": " + cudaGetErrorName(e) + ": " + cudaGetErrorString(e);
  return false;
}

bool select_device(std::string *error) {
  cudaError_t e = cudaSetDevice(kCudaDeviceId);
  return e == cudaSuccess || cuda_fail(e, "cudaSetDevice(" + std::to_string(kCudaDeviceId) + ")",
                                       error);
}

cudaEvent_t as_event(void *p) { return static_cast<cudaEvent_t>(p); }

}  // namespace

bool cuda_compiled() { return true; }

bool cuda_device_query(CudaDeviceInfo *info, std::string *error) {
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) return cuda_fail(e, "no usable CUDA device (cudaGetDeviceCount)", error);
  if (count == 0) {
    if (error) *error = "no CUDA device is visible (cudaGetDeviceCount = 0)";
    return false;
  }
  if (!select_device(error)) return false;
  cudaDeviceProp prop{};
  e = cudaGetDeviceProperties(&prop, kCudaDeviceId);
  if (e != cudaSuccess) return cuda_fail(e, "cudaGetDeviceProperties", error);
  info->name = prop.name;
  info->compute_major = prop.major;
  info->compute_minor = prop.minor;
  info->memory_bytes = static_cast<int64_t>(prop.totalGlobalMem);
  info->device_count = count;
  e = cudaDriverGetVersion(&info->driver_version);
  if (e != cudaSuccess) return cuda_fail(e, "cudaDriverGetVersion", error);
  e = cudaRuntimeGetVersion(&info->runtime_version);
  if (e != cudaSuccess) return cuda_fail(e, "cudaRuntimeGetVersion", error);
  return true;
}

bool cuda_synchronize(std::string *error) {
  cudaError_t e = cudaDeviceSynchronize();
  return e == cudaSuccess || cuda_fail(e, "cudaDeviceSynchronize", error);
}

DeviceBuffer::~DeviceBuffer() { reset(); }

DeviceBuffer::DeviceBuffer(DeviceBuffer &&other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

DeviceBuffer &DeviceBuffer::operator=(DeviceBuffer &&other) noexcept {
  if (this != &other) {
    reset();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

void DeviceBuffer::reset() {
  // cudaFree synchronises the device; an error here has nowhere to go and is cleared.
  if (data_ != nullptr && cudaFree(data_) != cudaSuccess) cudaGetLastError();
  data_ = nullptr;
  size_ = 0;
}

bool DeviceBuffer::allocate(size_t bytes, std::string *error) {
  reset();
  if (bytes == 0) return true;
  if (!select_device(error)) return false;
  void *p = nullptr;
  cudaError_t e = cudaMalloc(&p, bytes);
  if (e != cudaSuccess) {
    return cuda_fail(e, "cudaMalloc of " + format_bytes(static_cast<double>(bytes)), error);
  }
  data_ = p;
  size_ = bytes;
  return true;
}

bool DeviceBuffer::upload(const void *host, size_t bytes, std::string *error) {
  if (bytes == 0) return true;
  if (bytes > size_) {
    if (error) *error = "upload of " + std::to_string(bytes) + " bytes into a buffer of " +
                        std::to_string(size_);
    return false;
  }
  cudaError_t e = cudaMemcpy(data_, host, bytes, cudaMemcpyHostToDevice);
  return e == cudaSuccess || cuda_fail(e, "cudaMemcpy host to device", error);
}

bool DeviceBuffer::download(void *host, size_t bytes, std::string *error) const {
  if (bytes == 0) return true;
  if (bytes > size_) {
    if (error) *error = "download of " + std::to_string(bytes) + " bytes from a buffer of " +
                        std::to_string(size_);
    return false;
  }
  cudaError_t e = cudaMemcpy(host, data_, bytes, cudaMemcpyDeviceToHost);
  return e == cudaSuccess || cuda_fail(e, "cudaMemcpy device to host", error);
}

DeviceTimer::~DeviceTimer() {
  if (start_ != nullptr) cudaEventDestroy(as_event(start_));
  if (stop_ != nullptr) cudaEventDestroy(as_event(stop_));
}

bool DeviceTimer::create(std::string *error) {
  if (start_ != nullptr) return true;
  cudaEvent_t a = nullptr, b = nullptr;
  cudaError_t e = cudaEventCreate(&a);
  if (e != cudaSuccess) return cuda_fail(e, "cudaEventCreate", error);
  e = cudaEventCreate(&b);
  if (e != cudaSuccess) {
    cudaEventDestroy(a);
    return cuda_fail(e, "cudaEventCreate", error);
  }
  start_ = a;
  stop_ = b;
  return true;
}

bool DeviceTimer::start(std::string *error) {
  if (!create(error)) return false;
  cudaError_t e = cudaEventRecord(as_event(start_), nullptr);
  return e == cudaSuccess || cuda_fail(e, "cudaEventRecord", error);
}

bool DeviceTimer::stop(double *ms, std::string *error) {
  if (start_ == nullptr) {
    if (error) *error = "DeviceTimer::stop without start";
    return false;
  }
  cudaError_t e = cudaEventRecord(as_event(stop_), nullptr);
  if (e != cudaSuccess) return cuda_fail(e, "cudaEventRecord", error);
  e = cudaEventSynchronize(as_event(stop_));
  if (e != cudaSuccess) return cuda_fail(e, "cudaEventSynchronize", error);
  float elapsed = 0.0f;
  e = cudaEventElapsedTime(&elapsed, as_event(start_), as_event(stop_));
  if (e != cudaSuccess) return cuda_fail(e, "cudaEventElapsedTime", error);
  *ms = static_cast<double>(elapsed);
  return true;
}

}  // namespace ta_cli
