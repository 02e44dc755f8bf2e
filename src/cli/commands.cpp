#include "cli/commands.h"

namespace infini::cli {

std::vector<Command>& commands() {
  static std::vector<Command> all;
  return all;
}

namespace {
int g_exit_code = 0;
}
int exit_code() { return g_exit_code; }
void set_exit_code(int code) { g_exit_code = code; }

}  // namespace infini::cli
