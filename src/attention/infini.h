// Infini-attention (Munkhdalai, Faruqui, Gopal 2024, arXiv 2404.07143, §2.1; contract:
// ../shared/spec/memory-mechanisms.md §2).
//
// Per segment X (n <= N rows) and kv head g, with s(x) = ELU(x) + 1 and eps = 1e-6:
//   retrieval (eq. 3)   A_mem = s(Q) M_g / max(s(Q) . z_g, eps)           (raw Q, before update)
//   local attention     A_dot = softmax(rope(Q) rope(K)^T / sqrt(d), causal) V,  positions 0..n-1
//   gate (eq. 6)        A = sigmoid(beta_h) A_mem + (1 - sigmoid(beta_h)) A_dot
//   update, linear (4)  M_g += s(K)^T V
//   update, delta (5)   M_g += s(K)^T (V - s(K) M_g / max(s(K) . z_g, eps))
//   both                z_g += sum_t s(K_t)
// Query head h reads the memory of kv head h / (H / Hkv) (grouped-query attention).
//
// The forward pass takes a chunk of T tokens per stream, for B independent streams, at any point
// of the streams: the state is the memory (M, z) at the start of the current segment plus a KV
// cache holding the raw K, V rows of that segment seen so far (c rows, 0 <= c < N). The chunk is
// cut into pieces along the segment grid: the first piece (N - c rows at most) continues the
// cached segment, the next ones are whole segments, the last may stop inside a segment. A piece's
// rows attend causally to the segment's cached rows and to themselves, with RoPE positions
// c, c + 1, ... within the segment, and retrieve from M, z as they were at the segment's start.
// When a piece completes its segment, M and z are updated with the whole segment (cached rows +
// the piece's rows: spec §2 step 6) and the cache is emptied; the rows of a piece that stops
// inside a segment are appended to the cache instead. The numbers are therefore those of one pass
// over the whole stream, however it is cut into chunks (decoding is a chunk of one token).
//
// Training runs a whole sequence as one chunk from a segment boundary with an empty cache
// (backpropagation through time over all segments); the backward pass requires that. The output
// projection is not part of this file: the caller multiplies the concatenated heads by Wo.
#pragma once

#include <cstdint>

#include "attention/kv_cache.h"

namespace infini {

// A chunk of at most this many rows in all (B x T: decoding) runs on kernels that take no memory
// from the allocator (oneDNN's sgemm does, for larger products): decoding allocates nothing.
inline constexpr int64_t kDecodingRows = 4;

struct InfiniShape {
  int64_t batch = 1;           // B streams
  int64_t tokens = 0;          // T tokens per stream in this chunk
  int64_t segment_length = 0;  // N
  int64_t heads = 0;           // H query heads
  int64_t kv_heads = 0;        // Hkv key/value heads (memories)
  int64_t head_dim = 0;        // d
  bool delta = true;           // memory_update: delta (true) or linear

  int64_t segments() const { return (tokens + segment_length - 1) / segment_length; }
  int64_t qkv_width() const { return (heads + 2 * kv_heads) * head_dim; }
  int64_t group_size() const { return heads / kv_heads; }
  // Floats of per-thread scratch that forward and backward need.
  int64_t scratch_floats() const;
};

// The memory of one layer for B streams.
struct InfiniMemory {
  float* memory;  // M: [B, Hkv, d, d]
  float* norm;    // z: [B, Hkv, d]
};

// What the forward pass keeps for the backward pass (one layer, one chunk). For inference the
// same buffers serve as scratch, and memory_before / norm_before may be null.
struct InfiniActivations {
  float* q_rope;         // [B, T, H, d]    rope(Q), positions within each segment
  float* k_rope;         // [B, T, Hkv, d]  rope(K)
  float* probs;          // [B, H, T, N]    a piece of n rows from t0: [n, c + n] packed at row t0,
                         //                 weights over the segment's keys (c cached ones first)
  float* a_mem;          // [B, T, H, d]    memory retrieval
  float* a_dot;          // [B, T, H, d]    local attention
  float* memory_before;  // [B, S, Hkv, d, d]  M at the start of each segment
  float* norm_before;    // [B, S, Hkv, d]     z at the start of each segment
};

// out[B, T, H*d] = the gated attention heads, concatenated. qkv[B, T, (H + 2 Hkv) d] holds the
// raw projections (columns: Q heads | K heads | V heads). gate_logits[H] = beta. rope_cos/sin:
// [N, d/2] tables for positions 0..N-1. memory (M, z at the start of the current segment) and
// cache (its rows so far, cache.rows = c) are read at the start of the chunk and left as they
// are at its end: cache.rows becomes (c + T) % N. The cache needs capacity >= N when c > 0 or
// when the chunk stops inside a segment; with act.memory_before set (training) c must be 0.
// scratch: threads_count() * shape.scratch_floats() floats.
void infini_attention_forward(float* out, const InfiniActivations& act, InfiniMemory memory,
                              KvCache& cache, const float* qkv, const float* gate_logits,
                              const float* rope_cos, const float* rope_sin,
                              const InfiniShape& shape, float* scratch);

// Spec §2 step 6 for one stream and one kv head: writes `rows` raw key and value rows (row strides
// key_stride, value_stride) into M [d, d] and z [d], linear or delta. scratch: 2 rows d floats.
// (The forward pass does this whenever a segment completes; it also closes a stream's unfinished
// segment when a caller wants the memory a stream's end would leave.)
void infini_memory_update(float* memory, float* norm, const float* keys, int64_t key_stride,
                          const float* values, int64_t value_stride, int64_t rows, int64_t head_dim,
                          bool delta, float* scratch);

// Backward through one chunk that started at a segment boundary with an empty cache.
// dqkv[B, T, (H + 2 Hkv) d] is overwritten; dgate_logits[H] is accumulated. dstate holds on entry
// the gradient with respect to the memory at the END of the chunk (zero for the end of a training
// sequence) and on return the gradient with respect to the memory at its START. A last segment
// shorter than N was not written into the memory (its rows went to the cache), so it gets no
// update gradient; the cache's own gradient is not carried, so a chunk that stops inside a
// segment must end its training sequence. dgate_partial: [B, H] scratch for a deterministic
// reduction.
void infini_attention_backward(float* dqkv, float* dgate_logits, InfiniMemory dstate,
                               const float* dout, const InfiniActivations& act, const float* qkv,
                               const float* gate_logits, const float* rope_cos,
                               const float* rope_sin, const InfiniShape& shape, float* scratch,
                               float* dgate_partial);

}  // namespace infini
