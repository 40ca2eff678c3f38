// Per-thread error messages and the stable names of statuses and reasons.
#pragma once

#include <exception>
#include <new>
#include <string>

#include "taylor_attention/taylor_attention.h"

namespace ta {

// Records the message of the failing call on this thread and returns status, so
// call sites read `return fail(TA_ERR_INVALID_ARGUMENT, "q: ...");`.
ta_status fail(ta_status status, std::string message);
// Clears this thread's message (every successful entry point calls it).
void clear_error();
const char* last_error();

// Runs body, converting any escaping exception into a status with a message: every C entry
// point wraps its body in it so nothing crosses the ABI as an exception.
template <class Body>
ta_status guarded(Body&& body) noexcept {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return fail(TA_ERR_OUT_OF_MEMORY, "host allocation failed");
  } catch (const std::exception& e) {
    return fail(TA_ERR_INTERNAL, std::string("internal error: ") + e.what());
  } catch (...) {
    return fail(TA_ERR_INTERNAL, "internal error: unknown exception");
  }
}

const char* status_name(ta_status status);
const char* reason_name(ta_reason reason);

}  // namespace ta
