// Forward and backward passes of the decoder (spec §1) with Infini-attention (§2) or a softmax
// baseline over a KV cache (§3). The mechanisms differ only in layer_attention_forward / _backward.
#include "model/model.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "attention/kv_attention.h"
#include "core/parallel.h"
#include "core/random.h"
#include "kernels/activations.h"
#include "kernels/cross_entropy.h"
#include "kernels/embedding.h"
#include "kernels/matmul.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"

namespace infini {

namespace {

InfiniShape attention_shape(const ModelConfig& c, int64_t batch, int64_t tokens) {
  return InfiniShape{batch,
                     tokens,
                     c.attention.segment_length,
                     c.num_attention_heads,
                     c.num_key_value_heads,
                     c.head_dim,
                     c.attention.memory_update == "delta"};
}

KvShape kv_shape(const ModelConfig& c, int64_t batch, int64_t tokens, int64_t position) {
  return KvShape{batch, tokens, c.num_attention_heads, c.num_key_value_heads, c.head_dim, position};
}

RopeTable kv_rope(const Activations& act) {
  return RopeTable{act.kv_rope_cos.data(), act.kv_rope_sin.data(), act.kv_rope_rows};
}

// Makes the state's cache and the activations' RoPE tables and scratch big enough for a chunk of
// the baselines at `shape` (they grow only for full, whose cache grows with the stream).
void kv_reserve(const ModelConfig& c, const KvPolicy& policy, StreamState& state, Activations& act,
                const KvShape& shape) {
  if (kv_cache_max_rows(policy) < 0) stream_state_reserve(state, shape.position + shape.tokens);
  activations_reserve_kv(act, c, kv_rope_positions(policy, shape),
                         kv_forward_scratch_floats(policy, shape));
}

// One layer's attention: out a.att [B, T, H d] from a.qkv, advancing the layer's state (memory
// and cache). The one place where the mechanisms are told apart in the forward pass.
void layer_attention_forward(const ModelConfig& c, const std::optional<KvPolicy>& policy,
                             LayerState& layer, LayerActivations& a, const LayerParameters& p,
                             Activations& act, int64_t B, int64_t T, int64_t position, int64_t l) {
  if (!policy) {
    infini_attention_forward(a.att, a.attn, layer.memory, layer.cache, a.qkv, p.memory_gate,
                             act.rope_cos, act.rope_sin, attention_shape(c, B, T),
                             act.attn_scratch);
    return;
  }
  const KvShape shape = kv_shape(c, B, T, position);
  if (c.attention.type == "fam") {  // block rows as bswa, plus the feedback memory (fam.h)
    fam_layer_forward(a.att, act.fam.layers[act.training ? l : 0], act.fam, layer.fam, layer.cache,
                      a.qkv, p, fam_dims(c, B, T, position));
    kv_cache_advance(layer.cache, a.qkv, *policy, shape);
    return;
  }
  kv_attention_forward(a.att, a.kv_probs, a.qkv, layer.cache, kv_rope(act), *policy, shape,
                       act.kv_scratch.data());
  kv_cache_advance(layer.cache, a.qkv, *policy, shape);
}

// d loss / d qkv into act.dqkv from act.datt (and the gates' and memories' gradients for infini).
// The baselines' training chunks start at position 0 with an empty cache.
void layer_attention_backward(const ModelConfig& c, const std::optional<KvPolicy>& policy,
                              LayerState& dlayer, LayerParameters& gp, const LayerActivations& a,
                              const LayerParameters& p, Activations& act, int64_t B, int64_t T,
                              int64_t l) {
  if (!policy) {
    infini_attention_backward(act.dqkv, gp.memory_gate, dlayer.memory, act.datt, a.attn, a.qkv,
                              p.memory_gate, act.rope_cos, act.rope_sin, attention_shape(c, B, T),
                              act.attn_scratch, act.dgate_partial);
    return;
  }
  if (c.attention.type == "fam") {
    fam_layer_backward(act.dqkv, gp, act.datt, act.fam.layers[l], act.fam, a.qkv, p,
                       fam_dims(c, B, T, 0), l);
    return;
  }
  const KvShape shape = kv_shape(c, B, T, 0);
  kv_attention_backward(act.dqkv, act.datt, a.kv_probs, a.qkv, KvCache{}, kv_rope(act), *policy,
                        shape, act.kv_scratch.data());
}

void copy_rows(float* to, const float* from, int64_t count) {
  if (to != from) std::memcpy(to, from, count * sizeof(float));
}

}  // namespace

// A chunk of a few rows (decoding) splits W's rows across the threads, each a single-threaded
// product: oneDNN then works without the scratch buffer it would take from malloc for a threaded
// one, so a decoding step allocates nothing, and each thread streams its share of the weights.
void model_linear(float* y, const float* x, const float* W, int64_t R, int64_t n, int64_t k,
                  bool accumulate) {
  if (R > kDecodingRows) {
    matmul_nt(y, x, W, R, n, k, accumulate);
    return;
  }
  constexpr int64_t kBlock = 16;  // output columns per unit of work
  parallel_ranges((n + kBlock - 1) / kBlock, [&](int64_t begin, int64_t end) {
    const int64_t j0 = begin * kBlock, j1 = std::min(n, end * kBlock);
    matmul_nt(y + j0, x, W + j0 * k, R, j1 - j0, k, accumulate, {k, k, n});
  });
}

Model model_create(const ModelConfig& config) {
  config_validate(config, "model config");
  model_kv_policy(config);  // validates the baselines' fields
  Model m;
  m.config = config;
  Arena measure = Arena::measuring();
  parameters_layout(config, measure);
  m.storage = Arena(measure.used());
  m.weights = parameters_layout(config, m.storage);
  return m;
}

void model_init_random(Model& model, uint64_t seed) {
  const ModelConfig& c = model.config;
  Rng rng(seed);
  const float std_dev = 0.02f, out_std = 0.02f / std::sqrt(2.0f * c.num_hidden_layers);
  for (const ParameterInfo& p : parameter_table(c, model.weights)) {
    const bool output_projection =
        p.name.ends_with("o_proj.weight") || p.name.ends_with("down_proj.weight");
    for (int64_t i = 0; i < p.numel(); ++i) {
      switch (p.kind) {
        case ParameterKind::Norm:
          p.data[i] = 1.0f;
          break;
        case ParameterKind::Gate:
          p.data[i] = c.attention.gate_init;
          break;
        default:
          p.data[i] = float(rng.normal()) * (output_projection ? out_std : std_dev);
      }
    }
  }
}

void model_forward(const Model& model, StreamState& state, Activations& act, const int32_t* tokens,
                   int64_t T, LogitRows logit_rows) {
  const ModelConfig& c = model.config;
  const Parameters& w = model.weights;
  const int64_t B = act.batch, R = B * T, D = c.hidden_size, V = c.vocab_size,
                H = c.num_attention_heads, d = c.head_dim, F = c.intermediate_size,
                N = c.attention.segment_length, L = c.num_hidden_layers;
  INFINI_CHECK(T >= 1 && T <= act.tokens, "chunk of ", T, " tokens for buffers of ", act.tokens);
  INFINI_CHECK(state.batch == B, "stream state for ", state.batch, " streams, chunk for ", B);
  INFINI_CHECK(int64_t(state.layers.size()) == L, "stream state for ", state.layers.size(),
               " layers, model of ", L);
  const std::optional<KvPolicy> policy = model_kv_policy(c);
  const int64_t rows = policy ? kv_cache_rows_needed(*policy, state.position) : state.position % N;
  for (const LayerState& layer : state.layers)
    INFINI_CHECK(layer.cache.rows == rows, "stream at position ", state.position, " with ",
                 layer.cache.rows, " cached rows (", c.attention.type, " keeps ", rows, ")");
  const bool training_start = policy ? state.position == 0 : state.position % N == 0;
  INFINI_CHECK(!act.training || (training_start && logit_rows == LogitRows::all),
               "activations for training need a chunk starting at ",
               policy ? "position 0" : "a segment boundary", " (position ", state.position,
               ") and every row's logits");
  const int64_t W = (H + 2 * c.num_key_value_heads) * d;
  const int64_t position = state.position;
  act.chunk_start = position;
  // fam's block rows use fam.h's own tables and scratch, sized at activations_create
  if (policy && c.attention.type != "fam")
    kv_reserve(c, *policy, state, act, kv_shape(c, B, T, position));

  if (c.attention.type == "fam" && position == 0) {  // the initial F_l: the FAM prompt's pass
    fam_initial_forward(state.fam_all, act.fam, c, w, B);
  }
  embedding_forward(act.layers[0].x_in, w.embed, tokens, R, D);
  for (int64_t l = 0; l < L; ++l) {
    LayerActivations& a = act.layers[act.training ? l : 0];
    const LayerParameters& p = w.layers[l];
    rmsnorm_forward(a.xn1, a.rstd1, a.x_in, p.input_norm, R, D, float(c.rms_norm_eps));
    model_linear(a.qkv, a.xn1, p.qkv, R, W, D);
    layer_attention_forward(c, policy, state.layers[l], a, p, act, B, T, position, l);
    copy_rows(a.x_mid, a.x_in, R * D);
    model_linear(a.x_mid, a.att, p.out, R, D, H * d, true);
    rmsnorm_forward(a.xn2, a.rstd2, a.x_mid, p.post_norm, R, D, float(c.rms_norm_eps));
    model_linear(a.gate_up, a.xn2, p.gate_up, R, 2 * F, D);
    swiglu_forward(a.mlp, a.gate_up, R, F);
    float* x_out = !act.training ? a.x_mid : (l + 1 < L ? act.layers[l + 1].x_in : act.x_final);
    copy_rows(x_out, a.x_mid, R * D);
    model_linear(x_out, a.mlp, p.down, R, D, F, true);
  }
  if (logit_rows == LogitRows::all) {
    rmsnorm_forward(act.xn_final, act.rstd_final, act.x_final, w.final_norm, R, D,
                    float(c.rms_norm_eps));
    model_linear(act.logits, act.xn_final, w.lm_head, R, V, D);
  } else {  // row b of xn_final: the last token of stream b
    for (int64_t b = 0; b < B; ++b)
      rmsnorm_forward(act.xn_final + b * D, act.rstd_final + b, act.x_final + (b * T + T - 1) * D,
                      w.final_norm, 1, D, float(c.rms_norm_eps));
    model_linear(act.logits, act.xn_final, w.lm_head, B, V, D);
  }
  state.position += T;
}

double model_loss(Activations& act, const int32_t* targets, int64_t T, int64_t vocab) {
  INFINI_CHECK(T >= 1 && T <= act.tokens, "loss over ", T, " tokens of buffers for ", act.tokens);
  return cross_entropy_forward(act.losses, act.logits, targets, act.batch * T, vocab);
}

void model_backward(const Model& model, Parameters& g, StreamState& dstate, Activations& act,
                    const int32_t* tokens, const int32_t* targets, int64_t T, float loss_scale) {
  const ModelConfig& c = model.config;
  const Parameters& w = model.weights;
  INFINI_CHECK(act.training, "backward needs activations created for training");
  const int64_t B = act.batch, R = B * T, D = c.hidden_size, V = c.vocab_size,
                H = c.num_attention_heads, d = c.head_dim, F = c.intermediate_size,
                L = c.num_hidden_layers, N = c.attention.segment_length;
  const std::optional<KvPolicy> policy = model_kv_policy(c);
  INFINI_CHECK(policy ? act.chunk_start == 0 : act.chunk_start % N == 0,
               "backward needs a chunk that started at ",
               policy ? "position 0" : "a segment boundary",
               " with an empty cache; this one started at position ", act.chunk_start);
  if ((act.chunk_start + T) % N != 0)  // the cache's gradient is not carried: nothing may follow
    INFINI_CHECK(
        std::all_of(dstate.all, dstate.all + dstate.count, [](float x) { return x == 0; }),
        "a chunk that stops inside a segment must end its training sequence (zero dstate)");
  const int64_t W = (H + 2 * c.num_key_value_heads) * d;

  // head: logits = xn_final W_head^T
  cross_entropy_backward(act.logits, act.logits, targets, R, V, loss_scale);
  matmul_nn(act.dnormed, act.logits, w.lm_head, R, D, V);
  matmul_tn(g.lm_head, act.logits, act.xn_final, V, D, R, true);
  std::memset(act.dx, 0, R * D * sizeof(float));
  rmsnorm_backward(act.dx, g.final_norm, act.dnormed, act.x_final, w.final_norm, act.rstd_final, R,
                   D);

  for (int64_t l = L - 1; l >= 0; --l) {
    LayerActivations& a = act.layers[l];
    const LayerParameters& p = w.layers[l];
    LayerParameters& gp = g.layers[l];
    // x_out = x_mid + mlp W_down^T
    matmul_nn(act.dmlp, act.dx, p.down, R, F, D);
    matmul_tn(gp.down, act.dx, a.mlp, D, F, R, true);
    swiglu_backward(act.dgate_up, act.dmlp, a.gate_up, R, F);
    matmul_nn(act.dnormed, act.dgate_up, p.gate_up, R, D, 2 * F);
    matmul_tn(gp.gate_up, act.dgate_up, a.xn2, 2 * F, D, R, true);
    rmsnorm_backward(act.dx, gp.post_norm, act.dnormed, a.x_mid, p.post_norm, a.rstd2, R, D);
    // x_mid = x_in + att W_o^T
    matmul_nn(act.datt, act.dx, p.out, R, H * d, D);
    matmul_tn(gp.out, act.dx, a.att, D, H * d, R, true);
    layer_attention_backward(c, policy, dstate.layers[l], gp, a, p, act, B, T, l);
    matmul_nn(act.dnormed, act.dqkv, p.qkv, R, D, W);
    matmul_tn(gp.qkv, act.dqkv, a.xn1, W, D, R, true);
    rmsnorm_backward(act.dx, gp.input_norm, act.dnormed, a.x_in, p.input_norm, a.rstd1, R, D);
  }
  embedding_backward(g.embed, act.dx, tokens, R, D, V);
  if (c.attention.type == "fam") fam_initial_backward(g, act.fam, c, w);
}

}  // namespace infini
