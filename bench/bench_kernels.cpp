// Kernel benchmarks (Google Benchmark): fp32 GEMM in the three Linear-layer layouts at LM shapes,
// reporting GFLOP/s, and the memory-bound kernels, reporting GB/s (bytes each call must read and
// write at least, counted once). Everything runs on the process thread pool (threads_init(0):
// one thread per core, or OMP_NUM_THREADS). How to run and the figures measured: bench/README.md.
//
//   env -u OPENBLAS_CORETYPE OMP_NUM_THREADS=2 build/release/bench_kernels
//   --benchmark_filter=matmul
#include <benchmark/benchmark.h>
#include <oneapi/dnnl/dnnl.hpp>

#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "core/parallel.h"
#include "kernels/activations.h"
#include "kernels/cross_entropy.h"
#include "kernels/embedding.h"
#include "kernels/matmul.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "kernels/softmax.h"

namespace {

using namespace infini;

std::vector<float> filled(int64_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

std::vector<int32_t> ids(int64_t n, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (int32_t& x : v) x = int32_t(rng() % uint32_t(vocab));
  return v;
}

void set_gbps(benchmark::State& state, double bytes) {
  state.counters["GB/s"] =
      benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// ---- GEMM ------------------------------------------------------------------------------------
// M x N x K as in matmul.h: nt  y[M,N] = x[M,K] W[N,K]^T        (forward)
//                           nn  dx[M,N] = dy[M,K] W[K,N]         (input gradient)
//                           tn  dW[M,N] = dy[K,M]^T x[K,N]       (weight gradient)

template <bool TA, bool TB>
void BM_matmul(benchmark::State& state) {
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  const std::vector<float> a = filled(m * k, 1), b = filled(k * n, 2);
  std::vector<float> c(static_cast<size_t>(m * n));
  for (auto _ : state) {
    matmul(c.data(), a.data(), b.data(), m, n, k, TA, TB, false);
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * double(m) * double(n) * double(k) * 1e-9,
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

void gemm_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"M", "N", "K"});
  for (auto s : {std::vector<int64_t>{2048, 512, 512},
                 {2048, 2048, 512},
                 {8192, 768, 256},
                 {8192, 2048, 256},
                 {8192, 256, 1024},
                 {8192, 256, 256}})
    b->Args(s);
  b->UseRealTime()->MinWarmUpTime(0.2)->Unit(benchmark::kMicrosecond);
}

BENCHMARK(BM_matmul<false, true>)->Name("matmul_nt")->Apply(gemm_shapes);
BENCHMARK(BM_matmul<false, false>)->Name("matmul_nn")->Apply(gemm_shapes);
BENCHMARK(BM_matmul<true, false>)->Name("matmul_tn")->Apply(gemm_shapes);

// The same products through oneDNN's matmul primitive, created once per shape (outside the timed
// loop): the alternative to dnnl_sgemm examined in bench/README.md.
template <bool TA, bool TB>
void BM_dnnl_matmul_primitive(benchmark::State& state) {
  using dnnl::memory;
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  const std::vector<float> a = filled(m * k, 1), b = filled(k * n, 2);
  std::vector<float> c(static_cast<size_t>(m * n));
  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  const auto f32 = memory::data_type::f32;
  // A logical [M,K] stored [K,M] is the "ba" layout; likewise B [K,N] stored [N,K].
  memory::desc a_md({m, k}, f32, TA ? memory::format_tag::ba : memory::format_tag::ab);
  memory::desc b_md({k, n}, f32, TB ? memory::format_tag::ba : memory::format_tag::ab);
  memory::desc c_md({m, n}, f32, memory::format_tag::ab);
  dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, b_md, c_md), engine);
  dnnl::matmul prim(pd);
  memory a_mem(a_md, engine, const_cast<float*>(a.data()));
  memory b_mem(b_md, engine, const_cast<float*>(b.data()));
  memory c_mem(c_md, engine, c.data());
  for (auto _ : state) {
    prim.execute(stream, {{DNNL_ARG_SRC, a_mem}, {DNNL_ARG_WEIGHTS, b_mem}, {DNNL_ARG_DST, c_mem}});
    stream.wait();
    benchmark::ClobberMemory();
  }
  state.SetLabel(pd.impl_info_str());
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * double(m) * double(n) * double(k) * 1e-9,
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

BENCHMARK(BM_dnnl_matmul_primitive<false, true>)->Name("dnnl_primitive_nt")->Apply(gemm_shapes);
BENCHMARK(BM_dnnl_matmul_primitive<false, false>)->Name("dnnl_primitive_nn")->Apply(gemm_shapes);
BENCHMARK(BM_dnnl_matmul_primitive<true, false>)->Name("dnnl_primitive_tn")->Apply(gemm_shapes);

// ---- memory-bound kernels (rows x cols at the model's shapes: 8192 tokens, d 256) ------------

constexpr int64_t kRows = 8192;

void BM_rmsnorm_forward(benchmark::State& state) {
  const int64_t R = kRows, C = state.range(0);
  const std::vector<float> x = filled(R * C, 1), w = filled(C, 2);
  std::vector<float> out(R * C), rstd(R);
  for (auto _ : state) {
    rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), R, C, 1e-5f);
    benchmark::ClobberMemory();
  }
  set_gbps(state, 4.0 * (2 * R * C + R));
}
BENCHMARK(BM_rmsnorm_forward)->Name("rmsnorm_forward")->Arg(256)->UseRealTime();

void BM_rmsnorm_backward(benchmark::State& state) {
  const int64_t R = kRows, C = state.range(0);
  const std::vector<float> x = filled(R * C, 1), w = filled(C, 2), dout = filled(R * C, 3);
  std::vector<float> out(R * C), rstd(R), dx(R * C), dw(C);
  rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), R, C, 1e-5f);
  for (auto _ : state) {
    rmsnorm_backward(dx.data(), dw.data(), dout.data(), x.data(), w.data(), rstd.data(), R, C);
    benchmark::ClobberMemory();
  }
  set_gbps(state, 4.0 * (4 * R * C + R));  // read x, dout, dx; write dx
}
BENCHMARK(BM_rmsnorm_backward)->Name("rmsnorm_backward")->Arg(256)->UseRealTime();

// RoPE on the Q columns of a fused QKV buffer [T, 3 * H * d], 4 heads of 64.
void BM_rope(benchmark::State& state) {
  const bool backward = state.range(0);
  const int64_t T = kRows, H = 4, d = 64, W = 3 * H * d;
  std::vector<float> qkv = filled(T * W, 1), cos(T * d / 2), sin(T * d / 2), dq = filled(T * W, 2);
  rope_tables(cos.data(), sin.data(), T, d, 10000.0, 0);
  for (auto _ : state) {
    if (backward)
      rope_backward(dq.data(), qkv.data(), cos.data(), sin.data(), T, H, d, W, W);
    else
      rope_forward(qkv.data(), qkv.data(), cos.data(), sin.data(), T, H, d, W, W);
    benchmark::ClobberMemory();
  }
  set_gbps(state, 4.0 * (T * H * d * (backward ? 3 : 2) + T * d));
}
BENCHMARK(BM_rope)->Name("rope")->ArgName("backward")->Arg(0)->Arg(1)->UseRealTime();

void BM_rope_tables(benchmark::State& state) {
  const int64_t T = 2048, d = 64;
  std::vector<float> cos(T * d / 2), sin(T * d / 2);
  for (auto _ : state) {
    rope_tables(cos.data(), sin.data(), T, d, 10000.0, 1'000'000);
    benchmark::ClobberMemory();
  }
  set_gbps(state, 4.0 * T * d);
}
BENCHMARK(BM_rope_tables)->Name("rope_tables")->UseRealTime();

void BM_silu(benchmark::State& state) {
  const bool backward = state.range(0);
  const int64_t n = kRows * 1024;
  const std::vector<float> x = filled(n, 1, 3.0f), dout = filled(n, 2);
  std::vector<float> out(n);
  for (auto _ : state) {
    if (backward)
      silu_backward(out.data(), dout.data(), x.data(), n);
    else
      silu_forward(out.data(), x.data(), n);
    benchmark::ClobberMemory();
  }
  set_gbps(state, 4.0 * n * (backward ? 4 : 2));
}
BENCHMARK(BM_silu)->Name("silu")->ArgName("backward")->Arg(0)->Arg(1)->UseRealTime();

void BM_swiglu(benchmark::State& state) {
  const bool backward = state.range(0);
  const int64_t R = kRows, F = 1024;
  const std::vector<float> gu = filled(R * 2 * F, 1, 3.0f), dout = filled(R * F, 2);
  std::vector<float> out(R * F), dgu(R * 2 * F);
  for (auto _ : state) {
    if (backward)
      swiglu_backward(dgu.data(), dout.data(), gu.data(), R, F);
    else
      swiglu_forward(out.data(), gu.data(), R, F);
    benchmark::ClobberMemory();
  }
  set_gbps(state, 4.0 * R * F * (backward ? 5 : 3));
}
BENCHMARK(BM_swiglu)->Name("swiglu")->ArgName("backward")->Arg(0)->Arg(1)->UseRealTime();

void BM_elu1(benchmark::State& state) {
  const bool backward = state.range(0);
  const int64_t n = kRows * 256;
  const std::vector<float> x = filled(n, 1, 3.0f), dout = filled(n, 2);
  std::vector<float> out(n);
  for (auto _ : state) {
    if (backward)
      elu1_backward(out.data(), dout.data(), x.data(), n);
    else
      elu1_forward(out.data(), x.data(), n);
    benchmark::ClobberMemory();
  }
  set_gbps(state, 4.0 * n * (backward ? 4 : 2));
}
BENCHMARK(BM_elu1)->Name("elu1")->ArgName("backward")->Arg(0)->Arg(1)->UseRealTime();

// Attention-score shaped: (B * H * T) rows of a segment of 256 keys.
void BM_softmax(benchmark::State& state) {
  const bool backward = state.range(0);
  const int64_t R = 4 * 4 * 256, C = 256;
  const std::vector<float> x = filled(R * C, 1, 3.0f), dy = filled(R * C, 2);
  std::vector<float> y(R * C), dx(R * C);
  softmax_forward(y.data(), x.data(), R, C);
  for (auto _ : state) {
    if (backward)
      softmax_backward(dx.data(), dy.data(), y.data(), R, C);
    else
      softmax_forward(y.data(), x.data(), R, C);
    benchmark::ClobberMemory();
  }
  set_gbps(state, 4.0 * R * C * (backward ? 4 : 2));
}
BENCHMARK(BM_softmax)->Name("softmax")->ArgName("backward")->Arg(0)->Arg(1)->UseRealTime();

void BM_cross_entropy(benchmark::State& state) {
  const bool backward = state.range(1);
  const int64_t V = state.range(0), R = V > 1024 ? 1024 : kRows;
  const std::vector<float> logits = filled(R * V, 1, 3.0f);
  const std::vector<int32_t> targets = ids(R, V, 2);
  std::vector<float> losses(R), dlogits(R * V);
  for (auto _ : state) {
    if (backward)
      cross_entropy_backward(dlogits.data(), logits.data(), targets.data(), R, V, 1.0f / R);
    else
      benchmark::DoNotOptimize(
          cross_entropy_forward(losses.data(), logits.data(), targets.data(), R, V));
    benchmark::ClobberMemory();
  }
  set_gbps(state, 4.0 * R * V * (backward ? 2 : 1));
}
BENCHMARK(BM_cross_entropy)
    ->Name("cross_entropy")
    ->ArgNames({"V", "backward"})
    ->Args({256, 0})
    ->Args({256, 1})
    ->Args({32000, 0})
    ->Args({32000, 1})
    ->UseRealTime();

void BM_embedding(benchmark::State& state) {
  const bool backward = state.range(0);
  const int64_t R = kRows, D = 256, V = 256;
  const std::vector<float> table = filled(V * D, 1), dout = filled(R * D, 2);
  const std::vector<int32_t> tokens = ids(R, V, 3);
  std::vector<float> out(R * D), dtable(V * D);
  for (auto _ : state) {
    if (backward)
      embedding_backward(dtable.data(), dout.data(), tokens.data(), R, D, V);
    else
      embedding_forward(out.data(), table.data(), tokens.data(), R, D);
    benchmark::ClobberMemory();
  }
  set_gbps(state, 4.0 * R * D * 2);  // rows read + rows written (table rows stay in cache)
}
BENCHMARK(BM_embedding)->Name("embedding")->ArgName("backward")->Arg(0)->Arg(1)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  // The process pool: one thread per core, unless OMP_NUM_THREADS asks for another count
  // (threads_init(0) alone would override it).
  const char* omp_threads = std::getenv("OMP_NUM_THREADS");
  infini::threads_init(omp_threads ? std::atoi(omp_threads) : 0);
  benchmark::AddCustomContext("infini_threads", std::to_string(infini::threads_count()));
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
