// Element types: conversions between the storage dtypes and float/double.
// f16 and bf16 are converted by bit manipulation (round to nearest even), so the
// library needs no compiler support for half types.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "taylor_attention/taylor_attention.h"

namespace ta {

float half_to_float(uint16_t h);
uint16_t float_to_half(float f);

inline float bf16_to_float(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

inline uint16_t float_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  if ((bits & 0x7f800000u) == 0x7f800000u && (bits & 0x007fffffu) != 0) {
    return static_cast<uint16_t>((bits >> 16) | 0x0040u);  // quiet NaN, keep sign
  }
  const uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);  // nearest, ties to even
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

// A C caller can store any int in an enum field; reading it as the enum type would be
// undefined for values outside the enumerators, so fields are inspected as integers.
template <class Enum>
int32_t raw_enum(const Enum& e) {
  int32_t raw = 0;
  std::memcpy(&raw, &e, sizeof raw);
  return raw;
}

inline bool known_dtype(const ta_dtype& dtype) {
  const int32_t raw = raw_enum(dtype);
  return raw >= TA_DTYPE_F16 && raw <= TA_DTYPE_BOOL;
}

size_t dtype_size(ta_dtype dtype);
const char* dtype_name(ta_dtype dtype);
bool is_float_dtype(ta_dtype dtype);

// Reads element i (already an element offset) of a buffer of the given dtype.
inline double load_as_double(const void* base, int64_t offset, ta_dtype dtype) {
  switch (dtype) {
    case TA_DTYPE_F16: return half_to_float(static_cast<const uint16_t*>(base)[offset]);
    case TA_DTYPE_BF16: return bf16_to_float(static_cast<const uint16_t*>(base)[offset]);
    case TA_DTYPE_F32: return static_cast<const float*>(base)[offset];
    case TA_DTYPE_F64: return static_cast<const double*>(base)[offset];
    case TA_DTYPE_BOOL: return static_cast<const uint8_t*>(base)[offset] != 0 ? 1.0 : 0.0;
  }
  return 0.0;
}

inline void store_from_double(void* base, int64_t offset, ta_dtype dtype, double value) {
  switch (dtype) {
    case TA_DTYPE_F16:
      static_cast<uint16_t*>(base)[offset] = float_to_half(static_cast<float>(value));
      break;
    case TA_DTYPE_BF16:
      static_cast<uint16_t*>(base)[offset] = float_to_bf16(static_cast<float>(value));
      break;
    case TA_DTYPE_F32: static_cast<float*>(base)[offset] = static_cast<float>(value); break;
    case TA_DTYPE_F64: static_cast<double*>(base)[offset] = value; break;
    case TA_DTYPE_BOOL: static_cast<uint8_t*>(base)[offset] = value != 0.0 ? 1 : 0; break;
  }
}

}  // namespace ta
