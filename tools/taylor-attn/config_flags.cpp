// config_flags.cpp - see config_flags.h.
#include "config_flags.h"

#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <vector>

namespace ta_cli {
namespace {

constexpr const char *kGroup = "config";

// One row per flag. Exactly one member pointer is set; `boolean` marks int32 fields that
// hold 0/1 and are spelled true|false on the command line.
struct ConfigFlag {
  const char *flag;
  const char *field;  // C name, for JSON and messages
  const char *help;
  int32_t ta_config::*i32 = nullptr;
  int64_t ta_config::*i64 = nullptr;
  double ta_config::*f64 = nullptr;
  uint64_t ta_config::*u64 = nullptr;
  bool boolean = false;
};

ConfigFlag b32(const char *flag, const char *field, const char *help, int32_t ta_config::*m) {
  ConfigFlag f{flag, field, help};
  f.i32 = m;
  f.boolean = true;
  return f;
}
ConfigFlag i32(const char *flag, const char *field, const char *help, int32_t ta_config::*m) {
  ConfigFlag f{flag, field, help};
  f.i32 = m;
  return f;
}
ConfigFlag i64(const char *flag, const char *field, const char *help, int64_t ta_config::*m) {
  ConfigFlag f{flag, field, help};
  f.i64 = m;
  return f;
}
ConfigFlag f64(const char *flag, const char *field, const char *help, double ta_config::*m) {
  ConfigFlag f{flag, field, help};
  f.f64 = m;
  return f;
}
ConfigFlag u64(const char *flag, const char *field, const char *help, uint64_t ta_config::*m) {
  ConfigFlag f{flag, field, help};
  f.u64 = m;
  return f;
}

// Order follows the struct in taylor_attention.h.
const std::vector<ConfigFlag> &config_flags() {
  static const std::vector<ConfigFlag> kFlags = {
      b32("enabled", "enabled", "false: every call falls back (reason disabled)",
          &ta_config::enabled),
      i32("P", "P", "Taylor terms, degrees 0..P-1", &ta_config::P),
      i64("min-tokens", "min_tokens", "fall back when max(Nq, Nk) is below this",
          &ta_config::min_tokens),
      i64("max-feature-dim-R", "max_feature_dim_R",
          "fall back when a slice's feature dim R exceeds this", &ta_config::max_feature_dim_R),
      i32("sub-head-blocks", "sub_head_blocks",
          "G: independent attentions over d/G slices (changes the function)",
          &ta_config::sub_head_blocks),
      b32("qk-normalize", "qk_normalize", "normalise q and k per slice vector",
          &ta_config::qk_normalize),
      f64("scale-mul", "scale_mul", "multiplies the scale", &ta_config::scale_mul),
      f64("scale", "scale", "base scale; 0 means d^-1/2", &ta_config::scale),
      i32("block-size-q", "block_size_q", "CPU: queries per chunk", &ta_config::block_size_q),
      i32("block-size-k", "block_size_k", "CPU: keys per chunk", &ta_config::block_size_k),
      f64("eps", "eps", "normalisation epsilon and denominator threshold", &ta_config::eps),
      b32("fallback-on-negative", "fallback_on_negative",
          "true: any denominator <= eps falls back; false: clamp at eps",
          &ta_config::fallback_on_negative),
      b32("allow-cross-attention", "allow_cross_attention", "allow Nq != Nk",
          &ta_config::allow_cross_attention),
      i32("max-head-dim", "max_head_dim", "fall back when the slice head dim d/G exceeds this",
          &ta_config::max_head_dim),
      b32("force-fp32", "force_fp32", "GPU: features and products in fp32", &ta_config::force_fp32),
      b32("early-probe", "early_probe", "check sampled denominators before building S",
          &ta_config::early_probe),
      i32("probe-samples", "probe_samples", "queries sampled by the early probe",
          &ta_config::probe_samples),
      b32("denom-fp32", "denom_fp32", "denominators in fp32 at least", &ta_config::denom_fp32),
      b32("quality-check", "quality_check", "sampled comparison with the original attention",
          &ta_config::quality_check),
      i32("quality-check-samples", "quality_check_samples",
          "queries per (batch, head) the quality check samples", &ta_config::quality_check_samples),
      u64("seed", "seed", "seeds probe and quality-check sampling", &ta_config::seed),
      i32("threads", "num_threads", "CPU worker threads; 0 = all hardware threads",
          &ta_config::num_threads),
      i32("window-radius", "window_radius",
          "local-exact hybrid: exact exp on each grid query's (2R+1)^2 window, Taylor "
          "elsewhere (needs --layout); 0 = off",
          &ta_config::window_radius),
      b32("window-text-keys", "window_text_keys",
          "hybrid: text keys are in every query's exact set", &ta_config::window_text_keys),
      b32("window-text-queries", "window_text_queries",
          "hybrid: text queries attend exactly to all keys", &ta_config::window_text_queries),
  };
  return kFlags;
}

std::string default_text(const ConfigFlag &f, const ta_config &d) {
  if (f.boolean) return d.*f.i32 ? "true" : "false";
  if (f.i32) return std::to_string(d.*f.i32);
  if (f.i64) return std::to_string(d.*f.i64);
  if (f.u64) return std::to_string(d.*f.u64);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", d.*f.f64);
  return buf;
}

OptionSpec option_for(const ConfigFlag &f, const ta_config &defaults) {
  OptionSpec spec;
  // Values are built as std::string temporaries and moved in: assigning string literals
  // here trips a GCC 12 -Wrestrict false positive (GCC bug 105329).
  spec.name = std::string(f.flag);
  spec.help = std::string(f.help);
  spec.default_text = default_text(f, defaults);
  spec.group = std::string(kGroup);
  if (f.boolean) {
    spec.type = ArgType::Bool;
    spec.value_name = std::string("true|false");
  } else if (f.f64) {
    spec.type = ArgType::Double;
    spec.value_name = std::string("X");
  } else {
    spec.type = ArgType::Int;
    spec.value_name = std::string("N");
    // The parser only keeps values representable in the field; ranges that mean
    // something (P in 1..16, ...) are ta_config_validate's to judge and name.
    if (f.i32) {
      spec.min_int = INT32_MIN;
      spec.max_int = INT32_MAX;
    } else if (f.u64) {
      spec.min_int = 0;
    }
  }
  return spec;
}

ta_config library_defaults() {
  ta_config d;
  std::memset(&d, 0, sizeof d);
  ta_config_defaults(&d);
  return d;
}

}  // namespace

void add_config_options(CommandLine &cl) {
  ta_config defaults = library_defaults();
  for (const auto &f : config_flags()) cl.add(option_for(f, defaults));
}

void add_config_options(CommandLine &cl, std::initializer_list<const char *> names) {
  ta_config defaults = library_defaults();
  for (const char *name : names) {
    for (const auto &f : config_flags()) {
      if (std::strcmp(f.flag, name) == 0) cl.add(option_for(f, defaults));
    }
  }
}

void apply_config_options(const CommandLine &cl, ta_config *config) {
  for (const auto &f : config_flags()) {
    const OptionSpec *spec = cl.spec(f.flag);
    if (!spec || spec->group != kGroup || !cl.has(f.flag)) continue;
    if (f.boolean) {
      config->*f.i32 = cl.get_bool(f.flag, false) ? 1 : 0;
    } else if (f.i32) {
      config->*f.i32 = static_cast<int32_t>(cl.get_int(f.flag, 0));
    } else if (f.i64) {
      config->*f.i64 = cl.get_int(f.flag, 0);
    } else if (f.u64) {
      config->*f.u64 = static_cast<uint64_t>(cl.get_int(f.flag, 0));
    } else {
      config->*f.f64 = cl.get_double(f.flag, 0.0);
    }
  }
}

bool config_from_options(const CommandLine &cl, ta_config *config, std::string *error) {
  std::memset(config, 0, sizeof *config);
  ta_status st = ta_config_defaults(config);
  if (st != TA_OK) {
    *error = std::string("ta_config_defaults failed: ") + ta_status_string(st) + ": " +
             ta_last_error_message();
    return false;
  }
  apply_config_options(cl, config);
  st = ta_config_validate(config);
  if (st != TA_OK) {
    *error = std::string("invalid configuration: ") + ta_last_error_message();
    return false;
  }
  return true;
}

void write_config_json(JsonWriter &json, const ta_config &config) {
  json.begin_object();
  for (const auto &f : config_flags()) {
    if (f.boolean) {
      json.field_bool(f.field, config.*f.i32 != 0);
    } else if (f.i32) {
      json.field_int(f.field, config.*f.i32);
    } else if (f.i64) {
      json.field_int(f.field, config.*f.i64);
    } else if (f.u64) {
      // Seeds from the CLI fit in int64; a larger one (set through the API) is printed
      // as a number rather than wrapped negative.
      uint64_t v = config.*f.u64;
      if (v <= static_cast<uint64_t>(INT64_MAX)) {
        json.field_int(f.field, static_cast<int64_t>(v));
      } else {
        json.field_num(f.field, static_cast<double>(v));
      }
    } else {
      json.field_num(f.field, config.*f.f64);
    }
  }
  json.end_object();
}

}  // namespace ta_cli
