// 128-bit integers for overflow-safe size arithmetic (GCC and Clang extension;
// __extension__ keeps -Wpedantic quiet about it).
#pragma once

namespace ta {
__extension__ typedef __int128 i128;
}  // namespace ta
