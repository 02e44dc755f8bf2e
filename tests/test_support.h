// Helpers shared by the tests: scratch folders, running programs (the infini CLI, the Python
// reference under Debian's /usr/bin/python3), reading reference tensors, comparing arrays.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "io/safetensors.h"

namespace infini::test {

// A fresh, empty folder under the build tree for one test.
inline std::string scratch_dir(const std::string& name) {
  const auto dir = std::filesystem::path(INFINI_BINARY_DIR) / "test_scratch" / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

// The whole content of a file ("" when it cannot be read).
inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

struct CommandResult {
  int exit_code;
  std::string output;  // stdout and stderr together
};

inline CommandResult run_command(const std::string& command) {
  CommandResult r{-1, {}};
  std::FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return r;
  std::array<char, 4096> buffer{};
  size_t got;
  while ((got = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0) r.output.append(buffer.data(), got);
  const int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// Runs the PyTorch reference (tests/reference/infini_ref.py) with `args`; fails the test with the
// script's output when it does not succeed (a missing torch is a failure, never a skip).
inline void run_reference(const std::string& args) {
  const std::string command = std::string(INFINI_PYTHON) + " " + INFINI_SOURCE_DIR +
                              "/tests/reference/infini_ref.py " + args;
  const CommandResult r = run_command(command);
  ASSERT_EQ(r.exit_code, 0) << "reference failed: " << command << "\n" << r.output;
}

inline std::string cli() { return INFINI_CLI; }

inline std::vector<double> read_f64(const SafetensorsFile& file, const std::string& name) {
  const SafetensorsEntry* e = file.find(name);
  if (!e) throw std::runtime_error(file.path() + ": no tensor " + name);
  if (e->dtype != "F64") throw std::runtime_error(name + " is not F64");
  std::vector<double> out(e->numel);
  std::copy_n(reinterpret_cast<const double*>(e->data), e->numel, out.data());
  return out;
}

// max |a - b| / max |b|: the error relative to the size of the reference tensor.
inline double relative_error(const float* a, const std::vector<double>& b) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    diff = std::max(diff, std::fabs(double(a[i]) - b[i]));
    scale = std::max(scale, std::fabs(b[i]));
  }
  return scale > 0 ? diff / scale : diff;
}

}  // namespace infini::test
