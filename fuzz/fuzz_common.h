// Shared pieces of the C API fuzz targets: raw enum access, value pickers that favour
// boundaries, element iteration, dtype encoding of finite test values, and the
// oracle-failure exit. Header-only; uses the public header alone.
#ifndef TA_FUZZ_FUZZ_COMMON_H_
#define TA_FUZZ_FUZZ_COMMON_H_

#include <fuzzer/FuzzedDataProvider.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "taylor_attention/taylor_attention.h"

namespace tafuzz {

using i128 = __int128;

[[noreturn]] inline void oracle_failed(const char *target, const std::string &what) {
  std::fprintf(stderr, "%s oracle failed: %s\n", target, what.c_str());
  std::abort();
}

// Enum fields are written and read as raw 32-bit values: a C caller can put any int
// there, and the harness must not form an invalid C++ enum value itself.
template <class E>
void set_raw(E *field, int32_t raw) {
  static_assert(sizeof(E) == sizeof(int32_t), "enums of the ABI are 32-bit");
  std::memcpy(field, &raw, sizeof raw);
}
template <class E>
int32_t get_raw(const E &field) {
  int32_t raw;
  std::memcpy(&raw, &field, sizeof raw);
  return raw;
}

// Bytes per element by the header's table (not the library's), 0 when unknown.
inline size_t element_size(int32_t raw_dtype) {
  switch (raw_dtype) {
    case TA_DTYPE_F16:
    case TA_DTYPE_BF16: return 2;
    case TA_DTYPE_F32: return 4;
    case TA_DTYPE_F64: return 8;
    case TA_DTYPE_BOOL: return 1;
    default: return 0;
  }
}

inline int64_t pick_int64(FuzzedDataProvider &f) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  switch (f.ConsumeIntegralInRange<int>(0, 11)) {
    case 0: return 0;
    case 1: return 1;
    case 2: return -1;
    case 3: return kMax;
    case 4: return kMin;
    case 5: return kMax - f.ConsumeIntegralInRange<int64_t>(0, 16);
    case 6: return int64_t{1} << f.ConsumeIntegralInRange<int>(8, 62);
    case 7: return (int64_t{1} << f.ConsumeIntegralInRange<int>(8, 62)) + f.ConsumeIntegralInRange<int64_t>(-2, 2);
    case 8: return -(int64_t{1} << f.ConsumeIntegralInRange<int>(0, 62));
    case 9: return int64_t{1} << 31;
    case 10: return f.ConsumeIntegralInRange<int64_t>(0, 40);
    default: return f.ConsumeIntegral<int64_t>();
  }
}

inline int32_t pick_int32(FuzzedDataProvider &f) {
  switch (f.ConsumeIntegralInRange<int>(0, 9)) {
    case 0: return 0;
    case 1: return 1;
    case 2: return -1;
    case 3: return std::numeric_limits<int32_t>::max();
    case 4: return std::numeric_limits<int32_t>::min();
    case 5: return f.ConsumeIntegralInRange<int32_t>(2, 20);
    case 6: return 1 << f.ConsumeIntegralInRange<int>(5, 30);
    case 7: return -f.ConsumeIntegralInRange<int32_t>(2, 20);
    default: return f.ConsumeIntegral<int32_t>();
  }
}

inline double pick_double(FuzzedDataProvider &f) {
  switch (f.ConsumeIntegralInRange<int>(0, 15)) {
    case 0: return 0.0;
    case 1: return -0.0;
    case 2: return 1.0;
    case 3: return -1.0;
    case 4: return std::numeric_limits<double>::infinity();
    case 5: return -std::numeric_limits<double>::infinity();
    case 6: return std::numeric_limits<double>::quiet_NaN();
    case 7: return std::numeric_limits<double>::max();
    case 8: return std::numeric_limits<double>::denorm_min();
    case 9: return std::numeric_limits<double>::min();
    case 10: return std::ldexp(1.0, f.ConsumeIntegralInRange<int>(-1074, 1023));
    case 11: return -std::ldexp(1.0, f.ConsumeIntegralInRange<int>(-1074, 1023));
    case 12: return f.ConsumeFloatingPointInRange<double>(-4.0, 4.0);
    case 13: return 1e-6;
    default: {
      const uint64_t bits = f.ConsumeIntegral<uint64_t>();
      double d;
      std::memcpy(&d, &bits, sizeof d);
      return d;
    }
  }
}

// Calls fn(element offset) for every element of the first nd dims (row-major order).
// The caller bounds the element count.
template <class Fn>
void for_each_offset(const ta_tensor &t, Fn fn) {
  const int nd = t.ndim;
  int64_t idx[TA_MAX_DIMS] = {0, 0, 0, 0};
  while (true) {
    int64_t off = 0;
    for (int i = 0; i < nd; ++i) off += idx[i] * t.strides[i];
    fn(off);
    int i = nd - 1;
    for (; i >= 0; --i) {
      if (++idx[i] < t.shape[i]) break;
      idx[i] = 0;
    }
    if (i < 0) return;
  }
}

// f32 bits of x; bf16 keeps the top half; f16 from f32 for the values used here (zero
// and normal numbers within f16's range; the harness only encodes such values).
inline uint32_t f32_bits(float x) {
  uint32_t b;
  std::memcpy(&b, &x, sizeof b);
  return b;
}
inline uint16_t to_f16(float x) {
  const uint32_t b = f32_bits(x);
  const uint16_t sign = static_cast<uint16_t>((b >> 16) & 0x8000u);
  if ((b & 0x7fffffffu) == 0) return sign;
  if ((b & 0x7f800000u) == 0x7f800000u) return static_cast<uint16_t>(sign | 0x7c00u | ((b & 0x7fffffu) ? 0x200u : 0u));
  const int e = static_cast<int>((b >> 23) & 0xff) - 127 + 15;
  if (e >= 31) return static_cast<uint16_t>(sign | 0x7c00u);
  if (e <= 0) return sign;  // flush: not used for values the harness writes
  return static_cast<uint16_t>(sign | (e << 10) | ((b >> 13) & 0x3ffu));
}

// Stores x (a value exact in every dtype: small multiples of 1/8, 0, +-inf, NaN) at
// element offset `off` of a buffer whose element 0 is at `base`.
inline void store(unsigned char *base, int64_t off, int32_t raw_dtype, double x) {
  const size_t es = element_size(raw_dtype);
  unsigned char *p = base + off * static_cast<int64_t>(es);
  switch (raw_dtype) {
    case TA_DTYPE_F16: { const uint16_t h = to_f16(static_cast<float>(x)); std::memcpy(p, &h, 2); break; }
    case TA_DTYPE_BF16: { const uint16_t h = static_cast<uint16_t>(f32_bits(static_cast<float>(x)) >> 16); std::memcpy(p, &h, 2); break; }
    case TA_DTYPE_F32: { const float v = static_cast<float>(x); std::memcpy(p, &v, 4); break; }
    case TA_DTYPE_F64: std::memcpy(p, &x, 8); break;
    case TA_DTYPE_BOOL: *p = x != 0.0 ? 1 : 0; break;
    default: break;
  }
}

// True when the element at `off` holds a finite value (by its exponent bits).
inline bool finite_at(const unsigned char *base, int64_t off, int32_t raw_dtype) {
  const size_t es = element_size(raw_dtype);
  const unsigned char *p = base + off * static_cast<int64_t>(es);
  switch (raw_dtype) {
    case TA_DTYPE_F16: { uint16_t h; std::memcpy(&h, p, 2); return (h & 0x7c00u) != 0x7c00u; }
    case TA_DTYPE_BF16: { uint16_t h; std::memcpy(&h, p, 2); return (h & 0x7f80u) != 0x7f80u; }
    case TA_DTYPE_F32: { float v; std::memcpy(&v, p, 4); return std::isfinite(v); }
    case TA_DTYPE_F64: { double v; std::memcpy(&v, p, 8); return std::isfinite(v); }
    default: return true;
  }
}

inline bool is_runtime_reason(ta_reason r) {
  return r == TA_REASON_DENOMINATOR_TOO_SMALL || r == TA_REASON_DENOMINATOR_INVALID ||
         r == TA_REASON_NON_FINITE_OUTPUT || r == TA_REASON_OUT_OF_MEMORY;
}

// Outcome counts, printed at exit when TA_FUZZ_STATS is set (run the target over a corpus
// with -runs=0 to see how deep the inputs reach: how many calls ran, succeeded, fell back).
class OutcomeCounts {
 public:
  explicit OutcomeCounts(const char *target) : target_(target) {}
  ~OutcomeCounts() {
    if (std::getenv("TA_FUZZ_STATS") == nullptr) return;
    std::fprintf(stderr, "%s outcomes:", target_);
    for (int i = 0; i < kSlots; ++i)
      if (counts_[i] != 0) std::fprintf(stderr, " %s=%llu", name(i), static_cast<unsigned long long>(counts_[i]));
    std::fprintf(stderr, "\n");
  }
  // slot: 0..7 run statuses, 8 = not run.
  void add(int slot) { ++counts_[slot < 0 || slot >= kSlots ? kSlots - 1 : slot]; }
  static constexpr int kNotRun = 8;

 private:
  static constexpr int kSlots = 9;
  static const char *name(int i) {
    static const char *const kNames[kSlots] = {"run_ok", "run_fallback", "run_invalid_argument",
                                               "run_workspace_too_small", "run_out_of_memory", "run_unsupported",
                                               "run_device", "run_internal", "not_run"};
    return kNames[i];
  }
  const char *target_;
  unsigned long long counts_[kSlots] = {};
};

inline bool known_status(ta_status s) {
  const int32_t raw = get_raw(s);
  return raw >= TA_OK && raw <= TA_ERR_INTERNAL;
}

}  // namespace tafuzz

#endif  // TA_FUZZ_FUZZ_COMMON_H_
