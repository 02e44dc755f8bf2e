// One forward + backward pass over B training sequences of T tokens, with backpropagation through
// time through every layer's memory across all of the sequence's segments.
//
// Two ways to pay for it (docs/architecture.md has the numbers):
//   chunk_tokens == T  keep every activation of the whole sequence: one forward, one backward;
//                      activations grow linearly with T.
//   chunk_tokens <  T  (infini only; the softmax baselines refuse it) gradient checkpointing:
//                      the forward pass keeps only the stream state at
//                      each chunk boundary; the backward pass walks the chunks in reverse,
//                      recomputes each chunk's forward from its saved state and backpropagates
//                      through it, handing the gradient of the state to the chunk before. Memory
//                      is one chunk's activations plus T / chunk_tokens states; compute is one
//                      extra forward pass. The gradients are those of the full pass.
#pragma once

#include <cstdint>
#include <vector>

#include "model/model.h"

namespace infini {

struct TrainingPass {
  int64_t batch = 0, tokens = 0, chunk_tokens = 0;
  Activations act;                                   // for B x chunk_tokens
  StreamState state, dstate;                         // the memory and its gradient
  std::vector<float> boundary_states;                // [chunks, state floats] (recompute mode only)
  std::vector<int32_t> chunk_inputs, chunk_targets;  // [B, chunk_tokens]
};

// chunk_tokens: 0 or T for the full pass, else a multiple of the segment length dividing T.
TrainingPass training_pass_create(const ModelConfig& config, int64_t batch, int64_t tokens,
                                  int64_t chunk_tokens);
size_t training_pass_bytes(const ModelConfig& config, int64_t batch, int64_t tokens,
                           int64_t chunk_tokens);

// inputs, targets: [B, T]. Accumulates loss_scale * d(sum of token losses) / d(weights) into
// grads; returns the sum of the token losses (nats).
double training_pass_run(const Model& model, Parameters& grads, TrainingPass& pass,
                         const int32_t* inputs, const int32_t* targets, float loss_scale);

}  // namespace infini
