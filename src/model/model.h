// The decoder of ../shared/spec/memory-mechanisms.md §1 around Infini-attention (§2), with
// explicit forward and backward passes.
//
// Four kinds of memory are kept apart, as in llama2.c:
//   Model        what the model is: config + weights (read-only while running; one model can
//                serve many streams at once);
//   StreamState  what a stream carries between chunks: each layer's compressive memory (M, z) and
//                the stream position; the same type holds its gradient during backpropagation;
//   Activations  scratch for one chunk of B streams x T tokens, sized once and reused; in
//                training mode it keeps every layer's activations for the backward pass;
//   Parameters   (parameters.h) the same layout for weights, gradients and optimizer moments.
//
// A chunk must start at a segment boundary. Training runs a whole sequence (S segments) as one
// chunk, which backpropagates through the memory across all of them; streaming feeds one segment
// at a time. model_train_step_recompute (train code) does the same with one segment's
// activations by recomputing each chunk in the backward pass.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "attention/infini.h"
#include "core/arena.h"
#include "model/config.h"
#include "model/parameters.h"

namespace infini {

struct Model {
  ModelConfig config;
  Arena storage;
  Parameters weights;
};

// A model with every weight zero (to be initialised or loaded).
Model model_create(const ModelConfig& config);
// Scaled random initialisation: matrices and embeddings N(0, 0.02), output projections (o_proj,
// down_proj) N(0, 0.02 / sqrt(2 L)) (GPT-2), norms 1, memory gates attention.gate_init.
void model_init_random(Model& model, uint64_t seed);

struct StreamState {
  int64_t batch = 0;
  int64_t position = 0;              // tokens consumed per stream
  std::vector<InfiniMemory> layers;  // per layer: M [B, Hkv, d, d], z [B, Hkv, d]
  float* all = nullptr;              // every float of the state, `count` of them
  int64_t count = 0;
  Arena storage;
};

StreamState stream_state_create(const ModelConfig& config, int64_t batch);
void stream_state_reset(StreamState& state);  // zero memories, position 0
void stream_state_copy(StreamState& to, const StreamState& from);

struct LayerActivations {
  float* x_in;     // [R, D]  residual stream entering the layer (R = B * T rows)
  float* xn1;      // [R, D]  RMSNorm(x_in; input_norm)
  float* rstd1;    // [R]
  float* qkv;      // [R, (H + 2 Hkv) d]
  InfiniActivations attn;
  float* att;      // [R, H d] gated heads, concatenated
  float* x_mid;    // [R, D]  x_in + att Wo^T
  float* xn2;      // [R, D]
  float* rstd2;    // [R]
  float* gate_up;  // [R, 2F]
  float* mlp;      // [R, F]  silu(gate) * up
};

struct Activations {
  int64_t batch = 0, tokens = 0;  // B, T of the chunk this was sized for
  bool training = false;          // keeps every layer (training) or reuses one (inference)
  std::vector<LayerActivations> layers;
  float* x_final;     // [R, D]
  float* xn_final;    // [R, D]
  float* rstd_final;  // [R]
  float* logits;      // [R, V]; replaced by d loss / d logits in the backward pass
  float* losses;      // [R]
  float* rope_cos;    // [N, d/2]
  float* rope_sin;    // [N, d/2]
  float* attn_scratch;  // threads * InfiniShape::scratch_floats()
  // backward only
  float* dx;             // [R, D]
  float* dnormed;        // [R, D]
  float* dqkv;           // [R, (H + 2 Hkv) d]
  float* datt;           // [R, H d]
  float* dgate_up;       // [R, 2F]
  float* dmlp;           // [R, F]
  float* dgate_partial;  // [B, H]
  Arena storage;
};

// Scratch for chunks of up to `tokens` tokens for `batch` streams.
Activations activations_create(const ModelConfig& config, int64_t batch, int64_t tokens,
                               bool training);
size_t activations_bytes(const ModelConfig& config, int64_t batch, int64_t tokens, bool training);

// Runs tokens [B, T] (T <= act.tokens; state.position a multiple of the segment length unless the
// chunk is the stream's first) through the model, advancing `state`; fills act.logits [B*T, V].
void model_forward(const Model& model, StreamState& state, Activations& act,
                   const int32_t* tokens, int64_t tokens_per_stream);

// Cross entropy of the logits of the last model_forward (B x tokens_per_stream rows) against
// targets [B, T]: fills act.losses, returns their sum in nats.
double model_loss(Activations& act, const int32_t* targets, int64_t tokens_per_stream,
                  int64_t vocab);

// Backward pass after model_forward + model_loss on the same act. Accumulates parameter gradients
// into `grads`. dstate: gradient with respect to the stream state at the END of the chunk on
// entry (zero at the end of a training sequence), at its START on return. loss_scale multiplies
// every per-token loss (1 / number of tokens for a mean).
void model_backward(const Model& model, Parameters& grads, StreamState& dstate, Activations& act,
                    const int32_t* tokens, const int32_t* targets, int64_t tokens_per_stream,
                    float loss_scale);

}  // namespace infini
