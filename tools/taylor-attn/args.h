// args.h - the one command-line parser every taylor-attn command uses.
//
// Each command declares its options (name, type, help, default); parse() checks every value
// against its type at once, so a bad number or boolean is reported before any work starts and
// the typed getters afterwards cannot fail. Accepted forms: "--name value", "--name=value";
// switches ("--json") take no value; "--help"/"-h" is always accepted.
#ifndef TAYLOR_ATTN_ARGS_H_
#define TAYLOR_ATTN_ARGS_H_

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace ta_cli {

enum class ArgType {
  Switch,      // present or not, no value
  Int,         // decimal integer within [min_int, max_int]
  Double,      // finite decimal number
  Bool,        // true | false
  String,      // anything (file paths)
  Choice,      // one of `choices`
  IntList,     // comma-separated integers, each within [min_int, max_int]
  DoubleList,  // comma-separated finite numbers
};

struct OptionSpec {
  std::string name;  // without the leading "--"
  ArgType type = ArgType::String;
  std::string value_name;  // shown in help: "--tokens N"
  std::string help;
  std::string default_text;          // shown in help when not empty
  std::vector<std::string> choices;  // Choice only
  int64_t min_int = INT64_MIN;
  int64_t max_int = INT64_MAX;
  bool required = false;
  // Which module registered the option ("config" for config_flags.cpp), so a module applies
  // only its own flags even when a command reuses a name (check's --P is a list).
  std::string group;

  // Chainable setters: cl.option(...).defaults("4").range(1, 16).
  OptionSpec &defaults(std::string text) {
    default_text = std::move(text);
    return *this;
  }
  OptionSpec &range(int64_t lo, int64_t hi) {
    min_int = lo;
    max_int = hi;
    return *this;
  }
  OptionSpec &one_of(std::vector<std::string> values) {
    choices = std::move(values);
    return *this;
  }
  OptionSpec &require() {
    required = true;
    return *this;
  }
};

// Strict conversions, also used by tests: the whole string must be consumed.
bool parse_int64(std::string_view text, int64_t *value);
bool parse_double(std::string_view text, double *value);  // finite values only
bool parse_bool(std::string_view text, bool *value);      // "true" | "false"

class CommandLine {
 public:
  // `program` is "taylor-attn run"; `synopsis` is the one-line description for --help.
  CommandLine(std::string program, std::string synopsis);

  CommandLine &add(OptionSpec spec);
  // Adds an option and returns it for the chainable setters; the reference is valid only
  // until the next option is added.
  OptionSpec &option(std::string name, ArgType type, std::string value_name, std::string help);
  // Extra paragraph appended to --help (examples, notes).
  void set_epilog(std::string epilog) { epilog_ = std::move(epilog); }

  // argv holds the command's arguments only (no program or command name).
  // Returns false with a one-line message on an unknown flag, a missing or malformed
  // value, a repeated flag or a missing required flag. "--help" stops parsing and
  // succeeds with help_requested() set.
  bool parse(const std::vector<std::string> &argv, std::string *error);

  bool help_requested() const { return help_; }
  std::string help_text() const;
  const std::string &program() const { return program_; }

  bool has(const std::string &name) const;
  // The option's declaration, or nullptr when the command has none by that name.
  const OptionSpec *spec(const std::string &name) const { return find(name); }
  bool flag(const std::string &name) const;  // Switch
  int64_t get_int(const std::string &name, int64_t fallback) const;
  double get_double(const std::string &name, double fallback) const;
  bool get_bool(const std::string &name, bool fallback) const;
  std::string get_string(const std::string &name, const std::string &fallback) const;
  std::vector<int64_t> get_int_list(const std::string &name,
                                    const std::vector<int64_t> &fallback) const;
  std::vector<double> get_double_list(const std::string &name,
                                      const std::vector<double> &fallback) const;

 private:
  const OptionSpec *find(const std::string &name) const;
  bool check_value(const OptionSpec &spec, const std::string &value, std::string *error) const;

  std::string program_;
  std::string synopsis_;
  std::string epilog_;
  std::vector<OptionSpec> specs_;
  std::map<std::string, std::string> values_;
  bool help_ = false;
};

}  // namespace ta_cli

#endif  // TAYLOR_ATTN_ARGS_H_
