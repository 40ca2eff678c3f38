// cmd_bench.cpp - `taylor-attn bench`: time Taylor attention against exact attention.
//
// Taylor runs with the quality check and early probe off (they are diagnostics, not part of
// the attention) and with a workspace allocated once up front, as a caller with a caching
// allocator would. FLOPs follow cost_model.h.
//
// CPU: host wall clock; the exact baseline is the library's fp64 reference, labelled as
// such: it is a correctness oracle, not an optimised kernel, so the speed-up it yields
// overstates what one would see against a tuned attention.
// CUDA: inputs generated on the host, uploaded once; the workspace is one cudaMalloc; each
// call is timed with CUDA events around ta_attention_run on the default stream. There is
// no exact GPU attention in C++: torch SDPA is timed by benchmarks/benchmark_taylor_attention.py,
// and the JSON holds null for it rather than a number from another program.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>
#include <optional>
#include <sstream>

#include "cli_common.h"
#include "commands.h"
#include "config_flags.h"
#include "cost_model.h"
#include "device_call.h"
#include "json.h"
#include "layout_spec.h"
#include "units.h"
#include "workload.h"

namespace ta_cli {
namespace {

constexpr const char *kExactLabel = "exact (fp64 reference)";
constexpr const char *kCudaExactPointer =
    "see benchmarks/benchmark_taylor_attention.py (torch SDPA)";
constexpr const char *kCudaExactNote =
    "exact: see benchmarks/benchmark_taylor_attention.py (torch SDPA)";
constexpr const char *kChecksLabel = "taylor, early_probe and quality_check on (node defaults)";
// ta_attention_run requires 256-byte aligned workspace.
constexpr std::align_val_t kWorkspaceAlign{256};

// Per-device defaults. CUDA's are the Flux shapes of MATH.md section 3 (B=1, H=24, d=128,
// bf16, 1024^2 and 2048^2; add 66048 for 4096^2) and enough iterations for a stable median.
struct BenchDefaults {
  std::vector<int64_t> tokens;
  int64_t heads, iters, warmup;
  const char *dtype;
  bool checks;
};
const BenchDefaults kCpuDefaults{{1024, 4608}, 1, 3, 1, "f32", false};
const BenchDefaults kCudaDefaults{{4608, 16896}, 24, 10, 3, "bf16", true};

struct AlignedFree {
  void operator()(void *p) const { ::operator delete(p, kWorkspaceAlign); }
};
using HostWorkspace = std::unique_ptr<void, AlignedFree>;

CommandLine make_bench_command_line() {
  CommandLine cl("taylor-attn bench",
                 "Times Taylor attention (ta_attention_run) and exact attention per token count:\n"
                 "median time and FLOP rate by the formulas of MATH.md section 3. On cuda the\n"
                 "calls are timed with CUDA events on the card and exact attention is left to\n"
                 "benchmarks/benchmark_taylor_attention.py (torch SDPA).");
  cl.option("tokens", ArgType::IntList, "LIST", "token counts (Nq = Nk)")
      .defaults("1024,4608 on cpu; 4608,16896 on cuda (66048 = Flux 4096^2)")
      .range(1, 1 << 24);
  cl.option("batch", ArgType::Int, "B", "batch").defaults("1").range(1, 1024);
  cl.option("heads", ArgType::Int, "H", "heads").defaults("1 on cpu, 24 on cuda").range(1, 1024);
  cl.option("head-dim", ArgType::Int, "D", "head dimension").defaults("128").range(1, 4096);
  cl.option("P", ArgType::Int, "N", "Taylor terms").defaults("3").range(1, 16);
  cl.option("sub-head-blocks", ArgType::Int, "G", "slices per head").defaults("1").range(1, 4096);
  cl.option("dtype", ArgType::Choice, "f32|f16|bf16|f64", "input dtype (f64: cpu only)")
      .defaults("f32 on cpu, bf16 on cuda")
      .one_of({"f32", "f16", "bf16", "f64"});
  cl.option("iters", ArgType::Int, "N", "timed iterations")
      .defaults("3 on cpu, 10 on cuda")
      .range(1, 100000);
  cl.option("warmup", ArgType::Int, "N", "untimed Taylor iterations first")
      .defaults("1 on cpu, 3 on cuda")
      .range(0, 100000);
  cl.option("exact", ArgType::Bool, "true|false",
            "also time exact attention (cpu: the fp64 reference, slow; ignored on cuda)")
      .defaults("true");
  cl.option("checks", ArgType::Bool, "true|false",
            "also time Taylor with early_probe and quality_check on (the node defaults)")
      .defaults("false on cpu, true on cuda");
  cl.option("device", ArgType::Choice, "cpu|cuda", "where to run (cuda: device 0)")
      .defaults("cpu")
      .one_of({"cpu", "cuda"});
  cl.option("workload", ArgType::Choice, "gaussian|flux",
            "inputs: gaussian (spread 1) or the library's image-like workload "
            "(ta_workload_generate) on --layout")
      .defaults("gaussian")
      .one_of({"gaussian", "flux"});
  cl.option("layout", ArgType::String, "SPEC",
            "token layout passed to the library (e.g. text=512,grid=256x256); sets the token "
            "count; needed by --window-radius")
      .defaults("none; text=256,grid=64x64 with --workload flux");
  add_config_options(cl, {"window-radius", "window-text-keys", "window-text-queries"});
  add_workload_tail_options(cl, "seed of the synthetic inputs", "a table");
  cl.set_epilog(
      "FLOPs: Taylor 4 * R * (dv/G + 1) * N * G * H * B; exact 4 * N^2 * d * H * B.\n"
      "cpu: host wall clock; the exact baseline is the library's fp64 reference (no warm-up:\n"
      "it keeps no state). cuda: CUDA events around each call, inputs uploaded once, a\n"
      "cudaMalloc'ed workspace; exact attention on the GPU is timed by\n"
      "benchmarks/benchmark_taylor_attention.py (torch SDPA).\n"
      "With --layout (or --workload flux) the token count is the layout's, and\n"
      "--window-radius R > 0 times the local-exact hybrid; the FLOP rate still counts the\n"
      "Taylor FLOPs only.\n"
      "examples:\n"
      "  taylor-attn bench --tokens 1024,4608 --head-dim 128 --P 3 --iters 3\n"
      "  taylor-attn bench --device cuda --tokens 4608,16896,66048 --json\n"
      "  taylor-attn bench --device cuda --workload flux --layout text=512,grid=256x256 "
      "--window-radius 4");
  return cl;
}

double median(std::vector<double> v) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

struct Timing {
  std::string status = "ok";  // "ok", "fallback", "error", "skipped"
  std::string detail;
  std::vector<double> ms;
  double flops = 0;
  ta_stats last{};  // statistics of the last call (window_active, window_exact_pairs, ...)
  double median_ms() const { return median(ms); }
  double min_ms() const {
    return ms.empty() ? std::nan("") : *std::min_element(ms.begin(), ms.end());
  }
  double rate() const { return flops / (median_ms() / 1e3); }
};

struct SizeResult {
  int64_t tokens = 0;
  Timing taylor, checks, exact;
  int64_t workspace_bytes = 0;
};

void write_timing(JsonWriter &json, const char *name, const char *label, const Timing &t) {
  json.key(name);
  json.begin_object();
  json.field("label", label);
  json.field("status", t.status);
  if (!t.detail.empty()) json.field("detail", t.detail);
  json.field_num("median_ms", t.median_ms());
  json.field_num("min_ms", t.min_ms());
  json.field_int("iters", static_cast<int64_t>(t.ms.size()));
  json.field_num("flops", t.flops);
  json.field_num("gflops_per_s", t.rate() / 1e9);
  json.field_num("tflops_per_s", t.rate() / 1e12);
  json.end_object();
}

// What one timed series needs: the call, its workspace and how to clock it.
struct Runner {
  const ta_attention_args *args = nullptr;
  void *workspace = nullptr;
  size_t workspace_bytes = 0;
  bool cuda = false;  // CUDA events around each call, else host wall clock
};

// warmup untimed + iters timed calls. Stops at the first call that does not return TA_OK,
// recording why in t (a timed fallback would be a lie about the Taylor path).
void time_series(const Runner &runner, const ta_config &config, int64_t warmup, int64_t iters,
                 const Progress &progress, const std::string &what, Timing *t) {
  DeviceTimer timer;
  for (int64_t i = 0; t->status == "ok" && i < warmup + iters; ++i) {
    progress.note(what + " " +
                  (i < warmup ? "warm-up " + std::to_string(i + 1) + "/" + std::to_string(warmup)
                              : std::to_string(i - warmup + 1) + "/" + std::to_string(iters)));
    ta_stats stats;
    ta_stats_init(&stats);
    std::string error;
    double ms = 0.0;
    const double t0 = now_ms();
    if (runner.cuda && !timer.start(&error)) {
      t->status = "error";
      t->detail = error;
      break;
    }
    const ta_status st = ta_attention_run(runner.args, &config, runner.workspace,
                                          runner.workspace_bytes, nullptr, &stats);
    if (runner.cuda) {
      if (!timer.stop(&ms, &error)) {
        t->status = "error";
        t->detail = error;
        break;
      }
    } else {
      ms = now_ms() - t0;
    }
    if (st == TA_FALLBACK) {
      t->status = "fallback";
      t->detail = ta_reason_name(stats.fallback_reason);
    } else if (st != TA_OK) {
      t->status = "error";
      t->detail = library_error("ta_attention_run", st);
    } else if (i >= warmup) {
      t->ms.push_back(ms);
    }
    t->last = stats;
  }
  if (t->status != "ok") t->ms.clear();
}

// The hybrid's state for a size, from the last Taylor call: {"radius", "active", "reason",
// "exact_pairs", "time_ms"} (time_ms: ta_stats.time_window_ms, the exact-set work).
void write_window(JsonWriter &json, int32_t radius, const ta_stats &stats) {
  json.key("window");
  json.begin_object();
  json.field_int("radius", radius);
  json.field_bool("active", stats.window_active != 0);
  json.field("reason", ta_reason_name(stats.window_reason));
  json.field_int("exact_pairs", stats.window_exact_pairs);
  json.field_num("time_ms", stats.time_window_ms);
  json.end_object();
}

void skip_all(SizeResult *r, const std::string &status, const std::string &detail) {
  for (Timing *t : {&r->taylor, &r->checks}) {
    if (t->status == "ok") {
      t->status = status;
      t->detail = detail;
    }
  }
}

}  // namespace

int cmd_bench(const std::vector<std::string> &argv) {
  CommandLine cl = make_bench_command_line();
  int exit_code;
  if (!parse_command_line(cl, argv, &exit_code)) return exit_code;
  const std::string &program = cl.program();

  const std::string device = cl.get_string("device", "cpu");
  const bool on_cuda = device == "cuda";
  const BenchDefaults &defaults = on_cuda ? kCudaDefaults : kCpuDefaults;
  const std::string workload = cl.get_string("workload", "gaussian");
  const bool flux = workload == "flux";
  // With a layout the token count is the layout's; flux inputs always come with one.
  std::optional<ta_token_layout> layout;
  ta_workload_params flux_params;
  ta_workload_defaults(&flux_params);
  flux_params.seed = static_cast<uint64_t>(cl.get_int("seed", 0));
  std::string layout_error;
  if (cl.has("layout")) {
    layout.emplace();
    if (!parse_layout_spec(cl.get_string("layout", ""), &*layout, &layout_error)) {
      return report_error(program, "--layout: " + layout_error, kExitUsage);
    }
  } else if (flux) {
    layout = flux_params.layout;
  }
  std::vector<int64_t> token_list = cl.get_int_list("tokens", defaults.tokens);
  if (layout) {
    const int64_t n = layout_tokens(*layout);
    for (int64_t t : cl.has("tokens") ? token_list : std::vector<int64_t>{}) {
      if (t != n) {
        return report_error(program,
                            "--tokens " + std::to_string(t) + " differs from the layout's N = " +
                                std::to_string(n) + " (" + layout_spec_text(*layout) +
                                "); leave --tokens out",
                            kExitUsage);
      }
    }
    token_list = {n};
    flux_params.layout = *layout;
  }
  const int64_t B = cl.get_int("batch", 1);
  const int64_t H = cl.get_int("heads", defaults.heads);
  const int64_t d = cl.get_int("head-dim", 128);
  const int32_t P = static_cast<int32_t>(cl.get_int("P", 3));
  const int32_t G = static_cast<int32_t>(cl.get_int("sub-head-blocks", 1));
  const int64_t iters = cl.get_int("iters", defaults.iters);
  const int64_t warmup = cl.get_int("warmup", defaults.warmup);
  const bool time_exact = cl.get_bool("exact", true) && !on_cuda;
  const bool time_checks = cl.get_bool("checks", defaults.checks);
  const uint64_t seed = static_cast<uint64_t>(cl.get_int("seed", 0));
  ta_dtype dtype = TA_DTYPE_F32;
  parse_dtype_label(cl.get_string("dtype", defaults.dtype), &dtype);

  std::string error;
  CudaDeviceInfo cuda_info;
  if (!device_usable(device, &error, &cuda_info)) {
    return report_error(program, error, kExitFailure);
  }
  CostModel model;
  if (!make_cost_model(d, d, P, G, &model, &error)) {
    return report_error(program, error, kExitUsage);
  }

  ta_config config;
  std::memset(&config, 0, sizeof config);
  ta_config_defaults(&config);
  apply_config_options(cl, &config);  // --threads, --window-*
  config.P = P;
  config.sub_head_blocks = G;
  config.quality_check = 0;
  config.early_probe = 0;
  // Time the Taylor path, not the guards: a size below min_tokens or a negative
  // denominator would otherwise silently time a fallback.
  config.min_tokens = 0;
  config.fallback_on_negative = 0;
  config.max_feature_dim_R = std::max(config.max_feature_dim_R, model.feature_dim);
  config.max_head_dim =
      static_cast<int32_t>(std::max<int64_t>(config.max_head_dim, model.slice_dim));
  config.seed = seed;
  if (ta_config_validate(&config) != TA_OK) {
    return report_error(program, std::string("invalid configuration: ") + ta_last_error_message(),
                        kExitUsage);
  }
  // The diagnostics the node runs by default (probe and quality check at their default
  // sample counts), on the otherwise identical call.
  ta_config checks_config = config;
  checks_config.early_probe = 1;
  checks_config.quality_check = 1;

  const Progress progress("bench", !cl.flag("quiet"));
  std::vector<SizeResult> results;
  for (int64_t n : token_list) {
    SizeResult r;
    r.tokens = n;
    r.taylor.flops =
        model.taylor_flops_per_head(static_cast<double>(n)) * static_cast<double>(H * B);
    r.checks.flops = r.taylor.flops;
    r.exact.flops = model.exact_flops_per_head(static_cast<double>(n)) * static_cast<double>(H * B);
    if (!time_checks) r.checks.status = "skipped";
    if (!time_exact) r.exact.status = "skipped";
    const std::string tag = "N=" + std::to_string(n);
    progress.note(tag + " generating " + dtype_label(dtype) + " " + workload + " inputs");
    AttentionCall call;
    if (flux) {
      if (!load_flux_call(flux_params, B, H, d, dtype, &call, &error)) {
        return report_error(program, error, kExitUsage);
      }
    } else {
      load_gaussian_call(B, H, n, d, 1.0, seed, dtype, &call);
      call.layout = layout;
    }
    const ta_attention_args *host_args = call.prepare();

    Runner runner;
    runner.cuda = on_cuda;
    runner.args = host_args;
    DeviceAttentionCall device_call;
    if (on_cuda) {
      progress.note(tag + " uploading");
      if (!device_call.upload(call, &error)) {
        skip_all(&r, "error", error);
        results.push_back(std::move(r));
        continue;
      }
      runner.args = device_call.prepare();
    }

    size_t ws_bytes = 0;
    ta_status st = ta_attention_workspace_size(runner.args, &config, &ws_bytes);
    size_t checks_ws_bytes = 0;
    if (st == TA_OK && time_checks) {
      st = ta_attention_workspace_size(runner.args, &checks_config, &checks_ws_bytes);
    }
    ws_bytes = std::max(ws_bytes, checks_ws_bytes);
    HostWorkspace host_workspace;
    DeviceBuffer device_workspace;
    if (st != TA_OK) {
      skip_all(&r, "error", library_error("ta_attention_workspace_size", st));
    } else if (ws_bytes > 0 && on_cuda) {
      if (!device_workspace.allocate(ws_bytes, &error)) {
        skip_all(&r, "error", "workspace: " + error);
      }
      runner.workspace = device_workspace.data();
    } else if (ws_bytes > 0) {
      try {
        host_workspace.reset(::operator new(ws_bytes, kWorkspaceAlign));
      } catch (const std::bad_alloc &) {
        skip_all(&r, "error",
                 "cannot allocate the workspace (" +
                     format_bytes(static_cast<double>(ws_bytes)) + ")");
      }
      runner.workspace = host_workspace.get();
    }
    runner.workspace_bytes = ws_bytes;
    r.workspace_bytes = static_cast<int64_t>(ws_bytes);

    time_series(runner, config, warmup, iters, progress, tag + " taylor", &r.taylor);
    time_series(runner, checks_config, warmup, iters, progress, tag + " taylor with checks",
                &r.checks);

    for (int64_t i = 0; r.exact.status == "ok" && i < iters; ++i) {
      progress.note(tag + " exact " + std::to_string(i + 1) + "/" + std::to_string(iters));
      const double t0 = now_ms();
      st = ta_reference_attention(host_args, &config, TA_REFERENCE_EXACT_ORIGINAL);
      const double ms = now_ms() - t0;
      if (st != TA_OK) {
        r.exact.status = "error";
        r.exact.detail = library_error("ta_reference_attention", st);
        r.exact.ms.clear();
      } else {
        r.exact.ms.push_back(ms);
      }
    }
    results.push_back(std::move(r));
  }

  const std::string threads =
      config.num_threads == 0 ? std::string("all") : std::to_string(config.num_threads);
  if (cl.flag("json")) {
    JsonWriter json;
    json.begin_object();
    json.field("command", "bench");
    json.field("library_version", ta_version_string());
    json.field("device", device);
    json.key("device_name");
    if (on_cuda) {
      json.string(cuda_info.name);
    } else {
      json.null();
    }
    write_cuda_device_json(json, on_cuda ? &cuda_info : nullptr);
    json.field("clock", on_cuda ? "cuda_events" : "host_wall_clock");
    json.field("dtype", dtype_label(dtype));
    json.field("workload", workload);
    json.key("layout");
    if (layout) {
      json.string(layout_spec_text(*layout));
    } else {
      json.null();
    }
    json.field_int("window_radius", config.window_radius);
    json.field_int("batch", B);
    json.field_int("heads", H);
    json.field_int("head_dim", d);
    json.field_int("P", P);
    json.field_int("sub_head_blocks", G);
    json.field_int("feature_dim", model.feature_dim);
    json.field_int("num_threads", config.num_threads);
    json.field_int("iters", iters);
    json.field_int("warmup", warmup);
    json.key("exact_baseline");
    if (on_cuda) {
      json.string(kCudaExactPointer);
    } else {
      json.string(kExactLabel);
    }
    json.key("results");
    json.begin_array();
    for (const auto &r : results) {
      json.begin_object();
      json.field_int("tokens", r.tokens);
      json.field_int("workspace_bytes", r.workspace_bytes);
      write_timing(json, "taylor", "taylor", r.taylor);
      if (config.window_radius > 0) write_window(json, config.window_radius, r.taylor.last);
      if (time_checks) write_timing(json, "taylor_with_checks", kChecksLabel, r.checks);
      if (on_cuda) {
        json.key("exact");
        json.null();
        json.key("speedup");
        json.null();
      } else {
        write_timing(json, "exact", kExactLabel, r.exact);
        json.field_num("speedup", r.exact.median_ms() / r.taylor.median_ms());
      }
      json.field_num("flop_ratio", r.taylor.flops / r.exact.flops);
      json.end_object();
    }
    json.end_array();
    json.end_object();
    std::fputs(json.str().c_str(), stdout);
    return kExitOk;
  }

  std::ostringstream out;
  auto cell = [](const Timing &t) {
    return t.status == "ok" ? format_ms(t.median_ms()) : t.status;
  };
  auto rate = [](const Timing &t) {
    return t.status == "ok" ? format_rate(t.rate()) : std::string("-");
  };
  char line[256];
  // Inputs line, printed after the header: what the calls were given besides shapes.
  std::string inputs = workload + " inputs";
  if (layout) inputs += ", layout " + layout_spec_text(*layout);
  if (config.window_radius > 0) inputs += ", window radius " + std::to_string(config.window_radius);
  if (on_cuda) {
    out << "bench: B=" << B << " H=" << H << " d=" << d << " P=" << P << " G=" << G
        << " (R=" << format_count(static_cast<double>(model.feature_dim)) << " per slice), "
        << dtype_label(dtype) << ", cuda on " << cuda_device_text(cuda_info)
        << ", CUDA events, median and min of " << iters << " after " << warmup << " warm-up\n"
        << inputs << "\n";
    std::snprintf(line, sizeof line, "%8s %11s %11s %15s | %12s %15s | %10s %11s\n", "N",
                  "Taylor", "min", "Taylor rate", "with checks", "rate", "workspace",
                  "FLOP ratio");
    out << line;
    for (const auto &r : results) {
      std::snprintf(line, sizeof line, "%8lld %11s %11s %15s | %12s %15s | %10s %11s\n",
                    static_cast<long long>(r.tokens), cell(r.taylor).c_str(),
                    r.taylor.status == "ok" ? format_ms(r.taylor.min_ms()).c_str() : "-",
                    rate(r.taylor).c_str(), cell(r.checks).c_str(), rate(r.checks).c_str(),
                    format_bytes(static_cast<double>(r.workspace_bytes)).c_str(),
                    format_ratio(r.taylor.flops / r.exact.flops).c_str());
      out << line;
    }
    out << kCudaExactNote << "\n"
        << "Taylor rate = useful FLOPs 4*R*(dv/G+1)*N*H*G*B / median time; \"with checks\" = "
           "early_probe and quality_check on (the node defaults), otherwise the same call.\n"
        << "FLOP ratio = Taylor FLOPs / exact FLOPs (below 1: Taylor does less arithmetic).\n";
  } else {
    out << "bench: B=" << B << " H=" << H << " d=" << d << " P=" << P << " G=" << G
        << " (R=" << format_count(static_cast<double>(model.feature_dim)) << " per slice), "
        << dtype_label(dtype) << ", " << device << ", threads " << threads << ", median of "
        << iters << " after " << warmup << " warm-up\n"
        << inputs << "\n";
    std::snprintf(line, sizeof line, "%8s %11s %14s | %12s %14s | %9s %11s\n", "N", "Taylor",
                  "Taylor rate", "exact", "exact rate", "speed-up", "FLOP ratio");
    out << line;
    for (const auto &r : results) {
      double speedup = r.exact.median_ms() / r.taylor.median_ms();
      std::snprintf(line, sizeof line, "%8lld %11s %14s | %12s %14s | %9s %11s\n",
                    static_cast<long long>(r.tokens), cell(r.taylor).c_str(),
                    rate(r.taylor).c_str(), cell(r.exact).c_str(), rate(r.exact).c_str(),
                    std::isfinite(speedup) ? format_ratio(speedup).c_str() : "-",
                    format_ratio(r.taylor.flops / r.exact.flops).c_str());
      out << line;
    }
    if (time_checks) {
      for (const auto &r : results) {
        out << "N=" << r.tokens << " with early_probe and quality_check on (node defaults): "
            << cell(r.checks) << ", " << rate(r.checks) << "\n";
      }
    }
    out << "exact = " << kExactLabel
        << ": the library's O(N^2) correctness reference, not an optimised kernel.\n"
        << "FLOP ratio = Taylor FLOPs / exact FLOPs (below 1: Taylor does less arithmetic).\n";
  }
  if (config.window_radius > 0) {
    for (const auto &r : results) {
      if (r.taylor.status != "ok") continue;
      out << "N=" << r.tokens << " window radius " << config.window_radius << ": "
          << (r.taylor.last.window_active
                  ? "local-exact hybrid active, " +
                        format_count(static_cast<double>(r.taylor.last.window_exact_pairs)) +
                        " exact (query, key) pairs per call (not in the FLOP count)"
                  : std::string("not applied (") + ta_reason_name(r.taylor.last.window_reason) +
                        "): plain Taylor timed")
          << "\n";
    }
  }
  for (const auto &r : results) {
    const std::pair<const char *, const Timing *> rows[] = {
        {"taylor", &r.taylor}, {"taylor with checks", &r.checks}, {"exact", &r.exact}};
    for (const auto &[name, t] : rows) {
      if (!t->detail.empty()) {
        out << "N=" << r.tokens << " " << name << ": " << t->status << ": " << t->detail << "\n";
      }
    }
  }
  std::fputs(out.str().c_str(), stdout);
  return kExitOk;
}

}  // namespace ta_cli
