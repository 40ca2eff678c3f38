// args.cpp - see args.h.
#include "args.h"

#include <charconv>
#include <cmath>
#include <sstream>

namespace ta_cli {
namespace {

std::vector<std::string_view> split_commas(std::string_view text) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    size_t comma = text.find(',', start);
    parts.push_back(text.substr(start, comma == std::string_view::npos ? comma : comma - start));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return parts;
}

// 'text' in quotes. Built by append: `"'" + std::string(...)` trips a GCC 12 -Wrestrict
// false positive (GCC bug 105329).
std::string quoted(std::string_view text) {
  std::string s;
  s.reserve(text.size() + 2);
  s.push_back('\'');
  s.append(text);
  s.push_back('\'');
  return s;
}

std::string type_hint(const OptionSpec &spec) {
  switch (spec.type) {
    case ArgType::Int:
      return "an integer";
    case ArgType::Double:
      return "a number";
    case ArgType::Bool:
      return "true or false";
    case ArgType::IntList:
      return "a comma-separated list of integers";
    case ArgType::DoubleList:
      return "a comma-separated list of numbers";
    case ArgType::Choice: {
      std::string s = "one of";
      for (size_t i = 0; i < spec.choices.size(); ++i) s += (i ? ", " : " ") + spec.choices[i];
      return s;
    }
    default:
      return "a value";
  }
}

std::string range_text(const OptionSpec &spec) {
  if (spec.min_int != INT64_MIN && spec.max_int != INT64_MAX) {
    return "between " + std::to_string(spec.min_int) + " and " + std::to_string(spec.max_int);
  }
  if (spec.min_int != INT64_MIN) return "at least " + std::to_string(spec.min_int);
  return "at most " + std::to_string(spec.max_int);
}

}  // namespace

bool parse_int64(std::string_view text, int64_t *value) {
  if (!text.empty() && text[0] == '+') text.remove_prefix(1);
  if (text.empty()) return false;
  int64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size()) return false;
  *value = v;
  return true;
}

bool parse_double(std::string_view text, double *value) {
  if (!text.empty() && text[0] == '+') text.remove_prefix(1);
  if (text.empty()) return false;
  double v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(v)) return false;
  *value = v;
  return true;
}

bool parse_bool(std::string_view text, bool *value) {
  if (text == "true") {
    *value = true;
    return true;
  }
  if (text == "false") {
    *value = false;
    return true;
  }
  return false;
}

CommandLine::CommandLine(std::string program, std::string synopsis)
    : program_(std::move(program)), synopsis_(std::move(synopsis)) {}

CommandLine &CommandLine::add(OptionSpec spec) {
  specs_.push_back(std::move(spec));
  return *this;
}

OptionSpec &CommandLine::option(std::string name, ArgType type, std::string value_name,
                                std::string help) {
  OptionSpec spec;
  spec.name = std::move(name);
  spec.type = type;
  spec.value_name = std::move(value_name);
  spec.help = std::move(help);
  specs_.push_back(std::move(spec));
  return specs_.back();
}

const OptionSpec *CommandLine::find(const std::string &name) const {
  for (const auto &spec : specs_) {
    if (spec.name == name) return &spec;
  }
  return nullptr;
}

bool CommandLine::check_value(const OptionSpec &spec, const std::string &value,
                              std::string *error) const {
  auto bad = [&](const std::string &why) {
    *error = "--" + spec.name + ": " + why;
    return false;
  };
  auto check_int = [&](std::string_view item) {
    int64_t v;
    if (!parse_int64(item, &v)) {
      return bad(quoted(item) + " is not " + type_hint(spec));
    }
    if (v < spec.min_int || v > spec.max_int) {
      return bad(std::string(item) + " is out of range (" + range_text(spec) + ")");
    }
    return true;
  };
  auto check_double = [&](std::string_view item) {
    double v;
    if (!parse_double(item, &v)) {
      return bad(quoted(item) + " is not " + type_hint(spec));
    }
    return true;
  };
  switch (spec.type) {
    case ArgType::Switch:
    case ArgType::String:
      return true;
    case ArgType::Int:
      return check_int(value);
    case ArgType::Double:
      return check_double(value);
    case ArgType::Bool: {
      bool b;
      if (!parse_bool(value, &b)) return bad("'" + value + "' is not " + type_hint(spec));
      return true;
    }
    case ArgType::Choice:
      for (const auto &choice : spec.choices) {
        if (choice == value) return true;
      }
      return bad("'" + value + "' is not " + type_hint(spec));
    case ArgType::IntList:
    case ArgType::DoubleList:
      for (std::string_view item : split_commas(value)) {
        if (item.empty()) return bad("empty entry in list '" + value + "'");
        bool ok = spec.type == ArgType::IntList ? check_int(item) : check_double(item);
        if (!ok) return false;
      }
      return true;
  }
  return true;
}

bool CommandLine::parse(const std::vector<std::string> &argv, std::string *error) {
  values_.clear();
  help_ = false;
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string &arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      help_ = true;
      return true;
    }
    if (arg.size() < 3 || arg.compare(0, 2, "--") != 0) {
      *error = "unexpected argument '" + arg + "' (options start with --; see --help)";
      return false;
    }
    std::string name = arg.substr(2);
    std::string value;
    bool inline_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
      inline_value = true;
    }
    const OptionSpec *spec = find(name);
    if (!spec) {
      *error = "unknown option '--" + name + "' (see " + program_ + " --help)";
      return false;
    }
    if (values_.count(name)) {
      *error = "--" + name + " given twice";
      return false;
    }
    if (spec->type == ArgType::Switch) {
      if (inline_value) {
        *error = "--" + name + " takes no value";
        return false;
      }
    } else if (!inline_value) {
      // A following "--x" means the value was forgotten; negative numbers start with a
      // single '-' and are still taken as values.
      bool next_is_option = i + 1 < argv.size() && argv[i + 1].compare(0, 2, "--") == 0;
      if (i + 1 >= argv.size() || next_is_option) {
        *error = "--" + name + " needs a value (" + type_hint(*spec) + ")";
        return false;
      }
      value = argv[++i];
    }
    if (!check_value(*spec, value, error)) return false;
    values_[name] = value;
  }
  for (const auto &spec : specs_) {
    if (spec.required && !values_.count(spec.name)) {
      *error = "missing required option --" + spec.name + " (see " + program_ + " --help)";
      return false;
    }
  }
  return true;
}

std::string CommandLine::help_text() const {
  std::ostringstream out;
  out << "usage: " << program_;
  for (const auto &spec : specs_) {
    if (spec.required) out << " --" << spec.name << " " << spec.value_name;
  }
  out << " [options]\n\n" << synopsis_ << "\n\noptions:\n";
  for (const auto &spec : specs_) {
    std::string left = "  --" + spec.name;
    if (spec.type != ArgType::Switch) {
      left += " " + (spec.value_name.empty() ? std::string("X") : spec.value_name);
    }
    out << left;
    constexpr size_t kColumn = 30;
    if (left.size() + 2 > kColumn) {
      out << "\n" << std::string(kColumn, ' ');
    } else {
      out << std::string(kColumn - left.size(), ' ');
    }
    out << spec.help;
    if (spec.required) out << " (required)";
    if (!spec.default_text.empty()) out << " [default: " << spec.default_text << "]";
    out << "\n";
  }
  out << "  --help                      this text\n";
  if (!epilog_.empty()) out << "\n" << epilog_ << (epilog_.back() == '\n' ? "" : "\n");
  return out.str();
}

bool CommandLine::has(const std::string &name) const { return values_.count(name) != 0; }

bool CommandLine::flag(const std::string &name) const { return has(name); }

int64_t CommandLine::get_int(const std::string &name, int64_t fallback) const {
  auto it = values_.find(name);
  int64_t v;
  return it != values_.end() && parse_int64(it->second, &v) ? v : fallback;
}

double CommandLine::get_double(const std::string &name, double fallback) const {
  auto it = values_.find(name);
  double v;
  return it != values_.end() && parse_double(it->second, &v) ? v : fallback;
}

bool CommandLine::get_bool(const std::string &name, bool fallback) const {
  auto it = values_.find(name);
  bool v;
  return it != values_.end() && parse_bool(it->second, &v) ? v : fallback;
}

std::string CommandLine::get_string(const std::string &name, const std::string &fallback) const {
  auto it = values_.find(name);
  return it != values_.end() ? it->second : fallback;
}

std::vector<int64_t> CommandLine::get_int_list(const std::string &name,
                                               const std::vector<int64_t> &fallback) const {
  auto it = values_.find(name);
  if (it == values_.end()) return fallback;
  std::vector<int64_t> out;
  for (std::string_view item : split_commas(it->second)) {
    int64_t v;
    if (parse_int64(item, &v)) out.push_back(v);
  }
  return out;
}

std::vector<double> CommandLine::get_double_list(const std::string &name,
                                                 const std::vector<double> &fallback) const {
  auto it = values_.find(name);
  if (it == values_.end()) return fallback;
  std::vector<double> out;
  for (std::string_view item : split_commas(it->second)) {
    double v;
    if (parse_double(item, &v)) out.push_back(v);
  }
  return out;
}

}  // namespace ta_cli
