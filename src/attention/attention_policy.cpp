// The softmax-attention policies: validation, cache sizes and the chunk planner. See
// attention_policy.h.
#include "attention/attention_policy.h"

#include <string>

#include "core/error.h"

namespace infini {

KvPolicy kv_policy(std::string_view type, int64_t segment_length, int64_t window,
                   int64_t memory_blocks) {
  // built only for a message: the model asks for its policy on every chunk, decoding included,
  // and that path must not allocate
  auto where = [&] { return str("attention.type \"", type, "\""); };
  auto need_positive = [&](const char* field, int64_t value) {
    if (value < 1)
      throw Error(where(), str(field, " must be >= 1, got ", value),
                  str("set attention.", field, " in config.json"));
  };
  if (type == "full") return FullPolicy{};
  if (type == "sliding") {
    need_positive("window", window);
    return SlidingPolicy{window};
  }
  if (type == "xl") {
    need_positive("segment_length", segment_length);
    return XlPolicy{segment_length};
  }
  if (type == "bswa") {
    need_positive("segment_length", segment_length);
    need_positive("memory_blocks", memory_blocks);
    if (memory_blocks > std::numeric_limits<int64_t>::max() / segment_length - 1)
      throw Error(
          where(),
          str("memory_blocks ", memory_blocks, " * segment_length ", segment_length, " overflows"),
          "use memory_blocks * segment_length below 2^62");
    return BswaPolicy{segment_length, memory_blocks};
  }
  throw Error(where(), "is not a softmax-attention baseline",
              "kv attention serves full, sliding, xl and bswa");
}

const char* kv_policy_name(const KvPolicy& policy) {
  static constexpr const char* names[] = {"full", "sliding", "xl", "bswa"};
  return names[policy.index()];
}

int64_t kv_cache_rows_needed(const KvPolicy& policy, int64_t position) {
  INFINI_CHECK(position >= 0, "stream positions are >= 0, got ", position);
  return std::visit([&](const auto& p) { return position - p.first_key(position); }, policy);
}

int64_t kv_cache_max_rows(const KvPolicy& policy) {
  return std::visit([](const auto& p) { return p.max_cache_rows(); }, policy);
}

KvChunkPlan kv_chunk_plan(const KvPolicy& policy, int64_t position, int64_t tokens) {
  KvChunkPlan plan;
  kv_chunk_plan_into(plan, policy, position, tokens);
  return plan;
}

void kv_chunk_plan_into(KvChunkPlan& plan, const KvPolicy& policy, int64_t position,
                        int64_t tokens) {
  INFINI_CHECK(position >= 0 && tokens >= 1, "a chunk needs position >= 0 and tokens >= 1, got ",
               position, " and ", tokens);
  std::vector<KvQueryBlock> blocks = std::move(plan.blocks);
  blocks.clear();  // keeps its capacity
  plan = KvChunkPlan{};
  plan.blocks = std::move(blocks);
  std::visit(
      [&](const auto& p) {
        plan.key_position = p.first_key(position);
        plan.cached_keys = position - plan.key_position;
        plan.keys = plan.cached_keys + tokens;
        for (int64_t t0 = 0; t0 < tokens;) {
          const int64_t q = position + t0;  // stream position of the block's first query
          const int64_t first = p.first_key(q);
          const int64_t run = p.run_end(q) - position;  // no overflow: run_end(q) > q >= position
          const int64_t t1 = std::min({tokens, run, t0 + kKvBlockRows});
          KvQueryBlock block;
          block.t0 = t0;
          block.t1 = t1;
          block.key_start = first - plan.key_position;
          block.keys = position + t1 - first;
          block.mask = AttentionMask{q - first, p.mask_window()};
          block.gradient_start = std::max<int64_t>(0, p.gradient_from(q) - first);
          block.probs_offset = plan.probs_floats;
          plan.probs_floats += (t1 - t0) * block.keys;
          plan.max_block_floats = std::max(plan.max_block_floats, (t1 - t0) * block.keys);
          plan.max_block_keys = std::max(plan.max_block_keys, block.keys);
          plan.blocks.push_back(block);
          t0 = t1;
        }
      },
      policy);
}

}  // namespace infini
