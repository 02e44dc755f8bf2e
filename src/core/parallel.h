// The one thread pool.
//
// oneDNN, as Debian builds it, runs on OpenMP; so do our kernels. That makes OpenMP's thread team
// the single pool of the process: GEMMs and element-wise kernels take turns on the same threads
// instead of two pools spinning against each other on 2 cores (../shared/machine.md). A GEMM
// called from inside parallel_for runs single-threaded (nested parallelism stays off), so work
// can be split either across heads/streams (many small GEMMs) or inside one big GEMM.
//
// Work is split statically: for a given thread count every thread gets the same indices in every
// run, and kernels never combine partial results in a timing-dependent order, so results are
// bit-reproducible for a given seed and thread count.
#pragma once

#include <cstdint>

namespace infini {

// Sets the number of threads used by every kernel and by oneDNN (0: one per core). Call once at
// start-up, before any kernel runs.
void threads_init(int threads);
int threads_count();
// Index of the calling thread inside a parallel_for (0 outside one).
int thread_index();
bool in_parallel_region();

// (helpers for parallel_ranges; callable only inside a parallel region)
int threads_in_team();
int team_index();

// Calls body(i) for every i in [0, n), split into contiguous static chunks across the pool.
template <typename Body>
void parallel_for(int64_t n, Body&& body) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) body(i);
}

// Calls body(begin, end) once per thread with that thread's contiguous share of [0, n): for
// kernels that keep per-thread scratch or accumulate over rows.
template <typename Body>
void parallel_ranges(int64_t n, Body&& body) {
#pragma omp parallel
  {
    int64_t threads = threads_in_team(), t = team_index();
    int64_t begin = n * t / threads, end = n * (t + 1) / threads;
    if (begin < end) body(begin, end);
  }
}

}  // namespace infini
