// TransformerFAM (Hwang et al., "TransformerFAM: Feedback attention is working memory", arXiv
// 2404.09173 v3, §2 and Algorithm 1 "Block Sliding Window Attention with Feedback Memory"), as
// pinned down by ../shared/spec/memory-mechanisms.md §4: each layer l carries a feedback memory
// F_l of fam_length rows of the residual stream. At block tau, layer l runs on [F_l ; block] with
// one set of weights: block rows attend to the previous memory_blocks blocks, to the K/V of
// RMSNorm(F_l) (RoPE positions tau*N - fam_length .. tau*N - 1) and to their own block causally;
// when the block is complete, the FAM queries attend to the FAM keys and all N block keys (no
// mask), and residual + MLP turn the FAM rows into F_l for block tau + 1 (within-layer feedback,
// the paper's eq. for FAM_{tau+1}). The initial F_l is model.fam_embeddings run through the stack
// once, FAM rows attending only to each other (tests/reference/README.md lists the choices the
// spec leaves open; this file reproduces tests/reference/mechanisms_ref.py).
//
// Work per layer and chunk: the block rows' Q/K/V are one GEMM (model.cpp); then the FAM
// recurrence walks the blocks the chunk touches in order (F rows' norm + QKV, and for a block
// completed in the chunk the FAM update); then the block rows' attention runs for every block.
// Positions are rebased per block to the oldest key it uses (RoPE only sees differences).
#pragma once

#include <cstdint>
#include <vector>

#include "attention/kv_cache.h"
#include "model/config.h"
#include "model/parameters.h"

namespace infini {

// Shapes of one chunk of a fam model.
struct FamDims {
  int64_t batch = 1, tokens = 0, position = 0;  // B streams, T tokens at stream position
  int64_t N = 1, fam_length = 0, memory_blocks = 1;
  int64_t D = 0, H = 0, Hkv = 0, d = 0, ffn = 0;
  float eps = 1e-5f;
  int64_t W() const { return (H + 2 * Hkv) * d; }
  int64_t key_rows() const { return memory_blocks * N + fam_length + N; }  // most keys of a row
};

FamDims fam_dims(const ModelConfig& c, int64_t batch, int64_t tokens, int64_t position);

// One layer applied to FAM rows: the update at a block (block_rows = N) or a layer of the initial
// pass (block_rows = 0, batch 1). Rows R = batch * fam_length.
struct FamStep {
  int64_t batch = 0, block_rows = 0;
  bool updated = false;  // the attention / MLP part ran (the block was complete)
  float* x_in;           // [R, D]  F_l entering the layer
  float* xn1;            // [R, D]
  float* rstd1;          // [R]
  float* qkv;            // [R, W]  raw Q | K | V of the FAM rows
  float* block_kv;       // [B, 2, N, Hkv, d] raw K then V of the block's rows at this layer
  float* probs;          // [B, H, fam_length, fam_length + N]
  float* att;            // [R, H d]
  float* x_mid;          // [R, D]
  float* xn2;            // [R, D]
  float* rstd2;          // [R]
  float* gate_up;        // [R, 2F]
  float* mlp;            // [R, F]
  float* x_out;          // [R, D]  F_l for the next block
};

struct FamLayerActivations {
  std::vector<FamStep> steps;  // one per block the chunk touches, in order
  float* block_probs;          // training: [B, H, T, key_rows] block rows' attention weights
};

// FAM scratch of one Activations (sized once at activations_create; nothing grows later).
struct FamActivations {
  bool training = false;
  int64_t max_blocks = 0;                   // blocks a chunk of `tokens` tokens can touch
  std::vector<FamLayerActivations> layers;  // [L] (training) or [1] (inference, reused)
  std::vector<FamStep> initial;             // the initial pass: [L - 1] (training) or [1]
  std::vector<float> rope_cos, rope_sin;    // [rope_rows, d/2], positions 0 ..
  int64_t rope_rows = 0;
  std::vector<float> scratch;  // threads * per_thread
  int64_t per_thread = 0;
  // backward only
  float *dx, *dx_mid, *dnormed, *datt, *dgate_up, *dmlp;  // [B fl, D|D|D|Hd|2F|F]
  std::vector<float*> dstep_qkv;                          // [max_blocks][B fl, W]
  std::vector<float> dinitial;                            // [L][fl, D] d loss / d F_l(0)
  std::vector<float> storage;
};

// Empty for the other attention types. fam_activations_floats: what it holds, in floats.
FamActivations fam_activations_create(const ModelConfig& c, int64_t batch, int64_t tokens,
                                      bool training);
int64_t fam_activations_floats(const ModelConfig& c, int64_t batch, int64_t tokens, bool training);

// The initial F_l(0) of every layer into fam_all [L, B, fl, D], computed from the weights
// (fam_embeddings through the stack); keeps the pass in act.initial when training.
void fam_initial_forward(float* fam_all, FamActivations& act, const ModelConfig& c,
                         const Parameters& w, int64_t batch);

// Layer l's attention for a chunk: out [B, T, H d] from qkv [B, T, W] (block rows' raw
// projections), the layer's cache (before kv_cache_advance) and F_l (fam [B, fl, D], advanced to
// the F_l of the block holding position + T). probs: training [B, H, T, key_rows] or null.
void fam_layer_forward(float* out, FamLayerActivations& la, FamActivations& act, float* fam,
                       const KvCache& cache, const float* qkv, const LayerParameters& p,
                       const FamDims& dims);

// Backward of fam_layer_forward for a training chunk (position 0, empty cache): dqkv [B, T, W]
// overwritten from dout [B, T, H d]; weight gradients accumulated into gp; d loss / d F_l(0)
// (summed over the batch) written to act.dinitial row l.
void fam_layer_backward(float* dqkv, LayerParameters& gp, const float* dout,
                        FamLayerActivations& la, FamActivations& act, const float* qkv,
                        const LayerParameters& p, const FamDims& dims, int64_t layer);

// Backward of the initial pass: from act.dinitial into every layer's gradients and
// g.fam_embeddings (accumulated).
void fam_initial_backward(Parameters& g, FamActivations& act, const ModelConfig& c,
                          const Parameters& w);

}  // namespace infini
