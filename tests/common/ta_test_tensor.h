// Host tensors with guard bytes for black-box tests of the C API (header-only).
//
// A TestTensor owns one byte buffer: [guard | span | guard], where span covers every
// element address reachable through the (non-negative) strides. Bytes that are not
// part of an element ("gaps" and guards) carry a pattern:
//   - inputs: 0xFF, which is a NaN in f16, bf16, f32 and f64, so a library reading a gap
//     produces NaN and the test sees it;
//   - outputs: fill_canary(0xA5) before a call, canaries_intact() after it, so a write
//     outside the output's elements is caught.
#ifndef TA_TESTS_COMMON_TA_TEST_TENSOR_H_
#define TA_TESTS_COMMON_TA_TEST_TENSOR_H_

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "common/ta_test_half.h"
#include "taylor_attention/taylor_attention.h"

namespace tatest {

// splitmix64 + Box-Muller: reproducible on every platform (std::normal_distribution is not).
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull) {}
  uint64_t next() {
    uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }
  double normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u1 = uniform(), u2 = uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    const double r = std::sqrt(-2.0 * std::log(u1));
    spare_ = r * std::sin(6.283185307179586 * u2);
    has_spare_ = true;
    return r * std::cos(6.283185307179586 * u2);
  }

 private:
  uint64_t s_;
  double spare_ = 0.0;
  bool has_spare_ = false;
};

inline size_t dtype_bytes(ta_dtype dt) {
  switch (dt) {
    case TA_DTYPE_F16:
    case TA_DTYPE_BF16: return 2;
    case TA_DTYPE_F32: return 4;
    case TA_DTYPE_F64: return 8;
    case TA_DTYPE_BOOL: return 1;
  }
  return 0;
}

inline const char *dtype_tag(ta_dtype dt) {
  switch (dt) {
    case TA_DTYPE_F16: return "f16";
    case TA_DTYPE_BF16: return "bf16";
    case TA_DTYPE_F32: return "f32";
    case TA_DTYPE_F64: return "f64";
    case TA_DTYPE_BOOL: return "bool";
  }
  return "unknown";
}

// Rounds a double to what the dtype stores, returned as double.
inline double round_to(ta_dtype dt, double x) {
  switch (dt) {
    case TA_DTYPE_F16: return f16_bits_to_f32(f32_to_f16_bits(static_cast<float>(x)));
    case TA_DTYPE_BF16: return bf16_bits_to_f32(f32_to_bf16_bits(static_cast<float>(x)));
    case TA_DTYPE_F32: return static_cast<float>(x);
    case TA_DTYPE_F64: return x;
    case TA_DTYPE_BOOL: return x != 0.0 ? 1.0 : 0.0;
  }
  return x;
}

class TestTensor {
 public:
  static constexpr size_t kGuard = 256;

  TestTensor() = default;
  // Empty strides: contiguous row-major. Strides are in elements and must be >= 0.
  TestTensor(ta_dtype dtype, std::vector<int64_t> shape, std::vector<int64_t> strides = {})
      : dtype_(dtype), shape_(std::move(shape)), strides_(std::move(strides)) {
    const int nd = static_cast<int>(shape_.size());
    if (strides_.empty()) {
      strides_.assign(shape_.size(), 1);
      for (int i = nd - 2; i >= 0; --i) strides_[i] = strides_[i + 1] * shape_[i + 1];
    }
    es_ = dtype_bytes(dtype_);
    int64_t max_off = 0;
    numel_ = 1;
    for (int i = 0; i < nd; ++i) {
      numel_ *= shape_[i];
      if (shape_[i] > 0) max_off += (shape_[i] - 1) * strides_[i];
    }
    span_ = numel_ > 0 ? static_cast<size_t>(max_off + 1) * es_ : 0;
    buf_.assign(kGuard + span_ + kGuard, std::byte{0xFF});
    is_elem_.assign(span_, 0);
    for_each([&](const std::array<int64_t, 4> &, int64_t off) {
      std::memset(&is_elem_[static_cast<size_t>(off) * es_], 1, es_);
    });
    std::memset(&t_, 0, sizeof t_);
    t_.data = numel_ > 0 ? buf_.data() + kGuard : nullptr;
    t_.dtype = dtype_;
    t_.device = TA_DEVICE_CPU;
    t_.device_id = 0;
    t_.ndim = nd;
    for (int i = 0; i < nd && i < TA_MAX_DIMS; ++i) {
      t_.shape[i] = shape_[i];
      t_.strides[i] = strides_[i];
    }
  }
  TestTensor(const TestTensor &) = delete;
  TestTensor &operator=(const TestTensor &) = delete;
  TestTensor(TestTensor &&) = default;  // the heap buffer (and t_.data) survives the move
  TestTensor &operator=(TestTensor &&) = default;

  ta_tensor &desc() { return t_; }
  const ta_tensor *ptr() const { return &t_; }
  ta_dtype dtype() const { return dtype_; }
  const std::vector<int64_t> &shape() const { return shape_; }
  const std::vector<int64_t> &strides() const { return strides_; }
  int64_t numel() const { return numel_; }
  std::byte *data() { return buf_.data() + kGuard; }
  size_t span_bytes() const { return span_; }

  // Calls fn(idx, element offset) for every logical index, row-major order.
  template <class F>
  void for_each(F fn) const {
    if (numel_ == 0) return;
    const int nd = static_cast<int>(shape_.size());
    std::array<int64_t, 4> idx{0, 0, 0, 0};
    for (int64_t n = 0; n < numel_; ++n) {
      int64_t off = 0;
      for (int i = 0; i < nd; ++i) off += idx[i] * strides_[i];
      fn(idx, off);
      for (int i = nd - 1; i >= 0; --i) {
        if (++idx[i] < shape_[i]) break;
        idx[i] = 0;
      }
    }
  }

  int64_t offset(const std::array<int64_t, 4> &idx) const {
    int64_t off = 0;
    for (size_t i = 0; i < shape_.size(); ++i) off += idx[i] * strides_[i];
    return off;
  }

  double get_at(int64_t off) const {
    const std::byte *p = buf_.data() + kGuard + static_cast<size_t>(off) * es_;
    switch (dtype_) {
      case TA_DTYPE_F16: { uint16_t h; std::memcpy(&h, p, 2); return f16_bits_to_f32(h); }
      case TA_DTYPE_BF16: { uint16_t h; std::memcpy(&h, p, 2); return bf16_bits_to_f32(h); }
      case TA_DTYPE_F32: { float f; std::memcpy(&f, p, 4); return f; }
      case TA_DTYPE_F64: { double f; std::memcpy(&f, p, 8); return f; }
      case TA_DTYPE_BOOL: { uint8_t b; std::memcpy(&b, p, 1); return b; }
    }
    return 0.0;
  }
  void set_at(int64_t off, double x) {
    std::byte *p = buf_.data() + kGuard + static_cast<size_t>(off) * es_;
    switch (dtype_) {
      case TA_DTYPE_F16: { uint16_t h = f32_to_f16_bits(static_cast<float>(x)); std::memcpy(p, &h, 2); break; }
      case TA_DTYPE_BF16: { uint16_t h = f32_to_bf16_bits(static_cast<float>(x)); std::memcpy(p, &h, 2); break; }
      case TA_DTYPE_F32: { float f = static_cast<float>(x); std::memcpy(p, &f, 4); break; }
      case TA_DTYPE_F64: std::memcpy(p, &x, 8); break;
      case TA_DTYPE_BOOL: { uint8_t b = static_cast<uint8_t>(x); std::memcpy(p, &b, 1); break; }
    }
  }
  double get(const std::array<int64_t, 4> &idx) const { return get_at(offset(idx)); }
  void set(const std::array<int64_t, 4> &idx, double x) { set_at(offset(idx), x); }

  // Random N(0, std^2) values, rounded to the dtype (zero-stride aliases: last write wins;
  // dense() reads back what is stored, so references see exactly the stored values).
  void fill_normal(Rng &rng, double std_dev) {
    for_each([&](const std::array<int64_t, 4> &, int64_t off) { set_at(off, rng.normal() * std_dev); });
  }

  // Logical values in row-major order, as stored.
  std::vector<double> dense() const {
    std::vector<double> out;
    out.reserve(static_cast<size_t>(numel_));
    for_each([&](const std::array<int64_t, 4> &, int64_t off) { out.push_back(get_at(off)); });
    return out;
  }
  // Writes row-major logical values.
  void set_dense(const std::vector<double> &vals) {
    size_t n = 0;
    for_each([&](const std::array<int64_t, 4> &, int64_t off) { set_at(off, vals[n++]); });
  }

  // Whole buffer (guards, gaps and elements) set to one byte value.
  void fill_bytes(uint8_t pattern) { std::memset(buf_.data(), pattern, buf_.size()); }
  // True when every byte outside the elements (guards and gaps) still holds `pattern`;
  // *where names the first bad byte.
  bool canaries_intact(uint8_t pattern, std::string *where = nullptr) const {
    for (size_t i = 0; i < buf_.size(); ++i) {
      const bool guard_front = i < kGuard, guard_back = i >= kGuard + span_;
      if (!guard_front && !guard_back && is_elem_[i - kGuard]) continue;
      if (buf_[i] != std::byte{pattern}) {
        if (where) {
          *where = guard_front ? "front guard byte " + std::to_string(kGuard - i) + " before data"
                   : guard_back ? "back guard byte " + std::to_string(i - kGuard - span_) + " after span"
                                : "gap byte at data offset " + std::to_string(i - kGuard);
        }
        return false;
      }
    }
    return true;
  }
  std::vector<std::byte> snapshot() const { return buf_; }
  bool same_bytes(const std::vector<std::byte> &snap) const { return snap == buf_; }
  // The element bytes only (for bitwise output comparison, independent of layout).
  std::vector<uint8_t> element_bytes() const {
    std::vector<uint8_t> out;
    for_each([&](const std::array<int64_t, 4> &, int64_t off) {
      const std::byte *p = buf_.data() + kGuard + static_cast<size_t>(off) * es_;
      for (size_t b = 0; b < es_; ++b) out.push_back(static_cast<uint8_t>(p[b]));
    });
    return out;
  }

 private:
  ta_dtype dtype_ = TA_DTYPE_F32;
  std::vector<int64_t> shape_, strides_;
  size_t es_ = 4;
  int64_t numel_ = 0;
  size_t span_ = 0;
  std::vector<std::byte> buf_;
  std::vector<uint8_t> is_elem_;
  ta_tensor t_{};
};

}  // namespace tatest

#endif  // TA_TESTS_COMMON_TA_TEST_TENSOR_H_
