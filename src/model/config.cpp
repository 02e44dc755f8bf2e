#include "model/config.h"

#include <sys/stat.h>

#include <cmath>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <sstream>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/json_strict.h"
#include "model/state_size.h"

namespace infini {

namespace {

using json = nlohmann::json;

const char* const kAttentionTypes[] = {"infini", "full", "sliding", "xl", "bswa", "fam"};
const char* const kMemoryUpdates[] = {"linear", "delta"};
const char* const kTokenizerTypes[] = {"byte", "sentencepiece"};
const char* const kModelTypes[] = {"infini-transformer", "llama"};

template <size_t N>
bool one_of(const std::string& value, const char* const (&options)[N]) {
  for (const char* o : options)
    if (value == o) return true;
  return false;
}

template <size_t N>
std::string list_words(const char* const (&options)[N]) {
  std::string s;
  for (size_t i = 0; i < N; ++i) s += str(i ? ", " : "", "\"", options[i], "\"");
  return s;
}

std::string key_where(const std::string& where, const std::string& key) {
  return str(where, ": key \"", key, "\"");
}

// Reads object fields with their JSON type checked; JSON null counts as absent (HF writes nulls).
class Reader {
 public:
  Reader(const json& object, std::string where, std::string prefix)
      : object_(object), where_(std::move(where)), prefix_(std::move(prefix)) {}

  bool has(const char* key) const { return object_.contains(key) && !object_.at(key).is_null(); }
  std::string where(const char* key) const { return key_where(where_, prefix_ + key); }

  [[noreturn]] void missing(const char* key, const std::string& hint) const {
    throw Error(where(key), "missing", hint);
  }
  [[noreturn]] void wrong_type(const char* key, const char* expected) const {
    const json& v = object_.at(key);
    throw Error(where(key),
                str("is ", json_type_words(v), " (", v.dump(), "), expected ", expected),
                "fix the value in the JSON file");
  }

  void read(const char* key, int64_t* out) const {
    if (!has(key)) return;
    const json& v = object_.at(key);
    if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
      throw Error(where(key), str("value ", v.dump(), " does not fit in int64"),
                  "use a realistic size");
    if (!v.is_number_integer()) wrong_type(key, "an integer, e.g. 256");
    *out = v.get<int64_t>();
  }
  void read(const char* key, double* out) const {
    if (!has(key)) return;
    const json& v = object_.at(key);
    if (!v.is_number()) wrong_type(key, "a number, e.g. 1e-5");
    *out = v.get<double>();
  }
  void read(const char* key, bool* out) const {
    if (!has(key)) return;
    const json& v = object_.at(key);
    if (!v.is_boolean()) wrong_type(key, "true or false");
    *out = v.get<bool>();
  }
  void read(const char* key, std::string* out) const {
    if (!has(key)) return;
    const json& v = object_.at(key);
    if (!v.is_string()) wrong_type(key, "a string");
    *out = v.get<std::string>();
  }
  template <typename T>
  void require(const char* key, T* out, const std::string& hint) const {
    if (!has(key)) missing(key, hint);
    read(key, out);
  }

 private:
  const json& object_;
  std::string where_, prefix_;
};

// HF keys the engine does not implement; ignoring a non-default value would give wrong numbers.
void check_unsupported_hf_keys(const Reader& r, const json& j) {
  std::string act = "silu";
  r.read("hidden_act", &act);
  if (act != "silu")
    throw Error(r.where("hidden_act"), str("\"", act, "\" is not supported"),
                "the engine's MLP is SwiGLU with silu (spec section 1)");
  for (const char* key : {"attention_bias", "mlp_bias"}) {
    bool bias = false;
    r.read(key, &bias);
    if (bias)
      throw Error(r.where(key), "biases are not supported",
                  "the engine's linear layers have no bias");
  }
  if (r.has("rope_scaling"))
    throw Error(r.where("rope_scaling"),
                str("RoPE scaling ", j.at("rope_scaling").dump(), " is not supported"),
                "remove it or set it to null (plain RoPE, spec section 1)");
}

}  // namespace

ModelConfig config_from_json(const json& j, const std::string& where) {
  if (!j.is_object())
    throw Error(where, str("config is ", json_type_words(j), ", expected a JSON object"),
                "write config.json as { \"vocab_size\": ..., ... } (docs/formats.md)");
  ModelConfig c;
  const Reader r(j, where, "");
  r.read("model_type", &c.model_type);
  if (!one_of(c.model_type, kModelTypes))
    throw Error(r.where("model_type"), str("\"", c.model_type, "\" is not supported"),
                str("use one of ", list_words(kModelTypes), " or leave it out"));
  const std::string required = "required; see docs/formats.md";
  r.require("vocab_size", &c.vocab_size, required);
  r.require("hidden_size", &c.hidden_size, required);
  r.require("num_hidden_layers", &c.num_hidden_layers, required);
  r.require("num_attention_heads", &c.num_attention_heads, required);
  r.require("intermediate_size", &c.intermediate_size, required);
  r.read("rms_norm_eps", &c.rms_norm_eps);
  r.read("rope_theta", &c.rope_theta);
  r.read("tie_word_embeddings", &c.tie_word_embeddings);

  c.num_key_value_heads = c.num_attention_heads;
  r.read("num_key_value_heads", &c.num_key_value_heads);
  if (r.has("head_dim")) {
    r.read("head_dim", &c.head_dim);
  } else {
    if (c.num_attention_heads > 0 && c.hidden_size % c.num_attention_heads != 0)
      throw Error(r.where("head_dim"),
                  str("missing, and hidden_size ", c.hidden_size,
                      " is not divisible by num_attention_heads ", c.num_attention_heads),
                  "set head_dim explicitly or choose sizes that divide");
    if (c.num_attention_heads > 0) c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  check_unsupported_hf_keys(r, j);

  // "attention": the mechanism of spec sections 2-4.
  if (!r.has("attention"))
    r.missing("attention",
              "add e.g. \"attention\": {\"type\": \"infini\", \"segment_length\": 2048}; a "
              "Hugging Face Llama config.json needs one as well");
  const json& aj = j.at("attention");
  if (!aj.is_object()) r.wrong_type("attention", "an object");
  const Reader a(aj, where, "attention.");
  AttentionConfig& at = c.attention;
  a.read("type", &at.type);
  if (!one_of(at.type, kAttentionTypes))
    throw Error(a.where("type"), str("unknown attention type \"", at.type, "\""),
                str("use one of ", list_words(kAttentionTypes)));
  a.require("segment_length", &at.segment_length,
            "the segment (block) length N in tokens, e.g. 256");
  a.read("memory_update", &at.memory_update);
  a.read("gate_init", &at.gate_init);
  const std::string for_type = str("required when attention.type is \"", at.type, "\"");
  if (at.type == "sliding")
    a.require("window", &at.window, for_type + ": tokens attended, >= 1");
  else
    a.read("window", &at.window);
  if (at.type == "bswa" || at.type == "fam")
    a.require("memory_blocks", &at.memory_blocks, for_type + ": previous blocks attended, >= 1");
  else
    a.read("memory_blocks", &at.memory_blocks);
  if (at.type == "fam")
    a.require("fam_length", &at.fam_length, for_type + ": feedback rows, >= 0");
  else
    a.read("fam_length", &at.fam_length);

  // "tokenizer": optional, byte-level by default.
  if (r.has("tokenizer")) {
    const json& tj = j.at("tokenizer");
    if (!tj.is_object()) r.wrong_type("tokenizer", "an object");
    const Reader t(tj, where, "tokenizer.");
    t.read("type", &c.tokenizer.type);
    t.read("model_file", &c.tokenizer.model_file);
  }

  config_validate(c, where);
  return c;
}

void config_validate(const ModelConfig& c, const std::string& where) {
  auto w = [&](const char* key) { return key_where(where, key); };
  auto positive = [&](const char* key, int64_t value) {
    if (value < 1) throw Error(w(key), str("is ", value, ", must be >= 1"), "fix config.json");
  };
  if (!one_of(c.model_type, kModelTypes))
    throw Error(w("model_type"), str("\"", c.model_type, "\" is not supported"),
                str("use one of ", list_words(kModelTypes)));
  positive("vocab_size", c.vocab_size);
  positive("hidden_size", c.hidden_size);
  positive("num_hidden_layers", c.num_hidden_layers);
  positive("num_attention_heads", c.num_attention_heads);
  positive("num_key_value_heads", c.num_key_value_heads);
  positive("head_dim", c.head_dim);
  positive("intermediate_size", c.intermediate_size);
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    throw Error(
        w("num_key_value_heads"),
        str(c.num_key_value_heads, " does not divide num_attention_heads ", c.num_attention_heads),
        "grouped-query attention needs H % Hkv == 0");
  if (c.head_dim % 2 != 0)
    throw Error(w("head_dim"), str("is ", c.head_dim, ", must be even"),
                "RoPE rotates the two halves of each head (spec section 1)");
  if (!std::isfinite(c.rms_norm_eps) || c.rms_norm_eps <= 0)
    throw Error(w("rms_norm_eps"), str("is ", c.rms_norm_eps, ", must be finite and > 0"),
                "the usual value is 1e-5 or 1e-6");
  if (!std::isfinite(c.rope_theta) || c.rope_theta <= 0)
    throw Error(w("rope_theta"), str("is ", c.rope_theta, ", must be finite and > 0"),
                "the usual value is 10000");

  const AttentionConfig& a = c.attention;
  if (!one_of(a.type, kAttentionTypes))
    throw Error(w("attention.type"), str("unknown attention type \"", a.type, "\""),
                str("use one of ", list_words(kAttentionTypes)));
  positive("attention.segment_length", a.segment_length);
  if (!one_of(a.memory_update, kMemoryUpdates))
    throw Error(w("attention.memory_update"),
                str("unknown memory update \"", a.memory_update, "\""),
                str("use one of ", list_words(kMemoryUpdates), " (spec section 2, step 6)"));
  if (!std::isfinite(a.gate_init))
    throw Error(w("attention.gate_init"), str("is ", a.gate_init, ", must be finite"),
                "the default is 0 (sigmoid(0) = 0.5)");
  if (a.type == "sliding" && a.window < 1)
    throw Error(w("attention.window"), str("is ", a.window, ", must be >= 1 for type \"sliding\""),
                "set the number of tokens each token attends to, itself included");
  if ((a.type == "bswa" || a.type == "fam") && a.memory_blocks < 1)
    throw Error(w("attention.memory_blocks"),
                str("is ", a.memory_blocks, ", must be >= 1 for type \"", a.type, "\""),
                "set how many previous blocks each block attends to");
  if (a.type == "fam" && (a.fam_length < 0 || a.fam_length >= a.segment_length))
    throw Error(w("attention.fam_length"),
                str("is ", a.fam_length, ", must be >= 0 and < segment_length ", a.segment_length),
                "FAM rows are taken from the last fam_length tokens of the previous block");

  if (c.tokenizer.type == "byte") {
    if (c.vocab_size < 256)
      throw Error(w("vocab_size"), str("is ", c.vocab_size, ", the byte tokenizer needs >= 256"),
                  "token id = byte value; set vocab_size to 256 or more");
  } else if (c.tokenizer.type == "sentencepiece") {
    if (c.tokenizer.model_file.empty())
      throw Error(w("tokenizer.model_file"), "missing, required for a sentencepiece tokenizer",
                  "give the path of the .model file");
  } else {
    throw Error(w("tokenizer.type"), str("unknown tokenizer type \"", c.tokenizer.type, "\""),
                str("use one of ", list_words(kTokenizerTypes)));
  }

  int64_t count = 0;
  if (!count_parameters(c, &count))
    throw Error(where, "the parameter count overflows int64 (sizes are absurd)",
                "check vocab_size, hidden_size, num_hidden_layers, head_dim and intermediate_size");
  // full's state grows with the stream: check one segment's worth
  if (!state_floats(c, c.attention.segment_length, &count))
    throw Error(w("attention"), "the stream state size overflows int64 (sizes are absurd)",
                "check segment_length, window, memory_blocks and fam_length");
}

int64_t config_parameter_count(const ModelConfig& c) {
  int64_t count = 0;
  if (!count_parameters(c, &count))
    throw Error("config", "the parameter count overflows int64", "validate the config first");
  return count;
}

json config_to_json(const ModelConfig& c) {
  json j = {{"model_type", c.model_type},
            {"vocab_size", c.vocab_size},
            {"hidden_size", c.hidden_size},
            {"num_hidden_layers", c.num_hidden_layers},
            {"num_attention_heads", c.num_attention_heads},
            {"num_key_value_heads", c.num_key_value_heads},
            {"head_dim", c.head_dim},
            {"intermediate_size", c.intermediate_size},
            {"rms_norm_eps", c.rms_norm_eps},
            {"rope_theta", c.rope_theta},
            {"tie_word_embeddings", c.tie_word_embeddings}};
  const AttentionConfig& a = c.attention;
  json attention = {{"type", a.type}, {"segment_length", a.segment_length}};
  if (a.type == "infini") {
    attention["memory_update"] = a.memory_update;
    attention["gate_init"] = a.gate_init;
  }
  if (a.type == "sliding") attention["window"] = a.window;
  if (a.type == "bswa" || a.type == "fam") attention["memory_blocks"] = a.memory_blocks;
  if (a.type == "fam") attention["fam_length"] = a.fam_length;
  j["attention"] = attention;
  json tokenizer = {{"type", c.tokenizer.type}};
  if (c.tokenizer.type == "sentencepiece") tokenizer["model_file"] = c.tokenizer.model_file;
  j["tokenizer"] = tokenizer;
  return j;
}

ModelConfig config_load(const std::string& path) {
  std::string file = path;
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
    file = path + (path.empty() || path.back() == '/' ? "" : "/") + "config.json";
  std::ifstream in(file, std::ios::binary);
  if (!in) throw Error(file, "cannot open", "give a checkpoint directory or its config.json");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw Error(file, "read failed", "check the disk");
  return config_from_json(json_parse_strict(text.str(), file), file);
}

void config_save(const ModelConfig& config, const std::string& path) {
  config_validate(config, path);
  write_file_atomic(path, config_to_json(config).dump(2) + "\n");
}

}  // namespace infini
