// The C ABI: argument checking, guard evaluation and backend dispatch. Every entry
// point catches everything: no exception crosses the header.
#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "api/errors.h"
#include "core/combinatorics.h"
#include "core/dtype.h"
#include "core/parallel.h"
#include "core/problem.h"
#include "core/quality.h"
#include "core/reference.h"
#include "cpu/cpu_engine.h"
#include "cuda/cuda_backend.h"
#include "taylor_attention/taylor_attention.h"

using namespace ta;

namespace {

ta_status check_stats(const ta_stats* stats) {
  if (stats != nullptr && stats->struct_size != sizeof(ta_stats)) {
    return fail(TA_ERR_INVALID_ARGUMENT, "stats.struct_size is " + std::to_string(stats->struct_size) +
                                             ", expected sizeof(ta_stats) = " + std::to_string(sizeof(ta_stats)) +
                                             " (call ta_stats_init first)");
  }
  return TA_OK;
}

void fill_shape_stats(const Problem& p, ta_stats* stats) {
  stats->sub_head_blocks = p.G;
  stats->slice_dim = static_cast<int32_t>(p.ds);
  stats->slice_value_dim = static_cast<int32_t>(p.dvs);
  stats->feature_dim = p.R;
  stats->window_reason = p.window.reason;
}

ta_status declined(ta_stats* stats, ta_reason reason, const std::string& detail) {
  if (stats) {
    stats->backend = TA_BACKEND_NONE;
    stats->fallback_reason = reason;
  }
  return fail(TA_FALLBACK, detail.empty() ? std::string(reason_name(reason)) : detail);
}

// A CUDA mask is copied to the host once so one mask analysis serves both backends.
struct HostMask {
  std::vector<unsigned char> storage;
  ta_tensor view{};
};

ta_status stage_mask(Problem* p, HostMask* host) {
  if (p->mask == nullptr || p->mask->device != TA_DEVICE_CUDA || !ta::cuda::available()) return TA_OK;
  if (ta_status s = ta::cuda::copy_mask_to_host(*p->mask, &host->storage, &host->view); s != TA_OK) return s;
  p->mask = &host->view;
  return TA_OK;
}

// Workspace and state sizes of a runnable call on the problem's backend.
bool plan_backend(const Problem& p, const ta_config& c, int64_t* workspace, int64_t* state, int* workers,
                  std::string* why) {
  if (p.device == TA_DEVICE_CUDA) {
    ta::cuda::MemoryPlan plan;
    const char* reason = "";
    if (!ta::cuda::plan_memory(p, c, &plan, &reason)) {
      *why = reason;
      return false;
    }
    *workspace = plan.workspace_bytes;
    *state = plan.state_bytes;
    *workers = static_cast<int>(plan.units_per_batch);
    return true;
  }
  cpu::MemoryPlan plan;
  if (!cpu::plan_memory(p, c, &plan)) {
    *why = "the call's workspace would not fit in 64-bit byte counts (R=" + std::to_string(p.R) + ")";
    return false;
  }
  *workspace = plan.workspace_bytes;
  *state = plan.state_bytes;
  *workers = plan.workers;
  return true;
}

struct FreeDeleter {
  void operator()(unsigned char* p) const { ::operator delete[](p, std::nothrow); }
};

}  // namespace

extern "C" {

int ta_version(void) { return TA_VERSION_NUMBER; }

const char* ta_version_string(void) {
#define TA_STR2(x) #x
#define TA_STR(x) TA_STR2(x)
  return TA_STR(TA_VERSION_MAJOR) "." TA_STR(TA_VERSION_MINOR) "." TA_STR(TA_VERSION_PATCH);
#undef TA_STR
#undef TA_STR2
}

int ta_abi_version(void) { return TA_ABI_VERSION; }

// Enum parameters come from C (or ctypes) callers as plain ints: any value can arrive, and
// reading an out-of-range value as the C++ enum is undefined behaviour. Each entry point
// reads the raw int first (raw_enum copies the bytes) and range-checks it.
const char* ta_status_string(ta_status status) {
  const int32_t raw = raw_enum(status);
  if (raw < TA_OK || raw > TA_ERR_INTERNAL) return "unknown";
  return status_name(static_cast<ta_status>(raw));
}

const char* ta_last_error_message(void) { return last_error(); }

const char* ta_reason_name(ta_reason reason) {
  const int32_t raw = raw_enum(reason);
  if (raw < TA_REASON_NONE || raw >= TA_REASON_COUNT_) return "unknown";
  return reason_name(static_cast<ta_reason>(raw));
}

const char* ta_dtype_name(ta_dtype dtype) { return known_dtype(dtype) ? dtype_name(dtype) : "unknown"; }

size_t ta_dtype_size(ta_dtype dtype) { return known_dtype(dtype) ? dtype_size(dtype) : 0; }

const char* ta_backend_name(ta_backend backend) {
  switch (raw_enum(backend)) {
    case TA_BACKEND_NONE: return "none";
    case TA_BACKEND_CPU: return "cpu";
    case TA_BACKEND_CUDA: return "cuda";
  }
  return "unknown";
}

int ta_backend_available(ta_device_type device) {
  const int32_t raw = raw_enum(device);
  if (raw == TA_DEVICE_CPU) return 1;
  if (raw == TA_DEVICE_CUDA) return ta::cuda::available() ? 1 : 0;
  return 0;
}

ta_status ta_tensor_init_contiguous(ta_tensor* t, void* data, ta_dtype dtype, ta_device_type device, int32_t ndim,
                                    const int64_t* shape) {
  if (t == nullptr || shape == nullptr) return fail(TA_ERR_INVALID_ARGUMENT, "tensor or shape is NULL");
  if (ndim < 1 || ndim > TA_MAX_DIMS) return fail(TA_ERR_INVALID_ARGUMENT, "ndim must be in 1..4");
  std::memset(t, 0, sizeof *t);
  t->data = data;
  std::memcpy(&t->dtype, &dtype, sizeof dtype);  // stored as given: check() names a bad value
  std::memcpy(&t->device, &device, sizeof device);
  t->ndim = ndim;
  int64_t stride = 1;
  for (int i = ndim - 1; i >= 0; --i) {
    if (shape[i] < 0) return fail(TA_ERR_INVALID_ARGUMENT, "negative extent in shape");
    t->shape[i] = shape[i];
    t->strides[i] = stride;
    if (i > 0 && __builtin_mul_overflow(stride, shape[i] > 0 ? shape[i] : 1, &stride)) {
      return fail(TA_ERR_INVALID_ARGUMENT, "shape's element count does not fit in 64 bits");
    }
  }
  clear_error();
  return TA_OK;
}

ta_status ta_config_defaults(ta_config* c) {
  if (c == nullptr) return fail(TA_ERR_INVALID_ARGUMENT, "config is NULL");
  std::memset(c, 0, sizeof *c);
  c->struct_size = sizeof(ta_config);
  c->enabled = 1;
  c->P = 4;
  c->min_tokens = 100;
  c->max_feature_dim_R = 370000;
  c->sub_head_blocks = 4;
  c->qk_normalize = 0;
  c->scale_mul = 1.0;
  c->scale = 0.0;
  c->block_size_q = 32;
  c->block_size_k = 16;
  c->eps = 1e-6;
  c->fallback_on_negative = 1;
  c->allow_cross_attention = 1;
  c->max_head_dim = 128;
  c->force_fp32 = 0;
  c->early_probe = 1;
  c->probe_samples = 16;
  c->denom_fp32 = 1;
  c->quality_check = 1;
  c->quality_check_samples = 16;
  c->seed = 0;
  c->num_threads = 0;
  c->window_radius = 0;
  c->window_text_keys = 1;
  c->window_text_queries = 1;
  clear_error();
  return TA_OK;
}

ta_status ta_config_validate(const ta_config* config) {
  return guarded([&] {
    const ta_status s = validate_config(config);
    if (s == TA_OK) clear_error();
    return s;
  });
}

ta_status ta_stats_init(ta_stats* stats) {
  if (stats == nullptr) return fail(TA_ERR_INVALID_ARGUMENT, "stats is NULL");
  std::memset(stats, 0, sizeof *stats);
  stats->struct_size = sizeof(ta_stats);
  clear_error();
  return TA_OK;
}

ta_status ta_feature_dim(int64_t d, int32_t P, int64_t* R) {
  if (R == nullptr) return fail(TA_ERR_INVALID_ARGUMENT, "R is NULL");
  if (d < 1 || P < 1) return fail(TA_ERR_INVALID_ARGUMENT, "d and P must be >= 1");
  const auto r = feature_dim(d, P);
  if (!r) {
    return fail(TA_ERR_INVALID_ARGUMENT,
                "R(d=" + std::to_string(d) + ", P=" + std::to_string(P) + ") does not fit in 64 bits");
  }
  *R = *r;
  clear_error();
  return TA_OK;
}

ta_status ta_attention_check(const ta_attention_args* args, const ta_config* config, ta_reason* reason) {
  return guarded([&] {
    if (reason == nullptr) return fail(TA_ERR_INVALID_ARGUMENT, "reason is NULL");
    Problem p;
    if (ta_status s = describe_problem(args, config, /*require_data=*/true, &p); s != TA_OK) return s;
    HostMask host_mask;
    if (ta_status s = stage_mask(&p, &host_mask); s != TA_OK) return s;
    std::string detail;
    *reason = apply_guards(p, *config, nullptr, &detail);
    if (*reason != TA_REASON_NONE) {
      fail(TA_OK, detail);  // keep the explanation for the caller's log
    } else {
      clear_error();
    }
    return TA_OK;
  });
}

ta_status ta_attention_memory_estimate(const ta_attention_args* args, const ta_config* config,
                                       ta_memory_estimate* estimate) {
  return guarded([&] {
    if (estimate == nullptr) return fail(TA_ERR_INVALID_ARGUMENT, "estimate is NULL");
    Problem p;
    if (ta_status s = describe_problem(args, config, /*require_data=*/false, &p); s != TA_OK) return s;
    std::memset(estimate, 0, sizeof *estimate);
    const int64_t out_elems = p.B * p.H * p.Nq * p.dv;  // bounded by describe_problem's offset check
    estimate->output_bytes = out_elems * static_cast<int64_t>(dtype_size(p.dtype));
    if (p.ds > 0 && p.R > 0) {
      estimate->feature_dim = p.R;
      int64_t workspace = 0, state = 0;
      int workers = 0;
      std::string why;
      if (!plan_backend(p, *config, &workspace, &state, &workers, &why)) return fail(TA_ERR_OUT_OF_MEMORY, why);
      estimate->state_bytes = state;
      estimate->workspace_bytes = workspace;
    }
    estimate->total_bytes = estimate->workspace_bytes + estimate->output_bytes;
    clear_error();
    return TA_OK;
  });
}

ta_status ta_attention_workspace_size(const ta_attention_args* args, const ta_config* config, size_t* bytes) {
  return guarded([&] {
    if (bytes == nullptr) return fail(TA_ERR_INVALID_ARGUMENT, "bytes is NULL");
    Problem p;
    if (ta_status s = describe_problem(args, config, /*require_data=*/true, &p); s != TA_OK) return s;
    *bytes = 0;
    // A call that a shape guard declines needs nothing (and R may be absurd there).
    if (p.ds == 0 || p.R < 0 || p.R > config->max_feature_dim_R || p.ds > config->max_head_dim) {
      clear_error();
      return TA_OK;
    }
    int64_t workspace = 0, state = 0;
    int workers = 0;
    std::string why;
    if (!plan_backend(p, *config, &workspace, &state, &workers, &why)) return fail(TA_ERR_OUT_OF_MEMORY, why);
    *bytes = static_cast<size_t>(workspace);
    clear_error();
    return TA_OK;
  });
}

ta_status ta_attention_run(const ta_attention_args* args, const ta_config* config, void* workspace,
                           size_t workspace_bytes, void* stream, ta_stats* stats) {
  return guarded([&]() -> ta_status {
    if (ta_status s = check_stats(stats); s != TA_OK) return s;
    if (stats) ta_stats_init(stats);
    const auto t0 = std::chrono::steady_clock::now();
    Problem p;
    if (ta_status s = describe_problem(args, config, /*require_data=*/true, &p); s != TA_OK) return s;
    if (stats) fill_shape_stats(p, stats);
    HostMask host_mask;
    if (ta_status s = stage_mask(&p, &host_mask); s != TA_OK) return s;
    KeyMask mask;
    std::string detail;
    if (const ta_reason why = apply_guards(p, *config, &mask, &detail); why != TA_REASON_NONE) {
      return declined(stats, why, detail);
    }
    const bool on_gpu = p.device == TA_DEVICE_CUDA;

    int64_t needed_bytes = 0, state_bytes = 0;
    int workers = 1;
    std::string why_not;
    if (!plan_backend(p, *config, &needed_bytes, &state_bytes, &workers, &why_not)) {
      if (stats) stats->fallback_reason = TA_REASON_OUT_OF_MEMORY;
      return fail(TA_ERR_OUT_OF_MEMORY, why_not);
    }
    const auto needed = static_cast<size_t>(needed_bytes);
    std::unique_ptr<unsigned char[], FreeDeleter> owned;
    if (workspace == nullptr && !on_gpu) {  // the CUDA backend allocates on its stream
      owned.reset(new (std::nothrow) unsigned char[needed]);
      if (!owned) {
        if (stats) stats->fallback_reason = TA_REASON_OUT_OF_MEMORY;
        return fail(TA_ERR_OUT_OF_MEMORY, "could not allocate a workspace of " + std::to_string(needed) + " bytes");
      }
      workspace = owned.get();
    } else if (workspace != nullptr && workspace_bytes < needed) {
      if (stats) stats->fallback_reason = TA_REASON_OUT_OF_MEMORY;
      return fail(TA_ERR_WORKSPACE_TOO_SMALL, "workspace holds " + std::to_string(workspace_bytes) +
                                                  " bytes, the call needs " + std::to_string(needed));
    }
    if (stats) {
      stats->state_bytes = state_bytes / std::max(1, workers);
      stats->workspace_bytes = needed_bytes;
    }

    ta_reason why = TA_REASON_NONE;
    const ta_status s = on_gpu ? ta::cuda::run(p, *config, mask, workspace, needed, stream, stats, &why)
                               : cpu::run(p, *config, mask, workspace, needed, stats, &why);
    if (s == TA_FALLBACK) return declined(stats, why, "");
    if (s == TA_ERR_OUT_OF_MEMORY && stats) stats->fallback_reason = TA_REASON_OUT_OF_MEMORY;
    if (s != TA_OK) return s;
    if (!on_gpu && config->quality_check && config->quality_check_samples > 0 && stats) {
      const auto tq = std::chrono::steady_clock::now();
      run_quality_check(p, *config, mask, &stats->quality_vs_original, &stats->quality_truncation);
      stats->time_quality_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - tq).count();
    }
    if (stats) {
      stats->backend = on_gpu ? TA_BACKEND_CUDA : TA_BACKEND_CPU;
      stats->fallback_reason = TA_REASON_NONE;
      stats->time_total_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    }
    clear_error();
    return TA_OK;
  });
}

ta_status ta_reference_attention(const ta_attention_args* args, const ta_config* config, ta_reference_kind kind) {
  return guarded([&]() -> ta_status {
    const int32_t raw_kind = raw_enum(kind);
    if (raw_kind != TA_REFERENCE_EXACT_ORIGINAL && raw_kind != TA_REFERENCE_EXACT_MODIFIED &&
        raw_kind != TA_REFERENCE_TAYLOR_QUADRATIC && raw_kind != TA_REFERENCE_HYBRID_QUADRATIC) {
      return fail(TA_ERR_INVALID_ARGUMENT, "unknown reference kind " + std::to_string(raw_kind));
    }
    Problem p;
    if (ta_status s = describe_problem(args, config, /*require_data=*/true, &p); s != TA_OK) return s;
    for (const ta_tensor* t : {p.q, p.k, p.v, p.out}) {
      if (t->device != TA_DEVICE_CPU) return fail(TA_ERR_UNSUPPORTED, "references run on CPU tensors only");
      if (!is_float_dtype(t->dtype)) return fail(TA_ERR_UNSUPPORTED, "references need float tensors");
    }
    if (kind != TA_REFERENCE_EXACT_ORIGINAL && p.ds == 0) {
      return fail(TA_ERR_UNSUPPORTED, "sub_head_blocks does not divide the head dims");
    }
    KeyMask mask;
    if (p.mask != nullptr) {
      const char* why = "";
      if (analyze_mask(*p.mask, p.B, p.H, p.Nq, p.Nk, &mask, &why) != TA_REASON_NONE) {
        return fail(TA_ERR_UNSUPPORTED, std::string("unsupported mask: ") + why);
      }
    }
    const RefSpec spec = reference_spec(p, *config, kind);
    constexpr int64_t kRowsPerTask = 256;
    const int64_t row_blocks = (p.Nq + kRowsPerTask - 1) / kRowsPerTask;
    const ta_tensor& o = *p.out;
    parallel_for(p.B * p.H * row_blocks, resolve_threads(config->num_threads), [&](int64_t task, int) {
      const int64_t bh = task / row_blocks;
      const int64_t b = bh / p.H, h = bh % p.H;
      const int64_t start = (task % row_blocks) * kRowsPerTask;
      const int64_t n = std::min(kRowsPerTask, p.Nq - start);
      std::vector<int64_t> rows(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) rows[static_cast<size_t>(i)] = start + i;
      std::vector<double> out(static_cast<size_t>(n * p.dv));
      reference_rows(p, spec, mask, b, h, rows, out.data());
      for (int64_t i = 0; i < n; ++i) {
        const int64_t base = b * o.strides[0] + h * o.strides[1] + (start + i) * o.strides[2];
        for (int64_t col = 0; col < p.dv; ++col) {
          store_from_double(o.data, base + col * o.strides[3], o.dtype, out[static_cast<size_t>(i * p.dv + col)]);
        }
      }
    });
    clear_error();
    return TA_OK;
  });
}

}  // extern "C"
