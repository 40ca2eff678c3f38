// units.h - human-readable numbers for the text output (decimal SI units, as in MATH.md).
#ifndef TAYLOR_ATTN_UNITS_H_
#define TAYLOR_ATTN_UNITS_H_

#include <cstdint>
#include <string>

namespace ta_cli {

std::string format_count(double value);       // 366145 -> "366,145"; huge values in e-notation
std::string format_bytes(double bytes);       // "189.1 MB"
std::string format_flops(double flops);       // "19.9 GFLOP"
std::string format_rate(double flops_per_s);  // "12.3 GFLOP/s"
std::string format_ms(double ms);             // "12.3 ms", "1.52 s"
std::string format_fixed(double value, int decimals);
std::string format_ratio(double ratio);               // "80.1x", "0.13x"
std::string plural(int64_t count, const char *noun);  // "1 head", "2 heads"

}  // namespace ta_cli

#endif  // TAYLOR_ATTN_UNITS_H_
