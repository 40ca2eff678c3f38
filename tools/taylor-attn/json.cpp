// json.cpp - see json.h.
#include "json.h"

#include <charconv>
#include <cmath>
#include <cstdio>

namespace ta_cli {

std::string json_escape(std::string_view text) {
  std::string s;
  s.reserve(text.size() + 2);
  for (char c : text) {
    switch (c) {
      case '"':
        s += "\\\"";
        break;
      case '\\':
        s += "\\\\";
        break;
      case '\n':
        s += "\\n";
        break;
      case '\r':
        s += "\\r";
        break;
      case '\t':
        s += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
          s += buf;
        } else {
          s.push_back(c);
        }
    }
  }
  return s;
}

void JsonWriter::newline_indent() {
  out_.push_back('\n');
  out_.append(2 * stack_.size(), ' ');
}

void JsonWriter::before_value() {
  if (after_key_) {
    after_key_ = false;
    return;
  }
  if (!stack_.empty()) {
    // Array element: separator and indent (objects do this in key()).
    if (stack_.back().count++ > 0) out_.push_back(',');
    newline_indent();
  }
}

void JsonWriter::key(std::string_view name) {
  if (stack_.back().count++ > 0) out_.push_back(',');
  newline_indent();
  out_ += '"' + json_escape(name) + "\": ";
  after_key_ = true;
}

void JsonWriter::begin_object() {
  before_value();
  out_.push_back('{');
  stack_.push_back({true, 0});
}

void JsonWriter::end_object() {
  bool empty = stack_.back().count == 0;
  stack_.pop_back();
  if (!empty) newline_indent();
  out_.push_back('}');
}

void JsonWriter::begin_array() {
  before_value();
  out_.push_back('[');
  stack_.push_back({false, 0});
}

void JsonWriter::end_array() {
  bool empty = stack_.back().count == 0;
  stack_.pop_back();
  if (!empty) newline_indent();
  out_.push_back(']');
}

void JsonWriter::string(std::string_view text) {
  before_value();
  out_ += '"' + json_escape(text) + '"';
}

void JsonWriter::integer(int64_t value) {
  before_value();
  out_ += std::to_string(value);
}

void JsonWriter::number(double value) {
  before_value();
  if (!std::isfinite(value)) {
    out_ += "null";
    return;
  }
  char buf[64];
  auto result = std::to_chars(buf, buf + sizeof buf, value);
  out_.append(buf, result.ptr);
}

void JsonWriter::boolean(bool value) {
  before_value();
  out_ += value ? "true" : "false";
}

void JsonWriter::null() {
  before_value();
  out_ += "null";
}

std::string JsonWriter::str() const { return stack_.empty() ? out_ + "\n" : out_; }

}  // namespace ta_cli
