#include "core/dtype.h"

namespace ta {

float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  uint32_t bits;
  if (exponent == 0) {
    if (mantissa == 0) {
      bits = sign;  // signed zero
    } else {
      // Subnormal half: normalise into a float exponent.
      int e = -1;
      do {
        ++e;
        mantissa <<= 1;
      } while ((mantissa & 0x400u) == 0);
      bits = sign | static_cast<uint32_t>(127 - 15 - e) << 23 | (mantissa & 0x3ffu) << 13;
    }
  } else if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | mantissa << 13;  // Inf or NaN
  } else {
    bits = sign | (exponent + 127 - 15) << 23 | mantissa << 13;
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

uint16_t float_to_half(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t abs = bits & 0x7fffffffu;
  if (abs >= 0x7f800000u) {  // Inf or NaN
    return static_cast<uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u));
  }
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to Inf
  if (abs < 0x38800000u) {
    // Result is subnormal (or zero) in half: shift the implicit-1 mantissa into place
    // with round-to-nearest-even on the bits shifted out.
    if (abs < 0x33000000u) return sign;  // below half the smallest subnormal
    const uint32_t exponent = abs >> 23;
    const uint32_t mantissa = (abs & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - exponent;  // half subnormal unit is 2^-24
    uint32_t half = mantissa >> shift;
    const uint32_t rest = mantissa & ((1u << shift) - 1u);
    const uint32_t halfway = 1u << (shift - 1);
    if (rest > halfway || (rest == halfway && (half & 1u))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  // Normal: rebias the exponent, round the mantissa to 10 bits (nearest even).
  uint32_t half = ((abs - 0x38000000u) >> 13);
  const uint32_t rest = abs & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;
  return static_cast<uint16_t>(sign | half);
}

size_t dtype_size(ta_dtype dtype) {
  switch (dtype) {
    case TA_DTYPE_F16:
    case TA_DTYPE_BF16: return 2;
    case TA_DTYPE_F32: return 4;
    case TA_DTYPE_F64: return 8;
    case TA_DTYPE_BOOL: return 1;
  }
  return 0;
}

const char* dtype_name(ta_dtype dtype) {
  switch (dtype) {
    case TA_DTYPE_F16: return "f16";
    case TA_DTYPE_BF16: return "bf16";
    case TA_DTYPE_F32: return "f32";
    case TA_DTYPE_F64: return "f64";
    case TA_DTYPE_BOOL: return "bool";
  }
  return "unknown";
}

bool is_float_dtype(ta_dtype dtype) {
  return dtype == TA_DTYPE_F16 || dtype == TA_DTYPE_BF16 || dtype == TA_DTYPE_F32 ||
         dtype == TA_DTYPE_F64;
}

}  // namespace ta
