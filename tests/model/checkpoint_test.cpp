// Checkpoint directories: save -> load -> save is byte-identical, BF16/F16 checkpoints load, and
// every malformed checkpoint is refused with a message naming the file and the tensor.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <cstring>
#include <functional>
#include <iterator>
#include <map>

#include "core/tensor.h"
#include "io/safetensors.h"
#include "model/checkpoint.h"
#include "test_support.h"

namespace infini {
namespace {

using test::read_bytes;

ModelConfig tiny_config() {
  ModelConfig c;
  c.vocab_size = 256;
  c.hidden_size = 16;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  c.head_dim = 8;
  c.intermediate_size = 24;
  c.attention.segment_length = 4;
  c.attention.gate_init = -1.5;
  return c;
}


Model saved_model(const std::string& dir) {
  Model m = model_create(tiny_config());
  model_init_random(m, 42);
  model_save(m, dir);
  return m;
}

TEST(Checkpoint, SaveLoadSaveIsByteIdentical) {
  const std::string dir = test::scratch_dir("checkpoint_roundtrip");
  const Model m = saved_model(dir + "/a");
  const Model loaded = model_load(dir + "/a");
  model_save(loaded, dir + "/b");
  EXPECT_EQ(read_bytes(dir + "/a/model.safetensors"), read_bytes(dir + "/b/model.safetensors"));
  EXPECT_EQ(read_bytes(dir + "/a/config.json"), read_bytes(dir + "/b/config.json"));
  ASSERT_EQ(loaded.weights.count, m.weights.count);
  EXPECT_TRUE(std::equal(m.weights.all, m.weights.all + m.weights.count, loaded.weights.all));
  EXPECT_EQ(loaded.weights.layers[1].memory_gate[1], -1.5f);
}

// Rewrites the checkpoint's tensors through `edit`, which may drop, add or replace entries.
struct TensorCopy {
  std::string dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};
using TensorMap = std::map<std::string, TensorCopy>;

void rewrite(const std::string& dir, const std::function<void(TensorMap&)>& edit) {
  TensorMap tensors;
  {
    const SafetensorsFile f = SafetensorsFile::open(dir + "/model.safetensors");
    for (const SafetensorsEntry& e : f.entries())
      tensors[e.name] = {e.dtype, e.shape, std::vector<uint8_t>(e.data, e.data + e.bytes)};
  }
  edit(tensors);
  SafetensorsWriter w;
  for (const auto& [name, t] : tensors) w.add(name, t.dtype, t.shape, t.bytes.data());
  w.write(dir + "/model.safetensors");
}

void expect_refused(const std::string& dir, const std::vector<std::string>& fragments) {
  try {
    model_load(dir);
    ADD_FAILURE() << "loaded a malformed checkpoint";
  } catch (const Error& e) {
    for (const std::string& f : fragments)
      EXPECT_NE(std::string(e.what()).find(f), std::string::npos) << e.what();
  }
}

TEST(Checkpoint, ConvertsBf16Tensors) {
  const std::string dir = test::scratch_dir("checkpoint_bf16");
  const Model m = saved_model(dir);
  rewrite(dir, [](TensorMap& t) {
    for (auto& [name, tensor] : t) {
      const float* f = reinterpret_cast<const float*>(tensor.bytes.data());
      std::vector<uint8_t> half(tensor.bytes.size() / 2);
      for (size_t i = 0; i < half.size() / 2; ++i) {
        const bf16 b = f32_to_bf16(f[i]);
        std::memcpy(half.data() + 2 * i, &b, 2);
      }
      tensor = {"BF16", tensor.shape, half};
    }
  });
  const Model loaded = model_load(dir);
  for (int64_t i = 0; i < m.weights.count; ++i)
    ASSERT_EQ(loaded.weights.all[i], bf16_to_f32(f32_to_bf16(m.weights.all[i]))) << i;
}

TEST(Checkpoint, LlamaCheckpointWithoutGatesTakesGateInit) {
  const std::string dir = test::scratch_dir("checkpoint_llama");
  saved_model(dir);
  rewrite(dir, [](TensorMap& t) {
    t.erase("model.layers.0.self_attn.memory_gate");
    t.erase("model.layers.1.self_attn.memory_gate");
  });
  const Model loaded = model_load(dir);
  EXPECT_EQ(loaded.weights.layers[0].memory_gate[0], -1.5f);
}

TEST(Checkpoint, MalformedCheckpointsAreRefusedWithFileAndTensor) {
  const std::string base = test::scratch_dir("checkpoint_malformed");
  struct Case {
    std::string name;
    std::function<void(TensorMap&)> edit;
    std::vector<std::string> expected;
  };
  const std::vector<Case> cases = {
      {"missing", [](TensorMap& t) { t.erase("model.layers.1.mlp.up_proj.weight"); },
       {"model.safetensors", "model.layers.1.mlp.up_proj.weight"}},
      {"unknown", [](TensorMap& t) { t["model.layers.7.foo"] = {"F32", {1}, {0, 0, 0, 0}}; },
       {"model.safetensors", "model.layers.7.foo"}},
      {"shape",
       [](TensorMap& t) {
         auto& e = t["model.norm.weight"];
         e.shape = {4, 4};
       },
       {"model.safetensors", "model.norm.weight", "[16]"}},
      {"dtype",
       [](TensorMap& t) { t["model.embed_tokens.weight"].dtype = "I32"; },
       {"model.safetensors", "model.embed_tokens.weight", "I32"}},
      {"one_gate_missing", [](TensorMap& t) { t.erase("model.layers.0.self_attn.memory_gate"); },
       {"model.safetensors", "memory_gate"}},
  };
  for (const Case& c : cases) {
    const std::string dir = base + "/" + c.name;
    saved_model(dir);
    rewrite(dir, c.edit);
    SCOPED_TRACE(c.name);
    expect_refused(dir, c.expected);
  }
  // a truncated weights file and a nonsense config
  const std::string dir = base + "/truncated";
  saved_model(dir);
  std::filesystem::resize_file(dir + "/model.safetensors", 1000);
  expect_refused(dir, {"model.safetensors"});
  const std::string cfg = base + "/config";
  saved_model(cfg);
  std::ofstream(cfg + "/config.json") << R"({"vocab_size": 256, "hidden_size": 16,
      "num_hidden_layers": 2, "num_attention_heads": 0, "intermediate_size": 24,
      "attention": {"type": "infini", "segment_length": 4}})";
  expect_refused(cfg, {"config.json", "num_attention_heads"});
  expect_refused(base + "/does_not_exist", {"does_not_exist"});
}

}  // namespace
}  // namespace infini
