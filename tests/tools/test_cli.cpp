// test_cli.cpp - the taylor-attn binary end to end: exit codes, one-line errors, JSON keys,
// and the arrays `run` writes, checked against the library's own references.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "host_array.h"
#include "npy.h"
#include "taylor_attention/taylor_attention.h"
#include "workload.h"

#ifndef TA_CLI_PATH
#error "TA_CLI_PATH must name the taylor-attn binary"
#endif

namespace {

using ta_cli::HostArray;

std::string read_text(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string shell_quote(const std::string &s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

class ToolsCli : public ::testing::Test {
 public:
  struct Result {
    int exit_code = -1;
    std::string out, err;
  };

  void SetUp() override {
    char dir_template[] = "/tmp/ta_cli_test_XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    dir_ = dir_template;
  }
  void TearDown() override {
    std::error_code ignored;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ignored);
  }

  std::string path(const std::string &name) const { return dir_ + "/" + name; }

  // Runs the binary with stdout and stderr captured separately.
  Result run(const std::vector<std::string> &args) const {
    std::string command = shell_quote(TA_CLI_PATH);
    for (const auto &a : args) {
      command += ' ';
      command += shell_quote(a);
    }
    command += " >";
    command += shell_quote(path("stdout.txt"));
    command += " 2>";
    command += shell_quote(path("stderr.txt"));
    int status = std::system(command.c_str());
    Result r;
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r.out = read_text(path("stdout.txt"));
    r.err = read_text(path("stderr.txt"));
    return r;
  }

 protected:
  void write_array(const std::string &name, const HostArray &a) const {
    ta_npy::Array npy;
    std::string error;
    ASSERT_TRUE(ta_cli::to_npy(a, &npy, &error)) << error;
    ASSERT_TRUE(ta_npy::write_npy_file(path(name), npy, &error)) << error;
  }

  HostArray read_array(const std::string &name) const {
    ta_npy::Array npy;
    HostArray a;
    std::string error;
    EXPECT_TRUE(ta_npy::read_npy_file(path(name), &npy, &error)) << error;
    EXPECT_TRUE(ta_cli::from_npy(std::move(npy), &a, &error)) << error;
    return a;
  }

  // q, k, v.npy for a small Gaussian problem; returns the workload for references.
  ta_cli::Qkv write_inputs(ta_dtype dtype, int64_t heads, int64_t tokens, int64_t d) const {
    ta_cli::Qkv qkv = ta_cli::gaussian_qkv(1, heads, tokens, d, 1.0, 42);
    write_array("q.npy", ta_cli::make_array(dtype, qkv.qk_shape(), qkv.q));
    write_array("k.npy", ta_cli::make_array(dtype, qkv.qk_shape(), qkv.k));
    write_array("v.npy", ta_cli::make_array(dtype, qkv.v_shape(), qkv.v));
    return qkv;
  }

  std::vector<std::string> run_args(std::vector<std::string> extra) const {
    std::vector<std::string> a = {"run", "--q",         path("q.npy"), "--k",        path("k.npy"),
                                  "--v", path("v.npy"), "--out",       path("o.npy")};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }

  // The library's answer for the same inputs, in the inputs' dtype.
  HostArray library_reference(const ta_cli::Qkv &qkv, ta_dtype dtype, const ta_config &config,
                              ta_reference_kind kind) const {
    ta_cli::AttentionCall call;
    ta_cli::load_call(qkv, dtype, &call);
    EXPECT_EQ(ta_reference_attention(call.prepare(), &config, kind), TA_OK)
        << ta_last_error_message();
    return call.out;
  }

  std::string dir_;
};

// Exactly one line on stderr, naming an error; nothing that looks like a crash.
void expect_one_line_error(const ToolsCli::Result &r, const std::string &expect) {
  EXPECT_NE(r.exit_code, 0);
  EXPECT_LT(r.exit_code, 128) << "killed by a signal";
  ASSERT_FALSE(r.err.empty());
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "stderr: " << r.err;
  EXPECT_NE(r.err.find("error"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(expect), std::string::npos) << "stderr: " << r.err;
}

// The numbers after every "key": in JSON text, in order (null entries skipped). A plain
// scan rather than std::regex, whose libstdc++ code trips -Wmaybe-uninitialized under
// sanitizer builds.
std::vector<double> json_numbers(const std::string &json, const std::string &key) {
  std::vector<double> values;
  const std::string needle = "\"" + key + "\": ";
  for (size_t pos = json.find(needle); pos != std::string::npos; pos = json.find(needle, pos + 1)) {
    const char *start = json.c_str() + pos + needle.size();
    char *end = nullptr;
    double v = std::strtod(start, &end);
    if (end != start) values.push_back(v);
  }
  return values;
}

// The first such number, NaN when absent.
double json_number(const std::string &json, const std::string &key) {
  std::vector<double> v = json_numbers(json, key);
  return v.empty() ? std::nan("") : v.front();
}

bool json_has(const std::string &json, const std::string &fragment) {
  return json.find(fragment) != std::string::npos;
}

ta_config default_config() {
  ta_config c;
  std::memset(&c, 0, sizeof c);
  ta_config_defaults(&c);
  return c;
}

// ------------------------------------------------------------------------ info

TEST_F(ToolsCli, InfoHeadDim128P4G1JsonFeatureDim366145) {
  Result r = run({"info", "--head-dim", "128", "--P", "4", "--sub-head-blocks", "1", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(json_has(r.out, "\"feature_dim\": 366145")) << r.out;
  EXPECT_EQ(json_number(r.out, "break_even_tokens"), 366145.0 * 129 / 128);
}

TEST_F(ToolsCli, InfoDefaultsToOneSubHeadBlock) {
  Result r = run({"info", "--head-dim", "128", "--P", "4"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(json_has(r.out, "366,145")) << r.out;
}

TEST_F(ToolsCli, InfoSlicedHeadFormulas) {
  // d=128, G=4: slices of 32, R = C(35, 3) = 6545; dv/G + 1 = 33.
  Result r = run({"info", "--head-dim", "128", "--P", "4", "--sub-head-blocks", "4", "--heads",
                  "24", "--tokens", "4608", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json_number(r.out, "feature_dim"), 6545);
  EXPECT_EQ(json_number(r.out, "slice_dim"), 32);
  EXPECT_EQ(json_number(r.out, "state_bytes_per_head"), 4.0 * 6545 * 33 * 4);
  EXPECT_EQ(json_number(r.out, "taylor_flops_per_head"), 4.0 * 4 * 6545 * 33 * 4608);
  EXPECT_EQ(json_number(r.out, "exact_flops_per_head"), 4.0 * 4608 * 4608 * 128);
}

TEST_F(ToolsCli, InfoGNotDividingHeadDimIsAnError) {
  expect_one_line_error(run({"info", "--head-dim", "10", "--sub-head-blocks", "4"}), "divide");
}

TEST_F(ToolsCli, InfoWithoutHeadDimIsAUsageError) {
  Result r = run({"info"});
  EXPECT_EQ(r.exit_code, 2);
  expect_one_line_error(r, "--head-dim");
}

// ------------------------------------------------------------------------- run

class ToolsCliRun : public ToolsCli, public ::testing::WithParamInterface<ta_dtype> {};

TEST_P(ToolsCliRun, TaylorOutputHasTheRightShapeAndMatchesTheQuadraticForm) {
  const ta_dtype dtype = GetParam();
  const ta_cli::Qkv qkv = write_inputs(dtype, 2, 40, 8);
  Result r = run(run_args({"--min-tokens", "0", "--json"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(json_has(r.out, "\"backend\": \"taylor\"")) << r.out;
  EXPECT_TRUE(json_has(r.out, "\"backend_name\": \"cpu\"")) << r.out;
  EXPECT_TRUE(json_has(r.out, "\"quality_vs_original\"")) << r.out;
  EXPECT_EQ(json_number(r.out, "feature_dim"), 10);  // d/G = 2, P = 4: C(5, 3)

  const HostArray out = read_array("o.npy");
  EXPECT_EQ(out.dtype, dtype);
  EXPECT_EQ(out.shape, (std::vector<int64_t>{1, 2, 40, 8}));
  ta_config config = default_config();
  config.min_tokens = 0;
  const HostArray expect = library_reference(qkv, dtype, config, TA_REFERENCE_TAYLOR_QUADRATIC);
  const double tol = dtype == TA_DTYPE_F64 ? 1e-10 : dtype == TA_DTYPE_F32 ? 1e-5 : 5e-3;
  EXPECT_LT(ta_cli::relative_l2(out, expect), tol);
}

TEST_P(ToolsCliRun, DisabledFallsBackToExactOriginalAttention) {
  const ta_dtype dtype = GetParam();
  const ta_cli::Qkv qkv = write_inputs(dtype, 2, 40, 8);
  Result r = run(run_args({"--enabled", "false", "--json"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(json_has(r.out, "\"backend\": \"standard\"")) << r.out;
  EXPECT_TRUE(json_has(r.out, "\"fallback_reason\": \"disabled\"")) << r.out;
  const HostArray out = read_array("o.npy");
  const HostArray expect =
      library_reference(qkv, dtype, default_config(), TA_REFERENCE_EXACT_ORIGINAL);
  EXPECT_EQ(out.shape, expect.shape);
  EXPECT_EQ(out.bytes, expect.bytes);  // the same computation: identical bits
}

INSTANTIATE_TEST_SUITE_P(ToolsCli, ToolsCliRun,
                         ::testing::Values(TA_DTYPE_F32, TA_DTYPE_F64, TA_DTYPE_F16),
                         [](const auto &info) {
                           return std::string(ta_cli::dtype_label(info.param));
                         });

TEST_F(ToolsCli, RunBelowMinTokensFallsBackWithItsReason) {
  write_inputs(TA_DTYPE_F32, 1, 16, 8);
  Result r = run(run_args({"--json"}));  // default min_tokens 100 > 16
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(json_has(r.out, "\"fallback_reason\": \"below_min_tokens\"")) << r.out;
}

TEST_F(ToolsCli, RunPassesConfigFlagsThrough) {
  write_inputs(TA_DTYPE_F64, 1, 24, 6);
  Result r = run(run_args({"--min-tokens", "0", "--P", "3", "--sub-head-blocks", "1",
                           "--quality-check", "false", "--seed", "9", "--json"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json_number(r.out, "P"), 3);
  EXPECT_EQ(json_number(r.out, "feature_dim"), 28);  // C(6 + 2, 2)
  EXPECT_TRUE(json_has(r.out, "\"quality_check\": false")) << r.out;
  EXPECT_EQ(json_number(r.out, "seed"), 9);
}

TEST_F(ToolsCli, RunWithKeyPaddingMask) {
  write_inputs(TA_DTYPE_F32, 1, 20, 4);
  HostArray mask = ta_cli::make_array(TA_DTYPE_BOOL, {20});
  for (int64_t j = 0; j < 15; ++j) mask.set(j, 1.0);
  write_array("m.npy", mask);
  Result r = run(run_args({"--min-tokens", "0", "--mask", path("m.npy"), "--json"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(json_has(r.out, "\"mask\": true")) << r.out;
  EXPECT_TRUE(json_has(r.out, "\"backend\": \"taylor\"")) << r.out;
}

TEST_F(ToolsCli, RunTextOutputNamesBackendAndFile) {
  write_inputs(TA_DTYPE_F32, 1, 16, 4);
  Result r = run(run_args({"--min-tokens", "0"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(json_has(r.out, "backend: taylor")) << r.out;
  EXPECT_TRUE(json_has(r.out, "wrote ")) << r.out;
}

TEST_F(ToolsCli, RunMalformedNpyIsAOneLineError) {
  write_inputs(TA_DTYPE_F32, 1, 16, 4);
  std::ofstream(path("q.npy"), std::ios::binary) << "\x93NUMPY\x01\x00garbage";
  expect_one_line_error(run(run_args({})), "q.npy");
}

TEST_F(ToolsCli, RunTruncatedNpyIsAOneLineError) {
  write_inputs(TA_DTYPE_F32, 1, 16, 4);
  std::string bytes = read_text(path("v.npy"));
  std::ofstream(path("v.npy"), std::ios::binary) << bytes.substr(0, bytes.size() - 3);
  expect_one_line_error(run(run_args({})), "truncated");
}

TEST_F(ToolsCli, RunMissingFileIsAOneLineError) {
  write_inputs(TA_DTYPE_F32, 1, 16, 4);
  std::remove(path("k.npy").c_str());
  expect_one_line_error(run(run_args({})), "k.npy");
}

TEST_F(ToolsCli, RunHeadDimMismatchIsAOneLineError) {
  write_inputs(TA_DTYPE_F32, 1, 16, 4);
  write_array("k.npy", ta_cli::make_array(TA_DTYPE_F32, {1, 1, 16, 5}));
  expect_one_line_error(run(run_args({})), "shape mismatch");
}

TEST_F(ToolsCli, RunDtypeMismatchIsAOneLineError) {
  write_inputs(TA_DTYPE_F32, 1, 16, 4);
  write_array("v.npy", ta_cli::make_array(TA_DTYPE_F64, {1, 1, 16, 4}));
  expect_one_line_error(run(run_args({})), "dtype mismatch");
}

TEST_F(ToolsCli, RunThreeDimensionalInputIsAOneLineError) {
  write_inputs(TA_DTYPE_F32, 1, 16, 4);
  write_array("q.npy", ta_cli::make_array(TA_DTYPE_F32, {1, 16, 4}));
  expect_one_line_error(run(run_args({})), "4-D");
}

TEST_F(ToolsCli, RunBoolInputIsAOneLineError) {
  write_inputs(TA_DTYPE_F32, 1, 16, 4);
  write_array("q.npy", ta_cli::make_array(TA_DTYPE_BOOL, {1, 1, 16, 4}));
  expect_one_line_error(run(run_args({})), "not supported");
}

TEST_F(ToolsCli, RunInvalidConfigIsAUsageError) {
  write_inputs(TA_DTYPE_F32, 1, 16, 4);
  Result r = run(run_args({"--P", "0"}));
  EXPECT_EQ(r.exit_code, 2);
  expect_one_line_error(r, "invalid configuration");
}

TEST_F(ToolsCli, RunBadBooleanIsAUsageError) {
  write_inputs(TA_DTYPE_F32, 1, 16, 4);
  Result r = run(run_args({"--enabled", "maybe"}));
  EXPECT_EQ(r.exit_code, 2);
  expect_one_line_error(r, "true or false");
}

TEST_F(ToolsCli, RunUnwritableOutputIsAOneLineError) {
  write_inputs(TA_DTYPE_F32, 1, 16, 4);
  std::vector<std::string> args = run_args({"--min-tokens", "0"});
  args[8] = path("no/such/dir/o.npy");
  expect_one_line_error(run(args), "--out");
}

TEST_F(ToolsCli, RunCudaWithoutCudaBackendIsAClearError) {
  if (ta_backend_available(TA_DEVICE_CUDA)) GTEST_SKIP() << "this build has the CUDA backend";
  write_inputs(TA_DTYPE_F32, 1, 16, 4);
  expect_one_line_error(run(run_args({"--device", "cuda"})), "no CUDA backend");
}

// ------------------------------------------------------------------ check, bench

TEST_F(ToolsCli, CheckSmallGridGivesErrorsForEveryCell) {
  Result r = run({"check", "--head-dim", "8", "--tokens", "48", "--heads", "1", "--P", "2,3",
                  "--sub-head-blocks", "1,2", "--spread", "1", "--json", "--quiet"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(r.err.empty()) << r.err;
  // Four cells, each with a finite error below the uniform average's ballpark.
  int cells = 0;
  for (double e : json_numbers(r.out, "rel_l2")) {
    EXPECT_TRUE(std::isfinite(e));
    EXPECT_LT(e, 2.0);
    ++cells;
  }
  EXPECT_EQ(cells, 4) << r.out;
  EXPECT_GT(json_number(r.out, "uniform_rel_l2"), 0.0);
}

TEST_F(ToolsCli, CheckAlignedWorkloadTable) {
  Result r = run({"check", "--head-dim", "4", "--tokens", "32", "--heads", "1", "--P", "2",
                  "--sub-head-blocks", "1", "--spread", "0.5", "--workload", "aligned", "--quiet"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(json_has(r.out, "aligned workload")) << r.out;
  EXPECT_TRUE(json_has(r.out, "uniform average")) << r.out;
}

TEST_F(ToolsCli, BenchTinySizesReportsRates) {
  Result r = run({"bench", "--tokens", "32,64", "--head-dim", "8", "--P", "2", "--iters", "1",
                  "--warmup", "0", "--json", "--quiet"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(json_has(r.out, "\"label\": \"exact (fp64 reference)\"")) << r.out;
  EXPECT_GT(json_number(r.out, "gflops_per_s"), 0.0) << r.out;
  EXPECT_EQ(json_number(r.out, "flops"), 4.0 * 9 * 9 * 32);  // Taylor at N=32, R = 9
}

TEST_F(ToolsCli, BenchF16Text) {
  Result r = run({"bench", "--tokens", "32", "--head-dim", "8", "--P", "2", "--iters", "1",
                  "--dtype", "f16", "--exact", "false", "--quiet"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(json_has(r.out, "f16")) << r.out;
}

// ------------------------------------------------------------------ help, usage

TEST_F(ToolsCli, HelpForEveryCommand) {
  for (const char *command : {"info", "run", "check", "bench", "demo"}) {
    Result r = run({command, "--help"});
    EXPECT_EQ(r.exit_code, 0) << command;
    EXPECT_EQ(r.out.rfind(std::string("usage: taylor-attn ") + command, 0), 0u) << r.out;
    EXPECT_TRUE(r.err.empty()) << r.err;
  }
}

TEST_F(ToolsCli, TopLevelHelpListsCommands) {
  Result r = run({"--help"});
  EXPECT_EQ(r.exit_code, 0);
  for (const char *command : {"info", "run", "check", "bench", "demo"}) {
    EXPECT_TRUE(json_has(r.out, std::string("  ") + command + " ")) << r.out;
  }
}

TEST_F(ToolsCli, NoCommandIsAUsageError) {
  Result r = run({});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(json_has(r.err, "usage:")) << r.err;
}

TEST_F(ToolsCli, UnknownCommandIsAOneLineUsageError) {
  Result r = run({"frobnicate"});
  EXPECT_EQ(r.exit_code, 2);
  expect_one_line_error(r, "unknown command 'frobnicate'");
}

TEST_F(ToolsCli, UnknownFlagIsAOneLineUsageError) {
  Result r = run({"bench", "--tokenz", "3"});
  EXPECT_EQ(r.exit_code, 2);
  expect_one_line_error(r, "unknown option '--tokenz'");
}

TEST_F(ToolsCli, DemoCudaWithoutCudaBackendIsAClearError) {
  if (ta_backend_available(TA_DEVICE_CUDA)) GTEST_SKIP() << "this build has the CUDA backend";
  expect_one_line_error(run({"demo", "--device", "cuda"}), "no CUDA backend");
}

}  // namespace
