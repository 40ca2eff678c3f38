/*
 * taylor_attention.h - the whole public ABI of the taylor-attention library.
 *
 * Attention with exp() replaced by its truncated Taylor series with P terms
 * (degrees 0..P-1), evaluated in linear "state" form over symmetric monomial
 * features: a key pass builds S = sum_j psi(k_j) [v_j, 1]^T, a query pass
 * returns psi(q) S[:, :dv] / psi(q) z. See docs/api.md for a walk-through.
 *
 * Conventions
 *  - Plain C, no exception, abort or exit ever crosses this header.
 *  - Every function returns a ta_status; TA_OK is 0. On failure
 *    ta_last_error_message() names the failing condition; that message is
 *    per thread, so concurrent callers never see each other's messages.
 *  - No global mutable state: calls on different threads are independent.
 *  - Tensors are pointer + dtype + device + shape + strides counted in
 *    elements (not bytes), like DLPack's DLTensor.
 *  - Three questions per call: can it run (ta_attention_check), how much
 *    scratch memory (ta_attention_workspace_size), run it (ta_attention_run)
 *    with caller-owned workspace and stream.
 */
#ifndef TAYLOR_ATTENTION_H_
#define TAYLOR_ATTENTION_H_

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#if defined(TA_BUILDING_LIBRARY)
#define TA_API __declspec(dllexport)
#else
#define TA_API __declspec(dllimport)
#endif
#else
#define TA_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ */
/* Versions                                                            */
/* ------------------------------------------------------------------ */
#define TA_VERSION_MAJOR 0
#define TA_VERSION_MINOR 1
#define TA_VERSION_PATCH 0
/* Bumped whenever a struct below changes layout or a function changes meaning. */
#define TA_ABI_VERSION 2
#define TA_VERSION_NUMBER (TA_VERSION_MAJOR * 10000 + TA_VERSION_MINOR * 100 + TA_VERSION_PATCH)

/* Runtime version of the loaded library, as TA_VERSION_NUMBER. */
TA_API int ta_version(void);
/* "MAJOR.MINOR.PATCH" of the loaded library (static storage). */
TA_API const char *ta_version_string(void);
/* TA_ABI_VERSION of the loaded library: bindings refuse a mismatch. */
TA_API int ta_abi_version(void);

/* ------------------------------------------------------------------ */
/* Status codes and errors                                             */
/* ------------------------------------------------------------------ */
typedef enum ta_status {
  TA_OK = 0,
  /* The call was declined or abandoned; ta_stats.fallback_reason says why.
   * The caller should run the original attention instead. */
  TA_FALLBACK = 1,
  TA_ERR_INVALID_ARGUMENT = 2,   /* caller error: null pointer, shape mismatch, bad config value */
  TA_ERR_WORKSPACE_TOO_SMALL = 3,/* workspace_bytes below ta_attention_workspace_size() */
  TA_ERR_OUT_OF_MEMORY = 4,      /* the library could not allocate (only when workspace == NULL) */
  TA_ERR_UNSUPPORTED = 5,        /* asked for something this build cannot do (e.g. CUDA not compiled) */
  TA_ERR_DEVICE = 6,             /* a CUDA runtime error; the message names it */
  TA_ERR_INTERNAL = 7            /* a bug: please report the message */
} ta_status;

/* Stable lower-case name of a status ("ok", "fallback", "invalid_argument", ...). */
TA_API const char *ta_status_string(ta_status status);
/* Message of the last failing call on this thread ("" after a success). */
TA_API const char *ta_last_error_message(void);

/* ------------------------------------------------------------------ */
/* Fallback reasons (stable names: logs and tests depend on them)      */
/* ------------------------------------------------------------------ */
typedef enum ta_reason {
  TA_REASON_NONE = 0,
  /* Guards, answered by ta_attention_check without computing anything. */
  TA_REASON_DISABLED = 1,                 /* config.enabled == 0 */
  TA_REASON_BELOW_MIN_TOKENS = 2,         /* max(Nq, Nk) < min_tokens */
  TA_REASON_CROSS_ATTENTION_DISABLED = 3, /* Nq != Nk and !allow_cross_attention */
  TA_REASON_HEAD_DIM_TOO_LARGE = 4,       /* slice head dim d/G > max_head_dim */
  TA_REASON_FEATURE_DIM_TOO_LARGE = 5,    /* R of one slice > max_feature_dim_R (or overflows) */
  TA_REASON_SUB_HEAD_BLOCK_MISMATCH = 6,  /* d % G != 0 or dv % G != 0 */
  TA_REASON_UNSUPPORTED_MASK = 7,         /* mask is not a key-padding mask */
  TA_REASON_UNSUPPORTED_DTYPE = 8,        /* q/k/v dtypes differ or are not f16/bf16/f32(/f64 on CPU) */
  TA_REASON_UNSUPPORTED_LAYOUT = 9,       /* negative strides, tensors on different devices */
  TA_REASON_UNSUPPORTED_DEVICE = 10,      /* no backend for the tensors' device in this build */
  /* Run-time reasons, known only after (part of) the computation. */
  TA_REASON_DENOMINATOR_TOO_SMALL = 11,   /* a denominator <= eps with fallback_on_negative */
  TA_REASON_DENOMINATOR_INVALID = 12,     /* a denominator is NaN or Inf */
  TA_REASON_NON_FINITE_OUTPUT = 13,       /* an output element is NaN or Inf */
  TA_REASON_OUT_OF_MEMORY = 14,           /* workspace too small or allocation failed */
  /* Window notes: config.window_radius > 0 but the local-exact hybrid could not apply,
   * so the call ran plain Taylor attention (ta_stats.window_reason; never a fallback). */
  TA_REASON_WINDOW_NO_LAYOUT = 15,        /* args.layout is NULL */
  TA_REASON_WINDOW_CROSS_ATTENTION = 16,  /* Nq != Nk: query and key layouts differ */
  TA_REASON_COUNT_ = 17
} ta_reason;

/* Stable snake_case name ("below_min_tokens", ...); "unknown" out of range. */
TA_API const char *ta_reason_name(ta_reason reason);

/* ------------------------------------------------------------------ */
/* Tensors                                                             */
/* ------------------------------------------------------------------ */
typedef enum ta_dtype {
  TA_DTYPE_F16 = 0,
  TA_DTYPE_BF16 = 1,
  TA_DTYPE_F32 = 2,
  TA_DTYPE_F64 = 3, /* CPU only */
  TA_DTYPE_BOOL = 4 /* masks only: one byte, nonzero = attend */
} ta_dtype;

TA_API const char *ta_dtype_name(ta_dtype dtype);
/* Bytes per element, 0 for an unknown dtype. */
TA_API size_t ta_dtype_size(ta_dtype dtype);

typedef enum ta_device_type { TA_DEVICE_CPU = 0, TA_DEVICE_CUDA = 1 } ta_device_type;

#define TA_MAX_DIMS 4

typedef struct ta_tensor {
  void *data;                   /* first element; NULL only in shape-only queries (memory estimate) */
  ta_dtype dtype;
  ta_device_type device;
  int32_t device_id;            /* CUDA ordinal; 0 on the CPU */
  int32_t ndim;                 /* 1..TA_MAX_DIMS */
  int64_t shape[TA_MAX_DIMS];   /* extents, outermost first; entries past ndim are ignored */
  int64_t strides[TA_MAX_DIMS]; /* in elements; 0 broadcasts (inputs only) */
} ta_tensor;

/* Fills a tensor with contiguous row-major strides. Returns TA_ERR_INVALID_ARGUMENT
 * for a NULL tensor, ndim out of 1..4, a negative extent, or extents whose strides do
 * not fit in int64. dtype and device are stored as given (check() names bad values). */
TA_API ta_status ta_tensor_init_contiguous(ta_tensor *t, void *data, ta_dtype dtype,
                                           ta_device_type device, int32_t ndim,
                                           const int64_t *shape);

/* Token layout of a call, for the local-exact hybrid (config.window_radius > 0):
 * text_tokens leading non-grid tokens (Flux: the text), then num_grids row-major image
 * grids of grid_height[g] x grid_width[g] tokens each (Flux: the latent, then any
 * reference latents). text_tokens + sum(h*w) must equal Nq = Nk. */
#define TA_MAX_GRIDS 8
typedef struct ta_token_layout {
  int64_t text_tokens;
  int32_t num_grids; /* 0..TA_MAX_GRIDS */
  int64_t grid_height[TA_MAX_GRIDS];
  int64_t grid_width[TA_MAX_GRIDS];
} ta_token_layout;

/* One attention call. q [B,H,Nq,d], k [B,H,Nk,d], v [B,H,Nk,dv], out [B,H,Nq,dv]
 * (out in the input dtype, on the same device). mask is optional (NULL):
 *   bool (nonzero = attend) or additive float (0 = attend, <= -1e4 or -inf = block),
 *   shaped [Nk], [B,Nk] or [B|1, 1|H, 1|Nq, Nk]; it must be the same for every head
 *   and query (a key-padding mask), anything else is TA_REASON_UNSUPPORTED_MASK.
 * A CUDA mask is copied to the host (synchronously) and inspected there. */
typedef struct ta_attention_args {
  const ta_tensor *q;
  const ta_tensor *k;
  const ta_tensor *v;
  const ta_tensor *mask; /* optional */
  const ta_tensor *out;  /* written by ta_attention_run; data must not overlap q, k, v */
  const ta_token_layout *layout; /* optional (NULL): token layout for the local-exact hybrid */
} ta_attention_args;

/* ------------------------------------------------------------------ */
/* Configuration: every parameter of the ComfyUI node that the engine uses */
/* ------------------------------------------------------------------ */
typedef struct ta_config {
  uint32_t struct_size;        /* sizeof(ta_config); set by ta_config_defaults */
  int32_t enabled;             /* 0: every call answers TA_REASON_DISABLED */
  int32_t P;                   /* number of Taylor terms, degrees 0..P-1 (1..16) */
  int64_t min_tokens;          /* guard: max(Nq, Nk) below this falls back */
  int64_t max_feature_dim_R;   /* guard: R = C(d/G + P - 1, P - 1) per slice above this falls back */
  int32_t sub_head_blocks;     /* G: independent attentions over d/G slices (changes the function!) */
  int32_t qk_normalize;        /* q, k <- x / (||x|| + eps) per slice vector */
  double scale_mul;            /* multiplies the scale */
  double scale;                /* base scale; 0 means d^-1/2. Each slice uses scale * sqrt(G) * scale_mul */
  int32_t block_size_q;        /* CPU: queries per chunk (bounds temporary memory) */
  int32_t block_size_k;        /* CPU: keys per chunk */
  double eps;                  /* normalisation epsilon and denominator threshold */
  int32_t fallback_on_negative;/* 1: any denominator <= eps falls back; 0: clamp at eps */
  int32_t allow_cross_attention;
  int32_t max_head_dim;        /* guard on the slice head dim d/G */
  int32_t force_fp32;          /* GPU: features and products in fp32 (CPU always computes in >= fp32) */
  int32_t early_probe;         /* check sampled denominators right after z, before S */
  int32_t probe_samples;
  int32_t denom_fp32;          /* denominators in fp32 at least (CPU: always true) */
  int32_t quality_check;       /* sampled comparison with the original attention (into ta_stats) */
  int32_t quality_check_samples;
  uint64_t seed;               /* seeds probe and quality-check sampling (deterministic) */
  int32_t num_threads;         /* CPU worker threads; 0 = all hardware threads */
  /* Local-exact hybrid (needs args.layout; see docs/math.md "Local-exact hybrid"). For
   * each query, the keys of its exact set get exp weights, every other key its Taylor
   * weight, combined with one per-query stabiliser. */
  int32_t window_radius;       /* Chebyshev radius on the query's own grid; 0 = off (plain Taylor) */
  int32_t window_text_keys;    /* 1: text keys are in every query's exact set */
  int32_t window_text_queries; /* 1: text queries are exact over all keys (their rows are exact softmax) */
} ta_config;

/* Fills the documented defaults (the original node's): enabled=1, P=4, min_tokens=100,
 * max_feature_dim_R=370000, sub_head_blocks=4, qk_normalize=0, scale_mul=1, scale=0,
 * block_size_q=32, block_size_k=16, eps=1e-6, fallback_on_negative=1,
 * allow_cross_attention=1, max_head_dim=128, force_fp32=0, early_probe=1,
 * probe_samples=16, denom_fp32=1, quality_check=1, quality_check_samples=16, seed=0,
 * num_threads=0, window_radius=0, window_text_keys=1, window_text_queries=1. */
TA_API ta_status ta_config_defaults(ta_config *config);
/* TA_OK when every field is in range, else TA_ERR_INVALID_ARGUMENT naming the field. */
TA_API ta_status ta_config_validate(const ta_config *config);

/* ------------------------------------------------------------------ */
/* Statistics of one call                                              */
/* ------------------------------------------------------------------ */
typedef enum ta_backend { TA_BACKEND_NONE = 0, TA_BACKEND_CPU = 1, TA_BACKEND_CUDA = 2 } ta_backend;
TA_API const char *ta_backend_name(ta_backend backend);

typedef struct ta_quality {
  int32_t samples;        /* sampled queries per (batch, head); 0 when not run */
  double rel_l2;          /* ||o - o_ref|| / ||o_ref|| over all sampled rows */
  double mean_abs;        /* mean |o - o_ref| over sampled elements */
  double max_abs;         /* max  |o - o_ref| */
  double mean_rel;        /* mean over sampled rows of ||o_i - ref_i|| / ||ref_i|| */
} ta_quality;

typedef struct ta_stats {
  uint32_t struct_size;      /* caller sets sizeof(ta_stats) (ta_stats_init does) */
  ta_backend backend;        /* backend that produced the output, NONE on fallback */
  ta_reason fallback_reason; /* TA_REASON_NONE when the Taylor output was written */
  int32_t sub_head_blocks;   /* G actually used */
  int32_t slice_dim;         /* d / G */
  int32_t slice_value_dim;   /* dv / G */
  int64_t feature_dim;       /* R per slice */
  int64_t state_bytes;       /* bytes of ONE (batch, head, slice) state S plus z */
  int64_t workspace_bytes;   /* workspace the call used */
  /* Denominators psi(q) . z over every query, batch, head and slice. */
  int64_t denom_count;
  double denom_min, denom_max, denom_mean;
  int64_t denom_le_eps;      /* how many were <= eps */
  int64_t denom_non_finite;
  /* early_probe */
  int32_t probe_ran;
  int32_t probe_samples;
  double probe_denom_min;
  /* quality_check: against exact softmax of the ORIGINAL call (full head, base scale,
   * no qk_normalize, scale_mul or slicing), and against exact softmax of the modified
   * function (the truncation-only error). */
  ta_quality quality_vs_original;
  ta_quality quality_truncation;
  /* Timing in milliseconds (host wall clock on the CPU, CUDA events on the GPU). */
  double time_probe_ms, time_key_pass_ms, time_query_pass_ms, time_quality_ms, time_total_ms;
  /* Local-exact hybrid. With it active the denominators above are the hybrid ones,
   * divided by the per-query stabiliser exp(m_i) (m_i = max(0, largest exact score)). */
  int32_t window_active;       /* 1 when the hybrid ran */
  ta_reason window_reason;     /* why a requested window did not apply; NONE otherwise */
  int64_t window_exact_pairs;  /* (query, key) pairs weighted exactly, over batch, heads, slices */
  double time_window_ms;       /* the exact-set work (CUDA: its own kernel) */
} ta_stats;

TA_API ta_status ta_stats_init(ta_stats *stats);

/* ------------------------------------------------------------------ */
/* The three questions                                                 */
/* ------------------------------------------------------------------ */

/* Can this call run? Returns TA_OK with *reason = TA_REASON_NONE when the Taylor path
 * will be attempted, TA_OK with a guard reason when it would fall back, or an error
 * status for malformed arguments (message names the problem). Computes nothing. */
TA_API ta_status ta_attention_check(const ta_attention_args *args, const ta_config *config,
                                    ta_reason *reason);

/* Scratch bytes ta_attention_run needs for this call (0 is possible). */
TA_API ta_status ta_attention_workspace_size(const ta_attention_args *args,
                                             const ta_config *config, size_t *bytes);

typedef struct ta_memory_estimate {
  int64_t feature_dim;     /* R per slice */
  int64_t state_bytes;     /* ALL states alive at once (CPU: one per worker; CUDA: one batch of units) */
  int64_t workspace_bytes; /* what ta_attention_workspace_size answers (states included) */
  int64_t output_bytes;
  int64_t total_bytes;     /* workspace + output: what the call adds to device memory */
} ta_memory_estimate;

/* Memory a call will take, for memory reservation (ComfyUI's memory_reserve). Works for
 * shapes alone: tensors' data pointers may be NULL. */
TA_API ta_status ta_attention_memory_estimate(const ta_attention_args *args,
                                              const ta_config *config,
                                              ta_memory_estimate *estimate);

/* Runs the call. workspace may be NULL (the library then allocates, reporting
 * TA_ERR_OUT_OF_MEMORY / reason out_of_memory on failure); otherwise it must hold
 * ta_attention_workspace_size() bytes, suitably aligned (256 bytes), on the tensors'
 * device. stream is a cudaStream_t for CUDA tensors (NULL = default stream), ignored
 * on the CPU. stats may be NULL.
 * Returns TA_OK when out holds the Taylor output; TA_FALLBACK when a guard or a run-time
 * check declined (stats->fallback_reason says which; out's contents are then
 * unspecified); an error status otherwise. */
TA_API ta_status ta_attention_run(const ta_attention_args *args, const ta_config *config,
                                  void *workspace, size_t workspace_bytes, void *stream,
                                  ta_stats *stats);

/* ------------------------------------------------------------------ */
/* References (CPU tensors only; O(N^2); for tests, tools and fallbacks) */
/* ------------------------------------------------------------------ */
typedef enum ta_reference_kind {
  /* Exact softmax attention of the original call: full head, base scale (config.scale
   * or d^-1/2), the mask; ignores P, G, qk_normalize and scale_mul. What ComfyUI's
   * standard backend computes. */
  TA_REFERENCE_EXACT_ORIGINAL = 0,
  /* Exact softmax of the modified function: slices, qk_normalize, scale_mul applied. */
  TA_REFERENCE_EXACT_MODIFIED = 1,
  /* The Taylor function in quadratic form: T_P applied to explicit scores of the
   * modified function. Equals the state form up to rounding. */
  TA_REFERENCE_TAYLOR_QUADRATIC = 2,
  /* The local-exact hybrid in quadratic form: explicit scores of the modified function,
   * exp on each query's exact set (args.layout, config.window_*), T_P elsewhere. Equals
   * TAYLOR_QUADRATIC when the window does not apply. */
  TA_REFERENCE_HYBRID_QUADRATIC = 3
} ta_reference_kind;

/* Writes the reference into args->out, computing in fp64. Guards other than mask
 * validity are ignored; an unsupported mask is TA_ERR_UNSUPPORTED. */
TA_API ta_status ta_reference_attention(const ta_attention_args *args, const ta_config *config,
                                        ta_reference_kind kind);

/* ------------------------------------------------------------------ */
/* Synthetic image-like workload (tests, tools, benchmarks)            */
/* ------------------------------------------------------------------ */
/* A Flux-like call: spatially smooth random content on each grid (text tokens: random
 * content), projected per head to q, k, v; RMSNorm on q and k (|q| = |k| = sqrt(d)) times
 * gain; Flux's 3-axis RoPE (axes 16/56/56 of d=128, scaled to other d; theta 10000; text at
 * position 0, grid g's token (y, x) at (g, y, x)). Deterministic for a seed on every platform. */
typedef struct ta_workload_params {
  uint32_t struct_size;     /* sizeof(ta_workload_params); set by ta_workload_defaults */
  ta_token_layout layout;   /* tokens N = text + sum of grid sizes */
  double smoothness;        /* correlation length of the grid content, in tokens (> 0) */
  double gain;              /* multiplies q and k after RMSNorm (score spread grows with it) */
  double alignment;         /* 0..1: share of the key projection taken from the query's */
  int32_t rope;             /* 1: apply RoPE to q and k */
  uint64_t seed;
} ta_workload_params;

/* Defaults: 256 text tokens + one 64x64 grid, smoothness 3, gain 1, alignment 0.7,
 * rope 1, seed 0: a score spread of 1.4 and a plain P=3 error of 0.75, matching the
 * Flux-like workload of MATH.md section 6 (docs/math.md has the calibration). */
TA_API ta_status ta_workload_defaults(ta_workload_params *params);
/* Fills CPU tensors q, k [B,H,N,d] and v [B,H,N,dv] (f16/bf16/f32/f64, any strides, d
 * even when rope is on). Each (batch, head) gets its own projections. A gain so large that
 * q or k overflow their dtype is TA_ERR_INVALID_ARGUMENT (the tensors' contents are then
 * unspecified). */
TA_API ta_status ta_workload_generate(const ta_workload_params *params, const ta_tensor *q,
                                      const ta_tensor *k, const ta_tensor *v);

/* ------------------------------------------------------------------ */
/* Facts and build information                                         */
/* ------------------------------------------------------------------ */

/* R(d, P) = C(d + P - 1, P - 1): features of a d-dim slice with P terms. Sets
 * TA_ERR_INVALID_ARGUMENT when the count does not fit in int64 (never wraps). */
TA_API ta_status ta_feature_dim(int64_t d, int32_t P, int64_t *R);

/* 1 when this build can run tensors of that device type, 0 otherwise. */
TA_API int ta_backend_available(ta_device_type device);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* TAYLOR_ATTENTION_H_ */
