// How a command plugs into the program: each cmd_<name>.cpp defines a registration that adds a
// CLI11 subcommand with its options and a callback. The callback runs inside main's try block, so
// throwing infini::Error is the way to report a user error.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <vector>

namespace infini::cli {

struct Command {
  std::function<void(CLI::App&)> add;
};

std::vector<Command>& commands();
// Registers a command at static-initialisation time: `static Registration r{add_ppl};`
struct Registration {
  explicit Registration(std::function<void(CLI::App&)> add) { commands().push_back({std::move(add)}); }
};

// The process exit code a command sets when it finishes without throwing (default 0).
int exit_code();
void set_exit_code(int code);

}  // namespace infini::cli
