// Helpers shared by the tests: scratch folders, running programs (the infini CLI, the Python
// reference under Debian's /usr/bin/python3), reading reference tensors, comparing arrays.
#pragma once

#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/safetensors.h"

namespace infini::test {

// A fresh, empty folder under the build tree for one test process. ctest runs every test case
// as its own process, several at once (-j), and a suite's SetUpTestSuite runs in each of them:
// the folder is therefore named after the process (name.<pid>), and folders of the same name left
// by processes that have ended are removed.
inline std::string scratch_dir(const std::string& name) {
  namespace fs = std::filesystem;
  const fs::path root = fs::path(INFINI_BINARY_DIR) / "test_scratch";
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    const std::string leaf = entry.path().filename().string();
    if (leaf.rfind(name + ".", 0) != 0) continue;
    const std::string pid = leaf.substr(name.size() + 1);
    if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
    if (::kill(pid_t(std::stol(pid)), 0) != 0 && errno == ESRCH) fs::remove_all(entry.path(), ec);
  }
  const fs::path dir = root / (name + "." + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

// The whole content of a file ("" when it cannot be read).
inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// The message of the infini::Error that f throws ("" when it throws none).
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
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
