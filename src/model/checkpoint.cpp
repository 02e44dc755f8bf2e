#include "model/checkpoint.h"

#include <filesystem>
#include <set>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"

namespace infini {

namespace fs = std::filesystem;

Model model_load(const std::string& dir) {
  const std::string config_path = (fs::path(dir) / "config.json").string();
  const std::string weights_path = (fs::path(dir) / "model.safetensors").string();
  if (!fs::is_directory(dir))
    throw Error(dir, "not a checkpoint directory", "expected a folder with config.json and "
                "model.safetensors, as written by `infini init` or `infini train`");
  Model model = model_create(config_load(config_path));
  const SafetensorsFile file = SafetensorsFile::open(weights_path);

  const std::vector<ParameterInfo> table = parameter_table(model.config, model.weights);
  std::set<std::string> expected;
  int gates_missing = 0, gates_total = 0;
  for (const ParameterInfo& p : table) {
    expected.insert(p.name);
    if (p.kind == ParameterKind::Gate) {
      ++gates_total;
      if (!file.find(p.name)) ++gates_missing;
    }
  }
  for (const SafetensorsEntry& e : file.entries())
    if (!expected.count(e.name))
      throw Error(weights_path + ": tensor '" + e.name + "'", "unexpected tensor for this config",
                  model.config.tie_word_embeddings && e.name == "lm_head.weight"
                      ? "config.json says tie_word_embeddings: true, so there is no lm_head"
                      : "the checkpoint does not match its config.json");
  if (gates_missing != 0 && gates_missing != gates_total)
    throw Error(weights_path, str(gates_missing, " of ", gates_total,
                                  " self_attn.memory_gate tensors are missing"),
                "a checkpoint has all of its gates or none (a Llama checkpoint)");
  const bool gates_from_config = gates_total > 0 && gates_missing == gates_total;

  for (const ParameterInfo& p : table) {
    if (p.kind == ParameterKind::Gate && gates_from_config) {
      for (int64_t i = 0; i < p.numel(); ++i) p.data[i] = float(model.config.attention.gate_init);
      continue;
    }
    const SafetensorsEntry& e = file.require(p.name, p.shape);
    read_f32(e, p.data, p.numel(), weights_path);
  }
  return model;
}

void model_save(const Model& model, const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error(dir, "cannot create the checkpoint directory: " + ec.message());
  SafetensorsWriter writer;
  writer.set_metadata("format", "pt");
  for (const ParameterInfo& p : parameter_table(model.config, model.weights))
    writer.add(p.name, "F32", p.shape, p.data);
  writer.write((fs::path(dir) / "model.safetensors").string());
  write_file_atomic((fs::path(dir) / "config.json").string(),
                    config_to_json(model.config).dump(2) + "\n");
}

}  // namespace infini
