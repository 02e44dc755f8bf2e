// Cross entropy from logits, fused with log-softmax.
#pragma once

#include <cstdint>

namespace infini {

// A target that is not scored (a loss mask's 0, as PyTorch's ignore_index): its row's loss is 0
// and its row of dlogits is 0.
inline constexpr int32_t kIgnoredTarget = -1;

// losses[r] = logsumexp(logits[r, :]) - logits[r, targets[r]]  (nats), for r < rows.
// Returns the sum of the losses (accumulated in double, fixed order). Rows whose target is
// kIgnoredTarget get loss 0.
double cross_entropy_forward(float* losses, const float* logits, const int32_t* targets,
                             int64_t rows, int64_t vocab);

// dlogits[r, :] = scale * (softmax(logits[r, :]) - onehot(targets[r])). Overwrites; dlogits may
// alias logits (the logits are then replaced by their gradient, saving a [R, V] buffer).
// For the mean loss over R rows, scale = 1 / R (over the scored rows when some are ignored:
// their rows of dlogits are 0).
void cross_entropy_backward(float* dlogits, const float* logits, const int32_t* targets,
                            int64_t rows, int64_t vocab, float scale);

}  // namespace infini
