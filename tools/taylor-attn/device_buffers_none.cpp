// device_buffers_none.cpp - device_buffers.h for builds without the CUDA backend: every
// device operation fails with the same one-line message, so `--device cuda` reports why
// instead of failing to link or crashing.
#include <utility>

#include "device_buffers.h"

namespace ta_cli {
namespace {

bool no_cuda(std::string *error) {
  if (error) {
    *error =
        "this build has no CUDA backend (taylor-attention was configured without a CUDA "
        "compiler); rebuild with -DTA_ENABLE_CUDA=ON or use --device cpu";
  }
  return false;
}

}  // namespace

bool cuda_compiled() { return false; }

bool cuda_device_query(CudaDeviceInfo *, std::string *error) { return no_cuda(error); }

bool cuda_synchronize(std::string *error) { return no_cuda(error); }

DeviceBuffer::~DeviceBuffer() { reset(); }

DeviceBuffer::DeviceBuffer(DeviceBuffer &&other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

DeviceBuffer &DeviceBuffer::operator=(DeviceBuffer &&other) noexcept {
  data_ = std::exchange(other.data_, nullptr);
  size_ = std::exchange(other.size_, 0);
  return *this;
}

void DeviceBuffer::reset() {
  data_ = nullptr;
  size_ = 0;
}

bool DeviceBuffer::allocate(size_t bytes, std::string *error) {
  reset();
  return bytes == 0 || no_cuda(error);
}

bool DeviceBuffer::upload(const void *, size_t bytes, std::string *error) {
  return bytes == 0 || no_cuda(error);
}

bool DeviceBuffer::download(void *, size_t bytes, std::string *error) const {
  return bytes == 0 || no_cuda(error);
}

DeviceTimer::~DeviceTimer() = default;

bool DeviceTimer::create(std::string *error) { return no_cuda(error); }

bool DeviceTimer::start(std::string *error) { return create(error); }

bool DeviceTimer::stop(double *, std::string *error) { return no_cuda(error); }

}  // namespace ta_cli
