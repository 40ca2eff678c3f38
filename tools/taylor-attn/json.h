// json.h - a small streaming JSON writer for the --json output of every command.
//
// Pretty-printed with two-space indents and "key": value pairs, so the output is readable
// and greppable. Non-finite doubles become null: JSON has no NaN or Inf, and a parser
// downstream should see "no value" rather than choke.
#ifndef TAYLOR_ATTN_JSON_H_
#define TAYLOR_ATTN_JSON_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ta_cli {

class JsonWriter {
 public:
  void begin_object();
  void end_object();
  void begin_array();
  void end_array();
  void key(std::string_view name);  // inside an object, before each value

  void string(std::string_view text);
  void integer(int64_t number);
  void number(double number);  // shortest round-trip form; null when not finite
  void boolean(bool value);
  void null();

  // key + value in one call, for the common case.
  void field(std::string_view name, std::string_view text) { key(name), string(text); }
  void field(std::string_view name, const char *text) { key(name), string(text); }
  void field_int(std::string_view name, int64_t value) { key(name), integer(value); }
  void field_num(std::string_view name, double value) { key(name), number(value); }
  void field_bool(std::string_view name, bool value) { key(name), boolean(value); }

  // The document so far, with a trailing newline once the outermost value is closed.
  std::string str() const;

 private:
  void before_value();
  void newline_indent();

  struct Level {
    bool object;
    int count;
  };
  std::string out_;
  std::vector<Level> stack_;
  bool after_key_ = false;
};

std::string json_escape(std::string_view text);

}  // namespace ta_cli

#endif  // TAYLOR_ATTN_JSON_H_
