// Per-thread error messages and the stable names of statuses and reasons.
#pragma once

#include <string>

#include "taylor_attention/taylor_attention.h"

namespace ta {

// Records the message of the failing call on this thread and returns status, so
// call sites read `return fail(TA_ERR_INVALID_ARGUMENT, "q: ...");`.
ta_status fail(ta_status status, std::string message);
// Clears this thread's message (every successful entry point calls it).
void clear_error();
const char* last_error();

const char* status_name(ta_status status);
const char* reason_name(ta_reason reason);

}  // namespace ta
