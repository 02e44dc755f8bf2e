// Shared helpers of the kernel tests: random inputs, tolerance arithmetic, element-wise
// comparison with a readable report, central finite differences, and the PyTorch reference
// tensors written by make_kernel_golden.py.
//
// Tolerances follow the standard rounding-error analysis (Higham, "Accuracy and Stability of
// Numerical Algorithms", ch. 2-3): with u = 2^-24 the unit roundoff of float, a value computed
// with k roundings, each of an intermediate of magnitude at most M, is within gamma(k) * M of
// the exact value, gamma(k) = k u / (1 - k u). Each test states its k and its M.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace infini::test {

constexpr double kU = 0x1p-24;  // unit roundoff of float (half an ulp at 1)
// exp_f32 (src/kernels/kernel_support.h) is within 1.02 ulp; an ulp is at most 2u relative.
constexpr double kExpRel = 2.04 * kU;
// Smallest positive float (denormal): the absolute rounding error of a result that underflows
// is at most half of this.
constexpr double kDenormMin = 0x1p-149;

inline double gamma(double k) {
  return k * kU / (1.0 - k * kU);
}

// ---- random inputs ----------------------------------------------------------------------------

inline std::vector<float> random_normal(int64_t n, uint64_t seed, float scale = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(size_t(n > 0 ? n : 0));
  for (float& x : v) x = dist(rng);
  return v;
}

inline std::vector<float> random_uniform(int64_t n, uint64_t seed, float lo, float hi) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(size_t(n > 0 ? n : 0));
  for (float& x : v) x = dist(rng);
  return v;
}

inline std::vector<double> to_double(const std::vector<float>& v) {
  return std::vector<double>(v.begin(), v.end());
}

// ---- comparison -------------------------------------------------------------------------------

// Passes when |got[i] - ref[i]| <= tol[i] for every i (NaN never passes unless both are NaN);
// otherwise reports how many failed and the worst few, with their tolerance.
inline ::testing::AssertionResult all_within(const std::vector<double>& got,
                                             const std::vector<double>& ref,
                                             const std::vector<double>& tol) {
  if (got.size() != ref.size() || got.size() != tol.size())
    return ::testing::AssertionFailure() << "size mismatch: got " << got.size() << ", ref "
                                         << ref.size() << ", tol " << tol.size();
  int64_t failures = 0, worst = -1;
  double worst_ratio = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const bool both_nan = std::isnan(got[i]) && std::isnan(ref[i]);
    const bool same_inf = std::isinf(got[i]) && got[i] == ref[i];
    if (both_nan || same_inf) continue;
    const double err = std::fabs(got[i] - ref[i]);
    const double ratio = std::isnan(err) ? INFINITY : err / (tol[i] > 0 ? tol[i] : 1e-300);
    if (!(err <= tol[i])) {
      ++failures;
      if (ratio > worst_ratio || worst < 0) worst_ratio = ratio, worst = int64_t(i);
    }
  }
  if (failures == 0) {
    // INFINI_TEST_VERBOSE=1 shows how much of each tolerance is used (how tight the bounds are).
    if (std::getenv("INFINI_TEST_VERBOSE")) {
      double used = 0;
      for (size_t i = 0; i < got.size(); ++i)
        if (tol[i] > 0 && !std::isnan(got[i]))
          used = std::max(used, std::fabs(got[i] - ref[i]) / tol[i]);
      std::fprintf(stderr, "    [tolerance used: %.3g of the bound over %zu elements]\n", used,
                   got.size());
    }
    return ::testing::AssertionSuccess();
  }
  std::ostringstream msg;
  msg.precision(10);
  msg << failures << " of " << got.size() << " elements outside tolerance; worst at index " << worst
      << ": got " << got[worst] << ", expected " << ref[worst] << ", |diff| "
      << std::fabs(got[worst] - ref[worst]) << " > tol " << tol[worst] << " (x" << worst_ratio
      << ")";
  return ::testing::AssertionFailure() << msg.str();
}

inline ::testing::AssertionResult all_within(const std::vector<float>& got,
                                             const std::vector<double>& ref,
                                             const std::vector<double>& tol) {
  return all_within(to_double(got), ref, tol);
}

inline ::testing::AssertionResult bitwise_equal(const std::vector<float>& a,
                                                const std::vector<float>& b) {
  if (a.size() != b.size())
    return ::testing::AssertionFailure() << "sizes " << a.size() << " != " << b.size();
  for (size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0)
      return ::testing::AssertionFailure()
             << "first difference at " << i << ": " << a[i] << " vs " << b[i];
  return ::testing::AssertionSuccess();
}

// ---- finite differences -----------------------------------------------------------------------

// Central differences of a double function f at x: (f(x + h e_i) - f(x - h e_i)) / (2h), with
// h = 1e-5 max(1, |x_i|). The truncation error is h^2/6 |f'''| <= 1.7e-11 max(1, x_i^2) |f'''|
// and the rounding error about 2^-53 |f| / h <= 1.2e-11 |f|. The tests keep |x_i| <= 10 and
// |f|, |f'''| <= 100, so both stay below 2e-7 and analytic gradients g must match within
// kFdTol * (1 + |g|).
constexpr double kFdTol = 1e-6;

inline std::vector<double> finite_difference(const std::function<double(std::vector<double>&)>& f,
                                             std::vector<double> x) {
  std::vector<double> g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double x0 = x[i], h = 1e-5 * std::max(1.0, std::fabs(x0));
    x[i] = x0 + h;
    const double fp = f(x);
    x[i] = x0 - h;
    const double fm = f(x);
    x[i] = x0;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}

inline std::vector<double> fd_tolerance(const std::vector<double>& g) {
  std::vector<double> tol(g.size());
  for (size_t i = 0; i < g.size(); ++i) tol[i] = kFdTol * (1.0 + std::fabs(g[i]));
  return tol;
}

// ---- PyTorch reference tensors ----------------------------------------------------------------

struct Golden {
  std::vector<int64_t> shape;
  std::vector<float> f;    // float32 or float64 tensors
  std::vector<int32_t> i;  // int32 tensors
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    return n;
  }
};

// Runs make_kernel_golden.py under INFINI_PYTHON once per version of the script (the output is
// cached under INFINI_BINARY_DIR, named by a hash of the script) and returns its directory.
// Throws std::runtime_error with the script's output if Python or torch is missing: a missing
// reference is a failure, never a skip.
inline std::string golden_dir() {
  static std::string dir;
  if (!dir.empty()) return dir;
  const std::string script =
      std::string(INFINI_SOURCE_DIR) + "/tests/kernels/make_kernel_golden.py";
  std::ifstream in(script, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + script);
  std::stringstream content;
  content << in.rdbuf() << INFINI_PYTHON;
  const std::string root = std::string(INFINI_BINARY_DIR) + "/kernel_golden";
  const std::string final_dir =
      root + "/" + std::to_string(std::hash<std::string>{}(content.str()));
  if (std::filesystem::exists(final_dir + "/DONE")) return dir = final_dir;
  std::filesystem::create_directories(root);
  std::string tmp_template = root + "/tmp.XXXXXX";
  if (!mkdtemp(tmp_template.data())) throw std::runtime_error("cannot create a dir under " + root);
  const std::string tmp = tmp_template;
  const std::string cmd = std::string("'") + INFINI_PYTHON + "' '" + script + "' '" + tmp +
                          "' > '" + tmp + "/log' 2>&1";
  const int rc = std::system(cmd.c_str());
  if (rc != 0) {
    std::ifstream log(tmp + "/log");
    std::stringstream text;
    text << log.rdbuf();
    std::filesystem::remove_all(tmp);
    throw std::runtime_error(
        "the PyTorch reference script failed (exit status " +
        std::to_string(WIFEXITED(rc) ? WEXITSTATUS(rc) : rc) + "): " + cmd + "\n" + text.str() +
        "\nThese tests need Debian's python3-torch and python3-numpy under " INFINI_PYTHON
        " (configure with -DINFINI_PYTHON=/path/to/python to use another interpreter).");
  }
  // Publish atomically; if a concurrent test process got there first, use its copy.
  if (std::rename(tmp.c_str(), final_dir.c_str()) != 0) std::filesystem::remove_all(tmp);
  if (!std::filesystem::exists(final_dir + "/DONE"))
    throw std::runtime_error("reference tensors missing in " + final_dir);
  return dir = final_dir;
}

// Reads <golden_dir>/<name>.bin (format in make_kernel_golden.py).
inline Golden load_golden(const std::string& name) {
  const std::string path = golden_dir() + "/" + name + ".bin";
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("missing reference tensor " + path);
  int32_t dtype = 0, ndim = 0;
  in.read(reinterpret_cast<char*>(&dtype), 4);
  in.read(reinterpret_cast<char*>(&ndim), 4);
  if (!in || ndim < 0 || ndim > 8 || dtype < 0 || dtype > 2)
    throw std::runtime_error("bad header in " + path);
  Golden g;
  g.shape.resize(size_t(ndim));
  in.read(reinterpret_cast<char*>(g.shape.data()), 8 * ndim);
  const int64_t n = g.numel();
  if (dtype == 0) {
    g.f.resize(size_t(n));
    in.read(reinterpret_cast<char*>(g.f.data()), 4 * n);
  } else if (dtype == 1) {
    g.i.resize(size_t(n));
    in.read(reinterpret_cast<char*>(g.i.data()), 4 * n);
  } else {
    std::vector<double> d(static_cast<size_t>(n));
    in.read(reinterpret_cast<char*>(d.data()), 8 * n);
    g.f.assign(d.begin(), d.end());
  }
  if (!in) throw std::runtime_error("truncated reference tensor " + path);
  return g;
}

}  // namespace infini::test
