// Fuzz target: the .npy reader of the CLI (tools/taylor-attn/npy.h).
//
// Input: the bytes of a would-be .npy file. Oracles beyond the sanitizers:
//  - a rejected file has a non-empty message of printable ASCII (one line, no raw header bytes);
//  - an accepted array is self-consistent (extents >= 0, data size = elements * itemsize);
//  - an accepted array survives encode_npy -> parse_npy unchanged (dtype, shape, bytes).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "npy.h"

namespace {

[[noreturn]] void oracle_failed(const char *what, const std::string &detail) {
  std::fprintf(stderr, "fuzz_npy oracle failed: %s: %s\n", what, detail.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  // Copy into an exact-size heap block so ASan catches a read one byte past the end
  // (libFuzzer's own buffer is exact-size too; this keeps that true under replay).
  std::vector<unsigned char> bytes(data, data + size);
  ta_npy::Array array;
  std::string error;
  if (!ta_npy::parse_npy(bytes.data(), bytes.size(), &array, &error)) {
    if (error.empty()) oracle_failed("rejected without a message", "");
    // One printable line (npy.h): hostile header bytes are escaped, never echoed raw.
    for (char ch : error) {
      const auto u = static_cast<unsigned char>(ch);
      if (u < 0x20 || u > 0x7e) oracle_failed("message holds a control or non-ASCII byte", error);
    }
    return 0;
  }
  int64_t expected = 0;
  if (!ta_npy::checked_byte_size(array.shape, array.dtype, &expected)) {
    oracle_failed("accepted shape overflows", ta_npy::shape_string(array.shape));
  }
  for (int64_t e : array.shape) {
    if (e < 0) oracle_failed("accepted a negative extent", ta_npy::shape_string(array.shape));
  }
  if (static_cast<uint64_t>(expected) != array.data.size()) {
    oracle_failed("data size differs from shape", std::to_string(array.data.size()) + " vs " + std::to_string(expected));
  }
  if (array.shape.size() > ta_npy::kMaxDims) oracle_failed("too many dims accepted", "");

  std::vector<unsigned char> encoded;
  if (!ta_npy::encode_npy(array, &encoded, &error)) oracle_failed("cannot re-encode an accepted array", error);
  ta_npy::Array again;
  if (!ta_npy::parse_npy(encoded.data(), encoded.size(), &again, &error)) {
    oracle_failed("re-encoded array does not parse", error);
  }
  if (again.dtype != array.dtype || again.shape != array.shape || again.data != array.data) {
    oracle_failed("round trip changed the array", ta_npy::shape_string(array.shape) + " -> " +
                                                      ta_npy::shape_string(again.shape));
  }
  return 0;
}
