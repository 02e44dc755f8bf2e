#include "train/run_checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/json_strict.h"
#include "model/checkpoint.h"

namespace infini {

namespace fs = std::filesystem;

namespace {

const char* const kCheckpointPrefix = "checkpoint-";

std::string checkpoint_name(int64_t step) {
  return kCheckpointPrefix + std::to_string(step);
}

// The step of a folder named checkpoint-STEP, or -1.
int64_t checkpoint_step(const std::string& name) {
  if (name.rfind(kCheckpointPrefix, 0) != 0) return -1;
  const std::string digits = name.substr(std::strlen(kCheckpointPrefix));
  if (digits.empty() || digits.size() > 18 ||
      !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return -1;
  return std::stoll(digits);
}

// fsync of a directory, so that renames inside it survive a power loss.
void sync_directory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path, "cannot be read");
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string hex64(uint64_t x) {
  char buffer[24];
  std::snprintf(buffer, sizeof buffer, "0x%016llx", (unsigned long long)x);
  return buffer;
}

uint64_t parse_hex64(const nlohmann::json& j, const std::string& where) {
  if (!j.is_string()) throw Error(where, "rng_state must hold hex strings");
  const std::string s = j.get<std::string>();
  size_t used = 0;
  uint64_t value = 0;
  try {
    value = std::stoull(s, &used, 16);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != s.size() || s.empty()) throw Error(where, "rng_state entry '" + s + "' is not hex");
  return value;
}

// The checkpoint-* folders of a run, by step.
std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& run_dir) {
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(run_dir, ec)) {
    const int64_t step = checkpoint_step(e.path().filename().string());
    if (step >= 0 && e.is_directory()) found.emplace_back(step, e.path().string());
  }
  std::sort(found.begin(), found.end());
  return found;
}

void prune_checkpoints(const std::string& run_dir, int64_t newest_step, int64_t keep) {
  std::vector<std::pair<int64_t, std::string>> all = list_checkpoints(run_dir), kept;
  std::error_code ec;
  for (const auto& [step, path] : all) {
    if (step > newest_step)
      fs::remove_all(path, ec);  // from the abandoned future of an older resume point
    else
      kept.emplace_back(step, path);
  }
  for (size_t i = 0; i + size_t(keep) < kept.size(); ++i) fs::remove_all(kept[i].second, ec);
}

}  // namespace

nlohmann::json trainer_state_to_json(const TrainerState& s) {
  nlohmann::json rng = nlohmann::json::array();
  for (uint64_t word : s.rng_state) rng.push_back(hex64(word));
  return {{"format", "infini-trainer-state"},
          {"version", 1},
          {"step", s.step},
          {"rows_read", s.rows_read},
          {"rng_state", rng},
          {"tokens_seen", s.tokens_seen},
          {"elapsed_seconds", s.elapsed_seconds},
          {"learning_rate", s.learning_rate},
          {"loss", s.loss},
          {"threads", s.threads},
          {"options", train_options_to_json(s.options)}};
}

TrainerState trainer_state_from_json(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object() || j.value("format", "") != "infini-trainer-state")
    throw Error(where, "is not a trainer state written by `infini train`");
  if (j.value("version", 0) != 1)
    throw Error(where,
                str("has version ", j.value("version", 0), ", this program reads version 1"));
  TrainerState s;
  try {
    s.step = j.at("step").get<int64_t>();
    s.rows_read = j.at("rows_read").get<int64_t>();
    const nlohmann::json& rng = j.at("rng_state");
    if (!rng.is_array() || rng.size() != 4) throw Error(where, "rng_state must hold 4 entries");
    for (size_t i = 0; i < 4; ++i) s.rng_state[i] = parse_hex64(rng[i], where);
    s.tokens_seen = j.at("tokens_seen").get<int64_t>();
    s.elapsed_seconds = j.at("elapsed_seconds").get<double>();
    s.learning_rate = j.at("learning_rate").get<double>();
    s.loss = j.at("loss").get<double>();
    s.threads = j.at("threads").get<int>();
  } catch (const nlohmann::json::exception& e) {
    throw Error(where, str("malformed trainer state: ", e.what()));
  }
  if (s.step < 0 || s.rows_read < 0) throw Error(where, "negative step or data cursor");
  s.options = train_options_from_json(j.at("options"), where + ": options");
  return s;
}

TrainerState trainer_state_load(const std::string& checkpoint_dir) {
  const std::string path = (fs::path(checkpoint_dir) / "trainer_state.json").string();
  return trainer_state_from_json(json_parse_strict(read_text(path), path), path);
}

std::string run_checkpoint_save(const std::string& run_dir, const Model& model, const AdamW& opt,
                                const TrainerState& state, const std::string& tokenizer_model,
                                int64_t keep) {
  const std::string name = checkpoint_name(state.step);
  const std::string final_dir = (fs::path(run_dir) / name).string();
  const std::string tmp_dir = (fs::path(run_dir) / ("." + name + ".tmp")).string();
  std::error_code ec;
  fs::remove_all(tmp_dir, ec);
  try {
    fs::create_directories(tmp_dir, ec);
    if (ec) throw Error(tmp_dir, "cannot create: " + ec.message());
    model_save(model, tmp_dir);
    adamw_save(opt, model.config, (fs::path(tmp_dir) / "optimizer.safetensors").string());
    if (!tokenizer_model.empty())
      write_file_atomic((fs::path(tmp_dir) / "tokenizer.model").string(),
                        read_text(tokenizer_model));
    write_file_atomic((fs::path(tmp_dir) / "trainer_state.json").string(),
                      trainer_state_to_json(state).dump(2) + "\n");
    if (fs::exists(final_dir)) {  // re-saving a step (a resume from an older checkpoint)
      const std::string old_dir = (fs::path(run_dir) / ("." + name + ".old")).string();
      fs::remove_all(old_dir, ec);
      fs::rename(final_dir, old_dir);
      fs::remove_all(old_dir, ec);
    }
    fs::rename(tmp_dir, final_dir);
    sync_directory(run_dir);
    const std::string link_tmp = (fs::path(run_dir) / ".latest.tmp").string();
    fs::remove(link_tmp, ec);
    fs::create_directory_symlink(name, link_tmp);
    fs::rename(link_tmp, fs::path(run_dir) / "latest");
    sync_directory(run_dir);
  } catch (const std::exception& e) {
    fs::remove_all(tmp_dir, ec);
    const std::string previous = run_latest_checkpoint(run_dir);
    throw Error(final_dir, str("could not be saved: ", e.what()),
                previous.empty() ? std::string("no earlier checkpoint exists in this run")
                                 : "the previous checkpoint " + previous +
                                       " is intact and `latest` still points to it");
  }
  prune_checkpoints(run_dir, state.step, keep);
  return final_dir;
}

std::string run_latest_checkpoint(const std::string& run_dir) {
  const fs::path link = fs::path(run_dir) / "latest";
  std::error_code ec;
  if (fs::is_symlink(link, ec)) {
    const fs::path target = fs::read_symlink(link, ec);
    if (ec) return "";
    return (target.is_absolute() ? target : fs::path(run_dir) / target).string();
  }
  return "";
}

bool run_dir_has_checkpoints(const std::string& run_dir) {
  std::error_code ec;
  return fs::is_symlink(fs::path(run_dir) / "latest", ec) || !list_checkpoints(run_dir).empty();
}

std::string run_checkpoint_resolve(const std::string& path) {
  if (!fs::exists(path)) throw Error(path, "no such run or checkpoint directory");
  fs::path normal = fs::path(path).lexically_normal();
  if (normal.filename().empty()) normal = normal.parent_path();  // a trailing '/'
  std::error_code ec;
  if (fs::is_symlink(normal, ec)) {  // RUN/latest: name the checkpoint it points to
    const fs::path target = fs::read_symlink(normal, ec);
    if (!ec) normal = target.is_absolute() ? target : normal.parent_path() / target;
  }
  if (fs::exists(normal / "trainer_state.json")) return normal.string();
  const std::string latest = run_latest_checkpoint(path);
  if (!latest.empty() && fs::exists(fs::path(latest) / "trainer_state.json")) return latest;
  throw Error(path, "holds no training checkpoint (no trainer_state.json and no `latest` link)",
              "--resume takes a run directory written by `infini train` or one of its "
              "checkpoint-STEP folders; to start from a model's weights use --init");
}

}  // namespace infini
