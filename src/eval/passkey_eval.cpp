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

std::vector<int32_t> greedy_answer(const Model& model, StreamState& state, Activations& act,
                                   const int32_t* tail, int64_t tail_count, int64_t count) {
  const ModelConfig& c = model.config;
  const int64_t N = c.attention.segment_length, V = c.vocab_size;
  INFINI_CHECK(tail_count >= 1 && tail_count <= N, "the tail holds ", tail_count,
               " tokens; it must hold 1 to ", N, " (one unfinished segment)");
  INFINI_CHECK(state.position % N == 0, "the stream is at ", state.position,
               ", not at a segment boundary");
  INFINI_CHECK(act.tokens >= N && act.batch == 1, "activations for ", act.batch, " x ", act.tokens,
               " tokens; greedy decoding needs 1 x ", N);
  // tokens[segment_start, end) is the unfinished segment; `state` is the state at its start
  std::vector<int32_t> tokens(tail, tail + tail_count), answer;
  StreamState work = stream_state_create(c, 1);
  int64_t segment_start = 0;
  for (int64_t i = 0; i < count; ++i) {
    const int64_t n = int64_t(tokens.size()) - segment_start;  // 1..N
    stream_state_copy(work, state);
    model_forward(model, work, act, tokens.data() + segment_start, n);
    const int32_t next = argmax(act.logits + (n - 1) * V, V);
    answer.push_back(next);
    tokens.push_back(next);
    if (n == N) {  // the segment is complete: the state after it is the new start
      stream_state_copy(state, work);
      segment_start += N;
    }
  }
  return answer;
}

PasskeyRunner passkey_runner_create(const Model& model, int64_t chunk_tokens) {
  const int64_t N = model.config.attention.segment_length;
  PasskeyRunner r;
  r.model = &model;
  r.chunk = N * std::max<int64_t>(1, chunk_tokens / N);
  r.act = activations_create(model.config, 1, r.chunk, false);
  r.state = stream_state_create(model.config, 1);
  r.tokens.resize(size_t(r.chunk));
  return r;
}

std::vector<int32_t> passkey_generate(PasskeyRunner& runner, const PasskeyTemplate& t,
                                      const PasskeyPrompt& p, int64_t count,
                                      const std::function<void(int64_t)>& on_tokens) {
  const Model& model = *runner.model;
  const int64_t N = model.config.attention.segment_length, V = model.config.vocab_size;
  if (t.tokenizer->vocab_size() > V)
    throw Error("passkey", str("the tokenizer has ", t.tokenizer->vocab_size(),
                               " ids, more than the model's vocab_size (", V, ")"));
  stream_state_reset(runner.state);
  // whole segments go through in chunks; 1..N tokens stay for the decoder
  const int64_t prefix = N * ((p.length - 1) / N);
  for (int64_t at = 0; at < prefix;) {
    const int64_t n = std::min(runner.chunk, prefix - at);  // [n] whole segments
    passkey_prompt_tokens(t, p, at, n, runner.tokens.data());
    model_forward(model, runner.state, runner.act, runner.tokens.data(), n);
    at += n;
    if (on_tokens) on_tokens(n);
  }
  const int64_t tail = p.length - prefix;
  passkey_prompt_tokens(t, p, prefix, tail, runner.tokens.data());
  std::vector<int32_t> answer =
      greedy_answer(model, runner.state, runner.act, runner.tokens.data(), tail, count);
  if (on_tokens) on_tokens(tail + count);
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
