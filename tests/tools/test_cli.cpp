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

#include "device_buffers.h"
#include "host_array.h"
#include "layout_spec.h"
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

TEST_F(ToolsCli, BenchBf16OnTheCpu) {
  Result r = run({"bench", "--tokens", "32", "--head-dim", "8", "--P", "2", "--iters", "1",
                  "--dtype", "bf16", "--json", "--quiet"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(json_has(r.out, "\"dtype\": \"bf16\"")) << r.out;
  EXPECT_FALSE(json_has(r.out, "\"status\": \"error\"")) << r.out;
  EXPECT_TRUE(json_has(r.out, "\"clock\": \"host_wall_clock\"")) << r.out;
  EXPECT_TRUE(json_has(r.out, "\"cuda_device\": null")) << r.out;
}

TEST_F(ToolsCli, BenchChecksRunTimesTheNodeDiagnostics) {
  Result r = run({"bench", "--tokens", "32", "--head-dim", "8", "--P", "3", "--iters", "1",
                  "--exact", "false", "--checks", "true", "--json", "--quiet"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(json_has(r.out, "\"taylor_with_checks\"")) << r.out;
  EXPECT_TRUE(json_has(r.out, "early_probe and quality_check on")) << r.out;
  EXPECT_EQ(json_numbers(r.out, "median_ms").size(), 2u) << r.out;  // exact skipped: null
}

TEST_F(ToolsCli, BenchF16Text) {
  Result r = run({"bench", "--tokens", "32", "--head-dim", "8", "--P", "2", "--iters", "1",
                  "--dtype", "f16", "--exact", "false", "--quiet"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(json_has(r.out, "f16")) << r.out;
}

// ------------------------------------------------------- layouts and the window

// Runs `run` on 4 text tokens + a 6x7 grid (N = 46, d = 8) with the given extra flags.
constexpr const char *kLayout46 = "text=4,grid=6x7";

TEST_F(ToolsCli, RunLayoutWithWindowIsTheHybrid_text4_grid6x7_d8_f64) {
  const ta_cli::Qkv qkv = write_inputs(TA_DTYPE_F64, 2, 46, 8);
  Result r = run(run_args({"--min-tokens", "0", "--P", "3", "--sub-head-blocks", "1", "--layout",
                           kLayout46, "--window-radius", "1", "--json"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(json_has(r.out, "\"backend\": \"taylor\"")) << r.out;
  EXPECT_EQ(json_number(r.out, "window_active"), 1) << r.out;
  EXPECT_TRUE(json_has(r.out, "\"window_reason\": \"none\"")) << r.out;
  EXPECT_GT(json_number(r.out, "window_exact_pairs"), 0) << r.out;
  EXPECT_TRUE(json_has(r.out, "\"layout\": \"text=4,grid=6x7\"")) << r.out;
  EXPECT_TRUE(json_has(r.out, "\"window_radius\": 1")) << r.out;  // the config block

  // The output is the hybrid's quadratic form, and not plain Taylor's.
  ta_config config = default_config();
  config.min_tokens = 0;
  config.P = 3;
  config.sub_head_blocks = 1;
  config.window_radius = 1;
  ta_cli::AttentionCall call;
  ta_cli::load_call(qkv, TA_DTYPE_F64, &call);
  std::string error;
  ASSERT_TRUE(ta_cli::parse_layout_spec(kLayout46, &call.layout.emplace(), &error)) << error;
  ASSERT_EQ(ta_reference_attention(call.prepare(), &config, TA_REFERENCE_HYBRID_QUADRATIC), TA_OK)
      << ta_last_error_message();
  const HostArray hybrid = call.out;
  ASSERT_EQ(ta_reference_attention(call.prepare(), &config, TA_REFERENCE_TAYLOR_QUADRATIC), TA_OK);
  const HostArray plain = call.out;
  const HostArray out = read_array("o.npy");
  EXPECT_LT(ta_cli::relative_l2(out, hybrid), 1e-10);
  EXPECT_GT(ta_cli::relative_l2(out, plain), 1e-6);
}

TEST_F(ToolsCli, RunTextReportsTheActiveWindow) {
  write_inputs(TA_DTYPE_F32, 1, 46, 8);
  Result r = run(run_args({"--min-tokens", "0", "--layout", kLayout46, "--window-radius", "2"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(json_has(r.out, "window: local-exact hybrid active")) << r.out;
  EXPECT_TRUE(json_has(r.out, "layout: text=4,grid=6x7")) << r.out;
  EXPECT_TRUE(json_has(r.out, "window_radius=2")) << r.out;
}

TEST_F(ToolsCli, RunWindowWithoutLayoutSaysWhyItDidNotApply) {
  write_inputs(TA_DTYPE_F32, 1, 46, 8);
  Result r = run(run_args({"--min-tokens", "0", "--window-radius", "2", "--json"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json_number(r.out, "window_active"), 0) << r.out;
  EXPECT_TRUE(json_has(r.out, "\"window_reason\": \"window_no_layout\"")) << r.out;
  EXPECT_TRUE(json_has(r.out, "\"layout\": null")) << r.out;
  r = run(run_args({"--min-tokens", "0", "--window-radius", "2"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(json_has(r.out, "requested but not applied (window_no_layout)")) << r.out;
}

TEST_F(ToolsCli, RunLayoutTokenCountMismatchIsAOneLineError) {
  write_inputs(TA_DTYPE_F32, 1, 46, 8);
  Result r = run(run_args({"--min-tokens", "0", "--layout", "text=4,grid=6x6", "--window-radius",
                           "1"}));
  EXPECT_EQ(r.exit_code, 1);
  expect_one_line_error(r, "--layout text=4,grid=6x6 has 40 tokens, but q and k have N = 46");
  EXPECT_TRUE(r.out.empty()) << r.out;
}

TEST_F(ToolsCli, RunMalformedLayoutIsAUsageError) {
  write_inputs(TA_DTYPE_F32, 1, 46, 8);
  Result r = run(run_args({"--layout", "text=4,grid=6by7"}));
  EXPECT_EQ(r.exit_code, 2);
  expect_one_line_error(r, "--layout: 'grid=6by7'");
}

TEST_F(ToolsCli, RunNegativeWindowRadiusIsAUsageError) {
  write_inputs(TA_DTYPE_F32, 1, 46, 8);
  Result r = run(run_args({"--layout", kLayout46, "--window-radius", "-1"}));
  EXPECT_EQ(r.exit_code, 2);
  expect_one_line_error(r, "window_radius");
}

// The flux workload at a size that runs in well under a second: the hybrid must beat plain
// Taylor, as in MATH.md section 6. Smoothness 3 on a 12x12 grid keeps about the ratio of
// correlation length to grid of the defaults (8 on 64x64); it measured 0.342 -> 0.172.
TEST_F(ToolsCli, CheckFluxHybridBeatsPlainTaylor_text16_grid12x12_d32) {
  Result r = run({"check", "--workload", "flux", "--text", "16", "--grid", "12x12", "--head-dim",
                  "32", "--heads", "1", "--P", "3", "--sub-head-blocks", "1", "--smoothness", "3",
                  "--window-radius", "0,2", "--json", "--quiet"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(r.err.empty()) << r.err;
  EXPECT_TRUE(json_has(r.out, "\"workload\": \"flux\"")) << r.out;
  EXPECT_TRUE(json_has(r.out, "\"layout\": \"text=16,grid=12x12\"")) << r.out;
  EXPECT_EQ(json_number(r.out, "tokens"), 160);
  const std::vector<double> errors = json_numbers(r.out, "rel_l2");
  ASSERT_EQ(errors.size(), 2u) << r.out;
  EXPECT_GT(errors[0], 0.0);
  EXPECT_LT(errors[1], 0.7 * errors[0]) << "radius 2 vs plain";
  const std::vector<double> pairs = json_numbers(r.out, "window_exact_pairs");
  ASSERT_EQ(pairs.size(), 2u);
  EXPECT_EQ(pairs[0], 0);
  EXPECT_GT(pairs[1], 0);
  EXPECT_GT(json_number(r.out, "score_std"), 0.1);
  EXPECT_LT(json_number(r.out, "uniform_rel_l2"), 2.0);
}

TEST_F(ToolsCli, CheckFluxTextTableHasRadiusColumn_twoGrids) {
  Result r = run({"check", "--workload", "flux", "--text", "8", "--grid", "6x6,4x5",
                  "--head-dim", "16", "--heads", "1", "--P", "3", "--sub-head-blocks", "1,2",
                  "--window-radius", "0,2", "--no-rope", "--quiet"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(json_has(r.out, "flux workload (text=8,grid=6x6,grid=4x5;")) << r.out;
  EXPECT_TRUE(json_has(r.out, "rope off")) << r.out;
  EXPECT_TRUE(json_has(r.out, "radius")) << r.out;
  EXPECT_TRUE(json_has(r.out, "exact pairs")) << r.out;
  EXPECT_FALSE(json_has(r.out, "error:")) << r.out;  // no row failed
}

TEST_F(ToolsCli, CheckOptionsOfTheOtherWorkloadAreUsageErrors) {
  Result r = run({"check", "--window-radius", "0,1"});
  EXPECT_EQ(r.exit_code, 2);
  expect_one_line_error(r, "--window-radius applies to --workload flux only");
  r = run({"check", "--workload", "aligned", "--grid", "4x4"});
  EXPECT_EQ(r.exit_code, 2);
  expect_one_line_error(r, "--grid applies to --workload flux only");
  r = run({"check", "--workload", "flux", "--spread", "1"});
  EXPECT_EQ(r.exit_code, 2);
  expect_one_line_error(r, "--spread does not apply to --workload flux");
  r = run({"check", "--workload", "flux", "--tokens", "100"});
  EXPECT_EQ(r.exit_code, 2);
  expect_one_line_error(r, "--tokens does not apply to --workload flux");
}

TEST_F(ToolsCli, CheckFluxBadValuesAreUsageErrors) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--grid", "12x"}, "--grid: '12x' is not HxW"},
      {{"--grid", "2x2,2x2,2x2,2x2,2x2,2x2,2x2,2x2,2x2"}, "at most 8 grids"},
      {{"--smoothness", "0"}, "--smoothness must be > 0"},
      {{"--alignment", "1.5"}, "--alignment must be in [0, 1]"},
      {{"--head-dim", "15"}, "RoPE rotates pairs"},
      {{"--text", "0", "--grid", "0x3"}, "--grid: '0x3'"},
  };
  for (const auto &[extra, message] : cases) {
    std::vector<std::string> args = {"check", "--workload", "flux", "--quiet"};
    args.insert(args.end(), extra.begin(), extra.end());
    Result r = run(args);
    EXPECT_EQ(r.exit_code, 2) << message;
    expect_one_line_error(r, message);
  }
}

TEST_F(ToolsCli, BenchFluxWithLayoutAndWindowReportsTheWindow) {
  Result r = run({"bench", "--workload", "flux", "--layout", "text=8,grid=8x8", "--head-dim", "16",
                  "--P", "2", "--iters", "1", "--warmup", "0", "--exact", "false",
                  "--window-radius", "1", "--json", "--quiet"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(json_has(r.out, "\"workload\": \"flux\"")) << r.out;
  EXPECT_TRUE(json_has(r.out, "\"layout\": \"text=8,grid=8x8\"")) << r.out;
  EXPECT_EQ(json_number(r.out, "tokens"), 72);
  EXPECT_TRUE(json_has(r.out, "\"active\": true")) << r.out;
  EXPECT_GT(json_number(r.out, "exact_pairs"), 0) << r.out;
}

TEST_F(ToolsCli, BenchTokensDifferingFromTheLayoutIsAUsageError) {
  Result r = run({"bench", "--layout", "text=8,grid=8x8", "--tokens", "100"});
  EXPECT_EQ(r.exit_code, 2);
  expect_one_line_error(r, "--tokens 100 differs from the layout's N = 72");
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

// ------------------------------------------------------------------------ cuda
//
// Without a usable GPU (no CUDA backend in the build, or no device) every --device cuda
// command is a one-line error with exit 1 after its flags parsed; the tests further down
// need a card and skip without one.

bool gpu_present() { return ta_backend_available(TA_DEVICE_CUDA) == 1; }

#define SKIP_WITHOUT_GPU() \
  if (!gpu_present()) GTEST_SKIP() << "no usable CUDA device (ta_backend_available == 0)"
#define SKIP_WITH_GPU() \
  if (gpu_present()) GTEST_SKIP() << "a CUDA device is usable: --device cuda runs"

// What the one-line error says: the build lacks the backend, or the device is missing.
std::string expected_cuda_error() {
  return ta_cli::cuda_compiled() ? "--device cuda: no " : "no CUDA backend";
}

void expect_cuda_unusable(const ToolsCli::Result &r) {
  EXPECT_EQ(r.exit_code, 1) << r.err;  // a run-time failure, not a usage error
  expect_one_line_error(r, expected_cuda_error());
  EXPECT_NE(r.err.find("--device cuda"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
}

TEST_F(ToolsCli, RunCudaWithoutAGpuIsAClearError) {
  SKIP_WITH_GPU();
  write_inputs(TA_DTYPE_F32, 1, 16, 4);
  expect_cuda_unusable(run(run_args({"--device", "cuda"})));
}

TEST_F(ToolsCli, RunCudaF64WithoutAGpuIsAClearError) {
  SKIP_WITH_GPU();
  write_inputs(TA_DTYPE_F64, 1, 16, 4);
  expect_cuda_unusable(run(run_args({"--device", "cuda", "--P", "3", "--json"})));
}

TEST_F(ToolsCli, BenchCudaFlagsParseThenNoGpuIsAClearError) {
  SKIP_WITH_GPU();
  expect_cuda_unusable(run({"bench", "--device", "cuda", "--tokens", "4608,16896,66048",
                            "--dtype", "bf16", "--heads", "24", "--iters", "2", "--warmup", "1",
                            "--checks", "true", "--json", "--quiet"}));
  expect_cuda_unusable(run({"bench", "--device", "cuda"}));
}

TEST_F(ToolsCli, DemoCudaFlagsParseThenNoGpuIsAClearError) {
  SKIP_WITH_GPU();
  expect_cuda_unusable(run({"demo", "--device", "cuda"}));
  expect_cuda_unusable(run({"demo", "--device", "cuda", "--heads", "24", "--reference-heads",
                            "2", "--dtype", "bf16", "--iters", "5", "--json", "--quiet"}));
}

TEST_F(ToolsCli, CudaFlagValuesAreCheckedBeforeTheDevice) {
  // Bad values are usage errors (exit 2) whatever the device.
  Result r = run({"bench", "--device", "cuda", "--dtype", "f8"});
  EXPECT_EQ(r.exit_code, 2);
  expect_one_line_error(r, "--dtype");
  r = run({"demo", "--device", "gpu"});
  EXPECT_EQ(r.exit_code, 2);
  expect_one_line_error(r, "one of cpu, cuda, auto");
  r = run({"demo", "--reference-heads", "0"});
  EXPECT_EQ(r.exit_code, 2);
  expect_one_line_error(r, "--reference-heads");
}

TEST_F(ToolsCli, HelpShowsTheCudaDefaults) {
  Result r = run({"bench", "--help"});
  ASSERT_EQ(r.exit_code, 0);
  EXPECT_TRUE(json_has(r.out, "4608,16896 on cuda")) << r.out;
  EXPECT_TRUE(json_has(r.out, "bf16 on cuda")) << r.out;
  EXPECT_TRUE(json_has(r.out, "24 on cuda")) << r.out;
  r = run({"demo", "--help"});
  ASSERT_EQ(r.exit_code, 0);
  EXPECT_TRUE(json_has(r.out, "cpu|cuda|auto")) << r.out;
}

// The documented fallback of demo --device auto (what scripts/demo.sh passes on a machine
// with a GPU): one note line on stderr, then the CPU demo. One head keeps it near 10 s.
TEST_F(ToolsCli, DemoAutoWithoutAGpuRunsOnTheCpuWithANote) {
  SKIP_WITH_GPU();
  Result r = run({"demo", "--device", "auto", "--heads", "1", "--json", "--quiet"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "one line: " << r.err;
  EXPECT_TRUE(json_has(r.err, "note: ")) << r.err;
  EXPECT_TRUE(json_has(r.err, "running the demo on the CPU")) << r.err;
  EXPECT_TRUE(json_has(r.out, "\"device\": \"cpu\"")) << r.out;
  EXPECT_TRUE(json_has(r.out, "\"requested_device\": \"auto\"")) << r.out;
  EXPECT_TRUE(json_has(r.out, "\"cuda_device\": null")) << r.out;
  EXPECT_EQ(json_number(r.out, "heads"), 1);
  EXPECT_EQ(json_number(r.out, "reference_heads"), 1);
  for (double e : json_numbers(r.out, "rel_l2")) {
    EXPECT_TRUE(std::isfinite(e));
    EXPECT_LT(e, 1.5);
  }
  EXPECT_TRUE(json_has(r.out, "\"reading\": \"Reading: ")) << r.out;
}

// ----------------------------------------------------------------- cuda, with a GPU

TEST_F(ToolsCli, GpuRunMatchesTheCpuRun_f16_and_f32) {
  SKIP_WITHOUT_GPU();
  for (ta_dtype dtype : {TA_DTYPE_F16, TA_DTYPE_F32}) {
    write_inputs(dtype, 2, 97, 32);
    Result cpu = run(run_args({"--min-tokens", "0", "--P", "3", "--sub-head-blocks", "1"}));
    ASSERT_EQ(cpu.exit_code, 0) << cpu.err;
    const HostArray expect = read_array("o.npy");
    Result gpu = run(run_args(
        {"--min-tokens", "0", "--P", "3", "--sub-head-blocks", "1", "--device", "cuda", "--json"}));
    ASSERT_EQ(gpu.exit_code, 0) << gpu.err;
    EXPECT_TRUE(json_has(gpu.out, "\"backend\": \"taylor\"")) << gpu.out;
    EXPECT_TRUE(json_has(gpu.out, "\"backend_name\": \"cuda\"")) << gpu.out;
    EXPECT_TRUE(json_has(gpu.out, "\"compute_capability\"")) << gpu.out;
    const HostArray got = read_array("o.npy");
    EXPECT_EQ(got.dtype, dtype);
    EXPECT_EQ(got.shape, expect.shape);
    // tests/cuda's bound for the tensor-core path (bf16 features), plus f16 output rounding.
    EXPECT_LT(ta_cli::relative_l2(got, expect), 2e-2 + 1e-3) << ta_cli::dtype_label(dtype);
  }
}

TEST_F(ToolsCli, GpuRunWithMaskUploadsIt) {
  SKIP_WITHOUT_GPU();
  write_inputs(TA_DTYPE_F32, 1, 40, 16);
  HostArray mask = ta_cli::make_array(TA_DTYPE_BOOL, {40});
  for (int64_t j = 0; j < 30; ++j) mask.set(j, 1.0);
  write_array("m.npy", mask);
  std::vector<std::string> common = {"--min-tokens", "0", "--P", "3", "--sub-head-blocks", "1",
                                     "--mask", path("m.npy")};
  Result cpu = run(run_args(common));
  ASSERT_EQ(cpu.exit_code, 0) << cpu.err;
  const HostArray expect = read_array("o.npy");
  common.insert(common.end(), {"--device", "cuda", "--json"});
  Result gpu = run(run_args(common));
  ASSERT_EQ(gpu.exit_code, 0) << gpu.err;
  EXPECT_TRUE(json_has(gpu.out, "\"mask\": true")) << gpu.out;
  EXPECT_TRUE(json_has(gpu.out, "\"backend_name\": \"cuda\"")) << gpu.out;
  EXPECT_LT(ta_cli::relative_l2(read_array("o.npy"), expect), 2e-2);
}

// f64 on CUDA: the library declines (unsupported_dtype) and the tool answers on the host
// with the exact attention of the original call, bit for bit the CPU fallback.
TEST_F(ToolsCli, GpuRunF64FallsBackToTheHostReference) {
  SKIP_WITHOUT_GPU();
  const ta_cli::Qkv qkv = write_inputs(TA_DTYPE_F64, 1, 24, 8);
  Result r = run(run_args({"--min-tokens", "0", "--device", "cuda", "--json"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(json_has(r.out, "\"backend\": \"standard\"")) << r.out;
  EXPECT_TRUE(json_has(r.out, "\"fallback_reason\": \"unsupported_dtype\"")) << r.out;
  const HostArray expect =
      library_reference(qkv, TA_DTYPE_F64, default_config(), TA_REFERENCE_EXACT_ORIGINAL);
  EXPECT_EQ(read_array("o.npy").bytes, expect.bytes);
}

TEST_F(ToolsCli, GpuBenchJsonHasCardRatesAndNullExact) {
  SKIP_WITHOUT_GPU();
  Result r = run({"bench", "--device", "cuda", "--tokens", "256,1000", "--heads", "2",
                  "--head-dim", "64", "--iters", "3", "--warmup", "1", "--json", "--quiet"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(json_has(r.out, "\"dtype\": \"bf16\"")) << r.out;
  EXPECT_TRUE(json_has(r.out, "\"clock\": \"cuda_events\"")) << r.out;
  EXPECT_TRUE(json_has(r.out, "\"exact\": null")) << r.out;
  EXPECT_TRUE(json_has(r.out, "\"taylor_with_checks\"")) << r.out;
  EXPECT_FALSE(json_has(r.out, "\"device_name\": null")) << r.out;
  EXPECT_FALSE(json_has(r.out, "\"status\": \"error\"")) << r.out;
  EXPECT_FALSE(json_has(r.out, "\"status\": \"fallback\"")) << r.out;
  // Taylor at N=256, d=64, P=3, G=1: R = C(66, 2) = 2145, 4 * R * 65 * N * 2 heads.
  EXPECT_EQ(json_number(r.out, "flops"), 4.0 * 2145 * 65 * 256 * 2);
  for (double t : json_numbers(r.out, "tflops_per_s")) EXPECT_GT(t, 0.0);
  for (double ms : json_numbers(r.out, "min_ms")) EXPECT_GT(ms, 0.0);
}

TEST_F(ToolsCli, GpuBenchTextNamesTheCardAndTheSdpaScript) {
  SKIP_WITHOUT_GPU();
  ta_cli::CudaDeviceInfo info;
  std::string error;
  ASSERT_TRUE(ta_cli::cuda_device_query(&info, &error)) << error;
  Result r = run({"bench", "--device", "cuda", "--tokens", "300", "--heads", "1", "--head-dim",
                  "32", "--iters", "2", "--quiet"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(json_has(r.out, info.name)) << r.out;
  EXPECT_TRUE(json_has(r.out, "exact: see benchmarks/benchmark_taylor_attention.py (torch SDPA)"))
      << r.out;
}

TEST_F(ToolsCli, GpuBenchF64IsReportedAsAFallback) {
  SKIP_WITHOUT_GPU();
  Result r = run({"bench", "--device", "cuda", "--tokens", "128", "--heads", "1", "--head-dim",
                  "16", "--dtype", "f64", "--iters", "1", "--checks", "false", "--json",
                  "--quiet"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(json_has(r.out, "\"status\": \"fallback\"")) << r.out;
  EXPECT_TRUE(json_has(r.out, "unsupported_dtype")) << r.out;
}

TEST_F(ToolsCli, GpuDemoMeasuresErrorsOnTheReferenceHeads) {
  SKIP_WITHOUT_GPU();
  Result r = run({"demo", "--device", "cuda", "--heads", "3", "--reference-heads", "1", "--iters",
                  "2", "--json", "--quiet"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(json_has(r.out, "\"device\": \"cuda\"")) << r.out;
  EXPECT_TRUE(json_has(r.out, "\"dtype\": \"bf16\"")) << r.out;
  EXPECT_EQ(json_number(r.out, "reference_heads"), 1);
  EXPECT_TRUE(json_has(r.out, "head 0 on the host")) << r.out;
  int ok_runs = 0;
  for (double e : json_numbers(r.out, "rel_l2")) {
    EXPECT_TRUE(std::isfinite(e));
    EXPECT_LT(e, 1.5);
    ++ok_runs;
  }
  EXPECT_GE(ok_runs, 2) << r.out;  // two variants at least (plus the quality checks)
  EXPECT_FALSE(json_has(r.out, "\"status\": \"error\"")) << r.out;
}

// The same inputs on the CPU and the GPU give errors within the backends' agreement.
TEST_F(ToolsCli, GpuDemoErrorsAgreeWithTheCpuDemo) {
  SKIP_WITHOUT_GPU();
  const std::vector<std::string> common = {"demo", "--heads", "1", "--dtype", "f32", "--iters",
                                           "1", "--json", "--quiet"};
  std::vector<std::string> cpu_args = common, gpu_args = common;
  cpu_args.insert(cpu_args.end(), {"--device", "cpu"});
  gpu_args.insert(gpu_args.end(), {"--device", "cuda"});
  Result cpu = run(cpu_args);
  ASSERT_EQ(cpu.exit_code, 0) << cpu.err;
  Result gpu = run(gpu_args);
  ASSERT_EQ(gpu.exit_code, 0) << gpu.err;
  EXPECT_EQ(json_number(cpu.out, "uniform_rel_l2"), json_number(gpu.out, "uniform_rel_l2"));
  const std::vector<double> ec = json_numbers(cpu.out, "rel_l2");
  const std::vector<double> eg = json_numbers(gpu.out, "rel_l2");
  ASSERT_EQ(ec.size(), eg.size()) << cpu.out << gpu.out;
  for (size_t i = 0; i < ec.size(); ++i) EXPECT_NEAR(eg[i], ec[i], 0.02 + 0.05 * ec[i]) << i;
}

}  // namespace
