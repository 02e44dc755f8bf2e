#include "eval/passkey_eval.h"

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "core/error.h"

namespace infini {

namespace {

int32_t argmax(const float* logits, int64_t V) {
  int64_t best = 0;
  for (int64_t v = 1; v < V; ++v)
    if (logits[v] > logits[best]) best = v;
  return int32_t(best);
}

}  // namespace

std::unique_ptr<Tokenizer> tokenizer_of_model(const std::string& dir, const ModelConfig& config) {
  const std::string file = config.tokenizer.type == "sentencepiece"
                               ? (std::filesystem::path(dir) / config.tokenizer.model_file).string()
                               : std::string();
  return tokenizer_load(config.tokenizer.type, file);
}

PasskeyRunner passkey_runner_create(const Model& model, int64_t chunk_tokens) {
  PasskeyRunner r;
  r.decoder = decoder_create(model, chunk_tokens);
  r.tokens.resize(size_t(r.decoder.chunk_tokens));
  return r;
}

std::vector<int32_t> passkey_generate(PasskeyRunner& runner, const PasskeyTemplate& t,
                                      const PasskeyPrompt& p, int64_t count,
                                      const std::function<void(int64_t)>& on_tokens) {
  Decoder& decoder = runner.decoder;
  const Model& model = *decoder.model;
  const int64_t V = model.config.vocab_size, C = decoder.chunk_tokens;
  if (t.tokenizer->vocab_size() > V)
    throw Error("passkey", str("the tokenizer has ", t.tokenizer->vocab_size(),
                               " ids, more than the model's vocab_size (", V, ")"));
  decoder_reset(decoder);
  // the prompt goes in chunk by chunk (generated as it is fed: memory stays flat)
  for (int64_t at = 0; at < p.length;) {
    const int64_t n = std::min(C, p.length - at);
    passkey_prompt_tokens(t, p, at, n, runner.tokens.data());
    decoder_feed(decoder, runner.tokens.data(), n);
    at += n;
    if (on_tokens) on_tokens(n);
  }
  // then one 1-token forward pass per answer token; ties go to the lowest id
  std::vector<int32_t> answer;
  for (int64_t i = 0; i < count; ++i) {
    answer.push_back(argmax(decoder.logits.data(), V));
    if (i + 1 < count) decoder_step(decoder, answer.back());
  }
  if (on_tokens) on_tokens(count);
  return answer;
}

namespace {

// The prompt of one trial: its key comes from the trial's own generator (passkey_trial_seed).
PasskeyPrompt trial_prompt(const PasskeyTemplate& t, const PasskeyEvalOptions& o, int64_t length,
                           const PasskeyPosition& position, int64_t trial) {
  Rng rng(passkey_trial_seed(o.seed, length, position.fraction, trial));
  const std::string key = passkey_random_key(rng, o.digits, PasskeyKeySet::eval);
  try {
    return passkey_prompt(t, key, length, position.fraction);
  } catch (const Error& e) {
    throw Error("--lengths", e.problem(), e.hint());
  }
}

void check_options(const PasskeyEvalOptions& o) {
  if (o.lengths.empty()) throw Error("--lengths", "no length given", "e.g. --lengths 32K,128K");
  if (o.positions.empty())
    throw Error("--positions", "no position given", "e.g. --positions start,middle,end");
  if (o.trials < 1) throw Error("--trials", str(o.trials, ": at least one trial per cell"));
}

}  // namespace

int64_t passkey_eval_tokens(const PasskeyTemplate& t, const PasskeyEvalOptions& o) {
  check_options(o);
  int64_t total = 0;
  for (int64_t length : o.lengths)
    for (const PasskeyPosition& position : o.positions)
      for (int64_t trial = 0; trial < o.trials; ++trial) {
        const PasskeyPrompt p = trial_prompt(t, o, length, position, trial);
        total += p.length + passkey_answer_tokens(p);
      }
  return total;
}

PasskeyEvalResult passkey_evaluate(const Model& model, const PasskeyTemplate& t,
                                   const PasskeyEvalOptions& o,
                                   const std::function<void(int64_t)>& on_tokens) {
  check_options(o);
  const auto start = std::chrono::steady_clock::now();
  PasskeyRunner runner = passkey_runner_create(model, o.chunk);
  PasskeyEvalResult r;
  auto count = [&](int64_t n) {
    r.tokens += n;
    if (on_tokens) on_tokens(r.tokens);
  };
  for (int64_t length : o.lengths)
    for (const PasskeyPosition& position : o.positions) {
      PasskeyCell cell;
      cell.length = length;
      cell.position = position.name;
      cell.fraction = position.fraction;
      for (int64_t trial = 0; trial < o.trials; ++trial) {
        const PasskeyPrompt p = trial_prompt(t, o, length, position, trial);
        PasskeyTrial result;
        result.length = length;
        result.position = position.name;
        result.fraction = position.fraction;
        result.trial = trial;
        result.key = p.key;
        result.key_token = p.key_token;
        result.generated = passkey_generate(runner, t, p, passkey_answer_tokens(p), count);
        result.score = passkey_score(*t.tokenizer, p, result.generated);
        cell.trials += 1;
        cell.exact_match += result.score.exact ? 1 : 0;
        cell.token_accuracy += result.score.token_accuracy;
        r.trials.push_back(std::move(result));
      }
      cell.exact_match /= double(cell.trials);
      cell.token_accuracy /= double(cell.trials);
      r.cells.push_back(cell);
    }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace infini
