// What a model is: the plain-data configuration read from a checkpoint's config.json.
//
// Keys follow Hugging Face Llama configs (spec section 5, docs/formats.md); the attention mechanism
// (spec sections 2-4) lives in a nested "attention" object, the tokenizer in "tokenizer". Reading
// checks JSON types and every constraint the rest of the engine relies on (divisibility, required
// fields per mechanism, sizes whose element counts fit in int64), so that a bad config is reported
// with its file and key instead of failing later inside a kernel. Unknown keys are ignored (HF
// configs carry many), except a few HF keys that would silently change the numbers if ignored
// (hidden_act other than "silu", attention_bias / mlp_bias true, a non-null rope_scaling).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace infini {

struct AttentionConfig {
  std::string type = "infini";          // infini | full | sliding | xl | bswa | fam
  int64_t segment_length = 0;           // N: segment (block) length; required, >= 1
  std::string memory_update = "delta";  // infini: linear | delta
  double gate_init = 0;                 // infini: initial value of every memory_gate beta_h
  int64_t window = 0;                   // sliding: tokens attended, itself included; required >= 1
  int64_t memory_blocks = 0;            // bswa, fam: previous blocks attended; required >= 1
  int64_t fam_length = 0;               // fam: feedback-memory rows; required, 0 <= it < N
};

struct TokenizerConfig {
  std::string type = "byte";  // byte | sentencepiece
  std::string model_file;     // sentencepiece: path of the .model file (relative to the checkpoint)
};

struct ModelConfig {
  std::string model_type = "infini-transformer";  // or "llama"
  int64_t vocab_size = 0;                         // V
  int64_t hidden_size = 0;                        // D
  int64_t num_hidden_layers = 0;                  // L
  int64_t num_attention_heads = 0;                // H
  int64_t num_key_value_heads = 0;                // Hkv; default H
  int64_t head_dim = 0;                           // d; default D / H
  int64_t intermediate_size = 0;                  // F
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;
  bool tie_word_embeddings = false;
  AttentionConfig attention;
  TokenizerConfig tokenizer;
};

// Reads and validates a config object; `where` (the file) names it in errors.
ModelConfig config_from_json(const nlohmann::json& json, const std::string& where);
// Reads `path`: a config.json file, or a checkpoint directory holding one.
ModelConfig config_load(const std::string& path);
// Validates `config` and writes it to `path` (a file name, e.g. <checkpoint>/config.json) as
// indented JSON, atomically.
void config_save(const ModelConfig& config, const std::string& path);
// The config as JSON (only the attention fields its type uses); config_from_json inverts it.
nlohmann::json config_to_json(const ModelConfig& config);
// Throws infini::Error naming `where` and the key when a constraint does not hold.
void config_validate(const ModelConfig& config, const std::string& where);
// Number of weights in model.safetensors (spec section 5), memory gates and FAM rows included.
int64_t config_parameter_count(const ModelConfig& config);

}  // namespace infini
