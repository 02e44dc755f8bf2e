#include "model/parameters.h"

namespace infini {

Parameters parameters_layout(const ModelConfig& c, Arena& arena) {
  const int64_t V = c.vocab_size, D = c.hidden_size, H = c.num_attention_heads,
                Hkv = c.num_key_value_heads, d = c.head_dim, F = c.intermediate_size;
  const bool infini = c.attention.type == "infini", fam = c.attention.type == "fam";
  // Everything in one contiguous block so that optimizers and norms can sweep it at once.
  int64_t count = V * D + D + (c.tie_word_embeddings ? 0 : V * D) +
                  (fam ? c.attention.fam_length * D : 0);
  const int64_t per_layer = D + (H + 2 * Hkv) * d * D + D * H * d + (infini ? H : 0) + D +
                            2 * F * D + D * F;
  count += c.num_hidden_layers * per_layer;

  Parameters p;
  p.count = count;
  p.all = arena.take<float>(count);
  float* cursor = p.all;
  auto take = [&](int64_t n) {
    float* at = cursor;
    if (cursor) cursor += n;
    return at;
  };
  p.embed = take(V * D);
  p.layers.resize(c.num_hidden_layers);
  for (LayerParameters& l : p.layers) {
    l.input_norm = take(D);
    l.qkv = take((H + 2 * Hkv) * d * D);
    l.out = take(D * H * d);
    l.memory_gate = infini ? take(H) : nullptr;
    l.post_norm = take(D);
    l.gate_up = take(2 * F * D);
    l.down = take(D * F);
  }
  p.final_norm = take(D);
  p.lm_head = c.tie_word_embeddings ? p.embed : take(V * D);
  p.fam_embeddings = fam ? take(c.attention.fam_length * D) : nullptr;
  return p;
}

std::vector<ParameterInfo> parameter_table(const ModelConfig& c, const Parameters& p) {
  const int64_t V = c.vocab_size, D = c.hidden_size, H = c.num_attention_heads,
                Hkv = c.num_key_value_heads, d = c.head_dim, F = c.intermediate_size;
  std::vector<ParameterInfo> t;
  t.push_back({"model.embed_tokens.weight", p.embed, {V, D}, ParameterKind::Embedding});
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const LayerParameters& l = p.layers[i];
    const std::string at = "model.layers." + std::to_string(i) + ".";
    t.push_back({at + "input_layernorm.weight", l.input_norm, {D}, ParameterKind::Norm});
    t.push_back({at + "self_attn.q_proj.weight", l.qkv, {H * d, D}, ParameterKind::Matrix});
    t.push_back({at + "self_attn.k_proj.weight", l.qkv + H * d * D, {Hkv * d, D},
                 ParameterKind::Matrix});
    t.push_back({at + "self_attn.v_proj.weight", l.qkv + (H + Hkv) * d * D, {Hkv * d, D},
                 ParameterKind::Matrix});
    t.push_back({at + "self_attn.o_proj.weight", l.out, {D, H * d}, ParameterKind::Matrix});
    if (l.memory_gate)
      t.push_back({at + "self_attn.memory_gate", l.memory_gate, {H}, ParameterKind::Gate});
    t.push_back({at + "post_attention_layernorm.weight", l.post_norm, {D}, ParameterKind::Norm});
    t.push_back({at + "mlp.gate_proj.weight", l.gate_up, {F, D}, ParameterKind::Matrix});
    t.push_back({at + "mlp.up_proj.weight", l.gate_up + F * D, {F, D}, ParameterKind::Matrix});
    t.push_back({at + "mlp.down_proj.weight", l.down, {D, F}, ParameterKind::Matrix});
  }
  t.push_back({"model.norm.weight", p.final_norm, {D}, ParameterKind::Norm});
  if (!c.tie_word_embeddings)
    t.push_back({"lm_head.weight", p.lm_head, {V, D}, ParameterKind::Matrix});
  if (p.fam_embeddings)
    t.push_back({"model.fam_embeddings", p.fam_embeddings, {c.attention.fam_length, D},
                 ParameterKind::Embedding});
  return t;
}

}  // namespace infini
