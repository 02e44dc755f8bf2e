// Token embedding lookup and its scatter-add backward.
#pragma once

#include <cstdint>

namespace infini {

// out[r, :] = table[ids[r], :], table [V, D]. Ids must be < V (checked by the caller/tokenizer).
void embedding_forward(float* out, const float* table, const int32_t* ids, int64_t rows,
                       int64_t dim);
// dtable[ids[r], :] += dout[r, :]. Deterministic: rows that share an id are added in row order,
// whatever the thread count.
void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int64_t rows,
                        int64_t dim, int64_t vocab);

}  // namespace infini
