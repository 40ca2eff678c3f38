// cmd_info.cpp - `taylor-attn info`: what a configuration costs, before running anything.
//
// Answers the questions MATH.md section 3 answers by hand: feature dimension R, state size,
// FLOPs against exact attention, and the token count where Taylor starts to win.
#include <cstdio>
#include <cstring>
#include <sstream>

#include "cli_common.h"
#include "commands.h"
#include "cost_model.h"
#include "json.h"
#include "units.h"

namespace ta_cli {
namespace {

// Flux at 1024^2: 24 heads, 512 text + 4096 image tokens.
constexpr int64_t kDefaultHeads = 24;
constexpr int64_t kDefaultTokens = 4608;

CommandLine make_info_command_line() {
  CommandLine cl("taylor-attn info",
                 "Feature dimension, state memory and FLOPs of a Taylor attention configuration,\n"
                 "compared with exact attention. Computes nothing heavy.");
  cl.option("head-dim", ArgType::Int, "D", "query/key head dimension d")
      .range(1, INT32_MAX)
      .require();
  cl.option("value-dim", ArgType::Int, "DV", "value head dimension")
      .defaults("head dim")
      .range(1, INT32_MAX);
  cl.option("P", ArgType::Int, "N", "Taylor terms (degrees 0..P-1)")
      .defaults("4")
      .range(1, INT32_MAX);
  // The library's default G is 4 (the node's), but info answers "what does this P cost on
  // a full head", so it defaults to 1; pass --sub-head-blocks 4 for the node's slicing.
  cl.option("sub-head-blocks", ArgType::Int, "G",
            "slices per head; NOTE: 1 here, not the library default 4")
      .defaults("1")
      .range(1, INT32_MAX);
  cl.option("heads", ArgType::Int, "H", "heads (for totals)")
      .defaults("24 (Flux)")
      .range(1, INT64_MAX);
  cl.option("tokens", ArgType::Int, "N", "tokens (Nq = Nk) for the FLOP counts")
      .defaults("4608 (Flux 1024^2)")
      .range(1, INT64_MAX);
  cl.option("json", ArgType::Switch, "", "print JSON instead of text");
  cl.set_epilog(
      "formulas (MATH.md section 3):\n"
      "  R                 = C(d/G + P - 1, P - 1) per slice\n"
      "  state per head    = G * R * (dv/G + 1) * 4 bytes (S and z, fp32)\n"
      "  Taylor FLOPs/head = G * 4 * R * (dv/G + 1) * N\n"
      "  exact FLOPs/head  = 4 * N^2 * d\n"
      "  break-even N      = G * R * (dv/G + 1) / d\n"
      "example:\n"
      "  taylor-attn info --head-dim 128 --P 4 --sub-head-blocks 1   (R = 366145)");
  return cl;
}

// The library's own memory estimate for one f32 call of this shape (B = 1): shapes only,
// no data. (ta_attention_check would give the guard verdict, but it needs data pointers.)
struct LibraryEstimate {
  bool ok = false;
  std::string error;
  ta_memory_estimate estimate{};
};

LibraryEstimate library_estimate(const CostModel &m, int64_t heads, int64_t tokens) {
  LibraryEstimate result;
  ta_config config;
  std::memset(&config, 0, sizeof config);
  ta_config_defaults(&config);
  config.P = m.P;
  config.sub_head_blocks = m.sub_head_blocks;
  ta_tensor q{}, k{}, v{}, out{};
  const int64_t qk_shape[4] = {1, heads, tokens, m.head_dim};
  const int64_t v_shape[4] = {1, heads, tokens, m.value_dim};
  ta_tensor_init_contiguous(&q, nullptr, TA_DTYPE_F32, TA_DEVICE_CPU, 4, qk_shape);
  ta_tensor_init_contiguous(&k, nullptr, TA_DTYPE_F32, TA_DEVICE_CPU, 4, qk_shape);
  ta_tensor_init_contiguous(&v, nullptr, TA_DTYPE_F32, TA_DEVICE_CPU, 4, v_shape);
  ta_tensor_init_contiguous(&out, nullptr, TA_DTYPE_F32, TA_DEVICE_CPU, 4, v_shape);
  ta_attention_args args{&q, &k, &v, nullptr, &out, nullptr};
  ta_status st = ta_attention_memory_estimate(&args, &config, &result.estimate);
  if (st != TA_OK) {
    result.error = library_error("ta_attention_memory_estimate", st);
    return result;
  }
  result.ok = true;
  return result;
}

}  // namespace

int cmd_info(const std::vector<std::string> &argv) {
  CommandLine cl = make_info_command_line();
  int exit_code;
  if (!parse_command_line(cl, argv, &exit_code)) return exit_code;

  const int64_t d = cl.get_int("head-dim", 0);
  const int64_t dv = cl.get_int("value-dim", d);
  const int32_t P = static_cast<int32_t>(cl.get_int("P", 4));
  const int32_t G = static_cast<int32_t>(cl.get_int("sub-head-blocks", 1));
  const int64_t heads = cl.get_int("heads", kDefaultHeads);
  const int64_t tokens = cl.get_int("tokens", kDefaultTokens);

  // P and G go through the library's validator so info accepts exactly what run accepts.
  ta_config config;
  std::memset(&config, 0, sizeof config);
  ta_config_defaults(&config);
  config.P = P;
  config.sub_head_blocks = G;
  if (ta_config_validate(&config) != TA_OK) {
    return report_error(
        cl.program(), std::string("invalid configuration: ") + ta_last_error_message(), kExitUsage);
  }
  CostModel m;
  std::string error;
  if (!make_cost_model(d, dv, P, G, &m, &error)) {
    return report_error(cl.program(), error, kExitFailure);
  }
  const double n = static_cast<double>(tokens);
  const double h = static_cast<double>(heads);
  const double taylor = m.taylor_flops_per_head(n) * h;
  const double exact = m.exact_flops_per_head(n) * h;
  const LibraryEstimate lib = library_estimate(m, heads, tokens);

  if (cl.flag("json")) {
    JsonWriter json;
    json.begin_object();
    json.field("command", "info");
    json.field_int("head_dim", d);
    json.field_int("value_dim", dv);
    json.field_int("P", P);
    json.field_int("sub_head_blocks", G);
    json.field_int("slice_dim", m.slice_dim);
    json.field_int("slice_value_dim", m.slice_value_dim);
    json.field_int("feature_dim", m.feature_dim);
    json.field_num("feature_dim_per_head", static_cast<double>(m.feature_dim) * G);
    json.field_num("state_bytes_per_slice", m.state_bytes_per_slice());
    json.field_num("state_bytes_per_head", m.state_bytes_per_head());
    json.field_num("state_bytes_all_heads", m.state_bytes_per_head() * h);
    json.field_int("heads", heads);
    json.field_int("tokens", tokens);
    json.field_num("taylor_flops_per_head", m.taylor_flops_per_head(n));
    json.field_num("taylor_flops", taylor);
    json.field_num("exact_flops_per_head", m.exact_flops_per_head(n));
    json.field_num("exact_flops", exact);
    json.field_num("flop_ratio", taylor / exact);
    json.field_num("break_even_tokens", m.break_even_tokens());
    json.key("library_estimate");
    if (lib.ok) {
      json.begin_object();
      json.field("dtype", "f32");
      json.field_int("feature_dim", lib.estimate.feature_dim);
      json.field_int("state_bytes", lib.estimate.state_bytes);
      json.field_int("workspace_bytes", lib.estimate.workspace_bytes);
      json.field_int("output_bytes", lib.estimate.output_bytes);
      json.field_int("total_bytes", lib.estimate.total_bytes);
      json.end_object();
    } else {
      json.null();
      json.field("library_estimate_error", lib.error);
    }
    json.end_object();
    std::fputs(json.str().c_str(), stdout);
    return kExitOk;
  }

  std::ostringstream out;
  out << "head dim d = " << d << ", value dim dv = " << dv << ", P = " << P << " terms (degrees 0.."
      << P - 1 << "), sub-head blocks G = " << G << "\n";
  out << "  slice dims          d/G = " << m.slice_dim << ", dv/G = " << m.slice_value_dim << "\n";
  out << "  feature dim R       " << format_count(static_cast<double>(m.feature_dim))
      << " per slice";
  if (G > 1) out << ", " << format_count(static_cast<double>(m.feature_dim) * G) << " per head";
  out << "\n";
  out << "  state S, z (fp32)   " << format_bytes(m.state_bytes_per_head()) << " per head, "
      << format_bytes(m.state_bytes_per_head() * h) << " for " << plural(heads, "head") << "\n";
  out << "at N = " << format_count(n) << " tokens, " << plural(heads, "head") << ", batch 1:\n";
  out << "  Taylor attention    " << format_flops(taylor) << "\n";
  out << "  exact attention     " << format_flops(exact) << "\n";
  out << "  Taylor / exact      " << format_ratio(taylor / exact) << " the FLOPs\n";
  out << "  break-even          N = " << format_count(m.break_even_tokens())
      << " tokens (Taylor needs fewer FLOPs above)\n";
  if (lib.ok) {
    out << "  library estimate    workspace "
        << format_bytes(static_cast<double>(lib.estimate.workspace_bytes)) << ", output "
        << format_bytes(static_cast<double>(lib.estimate.output_bytes)) << " (f32 inputs, "
        << ta_version_string() << ")\n";
  } else {
    out << "  library estimate    unavailable: " << lib.error << "\n";
  }
  std::fputs(out.str().c_str(), stdout);
  return kExitOk;
}

}  // namespace ta_cli
