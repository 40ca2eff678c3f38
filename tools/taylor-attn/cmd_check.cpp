// cmd_check.cpp - `taylor-attn check`: how far Taylor attention is from exact attention on
// synthetic inputs, over a grid of P x sub_head_blocks and score spreads (gaussian, aligned),
// or of P x sub_head_blocks x window radius on the library's image-like workload (flux),
// where radius R > 0 runs the local-exact hybrid.
//
// Everything runs in f64 with every guard and fallback switched off, so the numbers are the
// approximation error itself (MATH.md section 5), not rounding or fallback decisions.
#include <algorithm>
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
#include "layout_spec.h"
#include "units.h"
#include "workload.h"

namespace ta_cli {
namespace {

// The flux workload's defaults come from ta_workload_defaults (text, grid, smoothness, gain,
// alignment); these are check's own for it. P=3 on full heads and the node's slicing (G=4
// at P=3) stay near ten seconds on two cores at N = 4352, d = 128; radius 4 is the 9x9
// window of MATH.md section 6.
const std::vector<int64_t> kFluxDefaultP = {3};
const std::vector<int64_t> kFluxDefaultG = {1, 4};
const std::vector<int64_t> kFluxDefaultRadii = {0, 4};
constexpr int64_t kFluxDefaultHeadDim = 128;

// "1,4": a default list as --help shows it.
std::string list_text(const std::vector<int64_t> &values) {
  std::string s;
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) s += ',';
    s += std::to_string(values[i]);
  }
  return s;
}

CommandLine make_check_command_line() {
  CommandLine cl("taylor-attn check",
                 "Accuracy of Taylor attention against exact softmax attention on synthetic\n"
                 "inputs: relative L2 error ||o - o_exact|| / ||o_exact|| in f64, with all\n"
                 "guards and fallbacks off, for every P x sub-head-blocks x spread (gaussian,\n"
                 "aligned) or P x sub-head-blocks x window radius (flux).");
  cl.option("head-dim", ArgType::Int, "D", "head dimension")
      .defaults("64; 128 with --workload flux")
      .range(1, 4096);
  cl.option("tokens", ArgType::Int, "N", "tokens (Nq = Nk); flux: from --text and --grid")
      .defaults("512")
      .range(1, 1 << 20);
  cl.option("heads", ArgType::Int, "H", "heads").defaults("2").range(1, 1024);
  cl.option("P", ArgType::IntList, "LIST", "Taylor terms to try")
      .defaults("2,3,4; " + list_text(kFluxDefaultP) + " with --workload flux")
      .range(1, 16);
  cl.option("sub-head-blocks", ArgType::IntList, "LIST", "slices per head to try")
      .defaults(list_text(kFluxDefaultG) == "1,4"
                    ? std::string("1,4")
                    : "1,4; " + list_text(kFluxDefaultG) + " with --workload flux")
      .range(1, 4096);
  cl.option("spread", ArgType::DoubleList, "LIST",
            "score spreads: std of scale * q.k (gaussian: q,k ~ N(0, spread)); not for flux")
      .defaults("1,2");
  cl.option("workload", ArgType::Choice, "gaussian|aligned|flux",
            "gaussian q, k; aligned: q = k + noise (peaky); flux: the library's image-like "
            "workload (ta_workload_generate)")
      .defaults("gaussian")
      .one_of({"gaussian", "aligned", "flux"});
  ta_workload_params flux;
  ta_workload_defaults(&flux);
  char number[32];
  // flux only (ta_workload_params):
  cl.option("text", ArgType::Int, "N", "flux: text tokens before the grids")
      .defaults(std::to_string(flux.layout.text_tokens))
      .range(0, 1 << 20);
  cl.option("grid", ArgType::String, "HxW[,HxW...]", "flux: image grids in token order (up to 8)")
      .defaults(std::to_string(flux.layout.grid_height[0]) + "x" +
                std::to_string(flux.layout.grid_width[0]));
  std::snprintf(number, sizeof number, "%g", flux.smoothness);
  cl.option("smoothness", ArgType::Double, "X",
            "flux: correlation length of the grid content in tokens (> 0)")
      .defaults(number);
  std::snprintf(number, sizeof number, "%g", flux.gain);
  cl.option("gain", ArgType::Double, "X",
            "flux: multiplies q and k after RMSNorm (the score spread grows with it)")
      .defaults(number);
  std::snprintf(number, sizeof number, "%g", flux.alignment);
  cl.option("alignment", ArgType::Double, "X",
            "flux: 0..1, share of the key projection taken from the query's")
      .defaults(number);
  cl.option("no-rope", ArgType::Switch, "", "flux: no RoPE on q and k");
  cl.option("window-radius", ArgType::IntList, "LIST",
            "flux: window radii to try; 0 = plain Taylor, R = exact exp on each grid query's "
            "(2R+1)^2 window")
      .defaults(list_text(kFluxDefaultRadii))
      .range(0, INT32_MAX);
  add_config_options(cl, {"window-text-keys", "window-text-queries"});
  add_workload_tail_options(cl, "seed of the synthetic inputs", "a table");
  cl.set_epilog(
      "Columns: 'vs original' is the error against exact attention of the original call (what\n"
      "the user gets instead of exact attention); 'truncation' is the error against exact\n"
      "softmax of the sliced function (sub_head_blocks changes the function; this isolates the\n"
      "Taylor truncation). 'uniform' is the error of a plain average of the values (P = 1).\n"
      "flux: the inputs come with their token layout, so each radius R > 0 runs the\n"
      "local-exact hybrid (config.window_radius = R): exact exp on the query's (2R+1)^2\n"
      "window on its grid and, by default, on the text keys and for text queries.\n"
      "examples:\n"
      "  taylor-attn check --head-dim 64 --tokens 512 --P 2,3,4 --sub-head-blocks 1,4 "
      "--spread 1,2\n"
      "  taylor-attn check --workload flux --text 256 --grid 64x64 --P 3 --sub-head-blocks 1 "
      "--window-radius 0,2,4");
  return cl;
}

struct Row {
  int32_t P = 0, G = 0, radius = 0;
  int64_t feature_dim = -1;
  std::string status;  // "ok", "fallback", "error"
  std::string detail;  // fallback reason or error message
  double rel_l2 = std::nan("");
  double rel_l2_truncation = std::nan("");
  double time_ms = std::nan("");
  int64_t exact_pairs = 0;  // the hybrid's (query, key) pairs weighted exactly
};

// One set of inputs: a spread (gaussian, aligned) or the flux workload (spread NaN).
struct InputResult {
  double spread = std::nan("");
  double score_std = 0, uniform_rel_l2 = 0;
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

// Runs one configuration into call->out. Returns "ok", "fallback" or "error" with detail;
// *stats receives the call's statistics.
std::string run_taylor(AttentionCall *call, const ta_config &config, std::string *detail,
                       double *ms, ta_stats *stats) {
  ta_stats_init(stats);
  if (ta_config_validate(&config) != TA_OK) {
    *detail = std::string("invalid configuration: ") + ta_last_error_message();
    return "error";
  }
  double t0 = now_ms();
  ta_status st = ta_attention_run(call->prepare(), &config, nullptr, 0, nullptr, stats);
  *ms = now_ms() - t0;
  if (st == TA_OK) return "ok";
  if (st == TA_FALLBACK) {
    *detail = ta_reason_name(stats->fallback_reason);
    return "fallback";
  }
  *detail = library_error("ta_attention_run", st);
  return "error";
}

// Options that belong to one kind of workload only: naming one with the other kind is a
// usage error rather than a silently ignored flag.
const std::vector<const char *> kFluxOnly = {"text",          "grid",
                                             "smoothness",    "gain",
                                             "alignment",     "no-rope",
                                             "window-radius", "window-text-keys",
                                             "window-text-queries"};
const std::vector<const char *> kNotFlux = {"spread", "tokens"};

// The flux workload's parameters from the flags. False with a one-line usage message.
bool flux_params(const CommandLine &cl, int64_t head_dim, uint64_t seed, ta_workload_params *p,
                 std::string *error) {
  ta_workload_defaults(p);
  p->seed = seed;
  p->layout.text_tokens = cl.get_int("text", p->layout.text_tokens);
  if (cl.has("grid")) {
    const std::string list = cl.get_string("grid", "");
    p->layout.num_grids = 0;
    size_t start = 0;
    while (start <= list.size()) {
      size_t comma = list.find(',', start);
      if (comma == std::string::npos) comma = list.size();
      const std::string item = list.substr(start, comma - start);
      start = comma + 1;
      int64_t h = 0, w = 0;
      if (!parse_grid_extent(item, &h, &w)) {
        *error = "--grid: '" + item + "' is not HxW with integers >= 1 (e.g. 64x64)";
        return false;
      }
      if (p->layout.num_grids == TA_MAX_GRIDS) {
        *error = "--grid: at most " + std::to_string(TA_MAX_GRIDS) + " grids";
        return false;
      }
      p->layout.grid_height[p->layout.num_grids] = h;
      p->layout.grid_width[p->layout.num_grids] = w;
      ++p->layout.num_grids;
    }
  }
  p->smoothness = cl.get_double("smoothness", p->smoothness);
  p->gain = cl.get_double("gain", p->gain);
  p->alignment = cl.get_double("alignment", p->alignment);
  p->rope = cl.flag("no-rope") ? 0 : 1;
  if (!(p->smoothness > 0)) {
    *error = "--smoothness must be > 0";
    return false;
  }
  if (!(p->alignment >= 0 && p->alignment <= 1)) {
    *error = "--alignment must be in [0, 1]";
    return false;
  }
  if (p->rope && head_dim % 2 != 0) {
    *error = "--head-dim " + std::to_string(head_dim) +
             " is odd: RoPE rotates pairs of dims (pass an even --head-dim or --no-rope)";
    return false;
  }
  return true;
}

std::string workload_description(const std::string &workload, const ta_workload_params &p) {
  if (workload != "flux") return workload + " workload";
  std::ostringstream s;
  s << "flux workload (" << layout_spec_text(p.layout) << "; smoothness " << p.smoothness
    << ", gain " << p.gain << ", alignment " << p.alignment << ", rope "
    << (p.rope ? "on" : "off") << ")";
  return s.str();
}

}  // namespace

int cmd_check(const std::vector<std::string> &argv) {
  CommandLine cl = make_check_command_line();
  int exit_code;
  if (!parse_command_line(cl, argv, &exit_code)) return exit_code;
  const std::string &program = cl.program();

  const std::string workload = cl.get_string("workload", "gaussian");
  const bool flux = workload == "flux";
  for (const char *name : flux ? kNotFlux : kFluxOnly) {
    if (cl.has(name)) {
      return report_error(program,
                          flux ? "--" + std::string(name) +
                                     " does not apply to --workload flux (its tokens come from "
                                     "--text and --grid, its score spread from --gain)"
                               : "--" + std::string(name) + " applies to --workload flux only",
                          kExitUsage);
    }
  }
  const int64_t d = cl.get_int("head-dim", flux ? kFluxDefaultHeadDim : 64);
  const int64_t heads = cl.get_int("heads", 2);
  const std::vector<int64_t> Ps =
      cl.get_int_list("P", flux ? kFluxDefaultP : std::vector<int64_t>{2, 3, 4});
  const std::vector<int64_t> Gs =
      cl.get_int_list("sub-head-blocks", flux ? kFluxDefaultG : std::vector<int64_t>{1, 4});
  const std::vector<int64_t> radii =
      flux ? cl.get_int_list("window-radius", kFluxDefaultRadii) : std::vector<int64_t>{0};
  const std::vector<double> spreads =
      flux ? std::vector<double>{std::nan("")} : cl.get_double_list("spread", {1.0, 2.0});
  const uint64_t seed = static_cast<uint64_t>(cl.get_int("seed", 0));
  if (!flux) {
    for (double s : spreads) {
      if (s <= 0) return report_error(program, "--spread: values must be positive", kExitUsage);
    }
  }
  ta_workload_params params;
  std::memset(&params, 0, sizeof params);
  std::string error;
  if (flux && !flux_params(cl, d, seed, &params, &error)) {
    return report_error(program, error, kExitUsage);
  }
  const int64_t n = flux ? layout_tokens(params.layout) : cl.get_int("tokens", 512);

  ta_config base;
  std::memset(&base, 0, sizeof base);
  ta_config_defaults(&base);
  apply_config_options(cl, &base);  // --threads, --window-text-keys, --window-text-queries
  base.seed = seed;
  const Progress progress("check", !cl.flag("quiet"));
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));

  std::vector<InputResult> results;
  for (double spread : spreads) {
    InputResult result;
    result.spread = spread;
    const std::string tag = flux ? std::string("flux") : "spread " + format_fixed(spread, 2);
    AttentionCall call;
    if (flux) {
      progress.note(tag + ": generating N=" + std::to_string(n) + ", " + plural(heads, "head") +
                    ", d=" + std::to_string(d));
      if (!load_flux_call(params, 1, heads, d, TA_DTYPE_F64, &call, &error)) {
        return report_error(program, error, kExitFailure);
      }
      result.score_std = measured_score_std(call.q, call.k, scale, 20000, seed);
    } else {
      const Qkv qkv = workload == "aligned" ? aligned_qkv(1, heads, n, d, spread, seed)
                                            : gaussian_qkv(1, heads, n, d, spread, seed);
      result.score_std = measured_score_std(qkv, scale, 20000, seed);
      load_call(qkv, TA_DTYPE_F64, &call);
    }

    progress.note(tag + ": exact reference");
    ta_status st = ta_reference_attention(call.prepare(), &base, TA_REFERENCE_EXACT_ORIGINAL);
    if (st != TA_OK) {
      return report_error(program, library_error("ta_reference_attention", st), kExitFailure);
    }
    const HostArray reference = call.out;

    // P = 1 is the plain average of the values whatever G is: the "no attention" baseline.
    {
      std::string detail;
      double ms = 0;
      ta_stats stats;
      std::string status = run_taylor(&call, measuring_config(1, 1, d, base), &detail, &ms, &stats);
      if (status != "ok") {
        return report_error(program, "uniform average (P=1) failed: " + detail, kExitFailure);
      }
      result.uniform_rel_l2 = relative_l2(call.out, reference);
    }

    std::map<int64_t, HostArray> sliced_reference;  // exact softmax of the sliced function
    for (int64_t P : Ps) {
      for (int64_t G : Gs) {
        for (int64_t radius : radii) {
          Row row;
          row.P = static_cast<int32_t>(P);
          row.G = static_cast<int32_t>(G);
          row.radius = static_cast<int32_t>(radius);
          ta_config config = measuring_config(row.P, row.G, d, base);
          config.window_radius = row.radius;
          CostModel model;
          std::string why;
          if (make_cost_model(d, d, row.P, row.G, &model, &why)) row.feature_dim = model.feature_dim;
          progress.note(tag + ": P=" + std::to_string(P) + " G=" + std::to_string(G) +
                        (flux ? " radius " + std::to_string(radius) : std::string()) +
                        (row.feature_dim > 0
                             ? " (R=" + format_count(static_cast<double>(row.feature_dim)) + ")"
                             : std::string()));
          ta_stats stats;
          row.status = run_taylor(&call, config, &row.detail, &row.time_ms, &stats);
          row.exact_pairs = stats.window_exact_pairs;
          if (row.status == "ok" && radius > 0 && !stats.window_active) {
            row.status = "error";
            row.detail = std::string("the window did not apply (") +
                         ta_reason_name(stats.window_reason) + ")";
          }
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
    if (flux) {
      json.field("layout", layout_spec_text(params.layout));
      json.field_num("smoothness", params.smoothness);
      json.field_num("gain", params.gain);
      json.field_num("alignment", params.alignment);
      json.field_bool("rope", params.rope != 0);
      json.field_bool("window_text_keys", base.window_text_keys != 0);
      json.field_bool("window_text_queries", base.window_text_queries != 0);
    }
    json.key("results");
    json.begin_array();
    for (const auto &r : results) {
      json.begin_object();
      if (!flux) json.field_num("spread", r.spread);
      json.field_num("score_std", r.score_std);
      json.field_num("uniform_rel_l2", r.uniform_rel_l2);
      json.key("rows");
      json.begin_array();
      for (const auto &row : r.rows) {
        json.begin_object();
        json.field_int("P", row.P);
        json.field_int("sub_head_blocks", row.G);
        if (flux) json.field_int("window_radius", row.radius);
        json.field_int("feature_dim", row.feature_dim);
        json.field("status", row.status);
        if (!row.detail.empty())
          json.field(row.status == "fallback" ? "fallback_reason" : "error", row.detail);
        json.field_num("rel_l2", row.rel_l2);
        json.field_num("rel_l2_truncation", row.rel_l2_truncation);
        if (flux) json.field_int("window_exact_pairs", row.exact_pairs);
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
  out << "check: " << workload_description(workload, params) << ", d=" << d << ", N=" << n
      << ", " << plural(heads, "head") << ", batch 1, f64, seed " << seed << "\n";
  out << "relative L2 error ||o - o_exact|| / ||o_exact||, guards and fallbacks off\n";
  if (flux) {
    out << "radius 0 = plain Taylor; radius R = exact exp on each grid query's (2R+1)^2 window"
        << (base.window_text_keys ? " and the text keys" : "")
        << (base.window_text_queries ? ", text queries exact" : "") << ", Taylor elsewhere\n";
  }
  char line[256];
  for (const auto &r : results) {
    if (flux) {
      out << "\nmeasured score std " << format_fixed(r.score_std, 2)
          << ", uniform average (P=1): " << format_fixed(r.uniform_rel_l2, 3) << "\n";
      std::snprintf(line, sizeof line, "  %3s %4s %6s %14s %12s %11s %14s %10s\n", "P", "G",
                    "radius", "R per slice", "vs original", "truncation", "exact pairs", "time");
    } else {
      out << "\nspread " << format_fixed(r.spread, 2) << " (measured score std "
          << format_fixed(r.score_std, 2)
          << "), uniform average (P=1): " << format_fixed(r.uniform_rel_l2, 3) << "\n";
      std::snprintf(line, sizeof line, "  %3s %4s %14s %12s %11s %10s\n", "P", "G",
                    "R per slice", "vs original", "truncation", "time");
    }
    out << line;
    for (const auto &row : r.rows) {
      std::string r_text =
          row.feature_dim > 0 ? format_count(static_cast<double>(row.feature_dim)) : "-";
      if (row.status != "ok") {
        // Messages can be long: appended, not formatted into the fixed buffer.
        if (flux) {
          std::snprintf(line, sizeof line, "  %3d %4d %6d %14s   ", row.P, row.G, row.radius,
                        r_text.c_str());
        } else {
          std::snprintf(line, sizeof line, "  %3d %4d %14s   ", row.P, row.G, r_text.c_str());
        }
        out << line << row.status << ": " << row.detail << "\n";
        continue;
      }
      if (flux) {
        std::snprintf(line, sizeof line, "  %3d %4d %6d %14s %12s %11s %14s %10s\n", row.P, row.G,
                      row.radius, r_text.c_str(), format_fixed(row.rel_l2, 3).c_str(),
                      format_fixed(row.rel_l2_truncation, 3).c_str(),
                      row.radius > 0 ? format_count(static_cast<double>(row.exact_pairs)).c_str()
                                     : "-",
                      format_ms(row.time_ms).c_str());
      } else {
        std::snprintf(line, sizeof line, "  %3d %4d %14s %12s %11s %10s\n", row.P, row.G,
                      r_text.c_str(), format_fixed(row.rel_l2, 3).c_str(),
                      format_fixed(row.rel_l2_truncation, 3).c_str(),
                      format_ms(row.time_ms).c_str());
      }
      out << line;
    }
  }
  std::fputs(out.str().c_str(), stdout);
  return kExitOk;
}

}  // namespace ta_cli
