// commands.h - entry points of the taylor-attn commands. Each takes the arguments after the
// command name and returns the process exit code; none throws on bad input.
#ifndef TAYLOR_ATTN_COMMANDS_H_
#define TAYLOR_ATTN_COMMANDS_H_

#include <string>
#include <vector>

namespace ta_cli {

int cmd_info(const std::vector<std::string> &args);
int cmd_run(const std::vector<std::string> &args);
int cmd_check(const std::vector<std::string> &args);
int cmd_bench(const std::vector<std::string> &args);
int cmd_demo(const std::vector<std::string> &args);

}  // namespace ta_cli

#endif  // TAYLOR_ATTN_COMMANDS_H_
