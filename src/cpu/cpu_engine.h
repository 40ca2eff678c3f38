// The CPU backend: the state form of Taylor attention, blocked over queries and keys
// (block_size_q / block_size_k bound its temporary memory), parallel over
// (batch, head, slice) units with one state per worker thread.
#pragma once

#include <cstddef>

#include "core/mask.h"
#include "core/problem.h"
#include "taylor_attention/taylor_attention.h"

namespace ta::cpu {

struct MemoryPlan {
  int workers = 1;            // threads that each own a state
  int64_t state_bytes = 0;    // all workers' S and z
  int64_t workspace_bytes = 0;// states + feature blocks + staging, plus alignment slack
};

// Sizes for a runnable problem (guards passed). Returns false when the byte counts do
// not fit in int64 (the call would need more memory than can be addressed).
bool plan_memory(const Problem& p, const ta_config& c, MemoryPlan* plan);

// Runs the call. The caller has validated the problem, passed the guards and provides
// at least plan.workspace_bytes of workspace. Returns TA_OK (out written) or
// TA_FALLBACK with *reason set (denominators, non-finite output).
ta_status run(const Problem& p, const ta_config& c, const KeyMask& mask, void* workspace, size_t workspace_bytes,
              ta_stats* stats, ta_reason* reason);

}  // namespace ta::cpu
