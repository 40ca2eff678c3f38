// host_array.cpp - see host_array.h.
#include "host_array.h"

#include <cmath>
#include <cstring>

#include "half.h"

namespace ta_cli {
namespace {

size_t element_size(ta_dtype dtype) {
  switch (dtype) {
    case TA_DTYPE_F16:
    case TA_DTYPE_BF16:
      return 2;
    case TA_DTYPE_F32:
      return 4;
    case TA_DTYPE_F64:
      return 8;
    case TA_DTYPE_BOOL:
      return 1;
  }
  return 0;
}

template <typename T>
T load(const unsigned char *p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

template <typename T>
void store(unsigned char *p, T v) {
  std::memcpy(p, &v, sizeof v);
}

}  // namespace

const char *dtype_label(ta_dtype dtype) {
  switch (dtype) {
    case TA_DTYPE_F16:
      return "f16";
    case TA_DTYPE_BF16:
      return "bf16";
    case TA_DTYPE_F32:
      return "f32";
    case TA_DTYPE_F64:
      return "f64";
    case TA_DTYPE_BOOL:
      return "bool";
  }
  return "unknown";
}

bool parse_dtype_label(const std::string &label, ta_dtype *dtype) {
  for (ta_dtype d : {TA_DTYPE_F16, TA_DTYPE_BF16, TA_DTYPE_F32, TA_DTYPE_F64, TA_DTYPE_BOOL}) {
    if (label == dtype_label(d)) {
      *dtype = d;
      return true;
    }
  }
  return false;
}

int64_t HostArray::numel() const {
  int64_t n = 1;
  for (int64_t e : shape) n *= e;
  return n;
}

double HostArray::get(int64_t i) const {
  const unsigned char *p = bytes.data() + static_cast<size_t>(i) * element_size(dtype);
  switch (dtype) {
    case TA_DTYPE_F16:
      return half_to_float(load<uint16_t>(p));
    case TA_DTYPE_BF16:
      return bf16_to_float(load<uint16_t>(p));
    case TA_DTYPE_F32:
      return load<float>(p);
    case TA_DTYPE_F64:
      return load<double>(p);
    case TA_DTYPE_BOOL:
      return *p ? 1.0 : 0.0;
  }
  return 0.0;
}

void HostArray::set(int64_t i, double value) {
  unsigned char *p = bytes.data() + static_cast<size_t>(i) * element_size(dtype);
  switch (dtype) {
    case TA_DTYPE_F16:
      store(p, float_to_half(static_cast<float>(value)));
      break;
    case TA_DTYPE_BF16:
      store(p, float_to_bf16(static_cast<float>(value)));
      break;
    case TA_DTYPE_F32:
      store(p, static_cast<float>(value));
      break;
    case TA_DTYPE_F64:
      store(p, value);
      break;
    case TA_DTYPE_BOOL:
      *p = value != 0.0;
      break;
  }
}

ta_tensor HostArray::tensor() const {
  ta_tensor t{};
  t.data = const_cast<unsigned char *>(bytes.data());
  t.dtype = dtype;
  t.device = TA_DEVICE_CPU;
  t.device_id = 0;
  t.ndim = static_cast<int32_t>(shape.size());
  int64_t stride = 1;
  for (int i = t.ndim - 1; i >= 0; --i) {
    t.shape[i] = shape[static_cast<size_t>(i)];
    t.strides[i] = stride;
    stride *= shape[static_cast<size_t>(i)];
  }
  return t;
}

HostArray make_array(ta_dtype dtype, const std::vector<int64_t> &shape) {
  HostArray a;
  a.dtype = dtype;
  a.shape = shape;
  a.bytes.assign(static_cast<size_t>(a.numel()) * element_size(dtype), 0);
  return a;
}

HostArray make_array(ta_dtype dtype, const std::vector<int64_t> &shape,
                     const std::vector<double> &values) {
  HostArray a = make_array(dtype, shape);
  int64_t n = a.numel();
  for (int64_t i = 0; i < n; ++i) a.set(i, values[static_cast<size_t>(i)]);
  return a;
}

bool from_npy(ta_npy::Array &&array, HostArray *out, std::string *error) {
  switch (array.dtype) {
    case ta_npy::DType::F16:
      out->dtype = TA_DTYPE_F16;
      break;
    case ta_npy::DType::F32:
      out->dtype = TA_DTYPE_F32;
      break;
    case ta_npy::DType::F64:
      out->dtype = TA_DTYPE_F64;
      break;
    case ta_npy::DType::Bool:
      out->dtype = TA_DTYPE_BOOL;
      break;
    default:
      *error = "unsupported .npy dtype";
      return false;
  }
  out->shape = std::move(array.shape);
  out->bytes = std::move(array.data);
  return true;
}

bool to_npy(const HostArray &array, ta_npy::Array *out, std::string *error) {
  switch (array.dtype) {
    case TA_DTYPE_F16:
      out->dtype = ta_npy::DType::F16;
      break;
    case TA_DTYPE_F32:
      out->dtype = ta_npy::DType::F32;
      break;
    case TA_DTYPE_F64:
      out->dtype = ta_npy::DType::F64;
      break;
    case TA_DTYPE_BOOL:
      out->dtype = ta_npy::DType::Bool;
      break;
    default:
      *error = std::string("dtype ") + dtype_label(array.dtype) + " has no .npy equivalent";
      return false;
  }
  out->shape = array.shape;
  out->data = array.bytes;
  return true;
}

double relative_l2(const HostArray &a, const HostArray &ref) {
  if (a.shape != ref.shape) return std::nan("");
  double diff = 0.0, norm = 0.0;
  int64_t n = ref.numel();
  for (int64_t i = 0; i < n; ++i) {
    double r = ref.get(i);
    double d = a.get(i) - r;
    diff += d * d;
    norm += r * r;
  }
  if (norm == 0.0) return diff == 0.0 ? 0.0 : std::nan("");
  return std::sqrt(diff / norm);
}

}  // namespace ta_cli
