// The model's parameters as named views into one block of floats (llm.c's ParameterTensors).
//
// The same layout serves the weights, their gradients and the optimizer's moments: three blocks
// of `count` floats each, never mixed. Within a layer the query/key/value projections are stacked
// in one matrix (one GEMM computes all three) and so are the MLP's gate and up projections; the
// checkpoint's separate HF tensors (q_proj, k_proj, ...) are views of row ranges of them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/arena.h"
#include "model/config.h"

namespace infini {

struct LayerParameters {
  float* input_norm;   // [D]                input_layernorm
  float* qkv;          // [(H + 2 Hkv) d, D] q_proj | k_proj | v_proj (rows)
  float* out;          // [D, H d]           o_proj
  float* memory_gate;  // [H]                beta (infini only, else nullptr)
  float* post_norm;    // [D]                post_attention_layernorm
  float* gate_up;      // [2F, D]            gate_proj | up_proj (rows)
  float* down;         // [D, F]             down_proj
};

struct Parameters {
  float* embed = nullptr;           // [V, D]
  std::vector<LayerParameters> layers;
  float* final_norm = nullptr;      // [D]
  float* lm_head = nullptr;         // [V, D]; == embed when tie_word_embeddings
  float* fam_embeddings = nullptr;  // [fam_length, D] (fam only)
  float* all = nullptr;             // the whole block: `count` floats
  int64_t count = 0;
};

// Carves the parameter views for `config` out of `arena` (use Arena::measuring() to size it).
Parameters parameters_layout(const ModelConfig& config, Arena& arena);

// How a parameter is treated by initialisation and the optimizer.
enum class ParameterKind { Embedding, Matrix, Norm, Gate };

// One checkpoint tensor: its HF name, where it lives, its shape.
struct ParameterInfo {
  std::string name;
  float* data;
  std::vector<int64_t> shape;
  ParameterKind kind;
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    return n;
  }
};

// Every tensor of the checkpoint, in a fixed order (views of `p`).
std::vector<ParameterInfo> parameter_table(const ModelConfig& config, const Parameters& p);

}  // namespace infini
