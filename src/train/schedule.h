// Learning-rate schedules: linear warm-up, then cosine decay to a floor or a constant rate.
//
//   step < warmup:   lr * (step + 1) / warmup
//   constant:        lr
//   cosine:          min_lr + (lr - min_lr) * (1 + cos(pi * p)) / 2,
//                    p = (step - warmup) / max(1, total - warmup), clamped to [0, 1]
//
// `step` counts from 0 (the rate used by the first optimizer step is learning_rate_at(0)); the
// rate depends on nothing but the step, so a resumed run follows the same curve.
#pragma once

#include <cstdint>
#include <string>

namespace infini {

struct LearningRateSchedule {
  std::string kind = "cosine";  // cosine | constant
  double lr = 1e-3, min_lr = 1e-4;
  int64_t warmup = 0, total_steps = 1;
};

double learning_rate_at(const LearningRateSchedule& s, int64_t step);

}  // namespace infini
