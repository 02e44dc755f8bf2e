// Stream sessions and the pieces of `infini generate` below the command line:
//   - a state saved mid-segment and loaded into a fresh decoder is bit-identical (memories, cache
//     rows, position, logits, generator) and continues bit for bit like the original;
//   - a refused file leaves the decoder as it was;
//   - the model fingerprint sees one changed weight bit and one changed config value;
//   - the prompt read chunk by chunk from a stream equals feeding all of its tokens at once;
//   - ids outside the vocabulary and a tokenizer larger than the model are refused;
//   - generate() hands out exactly the text it returns, cut before a stop string.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "infer/generate.h"
#include "infer/session.h"
#include "test_support.h"

namespace infini {
namespace {

ModelConfig small_config(const std::string& type = "infini") {
  ModelConfig c;
  c.vocab_size = 256;
  c.hidden_size = 32;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  c.intermediate_size = 40;
  c.attention.type = type;
  c.attention.segment_length = 8;
  if (type == "infini") c.attention.memory_update = "delta";
  if (type == "sliding") c.attention.window = 11;
  if (type == "bswa" || type == "fam") c.attention.memory_blocks = 2;
  if (type == "fam") c.attention.fam_length = 3;
  return c;
}

Model random_model(uint64_t seed, const std::string& type = "infini") {
  Model m = model_create(small_config(type));
  model_init_random(m, seed);
  Rng rng(seed + 1);  // larger weights than the training init: O(1) logits
  for (const ParameterInfo& p : parameter_table(m.config, m.weights))
    if (p.kind == ParameterKind::Matrix || p.kind == ParameterKind::Embedding)
      for (int64_t i = 0; i < p.numel(); ++i) p.data[i] = 0.3f * float(rng.normal());
  return m;
}

std::vector<int32_t> text_ids(const std::string& text) {
  std::vector<int32_t> ids;
  for (const char c : text) ids.push_back(int32_t(static_cast<unsigned char>(c)));
  return ids;
}

// Every float a decoder's stream depends on, as bytes: memories, cache rows in use, logits.
std::string stream_bytes(const Decoder& d) {
  std::string out(reinterpret_cast<const char*>(d.state.all), d.state.count * sizeof(float));
  out.append(reinterpret_cast<const char*>(d.state.fam_all), d.state.fam_count * sizeof(float));
  const int64_t row = d.model->config.num_key_value_heads * d.model->config.head_dim;
  for (const LayerState& l : d.state.layers) {
    out.append(reinterpret_cast<const char*>(l.cache.keys), l.cache.rows * row * sizeof(float));
    out.append(reinterpret_cast<const char*>(l.cache.values), l.cache.rows * row * sizeof(float));
  }
  out.append(reinterpret_cast<const char*>(d.logits.data()), d.logits.size() * sizeof(float));
  return out + str(" position ", d.state.position);
}

const std::string kText = "the memory of a stream keeps what it read long ago. And then";

TEST(Session, SavedMidSegmentLoadsBitExactAndContinuesTheSame) {
  const Model model = random_model(1);
  const uint64_t fingerprint = model_fingerprint(model);
  const std::vector<int32_t> ids = text_ids(kText);
  Decoder a = decoder_create(model, 16);
  Rng rng_a(42);
  decoder_feed(a, ids.data(), 21);  // 2 segments and 5 rows
  rng_a.next();
  const std::string path = test::scratch_dir("session") + "/a.state";
  session_save(path, a, rng_a, fingerprint);

  Decoder b = decoder_create(model, 16);
  Rng rng_b(7);
  session_load(path, b, rng_b, fingerprint);
  EXPECT_EQ(b.state.position, 21);
  EXPECT_EQ(b.state.layers[0].cache.rows, 5);
  EXPECT_EQ(stream_bytes(b), stream_bytes(a));
  EXPECT_EQ(rng_b.state(), rng_a.state());
  for (size_t t = 21; t < ids.size(); ++t) {
    decoder_step(a, ids[t]);
    decoder_step(b, ids[t]);
    ASSERT_EQ(stream_bytes(b), stream_bytes(a)) << "token " << t;
  }

  // a refused file leaves the decoder as it was
  std::string bytes = test::read_bytes(path);
  bytes[bytes.size() / 2] ^= 1;
  std::ofstream(path + ".bad", std::ios::binary) << bytes;
  const std::string before = stream_bytes(b);
  const auto rng_before = rng_b.state();
  const std::string message =
      test::error_of([&] { session_load(path + ".bad", b, rng_b, fingerprint); });
  EXPECT_NE(message.find("checksum"), std::string::npos) << message;
  EXPECT_EQ(stream_bytes(b), before);
  EXPECT_EQ(rng_b.state(), rng_before);
}

// The softmax baselines keep their window / blocks in the cache (full: the whole stream, a cache
// that grows; fam also its feedback rows): a state saved mid-block loads bit-exactly and continues
// bit for bit.
TEST(Session, EveryBaselineMechanismSavesAndContinues) {
  for (const std::string type : {"full", "sliding", "xl", "bswa", "fam"}) {
    SCOPED_TRACE(type);
    const Model model = random_model(3, type);
    const uint64_t fingerprint = model_fingerprint(model);
    const std::vector<int32_t> ids = text_ids(kText);
    Decoder a = decoder_create(model, 16);
    Rng rng(1);
    decoder_feed(a, ids.data(), 29);  // 3 blocks and 5 rows
    const std::string path = test::scratch_dir("session_kv") + "/" + type + ".state";
    session_save(path, a, rng, fingerprint);
    Decoder b = decoder_create(model, 16);
    session_load(path, b, rng, fingerprint);
    EXPECT_EQ(b.state.position, 29);
    EXPECT_EQ(b.state.layers[0].cache.rows, a.state.layers[0].cache.rows);
    ASSERT_EQ(stream_bytes(b), stream_bytes(a));
    for (size_t t = 29; t < ids.size(); ++t) {
      decoder_step(a, ids[t]);
      decoder_step(b, ids[t]);
      ASSERT_EQ(stream_bytes(b), stream_bytes(a)) << "token " << t;
    }
  }
}

TEST(Session, FingerprintSeesOneWeightBitAndOneConfigValue) {
  Model model = random_model(2);
  const uint64_t f = model_fingerprint(model);
  EXPECT_EQ(model_fingerprint(random_model(2)), f);
  uint32_t bits;
  std::memcpy(&bits, &model.weights.all[123], 4);
  bits ^= 1;
  std::memcpy(&model.weights.all[123], &bits, 4);
  EXPECT_NE(model_fingerprint(model), f);
  Model other = random_model(2);
  other.config.rope_theta = 500000;
  EXPECT_NE(model_fingerprint(other), f);
}

TEST(Session, PromptReadInBlocksEqualsAllTokensAtOnce) {
  const Model model = random_model(3);
  std::string text;
  while (text.size() < 150) text += kText + "\n";
  const std::unique_ptr<Tokenizer> bytes = byte_tokenizer();
  Decoder a = decoder_create(model, 16), b = decoder_create(model, 16);
  std::istringstream in(text);
  int64_t last_tokens = 0;
  EXPECT_EQ(prompt_feed(a, *bytes, in, [&](int64_t, int64_t tokens) { last_tokens = tokens; }),
            int64_t(text.size()));
  EXPECT_EQ(last_tokens, int64_t(text.size()));
  const std::vector<int32_t> ids = text_ids(text);
  decoder_feed(b, ids.data(), int64_t(ids.size()));
  EXPECT_EQ(stream_bytes(a), stream_bytes(b));  // the same chunks: bit for bit
}

class WideTokenizer final : public Tokenizer {  // 300 ids: more than the model has
 public:
  std::vector<int32_t> encode(std::string_view text) const override {
    return std::vector<int32_t>(text.size(), 299);
  }
  std::string decode(const int32_t*, int64_t) const override { return ""; }
  int64_t vocab_size() const override { return 300; }
  std::string name() const override { return "wide"; }
  std::string token_bytes(int32_t) const override { return "?"; }
};

TEST(Session, RefusesIdsOutsideTheVocabulary) {
  const Model model = random_model(4);
  Decoder d = decoder_create(model, 16);
  const std::vector<int32_t> ids = {1, 2, 256};
  const std::string message = test::error_of([&] { decoder_feed(d, ids.data(), 3); });
  EXPECT_NE(message.find("token id 256 (input token 2) is outside the model's vocabulary of 256"),
            std::string::npos)
      << message;
  EXPECT_EQ(d.state.position, 0);  // nothing was fed
  EXPECT_NE(test::error_of([&] { decoder_step(d, -1); }).find("outside"), std::string::npos);
  std::istringstream in("abc");
  EXPECT_NE(test::error_of([&] {
              prompt_feed(d, WideTokenizer(), in);
            }).find("tokenizer has 300 ids, more than the model's vocab_size (256)"),
            std::string::npos);
}

TEST(Session, GenerateHandsOutItsTextCutBeforeAStopString) {
  const Model model = random_model(5);
  const std::unique_ptr<Tokenizer> bytes = byte_tokenizer();
  const std::vector<int32_t> ids = text_ids(kText);
  auto run = [&](const std::vector<std::string>& stop, std::string* emitted) {
    Decoder d = decoder_create(model, 16);
    decoder_feed(d, ids.data(), int64_t(ids.size()));
    Sampler s = sampler_create({0.0, 0, 1.0, 0}, 256);
    GenerateResult r =
        generate(d, s, *bytes, {40, stop}, [&](std::string_view piece) { emitted->append(piece); });
    EXPECT_EQ(d.state.position, int64_t(ids.size()) + r.tokens);  // every token drawn was fed
    return r;
  };
  std::string all_emitted;
  const GenerateResult all = run({}, &all_emitted);
  ASSERT_EQ(all.text.size(), 40u);
  EXPECT_EQ(all_emitted, all.text);
  EXPECT_EQ(all.stopped_by, "");
  // stop at a 3-byte string that first appears after byte 10 (or never: then no cut)
  const std::string stop = all.text.substr(12, 3);
  const size_t at = all.text.find(stop);
  std::string emitted;
  const GenerateResult cut = run({"never seen", stop}, &emitted);
  EXPECT_EQ(cut.text, all.text.substr(0, at));
  EXPECT_EQ(emitted, cut.text);
  EXPECT_EQ(cut.stopped_by, stop);
  EXPECT_EQ(cut.tokens, int64_t(at + 3));  // byte tokenizer: the stop string's tokens were drawn
}

}  // namespace
}  // namespace infini
