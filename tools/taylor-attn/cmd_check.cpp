// cmd_check.cpp - `taylor-attn check`: how far Taylor attention is from exact attention on
// synthetic inputs, over a grid of P x sub_head_blocks and score spreads.
//
// Everything runs in f64 with every guard and fallback switched off, so the numbers are the
// approximation error itself (MATH.md section 5), not rounding or fallback decisions.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
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

CommandLine make_check_command_line() {
  CommandLine cl("taylor-attn check",
                 "Accuracy of Taylor attention against exact softmax attention on synthetic\n"
                 "inputs: relative L2 error ||o - o_exact|| / ||o_exact|| in f64, with all\n"
                 "guards and fallbacks off, for every P x sub-head-blocks x spread.");
  cl.option("head-dim", ArgType::Int, "D", "head dimension").defaults("64").range(1, 4096);
  cl.option("tokens", ArgType::Int, "N", "tokens (Nq = Nk)").defaults("512").range(1, 1 << 20);
  cl.option("heads", ArgType::Int, "H", "heads").defaults("2").range(1, 1024);
  cl.option("P", ArgType::IntList, "LIST", "Taylor terms to try").defaults("2,3,4").range(1, 16);
  cl.option("sub-head-blocks", ArgType::IntList, "LIST", "slices per head to try")
      .defaults("1,4")
      .range(1, 4096);
  cl.option("spread", ArgType::DoubleList, "LIST",
            "score spreads: std of scale * q.k (gaussian: q,k ~ N(0, spread))")
      .defaults("1,2");
  cl.option("workload", ArgType::Choice, "gaussian|aligned",
            "gaussian q, k; or aligned: q = k + noise (peaky)")
      .defaults("gaussian")
      .one_of({"gaussian", "aligned"});
  add_workload_tail_options(cl, "seed of the synthetic inputs", "a table");
  cl.set_epilog(
      "Columns: 'vs original' is the error against exact attention of the original call (what\n"
      "the user gets instead of exact attention); 'truncation' is the error against exact\n"
      "softmax of the sliced function (sub_head_blocks changes the function; this isolates the\n"
      "Taylor truncation). 'uniform' is the error of a plain average of the values (P = 1).\n"
      "example:\n"
      "  taylor-attn check --head-dim 64 --tokens 512 --P 2,3,4 --sub-head-blocks 1,4 "
      "--spread 1,2");
  return cl;
}

struct Row {
  int32_t P = 0, G = 0;
  int64_t feature_dim = -1;
  std::string status;  // "ok", "fallback", "error"
  std::string detail;  // fallback reason or error message
  double rel_l2 = std::nan("");
  double rel_l2_truncation = std::nan("");
  double time_ms = std::nan("");
};

struct SpreadResult {
  double spread = 0, score_std = 0, uniform_rel_l2 = 0;
  std::vector<Row> rows;
};

// Guards and run-time fallbacks off: the point is to measure the function, not the policy.
ta_config measuring_config(int32_t P, int32_t G, int64_t head_dim, const ta_config &base) {
  ta_config c = base;
  c.P = P;
  c.sub_head_blocks = G;
  c.min_tokens = 0;
  c.max_feature_dim_R = std::numeric_limits<int64_t>::max();
  c.max_head_dim = static_cast<int32_t>(std::max<int64_t>(c.max_head_dim, head_dim));
  c.fallback_on_negative = 0;
  c.early_probe = 0;
  c.quality_check = 0;
  return c;
}

// Runs one configuration into call->out. Returns "ok", "fallback" or "error" with detail.
std::string run_taylor(AttentionCall *call, const ta_config &config, std::string *detail,
                       double *ms) {
  if (ta_config_validate(&config) != TA_OK) {
    *detail = std::string("invalid configuration: ") + ta_last_error_message();
    return "error";
  }
  ta_stats stats;
  ta_stats_init(&stats);
  double t0 = now_ms();
  ta_status st = ta_attention_run(call->prepare(), &config, nullptr, 0, nullptr, &stats);
  *ms = now_ms() - t0;
  if (st == TA_OK) return "ok";
  if (st == TA_FALLBACK) {
    *detail = ta_reason_name(stats.fallback_reason);
    return "fallback";
  }
  *detail = library_error("ta_attention_run", st);
  return "error";
}

}  // namespace

int cmd_check(const std::vector<std::string> &argv) {
  CommandLine cl = make_check_command_line();
  int exit_code;
  if (!parse_command_line(cl, argv, &exit_code)) return exit_code;
  const std::string &program = cl.program();

  const int64_t d = cl.get_int("head-dim", 64);
  const int64_t n = cl.get_int("tokens", 512);
  const int64_t heads = cl.get_int("heads", 2);
  const std::vector<int64_t> Ps = cl.get_int_list("P", {2, 3, 4});
  const std::vector<int64_t> Gs = cl.get_int_list("sub-head-blocks", {1, 4});
  const std::vector<double> spreads = cl.get_double_list("spread", {1.0, 2.0});
  const std::string workload = cl.get_string("workload", "gaussian");
  const uint64_t seed = static_cast<uint64_t>(cl.get_int("seed", 0));
  for (double s : spreads) {
    if (s <= 0) return report_error(program, "--spread: values must be positive", kExitUsage);
  }

  ta_config base;
  std::memset(&base, 0, sizeof base);
  ta_config_defaults(&base);
  apply_config_options(cl, &base);  // --threads
  base.seed = seed;
  const Progress progress("check", !cl.flag("quiet"));
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));

  std::vector<SpreadResult> results;
  for (double spread : spreads) {
    SpreadResult result;
    result.spread = spread;
    const Qkv qkv = workload == "aligned" ? aligned_qkv(1, heads, n, d, spread, seed)
                                          : gaussian_qkv(1, heads, n, d, spread, seed);
    result.score_std = measured_score_std(qkv, scale, 20000, seed);
    AttentionCall call;
    load_call(qkv, TA_DTYPE_F64, &call);

    progress.note("spread " + format_fixed(spread, 2) + ": exact reference");
    ta_status st = ta_reference_attention(call.prepare(), &base, TA_REFERENCE_EXACT_ORIGINAL);
    if (st != TA_OK) {
      return report_error(program, library_error("ta_reference_attention", st), kExitFailure);
    }
    const HostArray reference = call.out;

    // P = 1 is the plain average of the values whatever G is: the "no attention" baseline.
    {
      std::string detail;
      double ms = 0;
      std::string status = run_taylor(&call, measuring_config(1, 1, d, base), &detail, &ms);
      if (status != "ok") {
        return report_error(program, "uniform average (P=1) failed: " + detail, kExitFailure);
      }
      result.uniform_rel_l2 = relative_l2(call.out, reference);
    }

    std::map<int64_t, HostArray> sliced_reference;  // exact softmax of the sliced function
    for (int64_t P : Ps) {
      for (int64_t G : Gs) {
        Row row;
        row.P = static_cast<int32_t>(P);
        row.G = static_cast<int32_t>(G);
        const ta_config config = measuring_config(row.P, row.G, d, base);
        CostModel model;
        std::string why;
        if (make_cost_model(d, d, row.P, row.G, &model, &why)) row.feature_dim = model.feature_dim;
        progress.note("spread " + format_fixed(spread, 2) + ": P=" + std::to_string(P) +
                      " G=" + std::to_string(G) +
                      (row.feature_dim > 0
                           ? " (R=" + format_count(static_cast<double>(row.feature_dim)) + ")"
                           : std::string()));
        row.status = run_taylor(&call, config, &row.detail, &row.time_ms);
        if (row.status == "ok") {
          row.rel_l2 = relative_l2(call.out, reference);
          const HostArray taylor_out = call.out;
          auto it = sliced_reference.find(G);
          if (it == sliced_reference.end()) {
            st = ta_reference_attention(call.prepare(), &config, TA_REFERENCE_EXACT_MODIFIED);
            if (st == TA_OK) it = sliced_reference.emplace(G, call.out).first;
          }
          if (it != sliced_reference.end())
            row.rel_l2_truncation = relative_l2(taylor_out, it->second);
        }
        result.rows.push_back(row);
      }
    }
    results.push_back(std::move(result));
  }

  if (cl.flag("json")) {
    JsonWriter json;
    json.begin_object();
    json.field("command", "check");
    json.field("workload", workload);
    json.field_int("head_dim", d);
    json.field_int("tokens", n);
    json.field_int("heads", heads);
    json.field_int("batch", 1);
    json.field("dtype", "f64");
    json.field_int("seed", static_cast<int64_t>(seed));
    json.key("results");
    json.begin_array();
    for (const auto &r : results) {
      json.begin_object();
      json.field_num("spread", r.spread);
      json.field_num("score_std", r.score_std);
      json.field_num("uniform_rel_l2", r.uniform_rel_l2);
      json.key("rows");
      json.begin_array();
      for (const auto &row : r.rows) {
        json.begin_object();
        json.field_int("P", row.P);
        json.field_int("sub_head_blocks", row.G);
        json.field_int("feature_dim", row.feature_dim);
        json.field("status", row.status);
        if (!row.detail.empty())
          json.field(row.status == "fallback" ? "fallback_reason" : "error", row.detail);
        json.field_num("rel_l2", row.rel_l2);
        json.field_num("rel_l2_truncation", row.rel_l2_truncation);
        json.field_num("time_ms", row.time_ms);
        json.end_object();
      }
      json.end_array();
      json.end_object();
    }
    json.end_array();
    json.end_object();
    std::fputs(json.str().c_str(), stdout);
    return kExitOk;
  }

  std::ostringstream out;
  out << "check: " << workload << " workload, d=" << d << ", N=" << n << ", "
      << plural(heads, "head") << ", batch 1, f64, seed " << seed << "\n";
  out << "relative L2 error ||o - o_exact|| / ||o_exact||, guards and fallbacks off\n";
  char line[256];
  for (const auto &r : results) {
    out << "\nspread " << format_fixed(r.spread, 2) << " (measured score std "
        << format_fixed(r.score_std, 2)
        << "), uniform average (P=1): " << format_fixed(r.uniform_rel_l2, 3) << "\n";
    std::snprintf(line, sizeof line, "  %3s %4s %14s %12s %11s %10s\n", "P", "G", "R per slice",
                  "vs original", "truncation", "time");
    out << line;
    for (const auto &row : r.rows) {
      std::string r_text =
          row.feature_dim > 0 ? format_count(static_cast<double>(row.feature_dim)) : "-";
      if (row.status == "ok") {
        std::snprintf(line, sizeof line, "  %3d %4d %14s %12s %11s %10s\n", row.P, row.G,
                      r_text.c_str(), format_fixed(row.rel_l2, 3).c_str(),
                      format_fixed(row.rel_l2_truncation, 3).c_str(),
                      format_ms(row.time_ms).c_str());
      } else {
        // Messages can be long: appended, not formatted into the fixed buffer.
        std::snprintf(line, sizeof line, "  %3d %4d %14s   ", row.P, row.G, r_text.c_str());
        out << line << row.status << ": " << row.detail << "\n";
        continue;
      }
      out << line;
    }
  }
  std::fputs(out.str().c_str(), stdout);
  return kExitOk;
}

}  // namespace ta_cli
