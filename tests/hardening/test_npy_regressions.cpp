// Regression cases for what fuzz/fuzz_npy found in the CLI's .npy reader (issue 5); the
// raw input is fuzz/regressions/fuzz_npy/. npy.h promises "one line naming the problem":
// header text quoted in a message is escaped, so a hostile file can neither split the
// message nor put control sequences on the user's terminal.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "npy.h"

namespace {

std::vector<unsigned char> npy_with_header(const std::string &header) {
  std::vector<unsigned char> b = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
  b.push_back(static_cast<unsigned char>(header.size() & 0xff));
  b.push_back(static_cast<unsigned char>(header.size() >> 8));
  b.insert(b.end(), header.begin(), header.end());
  return b;
}

::testing::AssertionResult printable_line(const std::string &s) {
  for (size_t i = 0; i < s.size(); ++i) {
    const auto u = static_cast<unsigned char>(s[i]);
    if (u < 0x20 || u > 0x7e) return ::testing::AssertionFailure() << "byte " << int(u) << " at " << i << " in: " << s;
  }
  return ::testing::AssertionSuccess();
}

std::string parse_error(const std::string &header) {
  const auto bytes = npy_with_header(header);
  ta_npy::Array a;
  std::string error;
  EXPECT_FALSE(ta_npy::parse_npy(bytes.data(), bytes.size(), &a, &error));
  return error;
}

// The fuzzer's input: a dict key holding an escaped newline ("\<newline>" keeps the
// newline in the string), quoted raw in "expected ':' after key '...'".
TEST(NpyRegression, NewlineInsideAKeyIsEscapedInTheMessage) {
  const std::string e = parse_error("{'a\\\nb' 1}");
  EXPECT_TRUE(printable_line(e));
  EXPECT_NE(e.find("'a\\x0ab'"), std::string::npos) << e;
}

TEST(NpyRegression, ControlBytesInKeyAndDescrAreEscaped) {
  const std::string unexpected = parse_error("{'descr': '<f4', 'fortran_order': False, 'shape': (), '\x1b[2J': 0}");
  EXPECT_TRUE(printable_line(unexpected));
  EXPECT_NE(unexpected.find("unexpected key '\\x1b[2J'"), std::string::npos) << unexpected;
  const std::string dtype = parse_error("{'descr': '\x1b]0;x\x07', 'fortran_order': False, 'shape': ()}");
  EXPECT_TRUE(printable_line(dtype));
  EXPECT_NE(dtype.find("unsupported dtype '\\x1b]0;x\\x07'"), std::string::npos) << dtype;
  const std::string dup = parse_error("{'\\\x7f': 1, '\\\x7f': 2}");
  EXPECT_TRUE(printable_line(dup));
  EXPECT_NE(dup.find("duplicate key '\\x7f'"), std::string::npos) << dup;
}

TEST(NpyRegression, LongKeyIsCutShortInTheMessage) {
  const std::string e = parse_error("{'" + std::string(5000, 'k') + "': 1}");
  EXPECT_TRUE(printable_line(e));
  EXPECT_LT(e.size(), 200u) << e.substr(0, 300);
  EXPECT_NE(e.find("...'"), std::string::npos);
}

}  // namespace
