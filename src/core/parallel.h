// A minimal static-schedule parallel loop over std::thread. Static assignment (item i
// runs on worker i % workers) keeps per-worker scratch fixed and results reproducible.
#pragma once

#include <algorithm>
#include <cstdint>
#include <exception>
#include <thread>
#include <vector>

namespace ta {

inline int resolve_threads(int32_t requested) {
  if (requested > 0) return requested;
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

// Runs body(item, worker) for item in [0, n) on min(workers, n) threads. An exception
// in a worker is rethrown on the calling thread after all workers joined (the C API
// turns it into a status).
template <class Body>
void parallel_for(int64_t n, int workers, Body&& body) {
  const int w = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(workers, n)));
  if (w == 1) {
    for (int64_t i = 0; i < n; ++i) body(i, 0);
    return;
  }
  std::vector<std::exception_ptr> errors(static_cast<size_t>(w));
  std::vector<std::thread> threads;
  threads.reserve(static_cast<size_t>(w));
  for (int t = 0; t < w; ++t) {
    threads.emplace_back([&, t] {
      try {
        for (int64_t i = t; i < n; i += w) body(i, t);
      } catch (...) {
        errors[static_cast<size_t>(t)] = std::current_exception();
      }
    });
  }
  for (auto& th : threads) th.join();
  for (auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}

}  // namespace ta
