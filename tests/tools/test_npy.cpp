// test_npy.cpp - the .npy reader/writer: round trips, headers written by other writers,
// and malformed files, each of which must give an error message and never crash.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "npy.h"

namespace {

using ta_npy::Array;
using ta_npy::DType;

// A .npy image with a hand-written header: `header` is used verbatim (no padding added
// unless `pad` is set), so malformed headers can be built exactly.
std::vector<unsigned char> npy_bytes(int major, int minor, const std::string &header,
                                     const std::vector<unsigned char> &data, bool pad = true) {
  std::vector<unsigned char> out = {0x93,
                                    'N',
                                    'U',
                                    'M',
                                    'P',
                                    'Y',
                                    static_cast<unsigned char>(major),
                                    static_cast<unsigned char>(minor)};
  std::string h = header;
  const size_t len_bytes = major == 1 ? 2 : 4;
  if (pad) {
    size_t total = 8 + len_bytes + h.size() + 1;
    h.append((64 - total % 64) % 64, ' ');
    h.push_back('\n');
  }
  for (size_t i = 0; i < len_bytes; ++i)
    out.push_back(static_cast<unsigned char>((h.size() >> (8 * i)) & 0xff));
  out.insert(out.end(), h.begin(), h.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

std::vector<unsigned char> zeros(size_t n) { return std::vector<unsigned char>(n, 0); }

bool parse(const std::vector<unsigned char> &bytes, Array *out, std::string *error) {
  return ta_npy::parse_npy(bytes.data(), bytes.size(), out, error);
}

// Parsing must fail with a non-empty one-line message that contains `expect`.
void expect_error(const std::vector<unsigned char> &bytes, const std::string &expect) {
  Array a;
  std::string error;
  ASSERT_FALSE(parse(bytes, &a, &error)) << "parsed although malformed";
  EXPECT_FALSE(error.empty());
  EXPECT_EQ(error.find('\n'), std::string::npos) << error;
  EXPECT_NE(error.find(expect), std::string::npos) << "message: " << error;
}

std::vector<unsigned char> f32_2x3_data() { return zeros(2 * 3 * 4); }

// ---------------------------------------------------------------- round trips

struct RoundTripCase {
  DType dtype;
  std::vector<int64_t> shape;
  std::string name;
};

// gtest prints the case by name instead of as raw bytes.
void PrintTo(const RoundTripCase &c, std::ostream *os) { *os << c.name; }

class NpyRoundTrip : public ::testing::TestWithParam<RoundTripCase> {};

TEST_P(NpyRoundTrip, WriteThenReadGivesSameArray) {
  const RoundTripCase &c = GetParam();
  Array a;
  a.dtype = c.dtype;
  a.shape = c.shape;
  int64_t bytes = 0;
  ASSERT_TRUE(ta_npy::checked_byte_size(c.shape, c.dtype, &bytes));
  a.data.resize(static_cast<size_t>(bytes));
  for (size_t i = 0; i < a.data.size(); ++i) {
    // Distinct bytes, and valid bools (0/1) for the bool dtype.
    a.data[i] = c.dtype == DType::Bool ? static_cast<unsigned char>(i % 3 == 0)
                                       : static_cast<unsigned char>(i * 37 + 11);
  }
  std::vector<unsigned char> encoded;
  std::string error;
  ASSERT_TRUE(ta_npy::encode_npy(a, &encoded, &error)) << error;
  // Format 1.0, data aligned to 64 bytes, header ends in '\n' (what numpy writes).
  ASSERT_GE(encoded.size(), 10u);
  EXPECT_EQ(encoded[6], 1);
  EXPECT_EQ(encoded[7], 0);
  const size_t header_len = encoded[8] | (encoded[9] << 8);
  EXPECT_EQ((10 + header_len) % 64, 0u);
  EXPECT_EQ(encoded[10 + header_len - 1], '\n');
  EXPECT_EQ(encoded.size(), 10 + header_len + a.data.size());

  Array b;
  ASSERT_TRUE(parse(encoded, &b, &error)) << error;
  EXPECT_EQ(b.dtype, a.dtype);
  EXPECT_EQ(b.shape, a.shape);
  EXPECT_EQ(b.data, a.data);
  EXPECT_EQ(b.element_count(), a.element_count());
}

std::vector<RoundTripCase> round_trip_cases() {
  std::vector<RoundTripCase> cases;
  const std::pair<DType, const char *> dtypes[] = {
      {DType::F16, "F16"}, {DType::F32, "F32"}, {DType::F64, "F64"}, {DType::Bool, "Bool"}};
  const std::pair<std::vector<int64_t>, const char *> shapes[] = {{{}, "Scalar"},
                                                                  {{7}, "Shape7"},
                                                                  {{1}, "Shape1"},
                                                                  {{2, 3, 5, 4}, "Shape2x3x5x4"},
                                                                  {{0, 3}, "Shape0x3Empty"},
                                                                  {{1, 2, 32, 8}, "Shape1x2x32x8"}};
  for (const auto &[dtype, dname] : dtypes) {
    for (const auto &[shape, sname] : shapes) {
      cases.push_back({dtype, shape, std::string(dname) + "_" + sname});
    }
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(ToolsNpy, NpyRoundTrip, ::testing::ValuesIn(round_trip_cases()),
                         [](const auto &info) { return info.param.name; });

TEST(ToolsNpyWrite, ShapeStringsFollowPython) {
  EXPECT_EQ(ta_npy::shape_string({}), "()");
  EXPECT_EQ(ta_npy::shape_string({3}), "(3,)");
  EXPECT_EQ(ta_npy::shape_string({2, 3}), "(2, 3)");
}

TEST(ToolsNpyWrite, HeaderTooLongForVersion1UsesVersion2) {
  Array a;
  a.dtype = DType::F32;
  a.shape.assign(22000, 1);  // "1, " x 22000 = 66000 header bytes > 65535
  a.data.resize(4);
  std::vector<unsigned char> encoded;
  std::string error;
  ASSERT_TRUE(ta_npy::encode_npy(a, &encoded, &error)) << error;
  EXPECT_EQ(encoded[6], 2);
  const size_t header_len = encoded[8] | (encoded[9] << 8) | (encoded[10] << 16) |
                            (static_cast<size_t>(encoded[11]) << 24);
  EXPECT_EQ((12 + header_len) % 64, 0u);
  EXPECT_GT(header_len, 65535u);
  // More dimensions than numpy allows: the reader refuses it with a message.
  expect_error(encoded, "dimensions");
}

TEST(ToolsNpyWrite, DataSizeNotMatchingShapeIsAnError) {
  Array a;
  a.dtype = DType::F64;
  a.shape = {2, 2};
  a.data.resize(31);
  std::vector<unsigned char> encoded;
  std::string error;
  EXPECT_FALSE(ta_npy::encode_npy(a, &encoded, &error));
  EXPECT_NE(error.find("32"), std::string::npos) << error;
}

TEST(ToolsNpyFile, WriteReadFileRoundTrip) {
  char dir_template[] = "/tmp/ta_npy_test_XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  const std::string path = std::string(dir_template) + "/a.npy";
  Array a;
  a.dtype = DType::F32;
  a.shape = {2, 2};
  const float values[4] = {1.0f, -2.5f, 3.25f, 1e-3f};
  a.data.resize(sizeof values);
  std::memcpy(a.data.data(), values, sizeof values);
  std::string error;
  ASSERT_TRUE(ta_npy::write_npy_file(path, a, &error)) << error;
  Array b;
  ASSERT_TRUE(ta_npy::read_npy_file(path, &b, &error)) << error;
  EXPECT_EQ(b.data, a.data);
  std::remove(path.c_str());
  // A directory is not a file: an error naming it, not a crash.
  EXPECT_FALSE(ta_npy::read_npy_file(dir_template, &b, &error));
  EXPECT_NE(error.find(dir_template), std::string::npos) << error;
  rmdir(dir_template);
}

TEST(ToolsNpyFile, MissingFileNamesThePath) {
  Array a;
  std::string error;
  EXPECT_FALSE(ta_npy::read_npy_file("/nonexistent/dir/x.npy", &a, &error));
  EXPECT_NE(error.find("/nonexistent/dir/x.npy"), std::string::npos) << error;
  EXPECT_FALSE(ta_npy::write_npy_file("/nonexistent/dir/y.npy", a, &error));
}

// ------------------------------------------- headers as other writers produce them

TEST(ToolsNpyHeader, KeysInAnyOrderWithOddSpacingAndNoTrailingComma) {
  auto bytes =
      npy_bytes(1, 0, "{ 'shape':(2,3) ,'fortran_order' : False,  'descr':'<f4'}", f32_2x3_data());
  Array a;
  std::string error;
  ASSERT_TRUE(parse(bytes, &a, &error)) << error;
  EXPECT_EQ(a.dtype, DType::F32);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
}

TEST(ToolsNpyHeader, DoubleQuotesTrailingCommasAndPython2Longs) {
  auto bytes = npy_bytes(
      1, 0, "{\"descr\": \"<f8\", \"fortran_order\": False, \"shape\": (2L, 3L,), }", zeros(48));
  Array a;
  std::string error;
  ASSERT_TRUE(parse(bytes, &a, &error)) << error;
  EXPECT_EQ(a.dtype, DType::F64);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
}

TEST(ToolsNpyHeader, ScalarShapeEmptyTuple) {
  auto bytes = npy_bytes(1, 0, "{'descr': '|b1', 'fortran_order': False, 'shape': (), }", {1});
  Array a;
  std::string error;
  ASSERT_TRUE(parse(bytes, &a, &error)) << error;
  EXPECT_TRUE(a.shape.empty());
  EXPECT_EQ(a.element_count(), 1);
}

TEST(ToolsNpyHeader, UnpaddedHeaderWithoutNewlineIsAccepted) {
  auto bytes = npy_bytes(1, 0, "{'descr': '<f2', 'fortran_order': False, 'shape': (3,)}", zeros(6),
                         /*pad=*/false);
  Array a;
  std::string error;
  ASSERT_TRUE(parse(bytes, &a, &error)) << error;
  EXPECT_EQ(a.dtype, DType::F16);
}

TEST(ToolsNpyHeader, Version2And3Headers) {
  for (int major : {2, 3}) {
    auto bytes = npy_bytes(major, 0, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
                           f32_2x3_data());
    Array a;
    std::string error;
    ASSERT_TRUE(parse(bytes, &a, &error)) << "version " << major << ": " << error;
    EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
  }
}

TEST(ToolsNpyHeader, FortranOrderOfOneDimensionalArrayIsTheSameLayout) {
  auto bytes =
      npy_bytes(1, 0, "{'descr': '<f4', 'fortran_order': True, 'shape': (6,), }", zeros(24));
  Array a;
  std::string error;
  EXPECT_TRUE(parse(bytes, &a, &error)) << error;
}

// ------------------------------------------------------------ malformed files

const char kGoodHeader[] = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";

TEST(ToolsNpyMalformed, EmptyFile) { expect_error({}, "not a .npy file"); }

TEST(ToolsNpyMalformed, BadMagic) {
  auto bytes = npy_bytes(1, 0, kGoodHeader, f32_2x3_data());
  bytes[1] = 'X';
  expect_error(bytes, "bad magic");
}

TEST(ToolsNpyMalformed, TextFileIsNotNpy) {
  const std::string text = "q,k,v\n1,2,3\n";
  expect_error(std::vector<unsigned char>(text.begin(), text.end()), "not a .npy file");
}

TEST(ToolsNpyMalformed, UnsupportedVersion4_0) {
  auto bytes = npy_bytes(1, 0, kGoodHeader, f32_2x3_data());
  bytes[6] = 4;
  expect_error(bytes, "version 4.0");
}

TEST(ToolsNpyMalformed, UnsupportedVersion1_5) {
  auto bytes = npy_bytes(1, 0, kGoodHeader, f32_2x3_data());
  bytes[7] = 5;
  expect_error(bytes, "version 1.5");
}

TEST(ToolsNpyMalformed, TruncatedInsideHeaderLengthField) {
  auto bytes = npy_bytes(1, 0, kGoodHeader, f32_2x3_data());
  bytes.resize(9);
  expect_error(bytes, "truncated");
}

TEST(ToolsNpyMalformed, TruncatedHeader) {
  auto bytes = npy_bytes(1, 0, kGoodHeader, f32_2x3_data());
  bytes.resize(40);  // inside the dict
  expect_error(bytes, "truncated .npy header");
}

TEST(ToolsNpyMalformed, HeaderLengthPastEndOfFile) {
  auto bytes = npy_bytes(1, 0, kGoodHeader, f32_2x3_data());
  bytes[8] = 0xff;
  bytes[9] = 0xff;
  expect_error(bytes, "past the end");
}

TEST(ToolsNpyMalformed, Version2HeaderLength4GiBPastEndOfFile) {
  auto bytes = npy_bytes(2, 0, kGoodHeader, f32_2x3_data());
  bytes[8] = bytes[9] = bytes[10] = bytes[11] = 0xff;
  expect_error(bytes, "past the end");
}

TEST(ToolsNpyMalformed, TruncatedData) {
  auto bytes = npy_bytes(1, 0, kGoodHeader, f32_2x3_data());
  bytes.resize(bytes.size() - 1);
  expect_error(bytes, "truncated .npy data");
}

TEST(ToolsNpyMalformed, DataMissingEntirely) {
  expect_error(npy_bytes(1, 0, kGoodHeader, {}), "truncated .npy data");
}

TEST(ToolsNpyMalformed, TrailingBytesAfterData) {
  auto data = f32_2x3_data();
  data.push_back(0);
  expect_error(npy_bytes(1, 0, kGoodHeader, data), "oversized");
}

TEST(ToolsNpyMalformed, UnknownDtypeInt32) {
  expect_error(npy_bytes(1, 0, "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3), }",
                         f32_2x3_data()),
               "unsupported dtype '<i4'");
}

TEST(ToolsNpyMalformed, UnknownDtypeComplex) {
  expect_error(
      npy_bytes(1, 0, "{'descr': '<c8', 'fortran_order': False, 'shape': (3,), }", zeros(24)),
      "unsupported dtype");
}

TEST(ToolsNpyMalformed, UnknownDtypeEmptyString) {
  expect_error(npy_bytes(1, 0, "{'descr': '', 'fortran_order': False, 'shape': (3,), }", zeros(12)),
               "unsupported dtype");
}

TEST(ToolsNpyMalformed, BigEndianF4) {
  expect_error(npy_bytes(1, 0, "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }",
                         f32_2x3_data()),
               "big-endian");
}

TEST(ToolsNpyMalformed, BigEndianF8) {
  expect_error(
      npy_bytes(1, 0, "{'descr': '>f8', 'fortran_order': False, 'shape': (3,), }", zeros(24)),
      "big-endian");
}

TEST(ToolsNpyMalformed, DtypeWithoutByteOrder) {
  expect_error(
      npy_bytes(1, 0, "{'descr': 'f4', 'fortran_order': False, 'shape': (2, 3), }", f32_2x3_data()),
      "byte order");
}

TEST(ToolsNpyMalformed, StructuredDtype) {
  expect_error(npy_bytes(1, 0, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (6,), }",
                         zeros(24)),
               "structured");
}

TEST(ToolsNpyMalformed, FortranOrder2D) {
  expect_error(
      npy_bytes(1, 0, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", f32_2x3_data()),
      "Fortran");
}

TEST(ToolsNpyMalformed, FortranOrderNotABoolean) {
  expect_error(
      npy_bytes(1, 0, "{'descr': '<f4', 'fortran_order': 0, 'shape': (2, 3), }", f32_2x3_data()),
      "fortran_order");
}

TEST(ToolsNpyMalformed, NegativeExtent) {
  expect_error(npy_bytes(1, 0, "{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 3), }",
                         f32_2x3_data()),
               "negative extent");
}

TEST(ToolsNpyMalformed, AbsurdShapeInt64MaxBy4) {
  expect_error(
      npy_bytes(1, 0,
                "{'descr': '<f4', 'fortran_order': False, 'shape': (9223372036854775807, 4), }",
                f32_2x3_data()),
      "does not fit");
}

TEST(ToolsNpyMalformed, AbsurdShapeProductWrapsToSmallNumber) {
  // 2^32 * 2^32 * 4 wraps to 0 in 64 bits: must still be rejected, not read as empty.
  expect_error(
      npy_bytes(1, 0,
                "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }",
                {}),
      "does not fit");
}

TEST(ToolsNpyMalformed, ExtentBeyond64Bits) {
  expect_error(
      npy_bytes(1, 0,
                "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", {}),
      "64 bits");
}

TEST(ToolsNpyMalformed, ShapeIsAnIntegerNotATuple) {
  // Python: (6) is the integer 6.
  expect_error(
      npy_bytes(1, 0, "{'descr': '<f4', 'fortran_order': False, 'shape': (6), }", zeros(24)),
      "expected a tuple");
}

TEST(ToolsNpyMalformed, ShapeEntryIsAFloat) {
  expect_error(npy_bytes(1, 0, "{'descr': '<f4', 'fortran_order': False, 'shape': (2.5, 3), }",
                         f32_2x3_data()),
               "malformed .npy header");
}

TEST(ToolsNpyMalformed, ShapeEntryIsAString) {
  expect_error(npy_bytes(1, 0, "{'descr': '<f4', 'fortran_order': False, 'shape': ('2', 3), }",
                         f32_2x3_data()),
               "shape entry");
}

TEST(ToolsNpyMalformed, MissingShapeKey) {
  expect_error(npy_bytes(1, 0, "{'descr': '<f4', 'fortran_order': False, }", f32_2x3_data()),
               "missing key 'shape'");
}

TEST(ToolsNpyMalformed, UnexpectedKey) {
  expect_error(npy_bytes(1, 0, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'x': 1}",
                         f32_2x3_data()),
               "unexpected key 'x'");
}

TEST(ToolsNpyMalformed, DuplicateKey) {
  expect_error(
      npy_bytes(1, 0, "{'descr': '<f4', 'descr': '<f8', 'fortran_order': False, 'shape': (2, 3)}",
                f32_2x3_data()),
      "duplicate key");
}

TEST(ToolsNpyMalformed, GarbageDict) {
  expect_error(npy_bytes(1, 0, "this is not a python dict", f32_2x3_data()),
               "malformed .npy header");
}

TEST(ToolsNpyMalformed, HeaderIsAListNotADict) {
  expect_error(npy_bytes(1, 0, "['descr', '<f4']", f32_2x3_data()), "expected a dict");
}

TEST(ToolsNpyMalformed, UnterminatedString) {
  expect_error(npy_bytes(1, 0, "{'descr: '<f4', 'fortran_order': False, 'shape': (2, 3)}",
                         f32_2x3_data(), /*pad=*/false),
               "malformed .npy header");
}

TEST(ToolsNpyMalformed, TextAfterTheDict) {
  expect_error(npy_bytes(1, 0, std::string(kGoodHeader) + " junk", f32_2x3_data()),
               "after the header dict");
}

TEST(ToolsNpyMalformed, DeeplyNestedTuplesDoNotOverflowTheStack) {
  std::string shape(100000, '(');
  expect_error(
      npy_bytes(2, 0, "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape, f32_2x3_data()),
      "nests too deeply");
}

TEST(ToolsNpyMalformed, BinaryGarbageHeader) {
  std::string header;
  for (int i = 0; i < 200; ++i) header.push_back(static_cast<char>((i * 131 + 7) & 0xff));
  expect_error(npy_bytes(1, 0, header, f32_2x3_data()), "malformed .npy header");
}

// Every prefix of a valid file is a truncated file: each must be an error.
TEST(ToolsNpyMalformed, EveryTruncationOfAValidFileIsAnError) {
  auto bytes = npy_bytes(1, 0, kGoodHeader, f32_2x3_data());
  for (size_t n = 0; n < bytes.size(); ++n) {
    std::vector<unsigned char> prefix(bytes.begin(), bytes.begin() + static_cast<long>(n));
    Array a;
    std::string error;
    EXPECT_FALSE(parse(prefix, &a, &error)) << "prefix of " << n << " bytes parsed";
    EXPECT_FALSE(error.empty());
  }
}

// Random single-byte corruptions of the header: any outcome is fine except a crash or a
// success whose data does not match its shape.
TEST(ToolsNpyMalformed, RandomHeaderCorruptionsNeverCrash) {
  const auto good = npy_bytes(1, 0, kGoodHeader, f32_2x3_data());
  uint64_t state = 12345;
  auto next = [&] {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return state >> 33;
  };
  for (int trial = 0; trial < 5000; ++trial) {
    auto bytes = good;
    int flips = 1 + static_cast<int>(next() % 3);
    for (int f = 0; f < flips; ++f) {
      size_t pos = next() % 74;  // magic, version, length and the header text
      bytes[pos] = static_cast<unsigned char>(next());
    }
    Array a;
    std::string error;
    if (parse(bytes, &a, &error)) {
      int64_t expected = -1;
      ASSERT_TRUE(ta_npy::checked_byte_size(a.shape, a.dtype, &expected));
      EXPECT_EQ(static_cast<size_t>(expected), a.data.size());
    } else {
      EXPECT_FALSE(error.empty());
    }
  }
}

}  // namespace
