// infini data: generated training data. `infini data passkey`: passkey fine-tuning examples in
// the evaluation's format (src/eval/passkey_data.h, docs/evaluation.md).
#include <cstdio>
#include <cstdlib>
#include <memory>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "core/progress.h"
#include "eval/passkey_data.h"
#include "eval/passkey_eval.h"
#include "model/config.h"

namespace infini::cli {
namespace {

struct PasskeyDataFlags {
  std::string out, filler, tokenizer = "byte", model;
  int64_t count = 0;
  std::string min_length = "1K", max_length = "5K", seq_len;
  int digits = 5;
  uint64_t seed = 0;
  double aligned_fraction = 0;
  int64_t align = 0;
  bool json = false;
};

void run_passkey_data(const PasskeyDataFlags& f, bool tokenizer_given) {
  PasskeyDataOptions o;
  o.out_dir = f.out;
  o.count = f.count;
  o.min_length = parse_token_count(f.min_length, "--min-length");
  o.max_length = parse_token_count(f.max_length, "--max-length");
  o.seq_len = f.seq_len.empty() ? o.max_length : parse_token_count(f.seq_len, "--seq-len");
  o.digits = f.digits;
  o.seed = f.seed;
  o.aligned_fraction = f.aligned_fraction;
  o.align = f.align;
  if (f.digits < 1 || f.digits > 18)
    throw Error("--digits", str(f.digits, ": keys have 1 to 18 digits"));

  std::unique_ptr<Tokenizer> tokenizer;
  std::string tokenizer_flag = f.tokenizer;  // what to give `infini prepare --tokenizer`
  if (!f.model.empty()) {
    if (tokenizer_given)
      throw Error("--tokenizer", "give --tokenizer or --model, not both",
                  "with --model the checkpoint's own tokenizer is used");
    const ModelConfig config = config_load(f.model);
    const int64_t N = config.attention.segment_length;
    if (o.seq_len % N != 0)
      throw Error("--seq-len",
                  str(o.seq_len,
                      " tokens is not a multiple of the model's segment "
                      "length (",
                      N, ")", f.seq_len.empty() ? "; it defaults to --max-length" : ""),
                  str("use a multiple of ", N, ", e.g. ", (o.seq_len / N + 1) * N));
    if (o.align == 0) o.align = N;
    tokenizer = tokenizer_of_model(f.model, config);
    tokenizer_flag =
        config.tokenizer.type == "byte" ? "byte" : f.model + "/" + config.tokenizer.model_file;
  } else {
    tokenizer = tokenizer_load(f.tokenizer == "byte" ? "byte" : "sentencepiece",
                               f.tokenizer == "byte" ? "" : f.tokenizer);
  }
  const PasskeyTemplate t = f.filler.empty() ? passkey_template(*tokenizer)
                                             : passkey_template_from_file(*tokenizer, f.filler);
  Progress progress("passkey data", o.count, "ex");
  const PasskeyDataResult r =
      passkey_write_data(t, o, [&](int64_t done) { progress.update(done); });
  progress.finish();

  const std::string data_dir = f.out + "/data";
  // (m T + 1) / tokens, in the fewest digits that read back as the same double: prepare's
  // rounding then gives exactly m whole examples and the final newline (passkey_data.h)
  std::string val_fraction;
  if (r.val_examples) {
    const double value = double(r.val_examples * r.seq_len + 1) / double(r.tokens);
    char text[32];
    for (int digits = 6; digits <= 17; ++digits) {
      std::snprintf(text, sizeof text, "%.*g", digits, value);
      if (std::strtod(text, nullptr) == value) break;
    }
    val_fraction = text;
  }
  std::string prepare = "infini prepare --input " + r.text_path + " --loss-mask " + r.mask_path +
                        " --out " + data_dir;
  if (tokenizer_flag != "byte") prepare += " --tokenizer " + tokenizer_flag;
  if (!val_fraction.empty()) prepare += " --val-fraction " + val_fraction;
  const std::string train =
      str("infini train --init MODEL --data ", data_dir, " --out RUN --seq-len ", r.seq_len,
          " --data-order sequential --batch B --steps S");
  if (f.json) {
    const nlohmann::json j = {{"text", r.text_path},
                              {"examples_index", r.examples_path},
                              {"examples", r.examples},
                              {"seq_len", r.seq_len},
                              {"tokens", r.tokens},
                              {"answer_tokens", r.answer_tokens},
                              {"loss_mask", r.mask_path},
                              {"scored_tokens", r.scored_tokens},
                              {"val_examples", r.val_examples},
                              {"prepare", prepare},
                              {"train", train},
                              {"seconds", r.seconds}};
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  std::printf("examples        %lld of %lld tokens each (training keys: not multiples of 3)\n",
              (long long)r.examples, (long long)r.seq_len);
  std::printf("text            %s (%lld tokens)\n", r.text_path.c_str(), (long long)r.tokens);
  std::printf("index           %s\n", r.examples_path.c_str());
  std::printf("loss mask       %s (%lld tokens scored: the key's copy and the answer)\n",
              r.mask_path.c_str(), (long long)r.scored_tokens);
  std::printf("next            %s\n", prepare.c_str());
  std::printf("                %s\n", train.c_str());
  if (r.val_examples)
    std::printf("                (--val-fraction %s: the last %lld examples are held out whole)\n",
                val_fraction.c_str(), (long long)r.val_examples);
}

void add_data(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand(
      "data",
      "Generate training data (docs/evaluation.md). Example:\n"
      "  infini data passkey --out data/passkey --count 2000 --min-length 1K --max-length 5K");
  cmd->require_subcommand(1);

  auto f = std::make_shared<PasskeyDataFlags>();
  CLI::App* passkey = cmd->add_subcommand(
      "passkey",
      "Passkey fine-tuning data in the format of `infini eval passkey`: each example is a prompt\n"
      "with a random key (never a multiple of 3: evaluation keys are), then \" KEY.\", then\n"
      "newlines up to exactly --seq-len tokens. Writes DIR/passkey.txt (the examples in a row),\n"
      "DIR/passkey.mask (the loss mask: only the key's copy in the needle and the answer are\n"
      "scored) and DIR/examples.jsonl (key, lengths, key position of each), and prints the\n"
      "`infini prepare --loss-mask` and `infini train --data-order sequential` commands that\n"
      "train on one whole example per row. Example:\n"
      "  infini data passkey --out data/passkey --count 2000 --min-length 1K --max-length 5K \\\n"
      "      --model runs/base/latest");
  passkey->add_option("--out", f->out, "output directory (created if missing)")->required();
  passkey->add_option("--count", f->count, "number of examples")->required();
  passkey
      ->add_option("--min-length", f->min_length,
                   "shortest example (prompt + answer + newline) in tokens (K = 1024)")
      ->capture_default_str();
  passkey->add_option("--max-length", f->max_length, "longest example in tokens")
      ->capture_default_str();
  passkey->add_option("--seq-len", f->seq_len,
                      "tokens per example after padding: the --seq-len to train with "
                      "(default: --max-length)");
  passkey->add_option("--digits", f->digits, "digits of a key (1 to 18)")->capture_default_str();
  passkey->add_option("--seed", f->seed, "seed of keys, lengths and positions")
      ->capture_default_str();
  passkey->add_option("--filler", f->filler, "a text file to use as the haystack");
  passkey
      ->add_option("--aligned-fraction", f->aligned_fraction,
                   "this fraction of the examples get a prompt of a multiple of --align tokens\n"
                   "(cut mid-sentence, as evaluation prompts are), so that the answer starts a\n"
                   "fresh segment as after every 32K..1M evaluation prompt")
      ->capture_default_str();
  passkey->add_option("--align", f->align,
                      "tokens for --aligned-fraction: the model's segment length (default with "
                      "--model)");
  CLI::Option* tokenizer =
      passkey->add_option("--tokenizer", f->tokenizer, "\"byte\" or a SentencePiece .model file")
          ->capture_default_str();
  passkey->add_option("--model", f->model,
                      "take the tokenizer from this checkpoint and check --seq-len against its "
                      "segment length");
  passkey->add_flag("--json", f->json, "print the result as JSON");
  passkey->callback([f, tokenizer] { run_passkey_data(*f, tokenizer->count() > 0); });
}

Registration registration{add_data};

}  // namespace
}  // namespace infini::cli
