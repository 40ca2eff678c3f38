// cli_common.h - what every command does the same way: parse flags, print --help, report
// one-line errors with the right exit code, check the device, time, show progress.
#ifndef TAYLOR_ATTN_CLI_COMMON_H_
#define TAYLOR_ATTN_CLI_COMMON_H_

#include <string>
#include <vector>

#include "args.h"
#include "device_buffers.h"
#include "json.h"
#include "taylor_attention/taylor_attention.h"

namespace ta_cli {

// Exit codes: 2 for bad usage (flags), 1 for everything that failed at run time.
constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

// Prints "<program>: error: <message>" as exactly one line on stderr; returns `code`.
int report_error(const std::string &program, const std::string &message, int code);

// Parses argv; prints help (exit 0) or a usage error (exit 2). Returns true when the
// command should go on; otherwise *exit_code is what main returns.
bool parse_command_line(CommandLine &cl, const std::vector<std::string> &argv, int *exit_code);

// "what: <ta_status_string>: <ta_last_error_message>" for a failed library call.
std::string library_error(const std::string &what, ta_status status);

// Whether CUDA runs here: the build has the backend, device 0 answers, and the library
// agrees (ta_backend_available). *cuda (optional) receives the card's facts; otherwise
// *reason says why not, in one line without advice.
bool cuda_usable(CudaDeviceInfo *cuda, std::string *reason);

// Whether the tool can run on this device ("cpu" or "cuda"). CUDA needs a build with the
// CUDA backend and a visible, working device; *cuda (optional) then receives its facts.
// On failure *error is one line starting with "--device <device>: ".
bool device_usable(const std::string &device, std::string *error, CudaDeviceInfo *cuda = nullptr);

// "NVIDIA H100 80GB HBM3 (sm_90, 79.2 GB, driver 12.8, runtime 13.0)".
std::string cuda_device_text(const CudaDeviceInfo &info);

// "cuda_device": {name, compute_capability, memory_bytes, driver_version, runtime_version,
// device_count}, or null when info is nullptr (a CPU run).
void write_cuda_device_json(JsonWriter &json, const CudaDeviceInfo *info);

// Milliseconds on a monotonic clock.
double now_ms();

// Progress lines on stderr ("[bench] N=4608 taylor 2/3"), off with --quiet.
class Progress {
 public:
  Progress(std::string tag, bool enabled) : tag_(std::move(tag)), enabled_(enabled) {}
  void note(const std::string &message) const;

 private:
  std::string tag_;
  bool enabled_;
};

// Adds the --quiet switch that silences Progress.
void add_quiet_option(CommandLine &cl);

// The options every synthetic-workload command (check, bench, demo) ends with: --seed
// (described by seed_help), --threads, --json ("print JSON instead of <what>") and --quiet.
void add_workload_tail_options(CommandLine &cl, const char *seed_help, const char *json_what);

// The one-line fact sheet used in text reports: "taylor-attention 0.1.0 (ABI 1), cpu backend".
std::string library_banner();

}  // namespace ta_cli

#endif  // TAYLOR_ATTN_CLI_COMMON_H_
