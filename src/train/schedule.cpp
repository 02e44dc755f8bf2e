#include "train/schedule.h"

#include <algorithm>
#include <cmath>

namespace infini {

double learning_rate_at(const LearningRateSchedule& s, int64_t step) {
  if (step < s.warmup) return s.lr * double(step + 1) / double(s.warmup);
  if (s.kind == "constant") return s.lr;
  const double progress = std::clamp(
      double(step - s.warmup) / double(std::max<int64_t>(1, s.total_steps - s.warmup)), 0.0, 1.0);
  const double pi = 3.14159265358979323846;
  return s.min_lr + (s.lr - s.min_lr) * 0.5 * (1.0 + std::cos(pi * progress));
}

}  // namespace infini
