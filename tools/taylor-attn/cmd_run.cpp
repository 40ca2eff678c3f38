// cmd_run.cpp - `taylor-attn run`: one attention call on arrays from .npy files.
//
// Does what an integration does: try Taylor attention with the given config and, when the
// library declines (TA_FALLBACK), write the exact attention of the original call instead,
// which is what ComfyUI's standard backend would have returned. Doubles as the bug-report
// tool: the JSON holds the config and every statistic of the call.
//
// With --device cuda the arrays are uploaded (device_call.h), the library runs on them with
// its own workspace (workspace NULL) on the default stream, and out is downloaded; a
// fallback is answered on the host, exactly as on the CPU (f64 inputs always take that
// path on CUDA: the library declines them with unsupported_dtype).
#include <cstdio>
#include <optional>
#include <sstream>

#include "cli_common.h"
#include "commands.h"
#include "config_flags.h"
#include "device_call.h"
#include "host_array.h"
#include "json.h"
#include "layout_spec.h"
#include "npy.h"
#include "stats_report.h"
#include "units.h"
#include "workload.h"

namespace ta_cli {
namespace {

CommandLine make_run_command_line() {
  CommandLine cl("taylor-attn run",
                 "Runs Taylor attention on q, k, v from .npy files ([B,H,N,D], f16/f32/f64) and\n"
                 "writes the output in the input dtype. When the library falls back, the output\n"
                 "is exact attention of the original call (what ComfyUI would compute), always\n"
                 "computed on the host.");
  cl.option("q", ArgType::String, "Q.npy", "queries [B,H,Nq,D]").require();
  cl.option("k", ArgType::String, "K.npy", "keys [B,H,Nk,D]").require();
  cl.option("v", ArgType::String, "V.npy", "values [B,H,Nk,DV]").require();
  cl.option("out", ArgType::String, "O.npy", "output [B,H,Nq,DV], written in the input dtype")
      .require();
  cl.option("mask", ArgType::String, "M.npy",
            "key-padding mask: bool (true = attend) or additive float; [Nk], [B,Nk] or "
            "[B|1,1|H,1|Nq,Nk]");
  cl.option("device", ArgType::Choice, "cpu|cuda",
            "where to run; cuda uploads the arrays to device 0 (f64 falls back)")
      .defaults("cpu")
      .one_of({"cpu", "cuda"});
  cl.option("layout", ArgType::String, "SPEC",
            "token layout for --window-radius, e.g. text=256,grid=64x64 (up to 8 grids); "
            "its token count must equal N");
  add_config_options(cl);
  cl.option("json", ArgType::Switch, "", "print JSON instead of text");
  cl.set_epilog(
      "Every ta_config field is a flag named after it (booleans take true|false); defaults\n"
      "are the library's (ta_config_defaults), validated by ta_config_validate.\n"
      "--layout describes the tokens (text first, then row-major grids) so that\n"
      "--window-radius R > 0 can weight each grid query's (2R+1)^2 neighbourhood exactly.\n"
      "examples:\n"
      "  taylor-attn run --q q.npy --k k.npy --v v.npy --out o.npy --P 3 --sub-head-blocks 1 "
      "--json\n"
      "  taylor-attn run --q q.npy --k k.npy --v v.npy --out o.npy --P 3 --sub-head-blocks 1 "
      "--layout text=256,grid=64x64 --window-radius 4");
  return cl;
}

bool load(const std::string &flag, const std::string &path, HostArray *out, std::string *error) {
  ta_npy::Array array;
  if (!ta_npy::read_npy_file(path, &array, error)) {
    *error = "--" + flag + " " + *error;
    return false;
  }
  if (!from_npy(std::move(array), out, error)) {
    *error = "--" + flag + " " + path + ": " + *error;
    return false;
  }
  return true;
}

std::string shape_text(const std::vector<int64_t> &shape) { return ta_npy::shape_string(shape); }

// The CLI's own checks, so a mismatch is reported with file names and shapes rather than
// as the library's generic argument error.
bool check_inputs(const HostArray &q, const HostArray &k, const HostArray &v, const HostArray *mask,
                  std::string *error) {
  const std::pair<const char *, const HostArray *> inputs[] = {{"q", &q}, {"k", &k}, {"v", &v}};
  for (const auto &[name, a] : inputs) {
    if (a->shape.size() != 4) {
      *error = std::string("--") + name + ": expected a 4-D array [B,H,N,D], got shape " +
               shape_text(a->shape);
      return false;
    }
    if (a->dtype != TA_DTYPE_F16 && a->dtype != TA_DTYPE_F32 && a->dtype != TA_DTYPE_F64) {
      *error = std::string("--") + name + ": dtype " + dtype_label(a->dtype) +
               " is not supported (f16, f32 or f64)";
      return false;
    }
  }
  if (q.dtype != k.dtype || q.dtype != v.dtype) {
    *error = std::string("dtype mismatch: q ") + dtype_label(q.dtype) + ", k " +
             dtype_label(k.dtype) + ", v " + dtype_label(v.dtype) + " (all must be equal)";
    return false;
  }
  const bool shapes_ok = q.shape[0] == k.shape[0] && q.shape[0] == v.shape[0] &&
                         q.shape[1] == k.shape[1] && q.shape[1] == v.shape[1] &&
                         k.shape[2] == v.shape[2] && q.shape[3] == k.shape[3];
  if (!shapes_ok) {
    *error = "shape mismatch: q " + shape_text(q.shape) + ", k " + shape_text(k.shape) + ", v " +
             shape_text(v.shape) + " (need q [B,H,Nq,D], k [B,H,Nk,D], v [B,H,Nk,DV])";
    return false;
  }
  if (mask) {
    if (mask->shape.empty() || mask->shape.size() > TA_MAX_DIMS) {
      *error = "--mask: expected 1 to 4 dimensions, got shape " + shape_text(mask->shape);
      return false;
    }
  }
  return true;
}

}  // namespace

int cmd_run(const std::vector<std::string> &argv) {
  CommandLine cl = make_run_command_line();
  int exit_code;
  if (!parse_command_line(cl, argv, &exit_code)) return exit_code;
  const std::string &program = cl.program();

  ta_config config;
  std::string error;
  if (!config_from_options(cl, &config, &error)) return report_error(program, error, kExitUsage);
  std::optional<ta_token_layout> layout;
  if (cl.has("layout")) {
    layout.emplace();
    if (!parse_layout_spec(cl.get_string("layout", ""), &*layout, &error)) {
      return report_error(program, "--layout: " + error, kExitUsage);
    }
  }
  const std::string device = cl.get_string("device", "cpu");
  const bool on_cuda = device == "cuda";
  CudaDeviceInfo cuda_info;
  if (!device_usable(device, &error, &cuda_info)) {
    return report_error(program, error, kExitFailure);
  }

  AttentionCall call;
  if (!load("q", cl.get_string("q", ""), &call.q, &error) ||
      !load("k", cl.get_string("k", ""), &call.k, &error) ||
      !load("v", cl.get_string("v", ""), &call.v, &error)) {
    return report_error(program, error, kExitFailure);
  }
  if (cl.has("mask")) {
    call.mask.emplace();
    if (!load("mask", cl.get_string("mask", ""), &*call.mask, &error)) {
      return report_error(program, error, kExitFailure);
    }
  }
  if (!check_inputs(call.q, call.k, call.v, call.mask ? &*call.mask : nullptr, &error)) {
    return report_error(program, error, kExitFailure);
  }
  const int64_t B = call.q.shape[0], H = call.q.shape[1], Nq = call.q.shape[2];
  const int64_t Nk = call.k.shape[2], D = call.q.shape[3], DV = call.v.shape[3];
  // A layout describes self-attention tokens. With Nq != Nk it is passed on as it is: the
  // library checks its structure only and reports window_cross_attention.
  if (layout && Nq == Nk && layout_tokens(*layout) != Nq) {
    return report_error(program,
                        "--layout " + layout_spec_text(*layout) + " has " +
                            std::to_string(layout_tokens(*layout)) +
                            " tokens, but q and k have N = " + std::to_string(Nq),
                        kExitFailure);
  }
  call.layout = layout;
  call.out = make_array(call.q.dtype, {B, H, Nq, DV});
  const ta_attention_args *host_args = call.prepare();
  const ta_attention_args *args = host_args;
  DeviceAttentionCall device_call;
  double upload_ms = 0.0, download_ms = 0.0;
  if (on_cuda) {
    const double tu = now_ms();
    if (!device_call.upload(call, &error)) {
      return report_error(program, "--device cuda: " + error, kExitFailure);
    }
    upload_ms = now_ms() - tu;
    args = device_call.prepare();
  }

  ta_stats stats;
  ta_stats_init(&stats);
  const double t0 = now_ms();
  ta_status st = ta_attention_run(args, &config, nullptr, 0, nullptr, &stats);
  const double taylor_ms = now_ms() - t0;
  double fallback_ms = 0.0;
  const bool fell_back = st == TA_FALLBACK;
  if (st != TA_OK && st != TA_FALLBACK) {
    return report_error(program, library_error("ta_attention_run", st), kExitFailure);
  }
  if (on_cuda && !fell_back) {
    const double td = now_ms();
    if (!device_call.download_out(&call, &error)) {
      return report_error(program, "--device cuda: " + error, kExitFailure);
    }
    download_ms = now_ms() - td;
  }
  if (fell_back) {
    // The exact attention of the original call, on the host arrays whatever the device.
    const double t1 = now_ms();
    ta_status ref = ta_reference_attention(host_args, &config, TA_REFERENCE_EXACT_ORIGINAL);
    fallback_ms = now_ms() - t1;
    if (ref != TA_OK) {
      return report_error(
          program,
          std::string("fell back (") + ta_reason_name(stats.fallback_reason) +
              ") and the exact attention failed: " + library_error("ta_reference_attention", ref),
          kExitFailure);
    }
  }

  const std::string out_path = cl.get_string("out", "");
  ta_npy::Array out_npy;
  if (!to_npy(call.out, &out_npy, &error) || !ta_npy::write_npy_file(out_path, out_npy, &error)) {
    return report_error(program, "--out " + error, kExitFailure);
  }

  if (cl.flag("json")) {
    JsonWriter json;
    json.begin_object();
    json.field("command", "run");
    json.field("status", ta_status_string(st));
    json.field("backend", fell_back ? "standard" : "taylor");
    json.field("backend_name", fell_back ? "reference" : ta_backend_name(stats.backend));
    json.field("fallback_reason", ta_reason_name(stats.fallback_reason));
    json.field("library_version", ta_version_string());
    json.field("device", device);
    write_cuda_device_json(json, on_cuda ? &cuda_info : nullptr);
    json.field("dtype", dtype_label(call.q.dtype));
    json.key("shape");
    json.begin_object();
    json.field_int("batch", B);
    json.field_int("heads", H);
    json.field_int("q_tokens", Nq);
    json.field_int("k_tokens", Nk);
    json.field_int("head_dim", D);
    json.field_int("value_dim", DV);
    json.end_object();
    json.field_bool("mask", call.mask.has_value());
    json.key("layout");
    if (layout) {
      json.string(layout_spec_text(*layout));
    } else {
      json.null();
    }
    json.field("out", out_path);
    json.key("config");
    write_config_json(json, config);
    json.key("stats");
    write_stats_json(json, stats);
    json.field_num("taylor_call_ms", taylor_ms);
    json.field_num("fallback_ms", fallback_ms);
    json.field_num("upload_ms", upload_ms);
    json.field_num("download_ms", download_ms);
    json.end_object();
    std::fputs(json.str().c_str(), stdout);
    return kExitOk;
  }

  std::ostringstream out;
  out << "input: B=" << B << " H=" << H << " Nq=" << Nq << " Nk=" << Nk << " d=" << D
      << " dv=" << DV << ", " << dtype_label(call.q.dtype) << (call.mask ? ", with mask" : "")
      << "\n";
  if (on_cuda) {
    out << "device: cuda " << kCudaDeviceId << ", " << cuda_device_text(cuda_info) << "; upload "
        << format_ms(upload_ms) << ", download " << format_ms(download_ms) << "\n";
  }
  out << "config: P=" << config.P << ", sub_head_blocks=" << config.sub_head_blocks
      << ", min_tokens=" << config.min_tokens
      << ", quality_check=" << (config.quality_check ? "on" : "off");
  if (config.window_radius > 0) {
    out << ", window_radius=" << config.window_radius
        << ", window_text_keys=" << (config.window_text_keys ? "true" : "false")
        << ", window_text_queries=" << (config.window_text_queries ? "true" : "false");
  }
  out << "\n";
  if (layout) out << "layout: " << layout_spec_text(*layout) << "\n";
  if (fell_back) {
    out << "backend: standard (Taylor fell back: " << ta_reason_name(stats.fallback_reason)
        << "); output is exact attention of the original call, " << format_ms(fallback_ms)
        << " (fp64 reference) after " << format_ms(taylor_ms) << " in the Taylor call\n";
  } else {
    out << "backend: taylor (" << ta_backend_name(stats.backend) << "), " << format_ms(taylor_ms)
        << "\n";
    out << stats_text(stats, "  ");
  }
  out << "wrote " << out_path << " " << ta_npy::shape_string(call.out.shape) << " "
      << dtype_label(call.out.dtype) << "\n";
  std::fputs(out.str().c_str(), stdout);
  return kExitOk;
}

}  // namespace ta_cli
