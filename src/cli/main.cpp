// infini: the command-line program. Each command lives in its own cmd_<name>.cpp and registers
// itself through cli/commands.h; this file parses the command line and turns every infini::Error
// into a message and a non-zero exit.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>

#include "cli/commands.h"
#include "core/error.h"

int main(int argc, char** argv) {
  CLI::App app{
      "infini: train and run Transformer language models with bounded-memory, unbounded context\n"
      "(Infini-attention, TransformerFAM and classic baselines in one engine)."};
  app.set_version_flag("--version", "infini 0.1.0");
  app.require_subcommand(1);
  for (const infini::cli::Command& command : infini::cli::commands()) command.add(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const infini::Error& e) {
    std::fprintf(stderr, "infini: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "infini: unexpected error: %s\n", e.what());
    return 2;
  }
  return infini::cli::exit_code();
}
