// Cross entropy from logits, fused with log-softmax.
#pragma once

#include <cstdint>

namespace infini {

// losses[r] = logsumexp(logits[r, :]) - logits[r, targets[r]]  (nats), for r < rows.
// Returns the sum of the losses (accumulated in double, fixed order).
double cross_entropy_forward(float* losses, const float* logits, const int32_t* targets,
                             int64_t rows, int64_t vocab);

// dlogits[r, :] = scale * (softmax(logits[r, :]) - onehot(targets[r])). Overwrites; dlogits may
// alias logits (the logits are then replaced by their gradient, saving a [R, V] buffer).
// For the mean loss over R rows, scale = 1 / R.
void cross_entropy_backward(float* dlogits, const float* logits, const int32_t* targets,
                            int64_t rows, int64_t vocab, float scale);

}  // namespace infini
