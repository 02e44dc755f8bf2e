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
// These functions process a chunk of T tokens per stream (T = S segments, the last one possibly
// shorter) starting at a segment boundary, from a given memory state, for B independent streams.
// Training runs a whole sequence as one chunk (backpropagation through time over all segments);
// streaming runs one segment at a time. The output projection is not part of this file: the
// caller multiplies the concatenated heads by Wo.
#pragma once

#include <cstdint>

namespace infini {

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
  float* q_rope;         // [B, T, H, d]    rope(Q), positions restarting each segment
  float* k_rope;         // [B, T, Hkv, d]  rope(K)
  float* probs;          // [B, H, T, N]    row t: weights over the keys of its segment
  float* a_mem;          // [B, T, H, d]    memory retrieval
  float* a_dot;          // [B, T, H, d]    local attention
  float* memory_before;  // [B, S, Hkv, d, d]  M at the start of each segment
  float* norm_before;    // [B, S, Hkv, d]     z at the start of each segment
};

// out[B, T, H*d] = the gated attention heads, concatenated. qkv[B, T, (H + 2 Hkv) d] holds the
// raw projections (columns: Q heads | K heads | V heads). gate_logits[H] = beta. rope_cos/sin:
// [N, d/2] tables for positions 0..N-1. state is read (start of chunk) and updated in place (end
// of chunk). scratch: threads_count() * shape.scratch_floats() floats.
void infini_attention_forward(float* out, const InfiniActivations& act, InfiniMemory state,
                              const float* qkv, const float* gate_logits, const float* rope_cos,
                              const float* rope_sin, const InfiniShape& shape, float* scratch);

// Backward through one chunk. dqkv[B, T, (H + 2 Hkv) d] is overwritten; dgate_logits[H] is
// accumulated. dstate holds on entry the gradient with respect to the state at the END of the
// chunk (zero for the end of a training sequence) and on return the gradient with respect to the
// state at its START. dgate_partial: [B, H] scratch for a deterministic reduction.
void infini_attention_backward(float* dqkv, float* dgate_logits, InfiniMemory dstate,
                               const float* dout, const InfiniActivations& act, const float* qkv,
                               const float* gate_logits, const float* rope_cos,
                               const float* rope_sin, const InfiniShape& shape, float* scratch,
                               float* dgate_partial);

}  // namespace infini
