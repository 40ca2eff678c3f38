// cmd_bench.cpp - `taylor-attn bench`: time Taylor attention against exact attention.
//
// Taylor runs with the quality check and early probe off (they are diagnostics, not part of
// the attention) and with a workspace allocated once up front, as a caller with a caching
// allocator would. The exact baseline on the CPU is the library's fp64 reference, labelled
// as such: it is a correctness oracle, not an optimised kernel, so the speed-up it yields
// overstates what one would see against a tuned attention. FLOPs follow cost_model.h.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>
#include <sstream>

#include "cli_common.h"
#include "commands.h"
#include "config_flags.h"
#include "cost_model.h"
#include "json.h"
#include "units.h"
#include "workload.h"

namespace ta_cli {
namespace {

constexpr const char *kExactLabel = "exact (fp64 reference)";
// ta_attention_run requires 256-byte aligned workspace.
constexpr std::align_val_t kWorkspaceAlign{256};

struct AlignedFree {
  void operator()(void *p) const { ::operator delete(p, kWorkspaceAlign); }
};
using Workspace = std::unique_ptr<void, AlignedFree>;

CommandLine make_bench_command_line() {
  CommandLine cl("taylor-attn bench",
                 "Times Taylor attention (ta_attention_run) and exact attention per token count:\n"
                 "median wall time and FLOP rate by the formulas of MATH.md section 3.");
  cl.option("tokens", ArgType::IntList, "LIST", "token counts (Nq = Nk)")
      .defaults("1024,4608")
      .range(1, 1 << 24);
  cl.option("batch", ArgType::Int, "B", "batch").defaults("1").range(1, 1024);
  cl.option("heads", ArgType::Int, "H", "heads").defaults("1").range(1, 1024);
  cl.option("head-dim", ArgType::Int, "D", "head dimension").defaults("128").range(1, 4096);
  cl.option("P", ArgType::Int, "N", "Taylor terms").defaults("3").range(1, 16);
  cl.option("sub-head-blocks", ArgType::Int, "G", "slices per head").defaults("1").range(1, 4096);
  cl.option("dtype", ArgType::Choice, "f32|f16|f64", "input dtype")
      .defaults("f32")
      .one_of({"f32", "f16", "f64"});
  cl.option("iters", ArgType::Int, "N", "timed iterations").defaults("3").range(1, 100000);
  cl.option("warmup", ArgType::Int, "N", "untimed Taylor iterations first")
      .defaults("1")
      .range(0, 100000);
  cl.option("exact", ArgType::Bool, "true|false",
            "also time exact attention (slow: O(N^2) in fp64)")
      .defaults("true");
  cl.option("device", ArgType::Choice, "cpu|cuda", "where to run")
      .defaults("cpu")
      .one_of({"cpu", "cuda"});
  cl.option("seed", ArgType::Int, "N", "seed of the synthetic inputs")
      .defaults("0")
      .range(0, INT64_MAX);
  add_config_options(cl, {"threads"});
  cl.option("json", ArgType::Switch, "", "print JSON instead of a table");
  add_quiet_option(cl);
  cl.set_epilog(
      "FLOPs: Taylor 4 * R * (dv/G + 1) * N * G * H * B; exact 4 * N^2 * d * H * B.\n"
      "The exact baseline is the library's fp64 reference (no warm-up: it keeps no state).\n"
      "example:\n"
      "  taylor-attn bench --tokens 1024,4608 --head-dim 128 --P 3 --iters 3");
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
  double median_ms() const { return median(ms); }
  double rate() const { return flops / (median_ms() / 1e3); }
};

struct SizeResult {
  int64_t tokens = 0;
  Timing taylor, exact;
  int64_t workspace_bytes = 0;
};

void write_timing(JsonWriter &json, const char *name, const char *label, const Timing &t) {
  json.key(name);
  json.begin_object();
  json.field("label", label);
  json.field("status", t.status);
  if (!t.detail.empty()) json.field("detail", t.detail);
  json.field_num("median_ms", t.median_ms());
  json.field_num("min_ms",
                 t.ms.empty() ? std::nan("") : *std::min_element(t.ms.begin(), t.ms.end()));
  json.field_int("iters", static_cast<int64_t>(t.ms.size()));
  json.field_num("flops", t.flops);
  json.field_num("gflops_per_s", t.rate() / 1e9);
  json.end_object();
}

}  // namespace

int cmd_bench(const std::vector<std::string> &argv) {
  CommandLine cl = make_bench_command_line();
  int exit_code;
  if (!parse_command_line(cl, argv, &exit_code)) return exit_code;
  const std::string &program = cl.program();

  const std::vector<int64_t> token_list = cl.get_int_list("tokens", {1024, 4608});
  const int64_t B = cl.get_int("batch", 1);
  const int64_t H = cl.get_int("heads", 1);
  const int64_t d = cl.get_int("head-dim", 128);
  const int32_t P = static_cast<int32_t>(cl.get_int("P", 3));
  const int32_t G = static_cast<int32_t>(cl.get_int("sub-head-blocks", 1));
  const int64_t iters = cl.get_int("iters", 3);
  const int64_t warmup = cl.get_int("warmup", 1);
  const bool time_exact = cl.get_bool("exact", true);
  const uint64_t seed = static_cast<uint64_t>(cl.get_int("seed", 0));
  ta_dtype dtype = TA_DTYPE_F32;
  parse_dtype_label(cl.get_string("dtype", "f32"), &dtype);
  const std::string device = cl.get_string("device", "cpu");

  std::string error;
  if (!device_usable(device, &error)) return report_error(program, error, kExitFailure);
  CostModel model;
  if (!make_cost_model(d, d, P, G, &model, &error)) {
    return report_error(program, error, kExitUsage);
  }

  ta_config config;
  std::memset(&config, 0, sizeof config);
  ta_config_defaults(&config);
  apply_config_options(cl, &config);  // --threads
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

  const Progress progress("bench", !cl.flag("quiet"));
  std::vector<SizeResult> results;
  for (int64_t n : token_list) {
    SizeResult r;
    r.tokens = n;
    r.taylor.flops =
        model.taylor_flops_per_head(static_cast<double>(n)) * static_cast<double>(H * B);
    r.exact.flops = model.exact_flops_per_head(static_cast<double>(n)) * static_cast<double>(H * B);
    AttentionCall call;
    load_call(gaussian_qkv(B, H, n, d, 1.0, seed), dtype, &call);
    const ta_attention_args *args = call.prepare();

    size_t ws_bytes = 0;
    ta_status st = ta_attention_workspace_size(args, &config, &ws_bytes);
    Workspace workspace;
    if (st != TA_OK) {
      r.taylor.status = "error";
      r.taylor.detail = library_error("ta_attention_workspace_size", st);
    } else if (ws_bytes > 0) {
      try {
        workspace.reset(::operator new(ws_bytes, kWorkspaceAlign));
      } catch (const std::bad_alloc &) {
        r.taylor.status = "error";
        r.taylor.detail =
            "cannot allocate the workspace (" + format_bytes(static_cast<double>(ws_bytes)) + ")";
      }
    }
    r.workspace_bytes = static_cast<int64_t>(ws_bytes);

    for (int64_t i = 0; r.taylor.status == "ok" && i < warmup + iters; ++i) {
      progress.note("N=" + std::to_string(n) + " taylor " +
                    (i < warmup ? "warm-up " + std::to_string(i + 1) + "/" + std::to_string(warmup)
                                : std::to_string(i - warmup + 1) + "/" + std::to_string(iters)));
      ta_stats stats;
      ta_stats_init(&stats);
      const double t0 = now_ms();
      st = ta_attention_run(args, &config, workspace.get(), ws_bytes, nullptr, &stats);
      const double ms = now_ms() - t0;
      if (st == TA_FALLBACK) {
        r.taylor.status = "fallback";
        r.taylor.detail = ta_reason_name(stats.fallback_reason);
      } else if (st != TA_OK) {
        r.taylor.status = "error";
        r.taylor.detail = library_error("ta_attention_run", st);
      } else if (i >= warmup) {
        r.taylor.ms.push_back(ms);
      }
    }
    if (r.taylor.status != "ok") r.taylor.ms.clear();

    if (!time_exact) {
      r.exact.status = "skipped";
    }
    for (int64_t i = 0; r.exact.status == "ok" && i < iters; ++i) {
      progress.note("N=" + std::to_string(n) + " exact " + std::to_string(i + 1) + "/" +
                    std::to_string(iters));
      const double t0 = now_ms();
      st = ta_reference_attention(args, &config, TA_REFERENCE_EXACT_ORIGINAL);
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
    json.field("dtype", dtype_label(dtype));
    json.field_int("batch", B);
    json.field_int("heads", H);
    json.field_int("head_dim", d);
    json.field_int("P", P);
    json.field_int("sub_head_blocks", G);
    json.field_int("feature_dim", model.feature_dim);
    json.field_int("num_threads", config.num_threads);
    json.field_int("iters", iters);
    json.field_int("warmup", warmup);
    json.key("results");
    json.begin_array();
    for (const auto &r : results) {
      json.begin_object();
      json.field_int("tokens", r.tokens);
      json.field_int("workspace_bytes", r.workspace_bytes);
      write_timing(json, "taylor", "taylor", r.taylor);
      write_timing(json, "exact", kExactLabel, r.exact);
      json.field_num("speedup", r.exact.median_ms() / r.taylor.median_ms());
      json.field_num("flop_ratio", r.taylor.flops / r.exact.flops);
      json.end_object();
    }
    json.end_array();
    json.end_object();
    std::fputs(json.str().c_str(), stdout);
    return kExitOk;
  }

  std::ostringstream out;
  out << "bench: B=" << B << " H=" << H << " d=" << d << " P=" << P << " G=" << G
      << " (R=" << format_count(static_cast<double>(model.feature_dim)) << " per slice), "
      << dtype_label(dtype) << ", " << device << ", threads " << threads << ", median of " << iters
      << " after " << warmup << " warm-up\n";
  char line[256];
  std::snprintf(line, sizeof line, "%8s %11s %14s | %12s %14s | %9s %11s\n", "N", "Taylor",
                "Taylor rate", "exact", "exact rate", "speed-up", "FLOP ratio");
  out << line;
  auto cell = [](const Timing &t) {
    return t.status == "ok" ? format_ms(t.median_ms()) : t.status;
  };
  auto rate = [](const Timing &t) {
    return t.status == "ok" ? format_rate(t.rate()) : std::string("-");
  };
  for (const auto &r : results) {
    double speedup = r.exact.median_ms() / r.taylor.median_ms();
    std::snprintf(line, sizeof line, "%8lld %11s %14s | %12s %14s | %9s %11s\n",
                  static_cast<long long>(r.tokens), cell(r.taylor).c_str(), rate(r.taylor).c_str(),
                  cell(r.exact).c_str(), rate(r.exact).c_str(),
                  std::isfinite(speedup) ? format_ratio(speedup).c_str() : "-",
                  format_ratio(r.taylor.flops / r.exact.flops).c_str());
    out << line;
  }
  out << "exact = " << kExactLabel
      << ": the library's O(N^2) correctness reference, not an optimised kernel.\n"
      << "FLOP ratio = Taylor FLOPs / exact FLOPs (below 1: Taylor does less arithmetic).\n";
  for (const auto &r : results) {
    for (const auto *t : {&r.taylor, &r.exact}) {
      if (!t->detail.empty()) {
        out << "N=" << r.tokens << " " << (t == &r.taylor ? "taylor" : "exact") << ": " << t->status
            << ": " << t->detail << "\n";
      }
    }
  }
  std::fputs(out.str().c_str(), stdout);
  return kExitOk;
}

}  // namespace ta_cli
