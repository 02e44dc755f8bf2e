// infini init: write a randomly initialised checkpoint from a config.json.
#include <cstdio>

#include "cli/commands.h"
#include "core/error.h"
#include "model/checkpoint.h"

namespace infini::cli {
namespace {

struct InitOptions {
  std::string config, out;
  uint64_t seed = 0;
};

void run_init(const InitOptions& o) {
  Model model = model_create(config_load(o.config));
  model_init_random(model, o.seed);
  model_save(model, o.out);
  std::printf("wrote %s (%lld parameters, seed %llu)\n", o.out.c_str(),
              (long long)model.weights.count, (unsigned long long)o.seed);
}

void add_init(CLI::App& app) {
  auto o = std::make_shared<InitOptions>();
  CLI::App* cmd = app.add_subcommand(
      "init", "Write a randomly initialised checkpoint (config.json + model.safetensors).\n"
              "Matrices ~ N(0, 0.02), output projections scaled by 1/sqrt(2 layers), norms 1,\n"
              "memory gates = attention.gate_init. Example:\n"
              "  infini init --config configs/infini-base.json --out runs/base --seed 1");
  cmd->add_option("--config", o->config, "model config.json (see configs/ and docs/formats.md)")
      ->required();
  cmd->add_option("--out", o->out, "checkpoint directory to write (created if missing)")
      ->required();
  cmd->add_option("--seed", o->seed, "random seed")->capture_default_str();
  cmd->callback([o] { run_init(*o); });
}

Registration registration{add_init};

}  // namespace
}  // namespace infini::cli
