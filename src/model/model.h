// The decoder of ../shared/spec/memory-mechanisms.md §1 around Infini-attention (§2), with
// explicit forward and backward passes.
//
// Four kinds of memory are kept apart, as in llama2.c:
//   Model        what the model is: config + weights (read-only while running; one model can
//                serve many streams at once);
//   StreamState  what a stream carries between chunks: per layer the compressive memory (M, z)
//                and the KV cache of the current, unfinished segment, plus the stream position;
//                the same type holds the gradient of the memories during backpropagation;
//   Activations  scratch for one chunk of B streams x T tokens, sized once and reused; in
//                training mode it keeps every layer's activations for the backward pass;
//   Parameters   (parameters.h) the same layout for weights, gradients and optimizer moments.
//
// A chunk may start anywhere in a stream: model_forward continues the unfinished segment from the
// cache, so feeding a stream in chunks of any sizes (one token at a time when decoding) gives the
// numbers of one pass over it. Training runs a whole sequence (S segments) as one chunk from a
// segment boundary, which backpropagates through the memory across all of them;
// training_pass.h does the same with one chunk's activations by recomputing each chunk.
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

// One layer's share of a stream's state (spec §2, streaming rule). Mechanism-generic: infini uses
// memory + cache; the softmax baselines (spec §3) only the cache; TransformerFAM (§4) will add its
// feedback rows.
struct LayerState {
  InfiniMemory memory;   // M [B, Hkv, d, d], z [B, Hkv, d] as at the start of the current segment
  KvCache cache;         // raw K, V of the current segment's rows so far: [B, N, Hkv, d] each,
                         // cache.rows = position % N (every layer and stream alike)
  float* fam = nullptr;  // TransformerFAM feedback memory (spec §4): not used yet, null
};

// The state of B streams that advance together. Layout: one Arena block,
//   all        [L][B, Hkv, d, d + 1]   per layer M [B, Hkv, d, d] then z [B, Hkv, d]: `count`
//                                      floats, what training carries and differentiates
//   cache_all  [L][2][B, N, Hkv, d]    per layer the keys, then the values: `cache_count` floats
//                                      (absent, 0, in a state made without a cache)
// The cache's rows count and the position are plain fields; stream_state_copy carries them.
struct StreamState {
  int64_t batch = 0;
  int64_t position = 0;            // tokens consumed per stream
  std::vector<LayerState> layers;  // [L]
  float* all = nullptr;            // every layer's memory (M, z), `count` floats
  int64_t count = 0;
  float* cache_all = nullptr;  // every layer's KV cache, `cache_count` floats
  int64_t cache_count = 0;
  Arena storage;
};

// Rows of KV cache per stream and layer that the model's mechanism needs (infini: one segment).
int64_t kv_cache_capacity(const ModelConfig& config);

// A zero state at position 0. with_cache = false leaves out the KV cache: enough for a gradient
// state (dstate) and for chunks that start and end on segment boundaries.
StreamState stream_state_create(const ModelConfig& config, int64_t batch, bool with_cache = true);
size_t stream_state_bytes(const ModelConfig& config, int64_t batch, bool with_cache = true);
void stream_state_reset(StreamState& state);  // zero memories, empty caches, position 0
// Copies memories, the cache rows in use, the rows count and the position (same config and batch;
// `to` needs a cache if `from` has rows in one).
void stream_state_copy(StreamState& to, const StreamState& from);

struct LayerActivations {
  float* x_in;   // [R, D]  residual stream entering the layer (R = B * T rows)
  float* xn1;    // [R, D]  RMSNorm(x_in; input_norm)
  float* rstd1;  // [R]
  float* qkv;    // [R, (H + 2 Hkv) d]
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
  int64_t chunk_start = 0;        // stream position at the start of the last model_forward
  std::vector<LayerActivations> layers;
  float* x_final;       // [R, D]
  float* xn_final;      // [R, D]
  float* rstd_final;    // [R]
  float* logits;        // [R, V] (LogitRows::last: [B, V]); replaced by d loss / d logits in the
                        // backward pass
  float* losses;        // [R]
  float* rope_cos;      // [N, d/2]
  float* rope_sin;      // [N, d/2]
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

// Which rows of a chunk get logits: every token's (perplexity, training) or only each stream's
// last token (prompt reading before decoding: saves the [T, V] product).
enum class LogitRows { all, last };

// Runs tokens [B, T] (1 <= T <= act.tokens) through the model from `state`, wherever the streams
// are (any state.position), advancing `state`; fills act.logits: [B*T, V] rows, or [B, V] with
// LogitRows::last. Activations for training need a chunk starting at a segment boundary.
void model_forward(const Model& model, StreamState& state, Activations& act, const int32_t* tokens,
                   int64_t tokens_per_stream, LogitRows logit_rows = LogitRows::all);

// Cross entropy of the logits of the last model_forward (B x tokens_per_stream rows) against
// targets [B, T]: fills act.losses, returns their sum in nats.
double model_loss(Activations& act, const int32_t* targets, int64_t tokens_per_stream,
                  int64_t vocab);

// Backward pass after model_forward + model_loss on the same act; the chunk must have started at a
// segment boundary (empty cache). Accumulates parameter gradients into `grads`. dstate: gradient
// with respect to the memories at the END of the chunk on entry (zero at the end of a training
// sequence, and always zero when the chunk stopped inside a segment: the cache's gradient is not
// carried), at its START on return. loss_scale multiplies every per-token loss (1 / number of
// tokens for a mean).
void model_backward(const Model& model, Parameters& grads, StreamState& dstate, Activations& act,
                    const int32_t* tokens, const int32_t* targets, int64_t tokens_per_stream,
                    float loss_scale);

}  // namespace infini
