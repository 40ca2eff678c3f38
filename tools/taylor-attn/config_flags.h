// config_flags.h - every ta_config field as a command-line flag, in one table.
//
// Flag names are the field names with dashes (--min-tokens for min_tokens); the exceptions
// are --threads (num_threads) and the --scale/--seed pair, which set the base scale and the
// sampling seed. Defaults shown in --help come from ta_config_defaults() at run time, so
// they cannot drift from the library.
#ifndef TAYLOR_ATTN_CONFIG_FLAGS_H_
#define TAYLOR_ATTN_CONFIG_FLAGS_H_

#include <string>

#include "args.h"
#include "json.h"
#include "taylor_attention/taylor_attention.h"

namespace ta_cli {

// Registers all config flags on a command.
void add_config_options(CommandLine &cl);

// Registers only the flags named (e.g. {"threads", "seed"}) for commands that set the rest
// themselves.
void add_config_options(CommandLine &cl, std::initializer_list<const char *> names);

// Applies every config flag the user gave on top of *config (start from
// ta_config_defaults). Only options registered by add_config_options count: a command's own
// option of the same name (check's --P list) is left alone. No validation here.
void apply_config_options(const CommandLine &cl, ta_config *config);

// ta_config_defaults + apply_config_options + ta_config_validate. On failure returns false
// with the library's message.
bool config_from_options(const CommandLine &cl, ta_config *config, std::string *error);

// Every field of the config under its C name.
void write_config_json(JsonWriter &json, const ta_config &config);

}  // namespace ta_cli

#endif  // TAYLOR_ATTN_CONFIG_FLAGS_H_
