// cmd_demo.cpp - `taylor-attn demo`: the project's main job on one embedded example.
//
// A Flux-shaped attention call (512 text + 64x64 image tokens, d = 128, the library's
// synthetic workload: smooth content, QK RMSNorm, RoPE) is run three ways: exact attention, the ComfyUI node's defaults, and P=3 on full heads. The
// closing paragraph is composed from the measured numbers, never written in advance, so the
// demo stays honest when the engine changes.
//
// On cuda the call has Flux's 24 heads and runs on the card (inputs uploaded once, a
// cudaMalloc'ed workspace per variant, CUDA events, median of a few runs after a warm-up).
// The exact reference stays the host's fp64 one, which at 24 heads would take minutes on a
// few cores, so it covers the first --reference-heads heads and every error is measured on
// those; the output says so. There is no exact GPU kernel in C++ to compare times with
// (benchmarks/benchmark_taylor_attention.py times torch SDPA), so on cuda the table shows
// the Taylor FLOP rate instead of a speed-up against the fp64 reference.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "cli_common.h"
#include "commands.h"
#include "config_flags.h"
#include "cost_model.h"
#include "device_call.h"
#include "json.h"
#include "units.h"
#include "workload.h"

namespace ta_cli {
namespace {

constexpr const char *kExactLabel = "exact (fp64 reference)";
constexpr const char *kSdpaNote =
    "benchmarks/benchmark_taylor_attention.py (torch SDPA) times an optimised exact kernel";
// Heads on the CPU are scaled down from Flux's 24 to keep the demo near a minute on two
// cores; the per-head work is the same, so errors and per-head speed carry over.
constexpr int64_t kCpuHeads = 2;
constexpr int64_t kCudaHeads = 24;
// The host's fp64 reference costs O(N^2 d) per head (about 1 s per head at N = 4608 on one
// core): two heads keep the CUDA demo's reference near the CPU demo's.
constexpr int64_t kCudaReferenceHeads = 2;
// GPU timing: one untimed call (module load, first-touch of the workspace), then the
// median of five.
constexpr int64_t kCudaWarmup = 1;
constexpr int64_t kCudaIters = 5;
// The local-exact hybrid's radius in the demo: the node's default, exact weights on each
// image token's 9x9 neighbourhood plus the text (docs/math.md's accuracy table).
constexpr int32_t kDemoWindowRadius = 4;

CommandLine make_demo_command_line() {
  CommandLine cl("taylor-attn demo",
                 "Runs one Flux-shaped attention call (512 text + 4096 image tokens, d=128,\n"
                 "QK-RMSNorm) exactly, with the node defaults (P=4, sub_head_blocks=4), with\n"
                 "P=3 on full heads and with the local-exact hybrid (P=3, window radius 4), and\n"
                 "reports time, speed-up and error against exact.");
  cl.option("device", ArgType::Choice, "cpu|cuda|auto",
            "where to run; auto: cuda when usable, else cpu with a one-line note")
      .defaults("cpu")
      .one_of({"cpu", "cuda", "auto"});
  cl.option("heads", ArgType::Int, "H", "heads (Flux has 24)")
      .defaults("2 on cpu, 24 on cuda")
      .range(1, 1024);
  cl.option("reference-heads", ArgType::Int, "N",
            "heads (the first N) with the host's fp64 exact reference; errors are measured on "
            "them")
      .defaults("all on cpu, 2 on cuda")
      .range(1, 1024);
  cl.option("dtype", ArgType::Choice, "f32|f16|bf16", "input dtype")
      .defaults("f32 on cpu, bf16 on cuda")
      .one_of({"f32", "f16", "bf16"});
  cl.option("iters", ArgType::Int, "N", "timed runs per variant (the median is reported)")
      .defaults("1 on cpu, 5 on cuda after 1 warm-up")
      .range(1, 1000);
  add_workload_tail_options(cl, "seed of the synthetic content", "text");
  cl.set_epilog(
      "The input is the library's synthetic Flux-like workload (ta_workload_generate, its\n"
      "defaults): spatially smooth random content on the 64x64 grid, random text tokens,\n"
      "projected per head, q and k RMS-normalised, Flux's 3-axis RoPE.\n"
      "The exact baseline is the library's fp64 reference on the host, not an optimised\n"
      "kernel; on cuda it covers the first --reference-heads heads only, and errors are\n"
      "measured on those.");
  return cl;
}

struct Variant {
  std::string name;
  ta_config config{};
  std::string status;  // "ok", "fallback" or "error"
  std::string detail;
  double ms = std::nan("");  // median over the timed runs (the failing run's time otherwise)
  double min_ms = std::nan("");
  int64_t timed_runs = 0;
  double rel_l2 = std::nan("");
  double flops = std::nan("");  // Taylor FLOPs of the whole call (all heads)
  double flop_ratio = std::nan("");
  int32_t sampled_rows = 0;  // the library's own quality check, when it ran
  double sampled_rel_l2 = std::nan("");
  int64_t feature_dim = 0;
  bool forced = false;  // fallbacks were switched off to measure the approximation
};

// Where the variants run and how they are clocked.
struct Target {
  AttentionCall *host = nullptr;          // inputs; out receives each variant's output
  DeviceAttentionCall *device = nullptr;  // non-null on cuda
  int64_t warmup = 0, iters = 1;
};

// Flux at 1024^2: 512 text tokens + a 64x64 latent grid, 128-dim heads.
struct DemoShape {
  int64_t text_tokens = 512;
  int64_t grid = 64;
  int64_t head_dim = 128;
};

// The library's synthetic workload (ta_workload_generate) with its default content, gains
// and RoPE, on the demo's tokens.
ta_workload_params demo_workload(const DemoShape &shape, uint64_t seed) {
  ta_workload_params params;
  ta_workload_defaults(&params);
  params.layout.text_tokens = shape.text_tokens;
  params.layout.num_grids = 1;
  params.layout.grid_height[0] = shape.grid;
  params.layout.grid_width[0] = shape.grid;
  params.seed = seed;
  return params;
}

double median(std::vector<double> v) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

// ||a - ref|| / ||ref|| over ref's elements, which are the first ones of a: with B = 1 the
// first reference_heads heads.
double relative_l2_prefix(const HostArray &a, const HostArray &ref) {
  const int64_t n = ref.numel();
  if (n > a.numel()) return std::nan("");
  double diff = 0.0, norm = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double r = ref.get(i);
    const double e = a.get(i) - r;
    diff += e * e;
    norm += r * r;
  }
  return norm > 0.0 ? std::sqrt(diff / norm) : std::nan("");
}

void run_variant(Target &target, const HostArray &reference, Variant *v,
                 const Progress &progress) {
  progress.note(v->name + (v->forced ? ", fallbacks off" : "") + ": running");
  const bool cuda = target.device != nullptr;
  const ta_attention_args *args = cuda ? target.device->prepare() : target.host->prepare();
  std::string error;
  DeviceBuffer workspace;
  size_t ws_bytes = 0;
  if (cuda) {
    // A caller-owned workspace, as ComfyUI's caching allocator would hand in, so the
    // timing is the attention's and not cudaMallocAsync's.
    ta_status st = ta_attention_workspace_size(args, &v->config, &ws_bytes);
    if (st != TA_OK) {
      v->status = "error";
      v->detail = library_error("ta_attention_workspace_size", st);
      return;
    }
    if (!workspace.allocate(ws_bytes, &error)) {
      v->status = "error";
      v->detail = "workspace: " + error;
      return;
    }
  }
  DeviceTimer timer;
  std::vector<double> times;
  ta_stats stats;
  ta_status st = TA_OK;
  for (int64_t i = 0; i < target.warmup + target.iters; ++i) {
    ta_stats_init(&stats);
    double ms = 0.0;
    const double t0 = now_ms();
    if (cuda && !timer.start(&error)) break;
    st = ta_attention_run(args, &v->config, workspace.data(), ws_bytes, nullptr, &stats);
    if (cuda) {
      if (!timer.stop(&ms, &error)) break;
    } else {
      ms = now_ms() - t0;
    }
    v->ms = ms;  // kept when the call fails: what the attempt cost
    if (st != TA_OK) break;
    if (i >= target.warmup) times.push_back(ms);
  }
  if (!error.empty()) {
    v->status = "error";
    v->detail = error;
    return;
  }
  if (stats.quality_vs_original.samples > 0) {
    v->sampled_rows = stats.quality_vs_original.samples;
    v->sampled_rel_l2 = stats.quality_vs_original.rel_l2;
  }
  if (st == TA_OK) {
    v->status = "ok";
    v->ms = median(times);
    v->min_ms = *std::min_element(times.begin(), times.end());
    v->timed_runs = static_cast<int64_t>(times.size());
    if (cuda && !target.device->download_out(target.host, &error)) {
      v->status = "error";
      v->detail = error;
      return;
    }
    v->rel_l2 = relative_l2_prefix(target.host->out, reference);
  } else if (st == TA_FALLBACK) {
    v->status = "fallback";
    v->detail = ta_reason_name(stats.fallback_reason);
  } else {
    v->status = "error";
    v->detail = library_error("ta_attention_run", st);
  }
}

// Error of replacing attention by a plain mean of the values: the "no information" line
// that makes a relative error readable. v and reference cover the same heads.
double uniform_error(const HostArray &v, const HostArray &reference) {
  const int64_t bh = v.shape[0] * v.shape[1];
  const int64_t n = v.shape[2], dv = v.shape[3], nq = reference.shape[2];
  double diff = 0.0, norm = 0.0;
  std::vector<double> mean(static_cast<size_t>(dv));
  for (int64_t g = 0; g < bh; ++g) {
    std::fill(mean.begin(), mean.end(), 0.0);
    for (int64_t j = 0; j < n; ++j) {
      for (int64_t c = 0; c < dv; ++c) mean[static_cast<size_t>(c)] += v.get((g * n + j) * dv + c);
    }
    for (double &m : mean) m /= static_cast<double>(n);
    for (int64_t i = 0; i < nq; ++i) {
      for (int64_t c = 0; c < dv; ++c) {
        double r = reference.get((g * nq + i) * dv + c);
        double e = mean[static_cast<size_t>(c)] - r;
        diff += e * e;
        norm += r * r;
      }
    }
  }
  return std::sqrt(diff / norm);
}

// Words for an error, judged against the uniform average's error (the "no information"
// line); thresholds are the project's reading of MATH.md section 5, not a standard.
std::string quality_phrase(double err, double uniform) {
  if (err < 0.05) return "close to exact attention";
  if (err < 0.2) return "visibly different from exact attention";
  if (err < 0.5 * uniform) return "a rough approximation of exact attention";
  if (err < 0.8 * uniform)
    return "a poor approximation, closer to exact attention than a plain "
           "average of the values but not by much";
  return "hardly closer to exact attention than a plain average of the values";
}

// "heads 0-1", "head 0", "all 2 heads".
std::string heads_text(int64_t reference_heads, int64_t heads) {
  if (reference_heads >= heads) return "all " + plural(heads, "head");
  if (reference_heads == 1) return "head 0";
  return "heads 0-" + std::to_string(reference_heads - 1);
}

// What the reading needs besides the variants.
struct DemoFacts {
  int64_t tokens = 0, heads = 0, reference_heads = 0;
  double exact_ms = 0, uniform = 0, score_std = 0;
  std::string card;  // empty on the CPU
};

// The closing paragraph, built only from what was measured.
std::string reading(const std::vector<Variant> &variants, const DemoFacts &f,
                    const CostModel &p3_model) {
  const bool cuda = !f.card.empty();
  std::ostringstream s;
  s << "Reading: on this Flux-shaped call (N = " << format_count(static_cast<double>(f.tokens))
    << " tokens, d = 128, " << plural(f.heads, "head") << ", score std "
    << format_fixed(f.score_std, 2) << ")";
  if (cuda) {
    s << " on " << f.card << ", exact attention of " << heads_text(f.reference_heads, f.heads)
      << " took " << format_ms(f.exact_ms)
      << " in the fp64 reference on the host, and the errors are measured on "
      << (f.reference_heads >= f.heads ? std::string("all heads")
                                       : heads_text(f.reference_heads, f.heads))
      << ". ";
  } else {
    s << ", exact attention took " << format_ms(f.exact_ms) << " in the fp64 reference. ";
  }
  const Variant *best = nullptr;
  for (const Variant &v : variants) {
    if (v.status == "fallback" && !v.forced) {
      s << "The " << v.name << " run fell back (" << v.detail
        << "): a user would get exact output, but pay " << format_ms(v.ms)
        << " for the attempt on top of standard attention. ";
      continue;
    }
    if (v.status != "ok") {
      if (v.status == "error") s << "The " << v.name << " run failed (" << v.detail << "). ";
      continue;
    }
    s << (v.forced ? "Forced to run with fallbacks off, the " : "The ") << v.name << " run took "
      << format_ms(v.ms);
    if (cuda) {
      s << " on the GPU (" << format_rate(v.flops / (v.ms / 1e3)) << " of Taylor arithmetic)";
    } else {
      const double speedup = f.exact_ms / v.ms;
      s << " (" << format_ratio(speedup) << " " << (speedup >= 1 ? "faster than" : "the speed of")
        << " the reference)";
    }
    s << " with relative L2 error " << format_fixed(v.rel_l2, 3) << ": "
      << quality_phrase(v.rel_l2, f.uniform) << ".";
    if (v.sampled_rows > 0) {
      s << " Its built-in quality check (" << v.sampled_rows << " sampled queries per head"
        << (cuda && f.reference_heads < f.heads ? ", all heads" : "") << ") estimated "
        << format_fixed(v.sampled_rel_l2, 3) << ".";
    }
    s << " ";
    if (!best || v.rel_l2 < best->rel_l2) best = &v;
  }
  s << "For scale, averaging all values uniformly gives error " << format_fixed(f.uniform, 3)
    << ". ";
  if (best) {
    const double closed = 100.0 * (1.0 - best->rel_l2 / f.uniform);
    s << (best->rel_l2 >= 0.5 * f.uniform ? "So at this scale the approximation is rough: the best "
                                            "variant ("
                                          : "The best variant (")
      << best->name << ") closes " << format_fixed(closed, 0)
      << "% of the gap between a uniform average and exact attention. ";
  }
  const double p3_ratio = p3_model.taylor_flops_per_head(static_cast<double>(f.tokens)) /
                          p3_model.exact_flops_per_head(static_cast<double>(f.tokens));
  s << "By FLOP count, P=3 on full heads does " << format_ratio(p3_ratio)
    << " the arithmetic of exact attention at this size (break-even N = "
    << format_count(p3_model.break_even_tokens()) << "), ";
  if (cuda) {
    s << "so to match an optimised exact kernel's time it would have to run at "
      << format_ratio(p3_ratio) << " that kernel's FLOP rate; " << kSdpaNote
      << " on this card.";
  } else {
    s << "so speed-ups against the fp64 reference overstate what an optimised exact kernel "
         "would concede.";
  }
  return s.str();
}

// Heads [0, count) of the workload's q, k, v, rounded to `dtype` as the Taylor call sees
// them and held in f32 (exact for f16 and bf16), with an f32 output: the reference call.
void load_reference_call(const Qkv &qkv, int64_t count, ta_dtype dtype, AttentionCall *call) {
  Qkv part = qkv;
  part.heads = count;
  const size_t qk = static_cast<size_t>(count * qkv.tokens * qkv.head_dim);
  const size_t vv = static_cast<size_t>(count * qkv.tokens * qkv.value_dim);
  part.q.resize(qk);
  part.k.resize(qk);
  part.v.resize(vv);
  const HostArray rq = make_array(dtype, part.qk_shape(), part.q);
  const HostArray rk = make_array(dtype, part.qk_shape(), part.k);
  const HostArray rv = make_array(dtype, part.v_shape(), part.v);
  for (size_t i = 0; i < qk; ++i) {
    part.q[i] = rq.get(static_cast<int64_t>(i));
    part.k[i] = rk.get(static_cast<int64_t>(i));
  }
  for (size_t i = 0; i < vv; ++i) part.v[i] = rv.get(static_cast<int64_t>(i));
  load_call(part, TA_DTYPE_F32, call);
}

}  // namespace

int cmd_demo(const std::vector<std::string> &argv) {
  CommandLine cl = make_demo_command_line();
  int exit_code;
  if (!parse_command_line(cl, argv, &exit_code)) return exit_code;
  const std::string &program = cl.program();
  const std::string requested = cl.get_string("device", "cpu");
  std::string device = requested;
  std::string error;
  CudaDeviceInfo cuda_info;
  if (requested == "auto") {
    device = "cpu";
    std::string reason;
    if (cuda_usable(&cuda_info, &reason)) {
      device = "cuda";
    } else {
      // The documented fallback of --device auto (scripts/demo.sh): one line, then the CPU.
      std::fprintf(stderr, "%s: note: --device auto: %s; running the demo on the CPU\n",
                   program.c_str(), reason.c_str());
    }
  } else if (!device_usable(device, &error, &cuda_info)) {
    return report_error(program, error, kExitFailure);
  }
  const bool on_cuda = device == "cuda";
  const int64_t heads = cl.get_int("heads", on_cuda ? kCudaHeads : kCpuHeads);
  const int64_t reference_heads =
      std::min(heads, cl.get_int("reference-heads", on_cuda ? kCudaReferenceHeads : heads));
  ta_dtype dtype = TA_DTYPE_F32;
  parse_dtype_label(cl.get_string("dtype", on_cuda ? "bf16" : "f32"), &dtype);
  Target target;
  target.warmup = on_cuda ? kCudaWarmup : 0;
  target.iters = cl.get_int("iters", on_cuda ? kCudaIters : 1);
  const uint64_t seed = static_cast<uint64_t>(cl.get_int("seed", 0));

  const Progress progress("demo", !cl.flag("quiet"));
  const DemoShape shape;
  const int64_t n = shape.text_tokens + shape.grid * shape.grid;
  progress.note("building a Flux-shaped input: " + std::to_string(heads) +
                " heads, N=" + std::to_string(n) + ", d=" + std::to_string(shape.head_dim));
  Qkv qkv;
  if (!flux_qkv(demo_workload(shape, seed), heads, shape.head_dim, &qkv, &error)) {
    return report_error(program, error, kExitFailure);
  }
  const double score_std =
      measured_score_std(qkv, 1.0 / std::sqrt(static_cast<double>(shape.head_dim)), 20000, seed);
  AttentionCall call;
  load_call(qkv, dtype, &call);
  // The token layout travels with every variant; only the hybrid's window_radius uses it.
  call.layout = demo_workload(shape, seed).layout;
  target.host = &call;
  DeviceAttentionCall device_call;
  if (on_cuda) {
    progress.note("uploading to " + cuda_info.name);
    if (!device_call.upload(call, &error)) {
      return report_error(program, "--device cuda: " + error, kExitFailure);
    }
    target.device = &device_call;
  }

  ta_config defaults;
  std::memset(&defaults, 0, sizeof defaults);
  ta_config_defaults(&defaults);
  apply_config_options(cl, &defaults);  // --threads
  defaults.seed = seed;

  // The exact reference, on the host in fp64, for the first reference_heads heads of the
  // inputs as the Taylor call sees them (rounded to dtype).
  AttentionCall ref_call;
  load_reference_call(qkv, reference_heads, dtype, &ref_call);
  const std::string exact_label =
      reference_heads < heads ? std::string(kExactLabel) + ", " +
                                    heads_text(reference_heads, heads) + " on the host"
                              : std::string(kExactLabel);
  progress.note(exact_label + ": running");
  double t0 = now_ms();
  ta_status st = ta_reference_attention(ref_call.prepare(), &defaults, TA_REFERENCE_EXACT_ORIGINAL);
  const double exact_ms = now_ms() - t0;
  if (st != TA_OK) {
    return report_error(program, library_error("ta_reference_attention", st), kExitFailure);
  }
  const HostArray &reference = ref_call.out;
  const double uniform = uniform_error(ref_call.v, reference);

  std::vector<Variant> variants;
  {
    Variant v;
    v.name = "node defaults (P=4, sub_head_blocks=4)";
    v.config = defaults;
    variants.push_back(v);
  }
  {
    Variant v;
    v.name = "P=3, sub_head_blocks=1";
    v.config = defaults;
    v.config.P = 3;
    v.config.sub_head_blocks = 1;
    variants.push_back(v);
  }
  {
    Variant v;
    v.name = "hybrid (P=3, window radius 4)";
    v.config = defaults;
    v.config.P = 3;
    v.config.sub_head_blocks = 1;
    v.config.window_radius = kDemoWindowRadius;
    variants.push_back(v);
  }
  CostModel p3_model;
  make_cost_model(shape.head_dim, shape.head_dim, 3, 1, &p3_model, &error);
  std::vector<Variant> done;
  for (Variant &v : variants) {
    CostModel m;
    if (make_cost_model(shape.head_dim, shape.head_dim, v.config.P, v.config.sub_head_blocks, &m,
                        &error)) {
      v.feature_dim = m.feature_dim;
      v.flops = m.taylor_flops_per_head(static_cast<double>(n)) * static_cast<double>(heads);
      v.flop_ratio = m.taylor_flops_per_head(static_cast<double>(n)) /
                     m.exact_flops_per_head(static_cast<double>(n));
    }
    run_variant(target, reference, &v, progress);
    done.push_back(v);
    if (v.status == "fallback") {
      // Show what the approximation would have given: same config, fallbacks off.
      Variant forced = v;
      forced.forced = true;
      forced.detail.clear();
      forced.name = v.name;
      forced.config.fallback_on_negative = 0;
      forced.config.early_probe = 0;
      forced.config.quality_check = 0;
      forced.config.min_tokens = 0;
      forced.sampled_rows = 0;
      forced.sampled_rel_l2 = std::nan("");
      run_variant(target, reference, &forced, progress);
      done.push_back(forced);
    }
  }
  DemoFacts facts;
  facts.tokens = n;
  facts.heads = heads;
  facts.reference_heads = reference_heads;
  facts.exact_ms = exact_ms;
  facts.uniform = uniform;
  facts.score_std = score_std;
  if (on_cuda) facts.card = cuda_info.name;
  const std::string paragraph = reading(done, facts, p3_model);

  if (cl.flag("json")) {
    JsonWriter json;
    json.begin_object();
    json.field("command", "demo");
    json.field("device", device);
    json.field("requested_device", requested);
    json.key("device_name");
    if (on_cuda) {
      json.string(cuda_info.name);
    } else {
      json.null();
    }
    write_cuda_device_json(json, on_cuda ? &cuda_info : nullptr);
    json.field("clock", on_cuda ? "cuda_events" : "host_wall_clock");
    json.field_int("warmup", target.warmup);
    json.field_int("iters", target.iters);
    json.field_int("heads", heads);
    json.field_int("reference_heads", reference_heads);
    json.field_int("tokens", n);
    json.field_int("text_tokens", shape.text_tokens);
    json.field_int("image_tokens", shape.grid * shape.grid);
    json.field_int("head_dim", shape.head_dim);
    json.field("dtype", dtype_label(dtype));
    json.field_int("seed", static_cast<int64_t>(seed));
    json.field_num("score_std", score_std);
    json.field_num("uniform_rel_l2", uniform);
    json.key("exact");
    json.begin_object();
    json.field("label", exact_label);
    json.field_int("heads", reference_heads);
    json.field_num("time_ms", exact_ms);
    json.end_object();
    json.key("runs");
    json.begin_array();
    for (const Variant &v : done) {
      json.begin_object();
      json.field("name", v.name);
      json.field_int("P", v.config.P);
      json.field_int("sub_head_blocks", v.config.sub_head_blocks);
      json.field_int("feature_dim", v.feature_dim);
      json.field_bool("fallbacks_off", v.forced);
      json.field("status", v.status);
      json.field("backend", v.status == "ok" ? "taylor" : "standard");
      if (v.status == "fallback") json.field("fallback_reason", v.detail);
      if (v.status == "error") json.field("error", v.detail);
      json.field_num("time_ms", v.ms);
      json.field_num("min_ms", v.min_ms);
      json.field_int("timed_runs", v.timed_runs);
      // A speed-up against the host's fp64 reference means nothing for a GPU call.
      json.field_num("speedup", v.status == "ok" && !on_cuda ? exact_ms / v.ms : std::nan(""));
      json.field_num("tflops_per_s", v.status == "ok" ? v.flops / (v.ms / 1e3) / 1e12
                                                      : std::nan(""));
      json.field_num("rel_l2", v.rel_l2);
      json.field_num("flop_ratio", v.flop_ratio);
      json.key("quality_check");  // the library's sampled estimate, null when it did not run
      if (v.sampled_rows > 0) {
        json.begin_object();
        json.field_int("samples", v.sampled_rows);
        json.field_num("rel_l2", v.sampled_rel_l2);
        json.end_object();
      } else {
        json.null();
      }
      json.end_object();
    }
    json.end_array();
    json.field("reading", paragraph);
    json.end_object();
    std::fputs(json.str().c_str(), stdout);
    return kExitOk;
  }

  std::ostringstream out;
  out << "demo: Flux-shaped attention, " << shape.text_tokens << " text + "
      << shape.grid * shape.grid << " image tokens (N = " << n << "), d = " << shape.head_dim
      << ", " << plural(heads, "head")
      << (heads < 24 && !on_cuda ? " (Flux has 24; fewer keep the CPU run short)" : "") << ", "
      << dtype_label(dtype) << " inputs, measured score std " << format_fixed(score_std, 2)
      << "\n";
  if (on_cuda) {
    out << "on cuda: " << cuda_device_text(cuda_info)
        << "; Taylor times are CUDA events, median of " << target.iters << " after " << target.warmup << " warm-up\n";
    out << "errors on " << heads_text(reference_heads, heads) << ": the exact reference is the "
        << "host's fp64 one, computed for " << reference_heads << " of " << heads << " heads\n";
  }
  out << "\n";
  // Columns: time, speed-up against the exact reference (CPU) or the Taylor FLOP rate
  // (CUDA), measured error against the reference, and the library's own sampled estimate
  // of that error (quality_check). The CUDA table has longer labels.
  char line[256];
  auto row = [&](const std::string &a, const std::string &b, const std::string &c,
                 const std::string &d, const std::string &e) {
    std::snprintf(line, sizeof line,
                  on_cuda ? "  %-48s %9s %14s %8s %9s\n" : "  %-44s %9s %9s %8s %9s\n", a.c_str(),
                  b.c_str(), c.c_str(), d.c_str(), e.c_str());
    out << line;
  };
  row("", "time", on_cuda ? "rate" : "speed-up", "rel L2", "sampled");
  row(exact_label, format_ms(exact_ms), on_cuda ? "-" : "1x", "0", "-");
  for (const Variant &v : done) {
    const std::string name = v.forced ? v.name + ", fallbacks off" : v.name;
    if (v.status == "ok") {
      row(name, format_ms(v.ms),
          on_cuda ? format_rate(v.flops / (v.ms / 1e3)) : format_ratio(exact_ms / v.ms),
          format_fixed(v.rel_l2, 3), v.sampled_rows > 0 ? format_fixed(v.sampled_rel_l2, 3) : "-");
    } else {
      // Messages can be long: appended, not formatted into the fixed buffer.
      std::snprintf(line, sizeof line, on_cuda ? "  %-48s %9s   " : "  %-44s %9s   ",
                    name.c_str(), format_ms(v.ms).c_str());
      out << line << v.status << ": " << v.detail << "\n";
    }
  }
  row("uniform average of values", "-", "-", format_fixed(uniform, 3), "-");
  out << "\n" << paragraph << "\n";
  std::fputs(out.str().c_str(), stdout);
  return kExitOk;
}

}  // namespace ta_cli
