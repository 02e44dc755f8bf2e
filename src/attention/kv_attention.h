// Softmax attention over a KV cache: the local attention of the spec §3 baselines full, sliding,
// xl (Transformer-XL) and bswa (block sliding window), one code path for all four through the
// policies of attention_policy.h and the one masked-attention kernel (masked_attention.h).
//
// For the token at stream position p and query head h (kv head g = h / (H / Hkv)):
//   out[p, h] = sum_{j in visible(p)} softmax_j( rope(q[p,h], p) . rope(k[j,g], j) / sqrt(d) )
//   v[j,g]
// with visible(p) = [first_key(p), p] of the policy, RoPE in the HF rotate_half convention (spec
// §1). Positions are rebased to the oldest key the chunk uses (KvChunkPlan): only differences
// enter the scores, so this equals stream positions and keeps the angles exact at 10^6 tokens.
//
// These functions process a chunk of T tokens for B streams that are all at the same stream
// position; the cache holds the raw K/V of the tokens before it. Training runs a whole sequence
// as one chunk from an empty cache (gradients flow between the sequence's segments, except into
// the previous segment's K/V for xl); streaming runs chunks of any length, with
// kv_cache_advance after each. The output projection is the caller's: out is the concatenated
// heads.
#pragma once

#include <cstdint>

#include "attention/attention_policy.h"
#include "attention/kv_cache.h"

namespace infini {

struct KvShape {
  int64_t batch = 1;     // B streams
  int64_t tokens = 0;    // T tokens per stream in this chunk
  int64_t heads = 0;     // H query heads
  int64_t kv_heads = 0;  // Hkv key/value heads
  int64_t head_dim = 0;  // d
  int64_t position = 0;  // stream position of the chunk's first token (every stream alike)

  int64_t qkv_width() const { return (heads + 2 * kv_heads) * head_dim; }
  int64_t group_size() const { return heads / kv_heads; }
};

// RoPE tables for rebased positions 0 .. positions - 1 (rope_tables(cos, sin, positions, d,
// theta, 0)): cos, sin [positions, d/2]. A chunk needs kv_rope_positions of them.
struct RopeTable {
  const float* cos = nullptr;
  const float* sin = nullptr;
  int64_t positions = 0;
};

// Sizes, all for one chunk (they depend on the policy, shape.position and shape.tokens):
//   kv_rope_positions     rows of the RoPE tables: the chunk's key buffer length
//                         (<= kv_cache_max_rows + T for the windowed types)
//   kv_probs_floats       probabilities kept for backward, per (stream, head): probs is
//                         [B, H, kv_probs_floats]
//   kv_*_scratch_floats   per-thread scratch; pass threads_count() times as many floats
int64_t kv_rope_positions(const KvPolicy& policy, const KvShape& shape);
int64_t kv_probs_floats(const KvPolicy& policy, const KvShape& shape);
int64_t kv_forward_scratch_floats(const KvPolicy& policy, const KvShape& shape);
int64_t kv_backward_scratch_floats(const KvPolicy& policy, const KvShape& shape);

// out[B, T, H*d] = attention heads, concatenated. qkv[B, T, (H + 2 Hkv) d] holds the chunk's
// raw projections (columns: Q heads | K heads | V heads). cache: the raw K/V of the stream
// positions before the chunk, newest last; it must hold at least
// kv_cache_rows_needed(policy, position) rows (older extra rows are ignored) and is not changed.
// probs: [B, H, kv_probs_floats] receives what backward needs, or null (inference).
void kv_attention_forward(float* out, float* probs, const float* qkv, const KvCache& cache,
                          RopeTable rope, const KvPolicy& policy, const KvShape& shape,
                          float* scratch);

// Backward through one chunk: dqkv[B, T, (H + 2 Hkv) d] is overwritten with d loss / d qkv for
// dout[B, T, H*d] = d loss / d out. probs, qkv, cache, rope, policy and shape as in the forward
// call (the cache not advanced in between). The cache's rows are constants: no gradient flows
// to tokens before the chunk. For xl, keys of an earlier segment receive no gradient from a
// later segment's queries (stop-gradient); their own segment's queries still train them.
void kv_attention_backward(float* dqkv, const float* dout, const float* probs, const float* qkv,
                           const KvCache& cache, RopeTable rope, const KvPolicy& policy,
                           const KvShape& shape, float* scratch);

// After a chunk: appends its raw K/V rows (from qkv, as in forward) to the cache and drops the
// rows no later token sees, leaving kv_cache_rows_needed(policy, position + T) rows; throws when
// that exceeds cache.capacity (grow the buffers first: full needs position + T rows).
void kv_cache_advance(KvCache& cache, const float* qkv, const KvPolicy& policy,
                      const KvShape& shape);

}  // namespace infini
