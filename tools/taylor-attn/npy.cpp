// npy.cpp - see npy.h. Format reference: numpy/lib/format.py (NEP 1).
//
// Layout: "\x93NUMPY", major, minor, header length (uint16 LE for 1.0, uint32 LE for 2.0
// and 3.0), then a Python dict literal such as
//   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
// padded with spaces and a final '\n', then the raw elements.
// The header is parsed as a small Python-literal subset instead of pattern-matched, so key
// order, spacing and trailing commas written by other writers are all accepted.
#include "npy.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>

namespace ta_npy {
namespace {

constexpr unsigned char kMagic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
// numpy aligns the start of the data to 64 bytes so it can be memory-mapped.
constexpr size_t kHeaderAlign = 64;
// Nested tuples deeper than this are garbage, not a shape; bounds the parser's recursion.
constexpr int kMaxNesting = 8;

// ---- A tiny Python literal model: exactly what .npy headers contain. ----
struct Value {
  // A dict entry. Declared here, defined below: std::vector accepts an incomplete element
  // type, std::pair<std::string, Value> inside Value does not (clang rejects it).
  struct Entry;
  enum class Kind { String, Bool, None, Int, Tuple, List, Dict } kind = Kind::None;
  std::string text;            // String
  bool boolean = false;        // Bool
  int64_t integer = 0;         // Int (valid when !int_overflow)
  bool int_overflow = false;   // Int that does not fit in int64
  std::vector<Value> items;    // Tuple, List
  std::vector<Entry> entries;  // Dict
};

struct Value::Entry {
  std::string key;
  Value value;
};

// Header text quoted in a message: control and non-ASCII bytes escaped as \xNN (the
// message stays one printable line even for a hostile file), long text cut short.
std::string quoted(std::string_view text) {
  constexpr size_t kMaxShown = 48;
  std::string out = "'";
  for (size_t i = 0; i < text.size() && i < kMaxShown; ++i) {
    const auto u = static_cast<unsigned char>(text[i]);
    if (u >= 0x20 && u < 0x7f && u != '\\') {
      out.push_back(text[i]);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", u);
      out += buf;
    }
  }
  if (text.size() > kMaxShown) out += "...";
  return out + "'";
}

const char *kind_name(Value::Kind kind) {
  switch (kind) {
    case Value::Kind::String:
      return "a string";
    case Value::Kind::Bool:
      return "a boolean";
    case Value::Kind::None:
      return "None";
    case Value::Kind::Int:
      return "an integer";
    case Value::Kind::Tuple:
      return "a tuple";
    case Value::Kind::List:
      return "a list";
    case Value::Kind::Dict:
      return "a dict";
  }
  return "a value";
}

class LiteralParser {
 public:
  explicit LiteralParser(std::string_view text) : text_(text) {}

  // Parses the whole header: one dict, then only whitespace (the padding).
  bool parse_header(Value *out, std::string *error) {
    skip_space();
    if (!parse_value(out, 0)) {
      *error = error_;
      return false;
    }
    skip_space();
    if (pos_ != text_.size()) {
      *error = where("unexpected text after the header dict");
      return false;
    }
    if (out->kind != Value::Kind::Dict) {
      *error = std::string("header is ") + kind_name(out->kind) + ", expected a dict";
      return false;
    }
    return true;
  }

 private:
  std::string where(const std::string &what) const {
    return what + " at header offset " + std::to_string(pos_);
  }
  bool fail(const std::string &what) {
    error_ = where(what);
    return false;
  }
  bool at_end() const { return pos_ >= text_.size(); }
  char peek() const { return at_end() ? '\0' : text_[pos_]; }
  void skip_space() {
    while (!at_end() && (peek() == ' ' || peek() == '\t' || peek() == '\n' || peek() == '\r')) {
      ++pos_;
    }
  }
  bool consume_word(std::string_view word) {
    if (text_.substr(pos_, word.size()) != word) return false;
    // A word must end here: "Truex" is not True.
    size_t end = pos_ + word.size();
    if (end < text_.size()) {
      char c = text_[end];
      if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_') {
        return false;
      }
    }
    pos_ = end;
    return true;
  }

  bool parse_value(Value *out, int depth) {
    if (depth > kMaxNesting) return fail("header nests too deeply");
    skip_space();
    if (at_end()) return fail("header ends where a value was expected");
    char c = peek();
    if (c == '{') return parse_dict(out, depth);
    if (c == '(') return parse_sequence(out, depth, ')');
    if (c == '[') return parse_sequence(out, depth, ']');
    if (c == '\'' || c == '"') return parse_string(out);
    // Python 2 era writers emitted u'<f4'; b'' is accepted for symmetry.
    if ((c == 'u' || c == 'b') && pos_ + 1 < text_.size() &&
        (text_[pos_ + 1] == '\'' || text_[pos_ + 1] == '"')) {
      ++pos_;
      return parse_string(out);
    }
    if (c == '-' || c == '+' || (c >= '0' && c <= '9')) return parse_int(out);
    if (consume_word("True")) {
      out->kind = Value::Kind::Bool;
      out->boolean = true;
      return true;
    }
    if (consume_word("False")) {
      out->kind = Value::Kind::Bool;
      out->boolean = false;
      return true;
    }
    if (consume_word("None")) {
      out->kind = Value::Kind::None;
      return true;
    }
    return fail(std::string("unexpected character '") + printable(c) + "'");
  }

  static std::string printable(char c) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f) return std::string(1, c);
    char buf[8];
    std::snprintf(buf, sizeof buf, "\\x%02x", u);
    return buf;
  }

  bool parse_string(Value *out) {
    char quote = peek();
    ++pos_;
    std::string s;
    while (true) {
      if (at_end()) return fail("unterminated string");
      char c = text_[pos_++];
      if (c == quote) break;
      if (c == '\n') return fail("newline inside a string");
      if (c == '\\') {
        if (at_end()) return fail("unterminated string");
        c = text_[pos_++];  // keep the escaped character itself; descr strings need no more
      }
      s.push_back(c);
    }
    out->kind = Value::Kind::String;
    out->text = std::move(s);
    return true;
  }

  bool parse_int(Value *out) {
    bool negative = false;
    if (peek() == '-' || peek() == '+') {
      negative = peek() == '-';
      ++pos_;
      skip_space();
    }
    if (!(peek() >= '0' && peek() <= '9')) return fail("expected digits");
    // Accumulate as a negative number so INT64_MIN is representable; flag overflow
    // instead of wrapping so absurd shapes are reported as such.
    int64_t acc = 0;
    bool overflow = false;
    while (peek() >= '0' && peek() <= '9') {
      int digit = peek() - '0';
      ++pos_;
      if (overflow) continue;
      if (__builtin_mul_overflow(acc, int64_t{10}, &acc) ||
          __builtin_sub_overflow(acc, int64_t{digit}, &acc)) {
        overflow = true;
      }
    }
    if (!overflow && !negative) {
      if (acc == INT64_MIN) {
        overflow = true;
      } else {
        acc = -acc;
      }
    }
    // Python 2 numpy wrote longs as "3L".
    if (peek() == 'L' || peek() == 'l') ++pos_;
    out->kind = Value::Kind::Int;
    out->integer = overflow ? 0 : acc;
    out->int_overflow = overflow;
    return true;
  }

  bool parse_sequence(Value *out, int depth, char close) {
    ++pos_;  // '(' or '['
    std::vector<Value> items;
    bool saw_comma = false;
    skip_space();
    while (peek() != close) {
      Value item;
      if (!parse_value(&item, depth + 1)) return false;
      items.push_back(std::move(item));
      skip_space();
      if (peek() == ',') {
        ++pos_;
        saw_comma = true;
        skip_space();
      } else if (peek() != close) {
        return fail(at_end() ? std::string("header ends inside a sequence")
                             : std::string("expected ',' or '") + close + "'");
      }
    }
    ++pos_;  // close
    if (close == ')' && items.size() == 1 && !saw_comma) {
      // Python: "(3)" is the integer 3, not a tuple.
      *out = std::move(items[0]);
      return true;
    }
    out->kind = close == ')' ? Value::Kind::Tuple : Value::Kind::List;
    out->items = std::move(items);
    return true;
  }

  bool parse_dict(Value *out, int depth) {
    ++pos_;  // '{'
    out->kind = Value::Kind::Dict;
    skip_space();
    while (peek() != '}') {
      if (at_end()) return fail("header ends inside the dict");
      Value key;
      if (peek() != '\'' && peek() != '"') return fail("dict key is not a string");
      if (!parse_string(&key)) return false;
      for (const auto &entry : out->entries) {
        if (entry.key == key.text) return fail("duplicate key " + quoted(key.text));
      }
      skip_space();
      if (peek() != ':') return fail("expected ':' after key " + quoted(key.text));
      ++pos_;
      Value value;
      if (!parse_value(&value, depth + 1)) return false;
      out->entries.push_back(Value::Entry{key.text, std::move(value)});
      skip_space();
      if (peek() == ',') {
        ++pos_;
        skip_space();
      } else if (peek() != '}') {
        return fail(at_end() ? std::string("header ends inside the dict")
                             : std::string("expected ',' or '}'"));
      }
    }
    ++pos_;
    return true;
  }

  std::string_view text_;
  size_t pos_ = 0;
  std::string error_;
};

// Maps a descr string to a supported dtype, or explains why it is not one.
bool parse_descr(const std::string &descr, DType *dtype, std::string *error) {
  static const struct {
    const char *kind_size;
    DType dtype;
  } kKnown[] = {{"f2", DType::F16}, {"f4", DType::F32}, {"f8", DType::F64}, {"b1", DType::Bool}};
  const std::string supported = " (supported: <f2, <f4, <f8, |b1)";
  if (descr.size() < 2) {
    *error = "unsupported dtype " + quoted(descr) + supported;
    return false;
  }
  char order = descr[0];
  bool has_order = order == '<' || order == '>' || order == '|' || order == '=';
  std::string rest = has_order ? descr.substr(1) : descr;
  for (const auto &known : kKnown) {
    if (rest != known.kind_size) continue;
    size_t size = dtype_size(known.dtype);
    if (size == 1 || order == '<') {
      *dtype = known.dtype;
      return true;
    }
    if (order == '>') {
      *error = "big-endian dtype '" + descr +
               "' is not supported; save little-endian data (arr.astype('<" + rest + "'))";
    } else {
      *error = "dtype '" + descr + "' does not state little-endian byte order" + supported;
    }
    return false;
  }
  *error = "unsupported dtype " + quoted(descr) + supported;
  return false;
}

uint32_t read_le(const unsigned char *p, int bytes) {
  uint32_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

const char *dtype_descr(DType dtype) {
  switch (dtype) {
    case DType::F16:
      return "<f2";
    case DType::F32:
      return "<f4";
    case DType::F64:
      return "<f8";
    case DType::Bool:
      return "|b1";
  }
  return "?";
}

const char *dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F16:
      return "f16";
    case DType::F32:
      return "f32";
    case DType::F64:
      return "f64";
    case DType::Bool:
      return "bool";
  }
  return "?";
}

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::F16:
      return 2;
    case DType::F32:
      return 4;
    case DType::F64:
      return 8;
    case DType::Bool:
      return 1;
  }
  return 0;
}

int64_t Array::element_count() const {
  int64_t n = 1;
  for (int64_t extent : shape) {
    if (extent < 0 || __builtin_mul_overflow(n, extent, &n)) return -1;
  }
  return n;
}

bool checked_byte_size(const std::vector<int64_t> &shape, DType dtype, int64_t *bytes) {
  int64_t n = static_cast<int64_t>(dtype_size(dtype));
  for (int64_t extent : shape) {
    if (extent < 0 || __builtin_mul_overflow(n, extent, &n)) return false;
  }
  *bytes = n;
  return true;
}

std::string shape_string(const std::vector<int64_t> &shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() == 1) s += ",";
  return s + ")";
}

bool parse_npy(const unsigned char *bytes, size_t size, Array *out, std::string *error) {
  if (size < 8 || std::memcmp(bytes, kMagic, sizeof kMagic) != 0) {
    *error = size < 8 ? "not a .npy file: only " + std::to_string(size) + " bytes"
                      : "not a .npy file: bad magic (expected \\x93NUMPY)";
    return false;
  }
  int major = bytes[6];
  int minor = bytes[7];
  if (!((major == 1 || major == 2 || major == 3) && minor == 0)) {
    *error = "unsupported .npy format version " + std::to_string(major) + "." +
             std::to_string(minor) + " (supported: 1.0, 2.0, 3.0)";
    return false;
  }
  size_t len_bytes = major == 1 ? 2 : 4;
  size_t prefix = 8 + len_bytes;
  if (size < prefix) {
    *error = "truncated .npy header: file ends inside the header length field";
    return false;
  }
  size_t header_len = read_le(bytes + 8, static_cast<int>(len_bytes));
  if (header_len > size - prefix) {
    *error = "truncated .npy header: header length " + std::to_string(header_len) +
             " runs past the end of the file (" + std::to_string(size - prefix) +
             " bytes after the length field)";
    return false;
  }
  std::string_view header(reinterpret_cast<const char *>(bytes + prefix), header_len);

  Value dict;
  std::string parse_error;
  if (!LiteralParser(header).parse_header(&dict, &parse_error)) {
    *error = "malformed .npy header: " + parse_error;
    return false;
  }
  const Value *descr = nullptr, *fortran = nullptr, *shape = nullptr;
  for (const auto &[key, value] : dict.entries) {
    if (key == "descr") {
      descr = &value;
    } else if (key == "fortran_order") {
      fortran = &value;
    } else if (key == "shape") {
      shape = &value;
    } else {
      *error = "malformed .npy header: unexpected key " + quoted(key);
      return false;
    }
  }
  if (!descr || !fortran || !shape) {
    *error = std::string("malformed .npy header: missing key '") +
             (!descr     ? "descr"
              : !fortran ? "fortran_order"
                         : "shape") +
             "'";
    return false;
  }
  if (descr->kind != Value::Kind::String) {
    *error = descr->kind == Value::Kind::List
                 ? "unsupported dtype: structured arrays are not supported"
                 : std::string("malformed .npy header: 'descr' is ") + kind_name(descr->kind);
    return false;
  }
  DType dtype;
  if (!parse_descr(descr->text, &dtype, error)) return false;
  if (fortran->kind != Value::Kind::Bool) {
    *error = std::string("malformed .npy header: 'fortran_order' is ") + kind_name(fortran->kind);
    return false;
  }
  if (shape->kind != Value::Kind::Tuple) {
    *error = std::string("malformed .npy header: 'shape' is ") + kind_name(shape->kind) +
             ", expected a tuple";
    return false;
  }
  if (shape->items.size() > kMaxDims) {
    *error = "malformed .npy header: " + std::to_string(shape->items.size()) +
             " dimensions (at most " + std::to_string(kMaxDims) + ")";
    return false;
  }
  std::vector<int64_t> dims;
  for (const Value &item : shape->items) {
    if (item.kind != Value::Kind::Int) {
      *error = std::string("malformed .npy header: shape entry is ") + kind_name(item.kind);
      return false;
    }
    if (item.int_overflow) {
      *error = "malformed .npy header: shape entry does not fit in 64 bits";
      return false;
    }
    if (item.integer < 0) {
      *error =
          "malformed .npy header: negative extent " + std::to_string(item.integer) + " in shape";
      return false;
    }
    dims.push_back(item.integer);
  }
  // Fortran order only changes the layout when two or more axes are longer than 1;
  // 0-d and 1-d arrays are stored identically either way.
  if (fortran->boolean) {
    int long_axes = 0;
    for (int64_t e : dims) long_axes += e > 1;
    if (long_axes > 1) {
      *error =
          "Fortran-order (column-major) arrays are not supported; save "
          "np.ascontiguousarray(arr) instead";
      return false;
    }
  }
  int64_t expected;
  if (!checked_byte_size(dims, dtype, &expected)) {
    *error = "shape " + shape_string(dims) + " of " + dtype_name(dtype) +
             " does not fit in 64-bit byte counts";
    return false;
  }
  size_t data_offset = prefix + header_len;
  size_t present = size - data_offset;
  if (static_cast<uint64_t>(expected) != present) {
    *error = std::string(static_cast<uint64_t>(expected) > present ? "truncated" : "oversized") +
             " .npy data: shape " + shape_string(dims) + " of " + dtype_name(dtype) + " needs " +
             std::to_string(expected) + " bytes, the file holds " + std::to_string(present);
    return false;
  }
  out->dtype = dtype;
  out->shape = std::move(dims);
  out->data.assign(bytes + data_offset, bytes + size);
  return true;
}

bool read_npy_file(const std::string &path, Array *out, std::string *error) {
  std::unique_ptr<std::FILE, int (*)(std::FILE *)> file(std::fopen(path.c_str(), "rb"),
                                                        &std::fclose);
  if (!file) {
    *error = path + ": cannot open: " + std::strerror(errno);
    return false;
  }
  // Read to the end instead of trusting a size query, so pipes work and a file that
  // shrinks while being read cannot make us read past what we got.
  std::vector<unsigned char> bytes;
  unsigned char chunk[1 << 16];
  while (true) {
    size_t got = std::fread(chunk, 1, sizeof chunk, file.get());
    bytes.insert(bytes.end(), chunk, chunk + got);
    if (got < sizeof chunk) break;
  }
  if (std::ferror(file.get())) {
    *error = path + ": read error: " + std::strerror(errno);
    return false;
  }
  std::string why;
  if (!parse_npy(bytes.data(), bytes.size(), out, &why)) {
    *error = path + ": " + why;
    return false;
  }
  return true;
}

bool encode_npy(const Array &array, std::vector<unsigned char> *bytes, std::string *error) {
  int64_t expected;
  if (!checked_byte_size(array.shape, array.dtype, &expected)) {
    *error = "cannot write shape " + shape_string(array.shape) + ": invalid extents";
    return false;
  }
  if (static_cast<uint64_t>(expected) != array.data.size()) {
    *error = "cannot write shape " + shape_string(array.shape) + " of " + dtype_name(array.dtype) +
             ": data holds " + std::to_string(array.data.size()) + " bytes, the shape needs " +
             std::to_string(expected);
    return false;
  }
  std::string dict = std::string("{'descr': '") + dtype_descr(array.dtype) +
                     "', 'fortran_order': False, 'shape': " + shape_string(array.shape) + ", }";
  // Version 1.0 stores the header length in 16 bits; longer headers need 2.0.
  int major = 1;
  size_t prefix = 10;
  size_t total = prefix + dict.size() + 1;  // + '\n'
  size_t padded = (total + kHeaderAlign - 1) / kHeaderAlign * kHeaderAlign;
  if (padded - prefix > 0xffff) {
    major = 2;
    prefix = 12;
    total = prefix + dict.size() + 1;
    padded = (total + kHeaderAlign - 1) / kHeaderAlign * kHeaderAlign;
  }
  size_t header_len = padded - prefix;
  dict.append(header_len - dict.size() - 1, ' ');
  dict.push_back('\n');

  bytes->clear();
  bytes->reserve(padded + array.data.size());
  bytes->insert(bytes->end(), kMagic, kMagic + sizeof kMagic);
  bytes->push_back(static_cast<unsigned char>(major));
  bytes->push_back(0);
  for (size_t i = 0; i < prefix - 8; ++i) {
    bytes->push_back(static_cast<unsigned char>((header_len >> (8 * i)) & 0xff));
  }
  bytes->insert(bytes->end(), dict.begin(), dict.end());
  bytes->insert(bytes->end(), array.data.begin(), array.data.end());
  return true;
}

bool write_npy_file(const std::string &path, const Array &array, std::string *error) {
  std::vector<unsigned char> bytes;
  if (!encode_npy(array, &bytes, error)) {
    *error = path + ": " + *error;
    return false;
  }
  std::FILE *file = std::fopen(path.c_str(), "wb");
  if (!file) {
    *error = path + ": cannot create: " + std::strerror(errno);
    return false;
  }
  size_t written = std::fwrite(bytes.data(), 1, bytes.size(), file);
  int write_errno = errno;
  bool closed = std::fclose(file) == 0;
  if (written != bytes.size() || !closed) {
    *error =
        path + ": write failed: " + std::strerror(written != bytes.size() ? write_errno : errno);
    return false;
  }
  return true;
}

}  // namespace ta_npy
