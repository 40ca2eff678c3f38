// npy.h - reader and writer for NumPy .npy files (format versions 1.0, 2.0, 3.0).
//
// Only what the CLI exchanges with Python is supported: little-endian f16, f32, f64 and
// bool arrays in C order. Everything a file claims is checked against the bytes that are
// actually there, so a truncated or hostile file yields an error message, never a crash.
// No dependency on the taylor-attention library: tests and other tools can link it alone.
#ifndef TAYLOR_ATTN_NPY_H_
#define TAYLOR_ATTN_NPY_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ta_npy {

enum class DType { F16, F32, F64, Bool };

// The descr string written to files: "<f2", "<f4", "<f8", "|b1".
const char *dtype_descr(DType dtype);
// Short name used in messages: "f16", "f32", "f64", "bool".
const char *dtype_name(DType dtype);
size_t dtype_size(DType dtype);

// numpy's own limit on dimensions (NPY_MAXDIMS); larger headers are rejected.
constexpr size_t kMaxDims = 64;

struct Array {
  DType dtype = DType::F32;
  std::vector<int64_t> shape;       // empty = scalar (one element)
  std::vector<unsigned char> data;  // little-endian elements in C order

  // Product of the extents; 1 for a scalar.
  int64_t element_count() const;
};

// shape product * itemsize as bytes, or false when an extent is negative or the
// product does not fit in int64 (never wraps).
bool checked_byte_size(const std::vector<int64_t> &shape, DType dtype, int64_t *bytes);

// "(2, 3)", "(3,)", "()".
std::string shape_string(const std::vector<int64_t> &shape);

// Parses a whole .npy image held in memory. On failure returns false and sets *error
// to one line naming the problem (and leaves *out unspecified).
bool parse_npy(const unsigned char *bytes, size_t size, Array *out, std::string *error);

// Reads a file; the message names the path.
bool read_npy_file(const std::string &path, Array *out, std::string *error);

// Serialises to format 1.0, or 2.0 when the header does not fit in 65535 bytes.
// Fails when data.size() does not match the shape.
bool encode_npy(const Array &array, std::vector<unsigned char> *bytes, std::string *error);

bool write_npy_file(const std::string &path, const Array &array, std::string *error);

}  // namespace ta_npy

#endif  // TAYLOR_ATTN_NPY_H_
