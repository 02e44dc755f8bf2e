#include "model/training_pass.h"

#include <algorithm>

#include "core/error.h"

namespace infini {

namespace {

int64_t resolve_chunk(const ModelConfig& c, int64_t T, int64_t chunk) {
  if (chunk <= 0 || chunk >= T) return T;
  if (c.attention.type != "infini")
    throw Error(
        "recompute chunk",
        str("chunked recomputation (", chunk, " of ", T,
            " tokens) is implemented for infini only, not for attention type '", c.attention.type,
            "': its later chunks would need the earlier chunks' K/V "
            "with their gradient"),
        "train with the full pass (no recompute chunk)");
  const int64_t N = c.attention.segment_length;
  if (chunk % N != 0 || T % chunk != 0)
    throw Error("recompute chunk", str(chunk, " tokens must be a multiple of the segment length (",
                                       N, ") and divide the sequence length (", T, ")"));
  return chunk;
}

// Copies columns [t0, t0 + n) of every row of src [B, T] into dst [B, n].
void gather_chunk(int32_t* dst, const int32_t* src, int64_t B, int64_t T, int64_t t0, int64_t n) {
  for (int64_t b = 0; b < B; ++b) std::copy_n(src + b * T + t0, n, dst + b * n);
}

}  // namespace

TrainingPass training_pass_create(const ModelConfig& config, int64_t batch, int64_t tokens,
                                  int64_t chunk_tokens) {
  TrainingPass p;
  p.batch = batch;
  p.tokens = tokens;
  p.chunk_tokens = resolve_chunk(config, tokens, chunk_tokens);
  p.act = activations_create(config, batch, p.chunk_tokens, true);
  p.state = stream_state_create(config, batch);
  p.dstate = stream_state_create(config, batch, /*with_cache=*/false);
  const int64_t chunks = tokens / p.chunk_tokens;
  if (chunks > 1) p.boundary_states.resize(chunks * p.state.count);
  p.chunk_inputs.resize(batch * p.chunk_tokens);
  p.chunk_targets.resize(batch * p.chunk_tokens);
  return p;
}

size_t training_pass_bytes(const ModelConfig& config, int64_t batch, int64_t tokens,
                           int64_t chunk_tokens) {
  const int64_t chunk = resolve_chunk(config, tokens, chunk_tokens), chunks = tokens / chunk;
  const int64_t state_floats = config.attention.type == "infini"
                                   ? config.num_hidden_layers * batch * config.num_key_value_heads *
                                         config.head_dim * (config.head_dim + 1)
                                   : 0;
  return activations_bytes(config, batch, chunk, true) + stream_state_bytes(config, batch, true) +
         stream_state_bytes(config, batch, false) +
         sizeof(float) * state_floats * (chunks > 1 ? chunks : 0);
}

double training_pass_run(const Model& model, Parameters& grads, TrainingPass& p,
                         const int32_t* inputs, const int32_t* targets, float loss_scale) {
  const int64_t B = p.batch, T = p.tokens, C = p.chunk_tokens, chunks = T / C,
                V = model.config.vocab_size;
  stream_state_reset(p.state);
  stream_state_reset(p.dstate);
  double loss = 0;
  auto forward_chunk = [&](int64_t c) {
    gather_chunk(p.chunk_inputs.data(), inputs, B, T, c * C, C);
    gather_chunk(p.chunk_targets.data(), targets, B, T, c * C, C);
    model_forward(model, p.state, p.act, p.chunk_inputs.data(), C);
    return model_loss(p.act, p.chunk_targets.data(), C, V);
  };
  auto backward_chunk = [&] {
    model_backward(model, grads, p.dstate, p.act, p.chunk_inputs.data(), p.chunk_targets.data(), C,
                   loss_scale);
  };

  if (chunks == 1) {
    loss = forward_chunk(0);
    backward_chunk();
    return loss;
  }
  float* saved = p.boundary_states.data();
  for (int64_t c = 0; c < chunks; ++c) {
    std::copy_n(p.state.all, p.state.count, saved + c * p.state.count);
    loss += forward_chunk(c);
  }
  for (int64_t c = chunks - 1; c >= 0; --c) {
    std::copy_n(saved + c * p.state.count, p.state.count, p.state.all);
    p.state.position = c * C;
    forward_chunk(c);  // the same numbers as the first time: same inputs, same state
    backward_chunk();
  }
  return loss;
}

}  // namespace infini
