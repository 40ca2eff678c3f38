// Fuzz target: argument validation of the C API.
//
// Each input describes one call: tensor descriptors for q, k, v, out and an optional mask
// (shapes, strides including negative and huge ones, raw dtype / device / ndim values in
// and out of range, NULL descriptors and NULL data), a workspace choice, a stats choice,
// and a mostly-sane config. The descriptors start from a coherent problem and are then
// mutated, so both the early rejections and the deep paths are reached.
//
// Memory ownership rule: the library is never handed a data pointer it could legally
// read beyond what the harness owns. Each tensor's data is NULL, or points into an
// exact-size heap block covering every element its descriptor describes (computed here,
// in 128-bit arithmetic, from the descriptor itself), or - for descriptors too large to
// back - into a one-element block; calls that read tensor data (check reads the mask;
// run reads everything) are made only when every descriptor they may read is backed.
// workspace_size and memory_estimate are documented to work from shapes alone and are
// always called.
//
// Oracles beyond the sanitizers:
//  - every status is a known one, and an error or fallback leaves a message, a TA_OK
//    from run leaves none;
//  - check and run agree: invalid for one <=> invalid for the other; a guard reason from
//    check => TA_FALLBACK with that reason from run; a fallback after a clean check names
//    a run-time reason; TA_OK from run only after a clean check;
//  - workspace_size and memory_estimate agree when the workspace is non-zero, and run's
//    stats report that size;
//  - run never writes a byte that is not an element of out (inputs, gaps and every other
//    block unchanged), writes nothing at all unless it returns TA_OK or a run-time
//    fallback, and TA_OK means every output element is finite.
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "c_abi_calls.h"
#include "fuzz_common.h"

namespace {

using namespace tafuzz;

constexpr const char *kTarget = "fuzz_api_args";
OutcomeCounts g_counts(kTarget);
constexpr size_t kMaxSpanBytes = size_t{1} << 16;  // largest tensor block the harness backs
constexpr i128 kMaxElements = i128{1} << 12;       // elements per tensor a call may iterate
constexpr i128 kMaxWork = i128{1} << 22;           // feature-form work of one run (speed only)
constexpr size_t kMaxWorkspace = size_t{32} << 20; // below libFuzzer's malloc limit

enum Role { kQ, kK, kV, kOut, kMask, kRoles };

struct Block {
  std::vector<unsigned char> bytes;  // exact size: ASan sees any access past it
  std::vector<unsigned char> before;
  std::vector<unsigned char> is_out;  // byte belongs to an element of out
  std::vector<unsigned char> is_in;   // byte belongs to an element of q, k, v or mask
};

// Where a descriptor's elements lie, in element offsets from data.
struct Extent {
  bool backable = false;  // 1 <= ndim <= 4, known dtype, extents >= 1, small enough to back
  i128 lo = 0, hi = 0, elements = 0;
  size_t es = 0;
};

Extent extent_of(const ta_tensor &t) {
  Extent e;
  const int32_t nd = t.ndim;
  e.es = element_size(get_raw(t.dtype));
  if (nd < 1 || nd > TA_MAX_DIMS || e.es == 0) return e;
  constexpr i128 kCap = i128{1} << 64;  // saturation: beyond it only "too many" matters
  i128 n = 1;
  for (int i = 0; i < nd; ++i) {
    if (t.shape[i] < 1) return e;
    n = std::min<i128>(n * t.shape[i], kCap);  // n <= 2^64, extent < 2^63: no i128 overflow
    const i128 reach = static_cast<i128>(t.shape[i] - 1) * t.strides[i];  // |reach| < 2^126
    if (reach > kCap || reach < -kCap) return e;  // far beyond anything backable
    (reach < 0 ? e.lo : e.hi) += reach;
  }
  e.elements = n;
  const i128 span = (e.hi - e.lo + 1) * static_cast<i128>(e.es);
  e.backable = span <= static_cast<i128>(kMaxSpanBytes) && n <= kMaxElements;
  return e;
}

struct Tensor {
  ta_tensor t{};
  Extent ext;
  int block = -1;       // index of the block its data points into, -1: NULL or unbacked
  bool backed = false;  // data NULL, or every element inside an owned block
};

int64_t pick_extent(FuzzedDataProvider &f, int64_t coherent) {
  switch (f.ConsumeIntegralInRange<int>(0, 4)) {
    case 0: return coherent;
    case 1: return f.ConsumeIntegralInRange<int64_t>(0, 9);
    default: return pick_int64(f);
  }
}

// Neighbours of the current stride wrap around (unsigned arithmetic) instead of overflowing.
int64_t pick_stride(FuzzedDataProvider &f, int64_t coherent) {
  const auto u = static_cast<uint64_t>(coherent);
  switch (f.ConsumeIntegralInRange<int>(0, 5)) {
    case 0: return 0;
    case 1: return static_cast<int64_t>(0 - u);
    case 2: return static_cast<int64_t>(u * f.ConsumeIntegralInRange<uint64_t>(2, 5));
    case 3: return static_cast<int64_t>(u + static_cast<uint64_t>(f.ConsumeIntegralInRange<int64_t>(-2, 3)));
    default: return pick_int64(f);
  }
}

int32_t pick_dtype(FuzzedDataProvider &f, int32_t coherent) {
  switch (f.ConsumeIntegralInRange<int>(0, 3)) {
    case 0: return f.ConsumeIntegralInRange<int32_t>(0, 4);
    case 1: return f.ConsumeIntegralInRange<int32_t>(5, 8);
    case 2: return pick_int32(f);
    default: return coherent;
  }
}

// A descriptor for [d0, d1, d2, d3], in a layout the fuzzer picks, then mutated.
ta_tensor make_desc(FuzzedDataProvider &f, const std::array<int64_t, 4> &dims, int32_t dtype, bool input) {
  ta_tensor t;
  std::memset(&t, 0, sizeof t);
  set_raw(&t.dtype, dtype);
  set_raw(&t.device, TA_DEVICE_CPU);
  t.ndim = 4;
  for (int i = 0; i < 4; ++i) t.shape[i] = dims[static_cast<size_t>(i)];
  const int64_t B = dims[0], H = dims[1], N = dims[2], D = dims[3];
  switch (f.ConsumeIntegralInRange<int>(0, 3)) {
    case 0:  // contiguous
      t.strides[3] = 1, t.strides[2] = D, t.strides[1] = N * D, t.strides[0] = H * N * D;
      break;
    case 1: {  // [B, N, H, D + pad] seen as [B, H, N, D]
      const int64_t row = D + f.ConsumeIntegralInRange<int64_t>(0, 3);
      t.strides[3] = 1, t.strides[1] = row, t.strides[2] = H * row, t.strides[0] = N * H * row;
      break;
    }
    case 2: {  // gapped last dim
      const int64_t es = f.ConsumeIntegralInRange<int64_t>(1, 3);
      t.strides[3] = es, t.strides[2] = D * es + 1, t.strides[1] = N * (D * es + 1), t.strides[0] = H * N * (D * es + 1);
      break;
    }
    default:  // broadcast batch and heads (an input may, out may not)
      t.strides[3] = 1, t.strides[2] = D, t.strides[1] = input ? 0 : N * D, t.strides[0] = input ? 0 : H * N * D;
      break;
  }
  (void)B;
  const int mutations = f.ConsumeBool() ? f.ConsumeIntegralInRange<int>(1, 3) : 0;
  for (int m = 0; m < mutations; ++m) {
    const int i = f.ConsumeIntegralInRange<int>(0, 3);
    switch (f.ConsumeIntegralInRange<int>(0, 6)) {
      case 0: t.ndim = f.ConsumeBool() ? f.ConsumeIntegralInRange<int32_t>(-1, 6) : pick_int32(f); break;
      case 1:
      case 2: t.shape[i] = pick_extent(f, t.shape[i]); break;
      case 3:
      case 4: t.strides[i] = pick_stride(f, t.strides[i] == 0 ? 1 : t.strides[i]); break;
      case 5: set_raw(&t.dtype, pick_dtype(f, dtype)); break;
      default:
        if (f.ConsumeBool()) {
          set_raw(&t.device, f.ConsumeBool() ? TA_DEVICE_CUDA : pick_int32(f));
        } else {
          t.device_id = pick_int32(f);
        }
        break;
    }
  }
  return t;
}

// Mask shapes the header accepts (and neighbours it does not).
ta_tensor make_mask_desc(FuzzedDataProvider &f, int64_t B, int64_t H, int64_t Nq, int64_t Nk, int32_t qdtype) {
  ta_tensor m;
  std::memset(&m, 0, sizeof m);
  set_raw(&m.dtype, f.ConsumeBool() ? int32_t{TA_DTYPE_BOOL} : (f.ConsumeBool() ? qdtype : f.ConsumeIntegralInRange<int32_t>(0, 3)));
  set_raw(&m.device, TA_DEVICE_CPU);
  std::vector<int64_t> shape;
  switch (f.ConsumeIntegralInRange<int>(0, 6)) {
    case 0: shape = {Nk}; break;
    case 1: shape = {B, Nk}; break;
    case 2: shape = {1, Nk}; break;
    case 3: shape = {B, 1, 1, Nk}; break;
    case 4: shape = {B, H, Nq, Nk}; break;
    case 5: shape = {1, Nq, Nk}; break;
    default: shape = {B, 1, Nk}; break;
  }
  m.ndim = static_cast<int32_t>(shape.size());
  int64_t stride = 1;
  for (int i = m.ndim - 1; i >= 0; --i) {
    m.shape[i] = shape[static_cast<size_t>(i)];
    m.strides[i] = f.ConsumeIntegralInRange<int>(0, 7) == 0 ? 0 : stride;  // some broadcast views
    stride *= m.shape[i];
  }
  const int mutations = f.ConsumeBool() ? f.ConsumeIntegralInRange<int>(1, 2) : 0;
  for (int k = 0; k < mutations; ++k) {
    const int i = f.ConsumeIntegralInRange<int>(0, 3);
    switch (f.ConsumeIntegralInRange<int>(0, 4)) {
      case 0: m.ndim = f.ConsumeBool() ? f.ConsumeIntegralInRange<int32_t>(-1, 6) : pick_int32(f); break;
      case 1: m.shape[i] = pick_extent(f, m.shape[i]); break;
      case 2: m.strides[i] = pick_stride(f, m.strides[i] == 0 ? 1 : m.strides[i]); break;
      case 3: set_raw(&m.dtype, pick_dtype(f, get_raw(m.dtype))); break;
      default: set_raw(&m.device, f.ConsumeBool() ? TA_DEVICE_CUDA : pick_int32(f)); break;
    }
  }
  return m;
}

// ta_tensor_init_contiguous on fuzzed arguments: the shape array always has 4 entries,
// so any ndim the library accepts (1..4) stays inside it.
void fuzz_init_contiguous(FuzzedDataProvider &f) {
  ta_tensor t;
  int64_t shape[TA_MAX_DIMS];
  for (auto &s : shape) s = f.ConsumeBool() ? f.ConsumeIntegralInRange<int64_t>(0, 9) : pick_int64(f);
  const int32_t ndim = f.ConsumeBool() ? f.ConsumeIntegralInRange<int32_t>(-1, 6) : pick_int32(f);
  const int32_t dt = pick_dtype(f, TA_DTYPE_F32);
  const int32_t dev = f.ConsumeBool() ? int32_t{TA_DEVICE_CPU} : pick_int32(f);
  const bool null_t = f.ConsumeIntegralInRange<int>(0, 15) == 0;
  const bool null_shape = f.ConsumeIntegralInRange<int>(0, 15) == 0;
  ta_fuzz_names(f.ConsumeBool() ? f.ConsumeIntegralInRange<int32_t>(-2, 20) : pick_int32(f));
  const ta_status s =
      ta_fuzz_tensor_init_contiguous(null_t ? nullptr : &t, nullptr, dt, dev, ndim, null_shape ? nullptr : shape);
  if (!known_status(s)) oracle_failed(kTarget, "ta_tensor_init_contiguous: unknown status");
  bool valid = !null_t && !null_shape && ndim >= 1 && ndim <= TA_MAX_DIMS;
  for (int i = 0; valid && i < ndim; ++i) valid = shape[i] >= 0;
  // Strides that do not fit in int64 cannot be written: that is an argument error too.
  i128 stride = 1;
  for (int i = valid ? ndim - 1 : 0; valid && i > 0; --i) {
    stride *= shape[i] > 0 ? shape[i] : 1;
    valid = stride <= std::numeric_limits<int64_t>::max();
  }
  if (valid != (s == TA_OK)) {
    oracle_failed(kTarget, std::string("ta_tensor_init_contiguous answered ") + ta_status_string(s) + " for " +
                               (valid ? "valid" : "invalid") + " arguments");
  }
  if (s == TA_OK) {
    // The strides it wrote describe a contiguous tensor: the innermost is 1.
    if (t.strides[ndim - 1] != 1 || t.ndim != ndim) oracle_failed(kTarget, "init_contiguous strides");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  FuzzedDataProvider f(data, size);
  if (f.ConsumeIntegralInRange<int>(0, 7) == 0) {
    fuzz_init_contiguous(f);
    return 0;
  }

  // ---- A coherent problem to start from ----
  const int64_t B = f.ConsumeIntegralInRange<int64_t>(1, 3), H = f.ConsumeIntegralInRange<int64_t>(1, 3);
  const int64_t Nq = f.ConsumeIntegralInRange<int64_t>(1, 9), Nk = f.ConsumeIntegralInRange<int64_t>(1, 9);
  const int64_t d = f.ConsumeIntegralInRange<int64_t>(1, 8), dv = f.ConsumeIntegralInRange<int64_t>(1, 8);
  const int32_t dtype = f.ConsumeIntegralInRange<int32_t>(0, 4) == 4 && f.ConsumeBool() ? TA_DTYPE_BOOL
                                                                                          : f.ConsumeIntegralInRange<int32_t>(0, 3);
  ta_config c;
  ta_config_defaults(&c);
  c.min_tokens = f.ConsumeBool() ? 0 : f.ConsumeIntegralInRange<int64_t>(0, 8);
  c.P = f.ConsumeIntegralInRange<int32_t>(1, 5);
  c.sub_head_blocks = f.ConsumeIntegralInRange<int32_t>(1, 4);
  c.qk_normalize = f.ConsumeBool();
  c.early_probe = f.ConsumeBool();
  c.probe_samples = f.ConsumeIntegralInRange<int32_t>(0, 4);
  c.quality_check = f.ConsumeBool();
  c.quality_check_samples = f.ConsumeIntegralInRange<int32_t>(0, 4);
  c.num_threads = f.ConsumeIntegralInRange<int32_t>(0, 3);
  c.fallback_on_negative = f.ConsumeBool();
  c.allow_cross_attention = f.ConsumeIntegralInRange<int>(0, 7) != 0;
  c.block_size_q = f.ConsumeIntegralInRange<int32_t>(1, 40);
  c.block_size_k = f.ConsumeIntegralInRange<int32_t>(1, 40);

  Tensor ts[kRoles];
  ts[kQ].t = make_desc(f, {B, H, Nq, d}, dtype, true);
  ts[kK].t = make_desc(f, {B, H, Nk, d}, dtype, true);
  ts[kV].t = make_desc(f, {B, H, Nk, dv}, dtype, true);
  ts[kOut].t = make_desc(f, {B, H, Nq, dv}, dtype, false);
  const bool has_mask = f.ConsumeIntegralInRange<int>(0, 2) == 0;
  if (has_mask) ts[kMask].t = make_mask_desc(f, B, H, Nq, Nk, dtype);

  // ---- Back the descriptors with exact-size blocks ----
  std::vector<Block> blocks;
  blocks.reserve(kRoles + 1);
  std::vector<std::unique_ptr<unsigned char[]>> tiny;  // one-element blocks for unbackable descriptors
  for (int r = 0; r < kRoles; ++r) {
    Tensor &tn = ts[r];
    if (r == kMask && !has_mask) continue;
    tn.ext = extent_of(tn.t);
    const int mode = f.ConsumeIntegralInRange<int>(0, 15);
    if (mode == 0) {  // NULL data
      tn.t.data = nullptr;
      tn.backed = true;
    } else if (mode == 1 || !tn.ext.backable) {  // a pointer to one owned element
      tiny.emplace_back(new unsigned char[8]());
      tn.t.data = tiny.back().get();
      tn.backed = false;
    } else if (mode == 2 && r == kOut && ts[kQ].block >= 0 &&
               (tn.ext.hi - tn.ext.lo + 1) * static_cast<i128>(tn.ext.es) <=
                   static_cast<i128>(blocks[static_cast<size_t>(ts[kQ].block)].bytes.size())) {
      // out inside q's block: the library must see the overlap and refuse.
      Block &qb = blocks[static_cast<size_t>(ts[kQ].block)];
      tn.block = ts[kQ].block;
      tn.t.data = qb.bytes.data() - static_cast<int64_t>(tn.ext.lo) * static_cast<int64_t>(tn.ext.es);
      tn.backed = true;
    } else {
      const auto span = static_cast<size_t>((tn.ext.hi - tn.ext.lo + 1) * static_cast<i128>(tn.ext.es));
      blocks.emplace_back();
      Block &b = blocks.back();
      b.bytes.assign(span, 0xFF);  // gaps hold NaN in every float dtype
      b.is_out.assign(span, 0);
      b.is_in.assign(span, 0);
      tn.block = static_cast<int>(blocks.size()) - 1;
      tn.t.data = b.bytes.data() - static_cast<int64_t>(tn.ext.lo) * static_cast<int64_t>(tn.ext.es);
      tn.backed = true;
    }
  }
  // Element values: finite multiples of 1/8 (a few NaN/Inf when the fuzzer asks), masks
  // 0 / 1 for bool and 0 / -inf for float.
  for (int r = 0; r < kRoles; ++r) {
    Tensor &tn = ts[r];
    if (tn.block < 0) continue;
    Block &b = blocks[static_cast<size_t>(tn.block)];
    auto *base = static_cast<unsigned char *>(tn.t.data);
    const int32_t dt = get_raw(tn.t.dtype);
    const uint32_t seed = f.ConsumeIntegral<uint32_t>();
    const int special = f.ConsumeIntegralInRange<int>(0, 31);  // 0: one NaN, 1: one Inf
    int64_t n = 0;
    for_each_offset(tn.t, [&](int64_t off) {
      uint32_t h = (seed ^ static_cast<uint32_t>(n)) * 2654435761u;
      h ^= h >> 15;
      double x;
      if (r == kMask) {
        x = dt == TA_DTYPE_BOOL ? (h & 3u ? 1.0 : 0.0) : (h & 3u ? 0.0 : -std::numeric_limits<double>::infinity());
      } else {
        x = static_cast<double>(static_cast<int>(h % 33u) - 16) / 8.0;
        if (n == 3 && special == 0) x = std::numeric_limits<double>::quiet_NaN();
        if (n == 3 && special == 1) x = std::numeric_limits<double>::infinity();
      }
      store(base, off, dt, x);
      const size_t at = static_cast<size_t>(static_cast<i128>(off - static_cast<int64_t>(tn.ext.lo)) * static_cast<i128>(tn.ext.es));
      auto &marks = r == kOut ? b.is_out : b.is_in;
      std::fill(marks.begin() + static_cast<std::ptrdiff_t>(at), marks.begin() + static_cast<std::ptrdiff_t>(at + tn.ext.es), 1);
      ++n;
    });
  }
  for (Block &b : blocks) b.before = b.bytes;

  // ---- The arguments ----
  ta_attention_args args{};
  args.q = f.ConsumeIntegralInRange<int>(0, 31) == 0 ? nullptr : &ts[kQ].t;
  args.k = f.ConsumeIntegralInRange<int>(0, 31) == 0 ? nullptr : &ts[kK].t;
  args.v = f.ConsumeIntegralInRange<int>(0, 31) == 0 ? nullptr : &ts[kV].t;
  args.out = f.ConsumeIntegralInRange<int>(0, 31) == 0 ? nullptr : &ts[kOut].t;
  args.mask = has_mask ? &ts[kMask].t : nullptr;
  // Sometimes a token layout and a window: counts and extents at and beyond their ranges.
  ta_token_layout layout{};
  if (f.ConsumeIntegralInRange<int>(0, 3) == 0) {
    layout.text_tokens = f.ConsumeIntegralInRange<int64_t>(-2, 10);
    layout.num_grids = f.ConsumeIntegralInRange<int32_t>(-1, TA_MAX_GRIDS + 1);
    for (int g = 0; g < TA_MAX_GRIDS; ++g) {
      layout.grid_height[g] = f.ConsumeIntegralInRange<int64_t>(-1, 4);
      layout.grid_width[g] = f.ConsumeIntegralInRange<int64_t>(-1, 4);
    }
    if (f.ConsumeIntegralInRange<int>(0, 15) == 0) layout.grid_height[0] = INT64_MAX;
    args.layout = &layout;
    c.window_radius = f.ConsumeIntegralInRange<int32_t>(-1, 3);
    c.window_text_keys = f.ConsumeBool();
    c.window_text_queries = f.ConsumeBool();
  }
  const bool null_args = f.ConsumeIntegralInRange<int>(0, 63) == 0;
  const ta_attention_args *a = null_args ? nullptr : &args;
  auto reads_ok = [&](const ta_tensor *p, Role r) { return p == nullptr || ts[r].backed; };
  const bool mask_readable = reads_ok(args.mask, kMask);
  const bool all_readable = mask_readable && reads_ok(args.q, kQ) && reads_ok(args.k, kK) && reads_ok(args.v, kV) &&
                            reads_ok(args.out, kOut);
  // The CUDA backend would hand host blocks to kernels: only CPU descriptors are run.
  bool cpu_only = true;
  for (const ta_tensor *p : {args.q, args.k, args.v, args.out, args.mask}) {
    if (p != nullptr && get_raw(p->device) != TA_DEVICE_CPU && ta_backend_available(TA_DEVICE_CUDA)) cpu_only = false;
  }

  // ---- Shape-only questions (never read data) ----
  size_t ws = 0;
  const ta_status ws_status = ta_attention_workspace_size(a, &c, &ws);
  if (!known_status(ws_status)) oracle_failed(kTarget, "workspace_size: unknown status");
  if (ws_status != TA_OK && ta_last_error_message()[0] == '\0') oracle_failed(kTarget, "workspace_size: no message");
  ta_memory_estimate est;
  std::memset(&est, 0, sizeof est);
  const ta_status est_status = ta_attention_memory_estimate(a, &c, &est);
  if (!known_status(est_status)) oracle_failed(kTarget, "memory_estimate: unknown status");
  if (est_status == TA_OK && est.total_bytes != est.workspace_bytes + est.output_bytes) {
    oracle_failed(kTarget, "memory_estimate: total != workspace + output");
  }
  if (ws_status == TA_OK && ws > 0) {
    if (est_status != TA_OK) oracle_failed(kTarget, "workspace_size answered but memory_estimate failed");
    if (est.workspace_bytes != static_cast<int64_t>(ws)) {
      oracle_failed(kTarget, "workspace_size " + std::to_string(ws) + " != estimate " + std::to_string(est.workspace_bytes));
    }
  }

  // ---- check (reads a CPU mask) ----
  bool checked = false;
  ta_status cs = TA_ERR_INTERNAL;
  ta_reason reason = TA_REASON_COUNT_;
  const bool null_reason = f.ConsumeIntegralInRange<int>(0, 63) == 0;
  if (mask_readable && cpu_only) {
    cs = ta_attention_check(a, &c, null_reason ? nullptr : &reason);
    checked = true;
    if (!known_status(cs)) oracle_failed(kTarget, "check: unknown status");
    if (null_reason && cs != TA_ERR_INVALID_ARGUMENT) oracle_failed(kTarget, "check accepted a NULL reason");
    if (cs != TA_OK && ta_last_error_message()[0] == '\0') oracle_failed(kTarget, "check: no message");
    if (cs == TA_OK && (get_raw(reason) < 0 || get_raw(reason) >= TA_REASON_COUNT_ || is_runtime_reason(reason))) {
      oracle_failed(kTarget, "check: reason out of range or a run-time reason");
    }
  }

  // ---- run (reads everything) ----
  struct CountNotRun {
    bool ran = false;
    ~CountNotRun() {
      if (!ran) g_counts.add(OutcomeCounts::kNotRun);
    }
  } not_run;
  if (!all_readable || !cpu_only) return 0;
  // Keep each execution fast: bound the feature-form work (a speed limit, not a safety one).
  for (const ta_tensor *p : {args.q, args.k, args.v, args.out, args.mask})
    if (p != nullptr && p->data != nullptr && extent_of(*p).elements > kMaxElements) return 0;
  // With data present, q, k and v are backed: at most kMaxElements each, extents >= 1, so
  // the product below is small. (NULL data is refused before any work.)
  if (a != nullptr && args.q && args.k && args.v && args.q->data && args.k->data && args.v->data) {
    const ta_tensor &q = *args.q, &k = *args.k, &v = *args.v;
    if (q.ndim == 4 && k.ndim == 4 && v.ndim == 4) {
      const int64_t G = c.sub_head_blocks;
      int64_t R = 0;
      if (q.shape[3] % G == 0 && ta_feature_dim(q.shape[3] / G, c.P, &R) == TA_OK) {
        const i128 work = static_cast<i128>(q.shape[0]) * q.shape[1] * G * (q.shape[2] + k.shape[2]) * R * (v.shape[3] / G + 1);
        if (work > kMaxWork || work < 0) return 0;
      }
    }
  }
  if (ws_status == TA_OK && ws > kMaxWorkspace) return 0;
  // Workspace: the library's, or a caller block of exactly the size passed (maybe too small,
  // maybe not 256-aligned), which must stay untouched past that size.
  std::vector<unsigned char> wbuf;
  void *wptr = nullptr;
  size_t wbytes = 0;
  const int wmode = f.ConsumeIntegralInRange<int>(0, 3);
  if (wmode > 0 && ws_status == TA_OK) {
    wbytes = wmode == 1 ? ws : wmode == 2 ? ws - std::min<size_t>(ws, f.ConsumeIntegralInRange<size_t>(1, 300)) : ws + 64;
    const size_t misalign = f.ConsumeBool() ? 0 : f.ConsumeIntegralInRange<size_t>(1, 255);
    wbuf.assign(misalign + std::max<size_t>(wbytes, 1), 0xC3);
    wptr = wbuf.data() + misalign;
    if (wbytes == 0 && f.ConsumeBool()) wptr = nullptr;
  }
  ta_stats st;
  ta_stats_init(&st);
  const int smode = f.ConsumeIntegralInRange<int>(0, 7);
  if (smode == 0) st.struct_size = f.ConsumeIntegral<uint32_t>();
  const bool stats_valid = st.struct_size == sizeof(ta_stats);
  void *stream = f.ConsumeIntegralInRange<int>(0, 7) == 0 ? reinterpret_cast<void *>(uintptr_t{0x1000}) : nullptr;
  const ta_status rs = ta_attention_run(a, &c, wptr, wbytes, stream, smode == 1 ? nullptr : &st);
  const std::string msg = ta_last_error_message();
  not_run.ran = true;
  g_counts.add(get_raw(rs));
  const bool have_stats = smode != 1 && stats_valid;
  if (!known_status(rs)) oracle_failed(kTarget, "run: unknown status");
  if (rs == TA_OK && !msg.empty()) oracle_failed(kTarget, "run: TA_OK with a message: " + msg);
  if (rs != TA_OK && msg.empty()) oracle_failed(kTarget, std::string("run: ") + ta_status_string(rs) + " without a message");
  if (have_stats && rs == TA_FALLBACK && st.fallback_reason == TA_REASON_NONE) oracle_failed(kTarget, "run: fallback without a reason");

  // check and run agree.
  if (checked && !null_reason && (smode == 1 || stats_valid)) {
    const bool check_invalid = cs == TA_ERR_INVALID_ARGUMENT, run_invalid = rs == TA_ERR_INVALID_ARGUMENT;
    if (check_invalid != run_invalid) {
      oracle_failed(kTarget, std::string("check said ") + ta_status_string(cs) + ", run said " + ta_status_string(rs) +
                                 ": " + msg);
    }
    if (cs == TA_OK && reason != TA_REASON_NONE) {
      if (rs != TA_FALLBACK) oracle_failed(kTarget, std::string("guard ") + ta_reason_name(reason) + " but run said " + ta_status_string(rs));
      if (have_stats && st.fallback_reason != reason) oracle_failed(kTarget, "guard reason differs between check and run");
    }
    if (cs == TA_OK && reason == TA_REASON_NONE && rs == TA_FALLBACK && have_stats && !is_runtime_reason(st.fallback_reason)) {
      oracle_failed(kTarget, std::string("clean check, then run declined with guard ") + ta_reason_name(st.fallback_reason));
    }
    if (rs == TA_OK && !(cs == TA_OK && reason == TA_REASON_NONE)) oracle_failed(kTarget, "run succeeded where check declined");
  }
  if (rs == TA_OK && have_stats && ws_status == TA_OK && st.workspace_bytes != static_cast<int64_t>(ws)) {
    oracle_failed(kTarget, "stats.workspace_bytes differs from workspace_size");
  }
  if ((rs == TA_ERR_WORKSPACE_TOO_SMALL || rs == TA_ERR_OUT_OF_MEMORY) && have_stats &&
      st.fallback_reason != TA_REASON_OUT_OF_MEMORY) {
    oracle_failed(kTarget, "memory failure without reason out_of_memory");
  }

  // Nothing written outside out's elements; nothing at all unless the engine ran.
  const bool may_write = rs == TA_OK || (rs == TA_FALLBACK && have_stats && is_runtime_reason(st.fallback_reason)) ||
                         (rs == TA_FALLBACK && !have_stats);
  for (const Block &b : blocks) {
    for (size_t i = 0; i < b.bytes.size(); ++i) {
      if (b.bytes[i] == b.before[i]) continue;
      if (!may_write) oracle_failed(kTarget, std::string("run returned ") + ta_status_string(rs) + " but wrote memory");
      if (!b.is_out[i] || b.is_in[i]) oracle_failed(kTarget, "run wrote a byte that is not (only) an element of out");
    }
  }
  if (wptr != nullptr) {
    const auto *w = static_cast<unsigned char *>(wptr);
    const size_t total = wbuf.size() - static_cast<size_t>(w - wbuf.data());
    for (size_t i = wbytes; i < total; ++i)
      if (w[i] != 0xC3) oracle_failed(kTarget, "run wrote past workspace_bytes");
  }
  if (rs == TA_OK) {
    const ta_tensor &o = *args.out;
    const auto *base = static_cast<const unsigned char *>(o.data);
    for_each_offset(o, [&](int64_t off) {
      if (!finite_at(base, off, get_raw(o.dtype))) oracle_failed(kTarget, "TA_OK with a non-finite output element");
    });
  }
  return 0;
}
