// main.cpp - taylor-attn: the command-line face of the taylor-attention C API.
//
// One binary with modes (info, run, check, bench, demo), in the manner of ggml's
// test-backend-ops: it exercises the same C API users get and doubles as the bug-report
// tool. main only dispatches; every command reports its own errors. Nothing below throws
// on bad input, but allocation can fail on absurd sizes: that is caught here and reported
// as one line instead of an abort.
#include <cstdio>
#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <vector>

#include "cli_common.h"
#include "commands.h"
#include "taylor_attention/taylor_attention.h"

namespace {

struct Command {
  const char *name;
  int (*run)(const std::vector<std::string> &);
  const char *summary;
};

const Command kCommands[] = {
    {"info", ta_cli::cmd_info, "feature dimension, state memory and FLOPs of a configuration"},
    {"run", ta_cli::cmd_run, "Taylor attention on q, k, v from .npy files"},
    {"check", ta_cli::cmd_check, "accuracy against exact attention on synthetic inputs"},
    {"bench", ta_cli::cmd_bench, "time Taylor and exact attention"},
    {"demo", ta_cli::cmd_demo, "one Flux-shaped call: time, speed-up and error"},
};

void print_usage(std::FILE *to) {
  std::fprintf(to,
               "usage: taylor-attn <command> [options]\n\n"
               "Attention with a truncated Taylor expansion of exp (taylor-attention %s).\n\n"
               "commands:\n",
               ta_version_string());
  for (const auto &c : kCommands) std::fprintf(to, "  %-8s %s\n", c.name, c.summary);
  std::fprintf(to,
               "\n'taylor-attn <command> --help' lists a command's options; --json on any\n"
               "command prints machine-readable output.\n"
               "  --version   print the library version\n");
}

}  // namespace

int main(int argc, char **argv) {
  if (argc < 2) {
    print_usage(stderr);
    return ta_cli::kExitUsage;
  }
  const std::string command = argv[1];
  if (command == "--help" || command == "-h" || command == "help") {
    print_usage(stdout);
    return ta_cli::kExitOk;
  }
  if (command == "--version") {
    std::printf("taylor-attn %s (library ABI %d)\n", ta_version_string(), ta_abi_version());
    return ta_cli::kExitOk;
  }
  for (const auto &c : kCommands) {
    if (command != c.name) continue;
    const std::string program = std::string("taylor-attn ") + c.name;
    try {
      return c.run(std::vector<std::string>(argv + 2, argv + argc));
    } catch (const std::bad_alloc &) {
      return ta_cli::report_error(program, "out of host memory (the arrays are too large)",
                                  ta_cli::kExitFailure);
    } catch (const std::exception &e) {
      return ta_cli::report_error(program, std::string("internal error: ") + e.what(),
                                  ta_cli::kExitFailure);
    }
  }
  return ta_cli::report_error("taylor-attn",
                              "unknown command '" + command + "' (info, run, check, bench, demo)",
                              ta_cli::kExitUsage);
}
