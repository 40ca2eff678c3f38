// stats_report.h - ta_stats as JSON and as a short text block (run, demo).
#ifndef TAYLOR_ATTN_STATS_REPORT_H_
#define TAYLOR_ATTN_STATS_REPORT_H_

#include <string>

#include "json.h"
#include "taylor_attention/taylor_attention.h"

namespace ta_cli {

// Every field of ta_stats, grouped: denominators, probe, quality_vs_original,
// quality_truncation, window_*, time_ms. Field names follow the C struct.
void write_stats_json(JsonWriter &json, const ta_stats &stats);

// Indented lines for humans; leaves out blocks that did not run.
std::string stats_text(const ta_stats &stats, const std::string &indent);

// The window line of stats_text: the hybrid's exact pairs and time when it ran, the reason
// when a requested window did not apply, empty when none was asked for.
std::string window_text(const ta_stats &stats, const std::string &indent);

}  // namespace ta_cli

#endif  // TAYLOR_ATTN_STATS_REPORT_H_
