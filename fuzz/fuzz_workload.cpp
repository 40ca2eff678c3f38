// fuzz_workload: ta_workload_defaults / ta_workload_generate with random parameters (every
// field at and beyond its range, NaN and infinities included) and random tensor
// descriptors (shapes, strides, dtypes, devices, NULL pointers). Oracles: the status is
// TA_OK or TA_ERR_INVALID_ARGUMENT; nothing outside the elements is written; on TA_OK every
// element is finite and a second call gives the same bytes (the generator is seeded).
#include <fuzzer/FuzzedDataProvider.h>

#include <cstring>
#include <vector>

#include "fuzz_common.h"

namespace {

using tafuzz::get_raw;
using tafuzz::oracle_failed;
using tafuzz::set_raw;

using i128 = tafuzz::i128;

constexpr const char *kTarget = "fuzz_workload";
constexpr size_t kGuard = 64;

// A tensor over a buffer with guard bytes on both sides; small extents, fuzzed strides.
struct Buffer {
  std::vector<unsigned char> bytes;
  ta_tensor t{};
  size_t span = 0;
};

Buffer make_tensor(FuzzedDataProvider &f, int64_t B, int64_t H, int64_t N, int64_t D) {
  Buffer b;
  const int32_t dtype = f.ConsumeIntegralInRange<int32_t>(-1, 5);
  set_raw(&b.t.dtype, dtype);
  set_raw(&b.t.device, f.ConsumeIntegralInRange<int>(0, 15) == 0 ? TA_DEVICE_CUDA : TA_DEVICE_CPU);
  b.t.ndim = f.ConsumeIntegralInRange<int>(0, 15) == 0 ? f.ConsumeIntegralInRange<int32_t>(0, 5) : 4;
  const int64_t shape[4] = {B, H, N, D};
  int64_t stride = 1;
  for (int i = 3; i >= 0; --i) {
    b.t.shape[i] = shape[i];
    // Mostly contiguous, sometimes padded, sometimes aliasing (0) or huge.
    switch (f.ConsumeIntegralInRange<int>(0, 9)) {
      case 0: b.t.strides[i] = 0; break;
      case 1: b.t.strides[i] = stride + 3; break;
      case 2: b.t.strides[i] = tafuzz::pick_int64(f); break;
      default: b.t.strides[i] = stride;
    }
    if (__builtin_mul_overflow(b.t.strides[i], shape[i] > 0 ? shape[i] : 1, &stride) || stride <= 0 ||
        stride > (int64_t{1} << 20)) {
      stride = 1 << 20;
    }
  }
  const size_t es = tafuzz::element_size(dtype);
  // Every descriptor the library could accept gets memory behind each element it reaches
  // (too-large strides are made contiguous first); the others (unknown dtype, ndim != 4,
  // an extent <= 0, a negative stride) point at an address that must never be touched:
  // the library has to refuse them before writing.
  bool sane = es > 0 && b.t.ndim == 4;
  for (int i = 0; i < 4 && sane; ++i) sane = b.t.shape[i] > 0 && b.t.strides[i] >= 0;
  if (sane) {
    i128 last = 0;
    for (int i = 0; i < 4; ++i) last += static_cast<i128>(b.t.shape[i] - 1) * b.t.strides[i];
    if (last >= (1 << 20)) {
      int64_t s = 1;
      for (int i = 3; i >= 0; --i) {
        b.t.strides[i] = s;
        s *= b.t.shape[i];
      }
      last = s - 1;
    }
    b.span = static_cast<size_t>(last + 1) * es;
    b.bytes.assign(kGuard + b.span + kGuard, 0xC3);
    b.t.data = b.bytes.data() + kGuard;
  } else {
    b.t.data = reinterpret_cast<void *>(uintptr_t{0x10});
  }
  if (f.ConsumeIntegralInRange<int>(0, 31) == 0) b.t.data = nullptr;
  return b;
}

bool guards_intact(const Buffer &b) {
  if (b.bytes.empty()) return true;
  for (size_t i = 0; i < kGuard; ++i) {
    if (b.bytes[i] != 0xC3 || b.bytes[kGuard + b.span + i] != 0xC3) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  FuzzedDataProvider f(data, size);
  ta_workload_params p;
  if (ta_workload_defaults(&p) != TA_OK) oracle_failed(kTarget, "defaults failed");
  if (f.ConsumeIntegralInRange<int>(0, 31) == 0) p.struct_size = f.ConsumeIntegral<uint32_t>();
  p.layout.text_tokens = f.ConsumeIntegralInRange<int64_t>(-2, 12);
  p.layout.num_grids = f.ConsumeIntegralInRange<int32_t>(-1, TA_MAX_GRIDS + 1);
  for (int g = 0; g < TA_MAX_GRIDS; ++g) {
    p.layout.grid_height[g] = f.ConsumeIntegralInRange<int64_t>(-1, 5);
    p.layout.grid_width[g] = f.ConsumeIntegralInRange<int64_t>(-1, 5);
  }
  if (f.ConsumeBool()) p.smoothness = tafuzz::pick_double(f);
  if (f.ConsumeBool()) p.gain = tafuzz::pick_double(f);
  if (f.ConsumeBool()) p.alignment = tafuzz::pick_double(f);
  p.rope = f.ConsumeIntegralInRange<int32_t>(-1, 2);
  p.seed = f.ConsumeIntegral<uint64_t>();

  // Token count: the layout's (when it is well formed) or a fuzzed one.
  int64_t tokens = p.layout.text_tokens;
  for (int g = 0; g < p.layout.num_grids && g < TA_MAX_GRIDS; ++g) tokens += p.layout.grid_height[g] * p.layout.grid_width[g];
  if (tokens < 1 || f.ConsumeIntegralInRange<int>(0, 7) == 0) tokens = f.ConsumeIntegralInRange<int64_t>(0, 40);
  const int64_t B = f.ConsumeIntegralInRange<int64_t>(0, 2), H = f.ConsumeIntegralInRange<int64_t>(1, 2);
  const int64_t d = f.ConsumeIntegralInRange<int64_t>(1, 9), dv = f.ConsumeIntegralInRange<int64_t>(1, 5);
  Buffer q = make_tensor(f, B, H, tokens, d);
  Buffer k = make_tensor(f, B, H, tokens, d);
  Buffer v = make_tensor(f, B, H, tokens, dv);
  const bool null_params = f.ConsumeIntegralInRange<int>(0, 63) == 0;

  const ta_status s = ta_workload_generate(null_params ? nullptr : &p, &q.t, &k.t, &v.t);
  if (s != TA_OK && s != TA_ERR_INVALID_ARGUMENT) {
    oracle_failed(kTarget, std::string("unexpected status ") + ta_status_string(s));
  }
  if (s != TA_OK && ta_last_error_message()[0] == '\0') oracle_failed(kTarget, "error without a message");
  for (const Buffer *b : {&q, &k, &v}) {
    if (!guards_intact(*b)) oracle_failed(kTarget, "a guard byte changed");
  }
  if (s != TA_OK) return 0;
  // Every element finite, and the call deterministic.
  std::vector<std::vector<unsigned char>> first;
  for (const Buffer *b : {&q, &k, &v}) {
    const int32_t dt = get_raw(b->t.dtype);
    for (int64_t i0 = 0; i0 < b->t.shape[0]; ++i0)
      for (int64_t i1 = 0; i1 < b->t.shape[1]; ++i1)
        for (int64_t i2 = 0; i2 < b->t.shape[2]; ++i2)
          for (int64_t i3 = 0; i3 < b->t.shape[3]; ++i3) {
            const int64_t off = i0 * b->t.strides[0] + i1 * b->t.strides[1] + i2 * b->t.strides[2] + i3 * b->t.strides[3];
            if (!tafuzz::finite_at(static_cast<const unsigned char *>(b->t.data), off, dt)) {
              oracle_failed(kTarget, "a generated element is not finite");
            }
          }
    first.push_back(b->bytes);
  }
  if (ta_workload_generate(&p, &q.t, &k.t, &v.t) != TA_OK) oracle_failed(kTarget, "second call failed");
  size_t n = 0;
  for (const Buffer *b : {&q, &k, &v}) {
    if (b->bytes != first[n++]) oracle_failed(kTarget, "the same seed gave different bytes");
  }
  return 0;
}
