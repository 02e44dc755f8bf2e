// Stream state and activation buffers: sizes and layouts (the two-pass Arena idiom).
#include <algorithm>
#include <cstring>

#include "core/parallel.h"
#include "kernels/rope.h"
#include "model/model.h"

namespace infini {

namespace {

void layout_state(StreamState& s, const ModelConfig& c, Arena& arena) {
  const int64_t Hkv = c.num_key_value_heads, d = c.head_dim, B = s.batch;
  s.count = c.num_hidden_layers * B * Hkv * (d * d + d);
  s.all = arena.take<float>(s.count);
  s.layers.resize(c.num_hidden_layers);
  float* cursor = s.all;
  for (InfiniMemory& m : s.layers) {
    m.memory = cursor;
    m.norm = cursor ? cursor + B * Hkv * d * d : nullptr;
    if (cursor) cursor += B * Hkv * (d * d + d);
  }
}

void layout_activations(Activations& a, const ModelConfig& c, Arena& arena) {
  const int64_t B = a.batch, T = a.tokens, R = B * T, D = c.hidden_size, V = c.vocab_size,
                H = c.num_attention_heads, Hkv = c.num_key_value_heads, d = c.head_dim,
                F = c.intermediate_size, N = c.attention.segment_length,
                W = (H + 2 * Hkv) * d, S = (T + N - 1) / N;
  const int64_t kept_layers = a.training ? c.num_hidden_layers : 1;
  a.layers.resize(kept_layers);
  for (LayerActivations& l : a.layers) {
    l.x_in = arena.take<float>(R * D);
    l.xn1 = arena.take<float>(R * D);
    l.rstd1 = arena.take<float>(R);
    l.qkv = arena.take<float>(R * W);
    l.attn.q_rope = arena.take<float>(R * H * d);
    l.attn.k_rope = arena.take<float>(R * Hkv * d);
    l.attn.probs = arena.take<float>(B * H * T * N);
    l.attn.a_mem = arena.take<float>(R * H * d);
    l.attn.a_dot = arena.take<float>(R * H * d);
    l.attn.memory_before = a.training ? arena.take<float>(B * S * Hkv * d * d) : nullptr;
    l.attn.norm_before = a.training ? arena.take<float>(B * S * Hkv * d) : nullptr;
    l.att = arena.take<float>(R * H * d);
    l.x_mid = a.training ? arena.take<float>(R * D) : l.x_in;
    l.xn2 = a.training ? arena.take<float>(R * D) : l.xn1;
    l.rstd2 = arena.take<float>(R);
    l.gate_up = arena.take<float>(R * 2 * F);
    l.mlp = arena.take<float>(R * F);
  }
  a.x_final = a.training ? arena.take<float>(R * D) : a.layers[0].x_in;
  a.xn_final = arena.take<float>(R * D);
  a.rstd_final = arena.take<float>(R);
  a.logits = arena.take<float>(R * V);
  a.losses = arena.take<float>(R);
  a.rope_cos = arena.take<float>(N * d / 2);
  a.rope_sin = arena.take<float>(N * d / 2);
  InfiniShape shape{B, T, N, H, Hkv, d, true};
  a.attn_scratch = arena.take<float>(threads_count() * shape.scratch_floats());
  const bool bw = a.training;
  a.dx = bw ? arena.take<float>(R * D) : nullptr;
  a.dnormed = bw ? arena.take<float>(R * D) : nullptr;
  a.dqkv = bw ? arena.take<float>(R * W) : nullptr;
  a.datt = bw ? arena.take<float>(R * H * d) : nullptr;
  a.dgate_up = bw ? arena.take<float>(R * 2 * F) : nullptr;
  a.dmlp = bw ? arena.take<float>(R * F) : nullptr;
  a.dgate_partial = bw ? arena.take<float>(B * H) : nullptr;
}

}  // namespace

StreamState stream_state_create(const ModelConfig& config, int64_t batch) {
  INFINI_CHECK(batch >= 1, "batch must be positive, got ", batch);
  StreamState s;
  s.batch = batch;
  Arena measure = Arena::measuring();
  layout_state(s, config, measure);
  s.storage = Arena(measure.used());
  layout_state(s, config, s.storage);
  return s;
}

void stream_state_reset(StreamState& state) {
  std::fill(state.all, state.all + state.count, 0.0f);
  state.position = 0;
}

void stream_state_copy(StreamState& to, const StreamState& from) {
  INFINI_CHECK(to.count == from.count, "stream states of different sizes");
  std::memcpy(to.all, from.all, from.count * sizeof(float));
  to.position = from.position;
}

size_t activations_bytes(const ModelConfig& config, int64_t batch, int64_t tokens, bool training) {
  Activations a;
  a.batch = batch;
  a.tokens = tokens;
  a.training = training;
  Arena measure = Arena::measuring();
  layout_activations(a, config, measure);
  return measure.used();
}

Activations activations_create(const ModelConfig& config, int64_t batch, int64_t tokens,
                               bool training) {
  INFINI_CHECK(batch >= 1 && tokens >= 1, "chunk of ", batch, " x ", tokens, " tokens");
  Activations a;
  a.batch = batch;
  a.tokens = tokens;
  a.training = training;
  a.storage = Arena(activations_bytes(config, batch, tokens, training));
  layout_activations(a, config, a.storage);
  // Infini-attention's local attention restarts positions every segment: one table, 0..N-1.
  rope_tables(a.rope_cos, a.rope_sin, config.attention.segment_length, config.head_dim,
              config.rope_theta, 0);
  return a;
}

}  // namespace infini
