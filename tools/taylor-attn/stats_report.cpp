// stats_report.cpp - see stats_report.h.
#include "stats_report.h"

#include <sstream>

#include "units.h"

namespace ta_cli {
namespace {

void write_quality(JsonWriter &json, const char *name, const ta_quality &q) {
  json.key(name);
  json.begin_object();
  json.field_int("samples", q.samples);
  json.field_num("rel_l2", q.rel_l2);
  json.field_num("mean_abs", q.mean_abs);
  json.field_num("max_abs", q.max_abs);
  json.field_num("mean_rel", q.mean_rel);
  json.end_object();
}

std::string num(double v) {
  std::ostringstream s;
  s.precision(4);
  s << v;
  return s.str();
}

}  // namespace

void write_stats_json(JsonWriter &json, const ta_stats &s) {
  json.begin_object();
  json.field("backend", ta_backend_name(s.backend));
  json.field("fallback_reason", ta_reason_name(s.fallback_reason));
  json.field_int("sub_head_blocks", s.sub_head_blocks);
  json.field_int("slice_dim", s.slice_dim);
  json.field_int("slice_value_dim", s.slice_value_dim);
  json.field_int("feature_dim", s.feature_dim);
  json.field_int("state_bytes", s.state_bytes);
  json.field_int("workspace_bytes", s.workspace_bytes);
  json.key("denominators");
  json.begin_object();
  json.field_int("count", s.denom_count);
  json.field_num("min", s.denom_min);
  json.field_num("max", s.denom_max);
  json.field_num("mean", s.denom_mean);
  json.field_int("le_eps", s.denom_le_eps);
  json.field_int("non_finite", s.denom_non_finite);
  json.end_object();
  json.key("probe");
  json.begin_object();
  json.field_bool("ran", s.probe_ran != 0);
  json.field_int("samples", s.probe_samples);
  json.field_num("denom_min", s.probe_denom_min);
  json.end_object();
  write_quality(json, "quality_vs_original", s.quality_vs_original);
  write_quality(json, "quality_truncation", s.quality_truncation);
  // The local-exact hybrid, under the C names: whether it ran, why a requested window did
  // not apply (none otherwise), and how many (query, key) pairs it weighted exactly.
  json.field_int("window_active", s.window_active);
  json.field("window_reason", ta_reason_name(s.window_reason));
  json.field_int("window_exact_pairs", s.window_exact_pairs);
  json.key("time_ms");
  json.begin_object();
  json.field_num("probe", s.time_probe_ms);
  json.field_num("key_pass", s.time_key_pass_ms);
  json.field_num("query_pass", s.time_query_pass_ms);
  json.field_num("quality", s.time_quality_ms);
  json.field_num("window", s.time_window_ms);
  json.field_num("total", s.time_total_ms);
  json.end_object();
  json.end_object();
}

std::string window_text(const ta_stats &s, const std::string &indent) {
  if (s.window_active) {
    return indent + "window: local-exact hybrid active, " +
           format_count(static_cast<double>(s.window_exact_pairs)) +
           " (query, key) pairs weighted exactly, " + format_ms(s.time_window_ms) + "\n";
  }
  if (s.window_reason != TA_REASON_NONE) {
    return indent + "window: requested but not applied (" + ta_reason_name(s.window_reason) +
           "): plain Taylor attention\n";
  }
  return "";
}

std::string stats_text(const ta_stats &s, const std::string &indent) {
  std::ostringstream out;
  out << indent << "feature dim R " << format_count(static_cast<double>(s.feature_dim))
      << " per slice, G = " << s.sub_head_blocks << " (slice d " << s.slice_dim << ", dv "
      << s.slice_value_dim << "), state " << format_bytes(static_cast<double>(s.state_bytes))
      << " per slice, workspace " << format_bytes(static_cast<double>(s.workspace_bytes)) << "\n";
  if (s.denom_count > 0) {
    out << indent << "denominators: " << s.denom_count << ", min " << num(s.denom_min) << ", max "
        << num(s.denom_max) << ", mean " << num(s.denom_mean) << ", <= eps " << s.denom_le_eps
        << ", non-finite " << s.denom_non_finite << "\n";
  }
  if (s.probe_ran) {
    out << indent << "early probe: " << s.probe_samples << " samples, min denominator "
        << num(s.probe_denom_min) << "\n";
  }
  if (s.quality_vs_original.samples > 0) {
    out << indent << "quality (" << s.quality_vs_original.samples
        << " sampled queries per head): rel L2 vs original " << num(s.quality_vs_original.rel_l2)
        << ", vs modified function (truncation only) " << num(s.quality_truncation.rel_l2) << "\n";
  }
  out << window_text(s, indent);
  out << indent << "time: total " << format_ms(s.time_total_ms) << " (probe "
      << format_ms(s.time_probe_ms) << ", key pass " << format_ms(s.time_key_pass_ms)
      << ", query pass " << format_ms(s.time_query_pass_ms) << ", window "
      << format_ms(s.time_window_ms) << ", quality " << format_ms(s.time_quality_ms) << ")\n";
  return out.str();
}

}  // namespace ta_cli
