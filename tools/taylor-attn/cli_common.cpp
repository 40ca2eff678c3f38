// cli_common.cpp - see cli_common.h.
#include "cli_common.h"

#include <chrono>
#include <cstdio>

#include "config_flags.h"

namespace ta_cli {

int report_error(const std::string &program, const std::string &message, int code) {
  // One line, whatever the message holds: scripts and tests read the first line only.
  std::string line = message;
  for (char &c : line) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  std::fprintf(stderr, "%s: error: %s\n", program.c_str(), line.c_str());
  return code;
}

bool parse_command_line(CommandLine &cl, const std::vector<std::string> &argv, int *exit_code) {
  std::string error;
  if (!cl.parse(argv, &error)) {
    *exit_code = report_error(cl.program(), error, kExitUsage);
    return false;
  }
  if (cl.help_requested()) {
    std::fputs(cl.help_text().c_str(), stdout);
    *exit_code = kExitOk;
    return false;
  }
  return true;
}

std::string library_error(const std::string &what, ta_status status) {
  std::string message = ta_last_error_message();
  return what + ": " + ta_status_string(status) + (message.empty() ? "" : ": " + message);
}

bool cuda_usable(CudaDeviceInfo *cuda, std::string *reason) {
  if (!cuda_compiled()) {
    *reason =
        "this build of taylor-attention has no CUDA backend "
        "(ta_backend_available(TA_DEVICE_CUDA) == 0)";
    return false;
  }
  CudaDeviceInfo info;
  if (!cuda_device_query(&info, reason)) return false;
  if (!ta_backend_available(TA_DEVICE_CUDA)) {
    *reason = info.name +
              " is visible, but the library reports its CUDA backend unavailable "
              "(ta_backend_available(TA_DEVICE_CUDA) == 0)";
    return false;
  }
  if (cuda) *cuda = info;
  return true;
}

bool device_usable(const std::string &device, std::string *error, CudaDeviceInfo *cuda) {
  if (device == "cpu") return true;
  if (device == "cuda") {
    std::string reason;
    if (cuda_usable(cuda, &reason)) return true;
    *error = "--device cuda: " + reason +
             (cuda_compiled() ? "; use --device cpu"
                              : "; rebuild with a CUDA compiler (TA_ENABLE_CUDA=ON) or use "
                                "--device cpu");
    return false;
  }
  *error = "--device: unknown device '" + device + "' (cpu or cuda)";
  return false;
}

std::string cuda_device_text(const CudaDeviceInfo &info) {
  char memory[32];
  std::snprintf(memory, sizeof memory, "%.1f GB", static_cast<double>(info.memory_bytes) / 1e9);
  return info.name + " (sm_" + std::to_string(info.compute_major) +
         std::to_string(info.compute_minor) + ", " + memory + ", driver " +
         cuda_version_text(info.driver_version) + ", runtime " +
         cuda_version_text(info.runtime_version) + ")";
}

void write_cuda_device_json(JsonWriter &json, const CudaDeviceInfo *info) {
  json.key("cuda_device");
  if (!info) {
    json.null();
    return;
  }
  json.begin_object();
  json.field("name", info->name);
  json.field("compute_capability",
             std::to_string(info->compute_major) + "." + std::to_string(info->compute_minor));
  json.field_int("memory_bytes", info->memory_bytes);
  json.field("driver_version", cuda_version_text(info->driver_version));
  json.field("runtime_version", cuda_version_text(info->runtime_version));
  json.field_int("device_count", info->device_count);
  json.end_object();
}

double now_ms() {
  using clock = std::chrono::steady_clock;
  return std::chrono::duration<double, std::milli>(clock::now().time_since_epoch()).count();
}

void Progress::note(const std::string &message) const {
  if (!enabled_) return;
  std::fprintf(stderr, "[%s] %s\n", tag_.c_str(), message.c_str());
  std::fflush(stderr);
}

void add_quiet_option(CommandLine &cl) {
  cl.option("quiet", ArgType::Switch, "", "no progress lines on stderr");
}

void add_workload_tail_options(CommandLine &cl, const char *seed_help, const char *json_what) {
  cl.option("seed", ArgType::Int, "N", seed_help).defaults("0").range(0, INT64_MAX);
  add_config_options(cl, {"threads"});
  cl.option("json", ArgType::Switch, "", std::string("print JSON instead of ") + json_what);
  add_quiet_option(cl);
}

std::string library_banner() {
  std::string s = std::string("taylor-attention ") + ta_version_string() + " (ABI " +
                  std::to_string(ta_abi_version()) + "), backends: cpu";
  if (ta_backend_available(TA_DEVICE_CUDA)) s += ", cuda";
  return s;
}

}  // namespace ta_cli
