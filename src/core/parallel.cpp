#include "core/parallel.h"

#include <omp.h>

#include <thread>

namespace infini {

void threads_init(int threads) {
  if (threads <= 0) threads = int(std::thread::hardware_concurrency());
  if (threads <= 0) threads = 1;
  omp_set_dynamic(0);
  omp_set_max_active_levels(1);  // a GEMM inside parallel_for stays on its thread
  omp_set_num_threads(threads);
}

int threads_count() { return omp_get_max_threads(); }
int thread_index() { return omp_get_thread_num(); }
bool in_parallel_region() { return omp_in_parallel() != 0; }
int threads_in_team() { return omp_get_num_threads(); }
int team_index() { return omp_get_thread_num(); }

}  // namespace infini
