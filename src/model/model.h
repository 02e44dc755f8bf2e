// The decoder of ../shared/spec/memory-mechanisms.md §1 around one attention mechanism per model:
// Infini-attention (§2) or a softmax baseline over a KV cache (§3: full, sliding, xl, bswa), with
// explicit forward and backward passes. The mechanism is dispatched in one place (model.cpp,
// layer_attention_forward / _backward); everything else is shared.
//
// Four kinds of memory are kept apart, as in llama2.c:
//   Model        what the model is: config + weights (read-only while running; one model can
//                serve many streams at once);
//   StreamState  what a stream carries between chunks: per layer the compressive memory (M, z;
//                infini only) and the KV cache (infini: the unfinished segment; the baselines:
//                the rows later tokens can still see), plus the stream position; the same type
//                holds the gradient of the memories during backpropagation;
//   Activations  scratch for one chunk of B streams x T tokens, sized once and reused; in
//                training mode it keeps every layer's activations for the backward pass;
//   Parameters   (parameters.h) the same layout for weights, gradients and optimizer moments.
//
// A chunk may start at any stream position: model_forward continues from the cache (and the
// memory), so feeding a stream in chunks of any sizes (one token at a time when decoding) gives
// the numbers of one pass over it. Training runs a whole sequence (S segments) as one chunk:
// infini from a segment boundary, backpropagating through the memory across all segments; the
// baselines from position 0 with an empty cache (no memory is carried: gradients flow through
// attention within the sequence). training_pass.h can recompute chunks instead (infini only).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "attention/attention_policy.h"
#include "attention/infini.h"
#include "core/arena.h"
#include "model/config.h"
#include "model/fam.h"
#include "model/parameters.h"

namespace infini {

struct Model {
  ModelConfig config;
  Arena storage;
  Parameters weights;
};

// A model with every weight zero (to be initialised or loaded). Attention types infini, full,
// sliding, xl, bswa and fam.
Model model_create(const ModelConfig& config);
// The KV policy of a softmax-baseline model (attention_policy.h); nullopt for infini. fam: the
// bswa policy of its block rows (the FAM rows are handled by model/fam.h).
std::optional<KvPolicy> model_kv_policy(const ModelConfig& config);
// Scaled random initialisation: matrices and embeddings N(0, 0.02), output projections (o_proj,
// down_proj) N(0, 0.02 / sqrt(2 L)) (GPT-2), norms 1, memory gates attention.gate_init.
void model_init_random(Model& model, uint64_t seed);

// One layer's share of a stream's state (spec §2, streaming rule). Mechanism-generic: infini uses
// memory + cache; the softmax baselines (spec §3) only the cache; TransformerFAM (§4) the cache
// (its block rows, as bswa) and its feedback rows.
struct LayerState {
  InfiniMemory memory;   // infini: M [B, Hkv, d, d], z [B, Hkv, d] as at the start of the current
                         // segment; the baselines: null (no memory)
  KvCache cache;         // raw K, V rows, [B, capacity, Hkv, d] each, oldest first; rows (every
                         // layer and stream alike): infini position % N (the unfinished segment),
                         // the baselines kv_cache_rows_needed(policy, position)
  float* fam = nullptr;  // fam only: F_l [B, fam_length, D], the FAM rows entering layer l at the
                         // block holding `position` (fam.h); null for the other types
};

// The state of B streams that advance together. Layout:
//   all        [L][B, Hkv, d, d + 1]   (storage) per layer M [B, Hkv, d, d] then z [B, Hkv, d]:
//                                      `count` floats, what training carries and differentiates;
//                                      infini only: count = 0 and all = null for the baselines
//   fam_all    [L][B, fam_length, D]   (storage, after the memories) fam only: every layer's F_l,
//                                      `fam_count` floats. At position 0 model_forward computes
//                                      them from the weights (the initial state), so a reset
//                                      state needs no model.
//   cache_all  [L][2][B, C, Hkv, d]    (cache_storage) per layer the keys, then the values:
//                                      `cache_count` floats, C = every layer's cache.capacity
//                                      (0 in a state made without a cache)
// C is kv_cache_capacity(config), fixed, except for `full`, whose cache grows with the stream:
// model_forward calls stream_state_reserve before a chunk, which re-allocates cache_storage with
// at least doubled capacity when it is short (amortised O(1) per token; cache_all and every
// layer's pointers change then). The cache's rows count and the position are plain fields;
// stream_state_copy carries them.
struct StreamState {
  int64_t batch = 0;
  int64_t position = 0;            // tokens consumed per stream
  std::vector<LayerState> layers;  // [L]
  float* all = nullptr;            // every layer's memory (M, z), `count` floats
  int64_t count = 0;
  float* fam_all = nullptr;  // fam only: every layer's F_l, `fam_count` floats
  int64_t fam_count = 0;
  float* cache_all = nullptr;  // every layer's KV cache, `cache_count` floats
  int64_t cache_count = 0;
  int64_t cache_row_floats = 0;  // Hkv d: one cache row of one stream
  Arena storage;                 // the memories
  Arena cache_storage;           // the KV caches
};

// Rows of KV cache per stream and layer that the model's mechanism keeps between chunks: infini
// N (the unfinished segment), sliding W - 1, xl 2N - 1, bswa (MB + 1) N - 1; -1 for full (grows
// with the stream; a state starts with N rows and doubles).
int64_t kv_cache_capacity(const ModelConfig& config);

// A zero state at position 0. with_cache = false leaves out the KV cache: enough for a gradient
// state (dstate) and for chunks that start and end on segment boundaries.
StreamState stream_state_create(const ModelConfig& config, int64_t batch, bool with_cache = true);
size_t stream_state_bytes(const ModelConfig& config, int64_t batch, bool with_cache = true);
void stream_state_reset(StreamState& state);  // zero memories, empty caches, position 0
// Copies memories, the cache rows in use, the rows count and the position (same config and batch;
// `to` needs a cache if `from` has rows in one; a growing (full) cache of `to` grows to fit).
void stream_state_copy(StreamState& to, const StreamState& from);
// Makes every layer's cache hold at least `rows` rows per stream, keeping the rows in use:
// re-allocates (capacity at least doubled) when short. Only a growing (full) cache needs this.
void stream_state_reserve(StreamState& state, int64_t rows);

struct LayerActivations {
  float* x_in;             // [R, D]  residual stream entering the layer (R = B * T rows)
  float* xn1;              // [R, D]  RMSNorm(x_in; input_norm)
  float* rstd1;            // [R]
  float* qkv;              // [R, (H + 2 Hkv) d]
  InfiniActivations attn;  // infini only (null for the baselines)
  float* kv_probs;         // the baselines, training only: [B, H, kv_probs_floats] (kv_attention.h)
  float* att;              // [R, H d] gated heads, concatenated
  float* x_mid;            // [R, D]  x_in + att Wo^T
  float* xn2;              // [R, D]
  float* rstd2;            // [R]
  float* gate_up;          // [R, 2F]
  float* mlp;              // [R, F]  silu(gate) * up
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
  float* rope_cos;      // infini: [N, d/2], positions 0..N-1
  float* rope_sin;      // infini: [N, d/2]
  float* attn_scratch;  // infini: threads * InfiniShape::scratch_floats()
  // The baselines: RoPE tables for rebased positions 0 .. kv_rope_rows - 1 ([kv_rope_rows, d/2]
  // each) and threads * kv_*_scratch_floats of scratch. Sized at activations_create for the
  // worst chunk of up to `tokens` tokens anywhere in a stream (training: the chunk at position
  // 0), so windowed types never grow them; `full` streams need more as the stream grows: they
  // grow (doubling, outside the per-token cost in amortised terms) inside model_forward.
  std::vector<float> kv_rope_cos, kv_rope_sin, kv_scratch;
  int64_t kv_rope_rows = 0;
  // backward only
  float* dx;             // [R, D]
  float* dnormed;        // [R, D]
  float* dqkv;           // [R, (H + 2 Hkv) d]
  float* datt;           // [R, H d]
  float* dgate_up;       // [R, 2F]
  float* dmlp;           // [R, F]
  float* dgate_partial;  // [B, H]
  FamActivations fam;    // fam only: the FAM rows' buffers (fam.h)
  Arena storage;
};

// Scratch for chunks of up to `tokens` tokens for `batch` streams.
Activations activations_create(const ModelConfig& config, int64_t batch, int64_t tokens,
                               bool training);
size_t activations_bytes(const ModelConfig& config, int64_t batch, int64_t tokens, bool training);
// The baselines: grows act's RoPE tables to at least rope_rows positions and its scratch to
// threads_count() * scratch_per_thread floats (at least doubling when it grows; no-op otherwise).
void activations_reserve_kv(Activations& act, const ModelConfig& config, int64_t rope_rows,
                            int64_t scratch_per_thread);

// y[R, n] (+)= x[R, k] W[n, k]^T, the model's Linear layers (a decoding-sized R splits W's rows
// across the threads, so that a decoding step allocates nothing).
void model_linear(float* y, const float* x, const float* W, int64_t R, int64_t n, int64_t k,
                  bool accumulate = false);

// Which rows of a chunk get logits: every token's (perplexity, training) or only each stream's
// last token (prompt reading before decoding: saves the [T, V] product).
enum class LogitRows { all, last };

// Runs tokens [B, T] (1 <= T <= act.tokens) through the model from `state`, wherever the streams
// are (any state.position), advancing `state`; fills act.logits: [B*T, V] rows, or [B, V] with
// LogitRows::last. Activations for training need a chunk starting at a segment boundary (infini)
// or at position 0 (the baselines).
void model_forward(const Model& model, StreamState& state, Activations& act, const int32_t* tokens,
                   int64_t tokens_per_stream, LogitRows logit_rows = LogitRows::all);

// Cross entropy of the logits of the last model_forward (B x tokens_per_stream rows) against
// targets [B, T]: fills act.losses, returns their sum in nats.
double model_loss(Activations& act, const int32_t* targets, int64_t tokens_per_stream,
                  int64_t vocab);

// Backward pass after model_forward + model_loss on the same act; the chunk must have started at a
// segment boundary (infini) or at position 0 (the baselines), with an empty cache. For the
// baselines dstate carries nothing (count 0). Accumulates parameter gradients into `grads`. dstate:
// gradient with respect to the memories at the END of the chunk on entry (zero at the end of a
// training sequence, and always zero when the chunk stopped inside a segment: the cache's gradient
// is not carried), at its START on return. loss_scale multiplies every per-token loss (1 / number
// of tokens for a mean).
void model_backward(const Model& model, Parameters& grads, StreamState& dstate, Activations& act,
                    const int32_t* tokens, const int32_t* targets, int64_t tokens_per_stream,
                    float loss_scale);

}  // namespace infini
