// units.cpp - see units.h.
#include "units.h"

#include <cmath>
#include <cstdio>

namespace ta_cli {
namespace {

std::string scaled(double value, const char *unit) {
  static const char *kPrefixes[] = {"", "k", "M", "G", "T", "P", "E"};
  if (!std::isfinite(value)) return "n/a";
  int i = 0;
  double v = value;
  while (std::fabs(v) >= 1000.0 && i < 6) {
    v /= 1000.0;
    ++i;
  }
  char buf[64];
  if (std::fabs(v) >= 1000.0) {  // beyond the largest prefix: e-notation, not 20 digits
    std::snprintf(buf, sizeof buf, "%.3g %s%s", v, kPrefixes[i], unit);
  } else {
    std::snprintf(buf, sizeof buf, "%.*f %s%s", std::fabs(v) >= 100 || i == 0 ? 0 : 1, v,
                  kPrefixes[i], unit);
  }
  return buf;
}

}  // namespace

std::string format_count(double value) {
  if (!std::isfinite(value)) return "n/a";
  if (std::fabs(value) >= 1e15) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3g", value);
    return buf;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.0f", std::fabs(value));
  std::string digits = buf, s;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0) s.push_back(',');
    s.push_back(digits[i]);
  }
  return value < 0 ? "-" + s : s;
}

std::string plural(int64_t count, const char *noun) {
  return std::to_string(count) + " " + noun + (count == 1 ? "" : "s");
}

std::string format_bytes(double bytes) { return scaled(bytes, "B"); }
std::string format_flops(double flops) { return scaled(flops, "FLOP"); }
std::string format_rate(double flops_per_s) { return scaled(flops_per_s, "FLOP/s"); }

std::string format_ms(double ms) {
  if (!std::isfinite(ms)) return "n/a";
  char buf[32];
  if (ms >= 1000.0) {
    std::snprintf(buf, sizeof buf, "%.2f s", ms / 1000.0);
  } else {
    std::snprintf(buf, sizeof buf, ms >= 100 ? "%.0f ms" : ms >= 10 ? "%.1f ms" : "%.2f ms", ms);
  }
  return buf;
}

std::string format_fixed(double value, int decimals) {
  if (!std::isfinite(value)) return "n/a";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, value);
  return buf;
}

std::string format_ratio(double ratio) {
  if (!std::isfinite(ratio)) return "n/a";
  char buf[32];
  std::snprintf(buf, sizeof buf,
                ratio >= 100   ? "%.0fx"
                : ratio >= 10  ? "%.1fx"
                : ratio >= 0.1 ? "%.2fx"
                               : "%.2gx",
                ratio);
  return buf;
}

}  // namespace ta_cli
