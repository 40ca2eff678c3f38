// test_args.cpp - the shared argument parser and the config-flag table: every kind of bad
// input is a one-line error, every ta_config field has its flag.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "args.h"
#include "config_flags.h"
#include "half.h"
#include "json.h"
#include "layout_spec.h"
#include "units.h"

namespace {

using ta_cli::ArgType;
using ta_cli::CommandLine;

CommandLine sample_command_line() {
  CommandLine cl("taylor-attn test", "a test command");
  cl.option("tokens", ArgType::Int, "N", "tokens").range(1, 1000);
  cl.option("eps", ArgType::Double, "X", "epsilon");
  cl.option("enabled", ArgType::Bool, "true|false", "on");
  cl.option("out", ArgType::String, "PATH", "output");
  cl.option("device", ArgType::Choice, "cpu|cuda", "device").one_of({"cpu", "cuda"});
  cl.option("P", ArgType::IntList, "LIST", "terms").range(1, 16);
  cl.option("spread", ArgType::DoubleList, "LIST", "spreads");
  cl.option("json", ArgType::Switch, "", "json");
  return cl;
}

// Parses and expects failure with a one-line message containing `expect`.
void expect_parse_error(const std::vector<std::string> &argv, const std::string &expect) {
  CommandLine cl = sample_command_line();
  std::string error;
  EXPECT_FALSE(cl.parse(argv, &error));
  EXPECT_EQ(error.find('\n'), std::string::npos);
  EXPECT_NE(error.find(expect), std::string::npos) << "message: " << error;
}

TEST(ToolsArgs, ParsesEveryTypeInBothForms) {
  CommandLine cl = sample_command_line();
  std::string error;
  ASSERT_TRUE(cl.parse({"--tokens", "12", "--eps=1e-6", "--enabled", "false", "--out", "o.npy",
                        "--device=cuda", "--P", "2,3,4", "--spread", "0.5,-2", "--json"},
                       &error))
      << error;
  EXPECT_EQ(cl.get_int("tokens", 0), 12);
  EXPECT_DOUBLE_EQ(cl.get_double("eps", 0), 1e-6);
  EXPECT_FALSE(cl.get_bool("enabled", true));
  EXPECT_EQ(cl.get_string("out", ""), "o.npy");
  EXPECT_EQ(cl.get_string("device", ""), "cuda");
  EXPECT_EQ(cl.get_int_list("P", {}), (std::vector<int64_t>{2, 3, 4}));
  EXPECT_EQ(cl.get_double_list("spread", {}), (std::vector<double>{0.5, -2.0}));
  EXPECT_TRUE(cl.flag("json"));
  EXPECT_FALSE(cl.help_requested());
}

TEST(ToolsArgs, DefaultsWhenAbsent) {
  CommandLine cl = sample_command_line();
  std::string error;
  ASSERT_TRUE(cl.parse({}, &error));
  EXPECT_EQ(cl.get_int("tokens", 7), 7);
  EXPECT_FALSE(cl.has("eps"));
  EXPECT_FALSE(cl.flag("json"));
  EXPECT_EQ(cl.get_int_list("P", {2, 3}), (std::vector<int64_t>{2, 3}));
}

TEST(ToolsArgs, NegativeNumberIsAValueNotAFlag) {
  CommandLine cl = sample_command_line();
  std::string error;
  ASSERT_TRUE(cl.parse({"--eps", "-0.5"}, &error)) << error;
  EXPECT_DOUBLE_EQ(cl.get_double("eps", 0), -0.5);
}

TEST(ToolsArgs, HelpStopsParsing) {
  CommandLine cl = sample_command_line();
  std::string error;
  ASSERT_TRUE(cl.parse({"--tokens", "3", "--help", "--bogus"}, &error));
  EXPECT_TRUE(cl.help_requested());
  const std::string help = cl.help_text();
  EXPECT_NE(help.find("usage: taylor-attn test"), std::string::npos);
  EXPECT_NE(help.find("--tokens N"), std::string::npos);
}

TEST(ToolsArgs, UnknownFlag) { expect_parse_error({"--bogus", "1"}, "unknown option '--bogus'"); }
TEST(ToolsArgs, PositionalArgument) {
  expect_parse_error({"stray"}, "unexpected argument 'stray'");
}
TEST(ToolsArgs, SingleDashFlag) { expect_parse_error({"-t", "3"}, "unexpected argument"); }
TEST(ToolsArgs, MissingValueAtEnd) { expect_parse_error({"--tokens"}, "--tokens needs a value"); }
TEST(ToolsArgs, MissingValueBeforeNextFlag) {
  expect_parse_error({"--out", "--json"}, "--out needs a value");
}
TEST(ToolsArgs, BadNumberWord) {
  expect_parse_error({"--tokens", "abc"}, "'abc' is not an integer");
}
TEST(ToolsArgs, BadNumberTrailingJunk) {
  expect_parse_error({"--tokens", "12x"}, "not an integer");
}
TEST(ToolsArgs, BadNumberFractionForInteger) {
  expect_parse_error({"--tokens", "1.5"}, "not an integer");
}
TEST(ToolsArgs, BadNumberEmpty) { expect_parse_error({"--tokens="}, "not an integer"); }
TEST(ToolsArgs, NumberBeyondInt64) {
  expect_parse_error({"--tokens", "99999999999999999999"}, "not an integer");
}
TEST(ToolsArgs, NumberOutOfRange) { expect_parse_error({"--tokens", "0"}, "out of range"); }
TEST(ToolsArgs, BadDouble) { expect_parse_error({"--eps", "1e-6x"}, "not a number"); }
TEST(ToolsArgs, NanIsNotANumber) { expect_parse_error({"--eps", "nan"}, "not a number"); }
TEST(ToolsArgs, InfinityIsNotANumber) { expect_parse_error({"--eps", "inf"}, "not a number"); }
TEST(ToolsArgs, BadBooleanYes) { expect_parse_error({"--enabled", "yes"}, "true or false"); }
TEST(ToolsArgs, BadBooleanOne) { expect_parse_error({"--enabled", "1"}, "true or false"); }
TEST(ToolsArgs, BadBooleanCapitalised) {
  expect_parse_error({"--enabled", "True"}, "true or false");
}
TEST(ToolsArgs, BadChoice) { expect_parse_error({"--device", "tpu"}, "one of cpu, cuda"); }
TEST(ToolsArgs, ListWithEmptyEntry) { expect_parse_error({"--P", "2,,3"}, "empty entry"); }
TEST(ToolsArgs, ListWithTrailingComma) { expect_parse_error({"--P", "2,3,"}, "empty entry"); }
TEST(ToolsArgs, ListWithBadEntry) { expect_parse_error({"--P", "2,x"}, "'x' is not"); }
TEST(ToolsArgs, ListEntryOutOfRange) { expect_parse_error({"--P", "2,17"}, "out of range"); }
TEST(ToolsArgs, DoubleListWithBadEntry) { expect_parse_error({"--spread", "1,two"}, "'two'"); }
TEST(ToolsArgs, FlagGivenTwice) { expect_parse_error({"--json", "--json"}, "given twice"); }
TEST(ToolsArgs, SwitchWithValue) { expect_parse_error({"--json=1"}, "takes no value"); }

TEST(ToolsArgs, RequiredFlagMissing) {
  CommandLine cl("taylor-attn x", "x");
  cl.option("head-dim", ArgType::Int, "D", "d").require();
  std::string error;
  EXPECT_FALSE(cl.parse({}, &error));
  EXPECT_NE(error.find("missing required option --head-dim"), std::string::npos) << error;
}

TEST(ToolsArgs, StrictConversions) {
  int64_t i = 0;
  double d = 0;
  bool b = false;
  EXPECT_TRUE(ta_cli::parse_int64("+42", &i));
  EXPECT_EQ(i, 42);
  EXPECT_TRUE(ta_cli::parse_int64("-9223372036854775808", &i));
  EXPECT_FALSE(ta_cli::parse_int64(" 1", &i));
  EXPECT_FALSE(ta_cli::parse_int64("0x10", &i));
  EXPECT_TRUE(ta_cli::parse_double("1e-3", &d));
  EXPECT_DOUBLE_EQ(d, 1e-3);
  EXPECT_FALSE(ta_cli::parse_double("1e999", &d));
  EXPECT_FALSE(ta_cli::parse_double("", &d));
  EXPECT_TRUE(ta_cli::parse_bool("true", &b));
  EXPECT_TRUE(b);
  EXPECT_FALSE(ta_cli::parse_bool("", &b));
}

// ------------------------------------------------------------------ config flags

CommandLine config_command_line() {
  CommandLine cl("taylor-attn run", "run");
  ta_cli::add_config_options(cl);
  return cl;
}

TEST(ToolsConfigFlags, EveryConfigFieldHasItsFlag) {
  const std::string help = config_command_line().help_text();
  for (const char *flag : {"--enabled",
                           "--P",
                           "--min-tokens",
                           "--max-feature-dim-R",
                           "--sub-head-blocks",
                           "--qk-normalize",
                           "--scale-mul",
                           "--scale",
                           "--block-size-q",
                           "--block-size-k",
                           "--eps",
                           "--fallback-on-negative",
                           "--allow-cross-attention",
                           "--max-head-dim",
                           "--force-fp32",
                           "--early-probe",
                           "--probe-samples",
                           "--denom-fp32",
                           "--quality-check",
                           "--quality-check-samples",
                           "--seed",
                           "--threads",
                           "--window-radius",
                           "--window-text-keys",
                           "--window-text-queries"}) {
    EXPECT_NE(help.find(std::string(flag) + " "), std::string::npos) << flag;
  }
}

TEST(ToolsConfigFlags, FlagsOverrideLibraryDefaults) {
  CommandLine cl = config_command_line();
  std::string error;
  ASSERT_TRUE(cl.parse({"--P", "3", "--min-tokens", "0", "--qk-normalize", "true", "--scale-mul",
                        "0.5", "--scale", "0.125", "--enabled", "false", "--seed", "77",
                        "--threads", "2", "--max-feature-dim-R", "1000", "--window-radius", "4",
                        "--window-text-keys", "false", "--window-text-queries", "false"},
                       &error))
      << error;
  ta_config config;
  ASSERT_TRUE(ta_cli::config_from_options(cl, &config, &error)) << error;
  EXPECT_EQ(config.P, 3);
  EXPECT_EQ(config.min_tokens, 0);
  EXPECT_EQ(config.qk_normalize, 1);
  EXPECT_DOUBLE_EQ(config.scale_mul, 0.5);
  EXPECT_DOUBLE_EQ(config.scale, 0.125);
  EXPECT_EQ(config.enabled, 0);
  EXPECT_EQ(config.seed, 77u);
  EXPECT_EQ(config.num_threads, 2);
  EXPECT_EQ(config.max_feature_dim_R, 1000);
  EXPECT_EQ(config.window_radius, 4);
  EXPECT_EQ(config.window_text_keys, 0);
  EXPECT_EQ(config.window_text_queries, 0);
  // Untouched fields keep the library defaults.
  ta_config defaults;
  std::memset(&defaults, 0, sizeof defaults);
  ta_config_defaults(&defaults);
  EXPECT_EQ(config.sub_head_blocks, defaults.sub_head_blocks);
  EXPECT_EQ(config.block_size_q, defaults.block_size_q);
  EXPECT_DOUBLE_EQ(config.eps, defaults.eps);
}

TEST(ToolsConfigFlags, OutOfRangeValueIsReportedByTheLibraryValidator) {
  CommandLine cl = config_command_line();
  std::string error;
  ASSERT_TRUE(cl.parse({"--P", "0"}, &error)) << error;  // an int: the parser accepts it
  ta_config config;
  EXPECT_FALSE(ta_cli::config_from_options(cl, &config, &error));
  EXPECT_NE(error.find("invalid configuration"), std::string::npos) << error;
  EXPECT_EQ(error.find('\n'), std::string::npos);
}

TEST(ToolsConfigFlags, CommandOptionWithAConfigNameIsNotAppliedToTheConfig) {
  // check has its own --P (a list) next to the config's --threads: only --threads applies.
  CommandLine cl("taylor-attn check", "check");
  cl.option("P", ArgType::IntList, "LIST", "terms to try");
  ta_cli::add_config_options(cl, {"threads"});
  std::string error;
  ASSERT_TRUE(cl.parse({"--P", "2,3", "--threads", "1"}, &error)) << error;
  ta_config config;
  std::memset(&config, 0, sizeof config);
  ta_config_defaults(&config);
  ta_cli::apply_config_options(cl, &config);
  EXPECT_EQ(config.P, 4);
  EXPECT_EQ(config.num_threads, 1);
}

TEST(ToolsConfigFlags, WindowFlagsDefaultToTheLibrarysAndAreValidatedByIt) {
  CommandLine cl = config_command_line();
  std::string error;
  ASSERT_TRUE(cl.parse({}, &error)) << error;
  ta_config config;
  ASSERT_TRUE(ta_cli::config_from_options(cl, &config, &error)) << error;
  EXPECT_EQ(config.window_radius, 0);
  EXPECT_EQ(config.window_text_keys, 1);
  EXPECT_EQ(config.window_text_queries, 1);
  EXPECT_NE(cl.help_text().find("--window-text-keys true|false"), std::string::npos);

  CommandLine negative = config_command_line();
  ASSERT_TRUE(negative.parse({"--window-radius", "-1"}, &error)) << error;
  EXPECT_FALSE(ta_cli::config_from_options(negative, &config, &error));
  EXPECT_NE(error.find("window_radius"), std::string::npos) << error;

  CommandLine numeric_bool = config_command_line();
  EXPECT_FALSE(numeric_bool.parse({"--window-text-keys", "1"}, &error));
  EXPECT_NE(error.find("true or false"), std::string::npos) << error;
}

TEST(ToolsConfigFlags, Int32FieldRejectsValuesThatWouldTruncate) {
  CommandLine cl = config_command_line();
  std::string error;
  EXPECT_FALSE(cl.parse({"--P", "4294967299"}, &error));  // would wrap to 3 in int32
  EXPECT_NE(error.find("out of range"), std::string::npos) << error;
}

TEST(ToolsConfigFlags, ConfigJsonNamesEveryField) {
  ta_config config;
  std::memset(&config, 0, sizeof config);
  ta_config_defaults(&config);
  ta_cli::JsonWriter json;
  ta_cli::write_config_json(json, config);
  const std::string text = json.str();
  for (const char *key : {"\"enabled\": true", "\"P\": 4", "\"max_feature_dim_R\": 370000",
                          "\"sub_head_blocks\": 4", "\"num_threads\": 0", "\"seed\": 0",
                          "\"window_radius\": 0", "\"window_text_keys\": true",
                          "\"window_text_queries\": true"}) {
    EXPECT_NE(text.find(key), std::string::npos) << key << " in " << text;
  }
}

// ------------------------------------------------------------ layout specs

ta_token_layout parse_ok(const std::string &spec) {
  ta_token_layout layout;
  std::memset(&layout, 0xCD, sizeof layout);
  std::string error;
  EXPECT_TRUE(ta_cli::parse_layout_spec(spec, &layout, &error)) << spec << ": " << error;
  return layout;
}

void expect_layout_error(const std::string &spec, const std::string &expect) {
  ta_token_layout layout;
  std::memset(&layout, 0, sizeof layout);
  layout.text_tokens = 99;
  std::string error;
  EXPECT_FALSE(ta_cli::parse_layout_spec(spec, &layout, &error)) << spec;
  EXPECT_EQ(error.find('\n'), std::string::npos);
  EXPECT_NE(error.find(expect), std::string::npos) << spec << ": " << error;
  EXPECT_EQ(layout.text_tokens, 99) << spec << ": a failed parse must leave the layout alone";
}

TEST(ToolsLayoutSpec, TextAndOneGrid_text256_grid64x64) {
  const ta_token_layout l = parse_ok("text=256,grid=64x64");
  EXPECT_EQ(l.text_tokens, 256);
  EXPECT_EQ(l.num_grids, 1);
  EXPECT_EQ(l.grid_height[0], 64);
  EXPECT_EQ(l.grid_width[0], 64);
  EXPECT_EQ(ta_cli::layout_tokens(l), 256 + 4096);
  EXPECT_EQ(ta_cli::layout_spec_text(l), "text=256,grid=64x64");
}

TEST(ToolsLayoutSpec, TwoGridsKeepTheirOrder_text512_grid64x64_grid32x48) {
  const ta_token_layout l = parse_ok("text=512,grid=64x64,grid=32x48");
  EXPECT_EQ(l.num_grids, 2);
  EXPECT_EQ(l.grid_height[1], 32);
  EXPECT_EQ(l.grid_width[1], 48);
  EXPECT_EQ(ta_cli::layout_tokens(l), 512 + 4096 + 32 * 48);
  EXPECT_EQ(ta_cli::layout_spec_text(l), "text=512,grid=64x64,grid=32x48");
}

TEST(ToolsLayoutSpec, GridOnlyTextOnlyAndTextAfterGrids) {
  ta_token_layout l = parse_ok("grid=3x5");
  EXPECT_EQ(l.text_tokens, 0);
  EXPECT_EQ(ta_cli::layout_spec_text(l), "grid=3x5");
  l = parse_ok("text=7");
  EXPECT_EQ(l.num_grids, 0);
  EXPECT_EQ(ta_cli::layout_tokens(l), 7);
  EXPECT_EQ(ta_cli::layout_spec_text(l), "text=7");
  l = parse_ok("grid=2x2,text=3");  // text always leads the tokens, wherever it is written
  EXPECT_EQ(ta_cli::layout_spec_text(l), "text=3,grid=2x2");
}

TEST(ToolsLayoutSpec, EightGridsAreTheLimit) {
  std::string spec = "text=1";
  for (int g = 0; g < TA_MAX_GRIDS; ++g) spec += ",grid=2x3";
  EXPECT_EQ(parse_ok(spec).num_grids, TA_MAX_GRIDS);
  expect_layout_error(spec + ",grid=2x3", "more than 8 grids");
}

TEST(ToolsLayoutSpec, BadSpecsNameTheItem) {
  expect_layout_error("", "empty layout");
  expect_layout_error("text=", "'text=': text tokens must be an integer >= 0");
  expect_layout_error("text=-1,grid=2x2", "'text=-1'");
  expect_layout_error("text=1,text=2", "text= given twice");
  expect_layout_error("grid=0x4", "'grid=0x4': a grid is HxW");
  expect_layout_error("grid=4", "'grid=4'");
  expect_layout_error("grid=4x", "'grid=4x'");
  expect_layout_error("grid=axb", "'grid=axb'");
  expect_layout_error("grid=2x2x2", "'grid=2x2x2'");
  expect_layout_error("image=2x2", "unknown item 'image=2x2'");
  expect_layout_error("text=1,", "empty item");
  expect_layout_error(",grid=2x2", "empty item");
  expect_layout_error("text=0", "has no tokens");
  expect_layout_error("grid=4294967296x4294967296", "overflows 64 bits");
}

// ------------------------------------------------------------ support pieces

TEST(ToolsSupport, HalfConversionRoundsToNearestEven) {
  EXPECT_EQ(ta_cli::float_to_half(1.0f), 0x3c00);
  EXPECT_EQ(ta_cli::float_to_half(-2.0f), 0xc000);
  EXPECT_EQ(ta_cli::float_to_half(65504.0f), 0x7bff);
  EXPECT_EQ(ta_cli::float_to_half(65520.0f), 0x7c00);                // rounds up to Inf
  EXPECT_EQ(ta_cli::float_to_half(5.960464477539063e-08f), 0x0001);  // smallest subnormal
  EXPECT_EQ(ta_cli::float_to_half(1e-9f), 0x0000);
  EXPECT_EQ(ta_cli::float_to_half(1.0f + 0x1.0p-11f), 0x3c00);  // tie -> even
  EXPECT_EQ(ta_cli::float_to_half(1.0f + 0x1.8p-11f), 0x3c01);
  for (uint32_t h = 0; h < 0x7c00; ++h) {  // every finite positive half survives a round trip
    ASSERT_EQ(ta_cli::float_to_half(ta_cli::half_to_float(static_cast<uint16_t>(h))), h) << h;
  }
}

TEST(ToolsSupport, JsonWriterFormatsNestedValues) {
  ta_cli::JsonWriter json;
  json.begin_object();
  json.field_int("feature_dim", 366145);
  json.field_num("ratio", 0.5);
  json.field_num("nan", std::nan(""));
  json.field("text", "a \"quoted\"\nline");
  json.key("list");
  json.begin_array();
  json.integer(1);
  json.boolean(false);
  json.end_array();
  json.key("empty");
  json.begin_object();
  json.end_object();
  json.end_object();
  EXPECT_EQ(json.str(),
            "{\n  \"feature_dim\": 366145,\n  \"ratio\": 0.5,\n  \"nan\": null,\n"
            "  \"text\": \"a \\\"quoted\\\"\\nline\",\n  \"list\": [\n    1,\n    false\n  ],\n"
            "  \"empty\": {}\n}\n");
}

TEST(ToolsSupport, HumanUnits) {
  EXPECT_EQ(ta_cli::format_count(366145), "366,145");
  EXPECT_EQ(ta_cli::format_count(12), "12");
  EXPECT_EQ(ta_cli::format_bytes(189e6), "189 MB");
  EXPECT_EQ(ta_cli::format_flops(19.9e9), "19.9 GFLOP");
  EXPECT_EQ(ta_cli::format_ratio(80.1), "80.1x");
}

}  // namespace
