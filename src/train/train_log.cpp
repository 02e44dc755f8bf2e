#include "train/train_log.h"

#include <unistd.h>

#include <fstream>
#include <sstream>
#include <vector>

#include "core/error.h"
#include "io/atomic_file.h"

namespace infini {

MetricsFile metrics_open(const std::string& path, int64_t keep_through, bool resume) {
  if (resume) {
    // keep the lines of steps <= keep_through; a later or unreadable (partial) line is dropped
    std::ifstream in(path, std::ios::binary);
    std::string kept, line;
    while (in && std::getline(in, line)) {
      if (in.eof()) break;  // no newline: the partial last line of a killed run
      const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.is_object() || !j.contains("step") ||
          !j.at("step").is_number_integer() || j.at("step").get<int64_t>() > keep_through)
        continue;
      kept += line + "\n";
    }
    write_file_atomic(path, kept);
  }
  MetricsFile m;
  m.path = path;
  m.file = std::fopen(path.c_str(), resume ? "a" : "w");
  if (!m.file) throw Error(path, "cannot open for writing", "check the run directory");
  return m;
}

void metrics_write(MetricsFile& m, const nlohmann::json& line) {
  const std::string text = line.dump() + "\n";
  if (std::fwrite(text.data(), 1, text.size(), m.file) != text.size() || std::fflush(m.file) != 0)
    throw Error(m.path, "write failed (disk full?)",
                "free disk space; the last checkpoint is intact, resume from it with --resume");
}

void metrics_close(MetricsFile& m) {
  if (m.file) std::fclose(m.file);
  m.file = nullptr;
}

std::string printable_text(const std::string& text) {
  const char* const replacement = "\xef\xbf\xbd";  // U+FFFD
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      out += (c >= 0x20 && c != 0x7f) || c == '\n' || c == '\t' ? std::string(1, char(c))
                                                                : replacement;
      ++i;
      continue;
    }
    // the length of a well-formed sequence starting here (RFC 3629), or 0
    size_t length = c >= 0xc2 && c <= 0xdf   ? 2
                    : c >= 0xe0 && c <= 0xef ? 3
                    : c >= 0xf0 && c <= 0xf4 ? 4
                                             : 0;
    if (length && i + length <= text.size()) {
      const unsigned char c1 = static_cast<unsigned char>(text[i + 1]);
      const unsigned char low = c == 0xe0 ? 0xa0 : c == 0xf0 ? 0x90 : 0x80;
      const unsigned char high = c == 0xed ? 0x9f : c == 0xf4 ? 0x8f : 0xbf;
      bool ok = c1 >= low && c1 <= high;
      for (size_t k = 2; k < length && ok; ++k)
        ok = (static_cast<unsigned char>(text[i + k]) & 0xc0) == 0x80;
      if (ok) {
        out.append(text, i, length);
        i += length;
        continue;
      }
    }
    out += replacement;
    ++i;
  }
  return out;
}

std::string duration_words(double seconds) {
  if (seconds < 0) return "--";
  const int64_t s = int64_t(seconds + 0.5);
  char out[32];
  if (s >= 3600)
    std::snprintf(out, sizeof out, "%lldh%02lldm", (long long)(s / 3600), (long long)(s / 60 % 60));
  else if (s >= 60)
    std::snprintf(out, sizeof out, "%lldm%02llds", (long long)(s / 60), (long long)(s % 60));
  else
    std::snprintf(out, sizeof out, "%llds", (long long)s);
  return out;
}

ProgressLine progress_line_create() {
  ProgressLine line;
  line.interactive = isatty(STDERR_FILENO) != 0;
  return line;
}

void progress_line_show(ProgressLine& line, const StepReport& r, int64_t log_every) {
  char rate[32];
  if (r.tokens_per_second >= 1e4)
    std::snprintf(rate, sizeof rate, "%.1fk", r.tokens_per_second / 1e3);
  else
    std::snprintf(rate, sizeof rate, "%.0f", r.tokens_per_second);
  const std::string total = r.total_steps > 0 ? std::to_string(r.total_steps) : "?";
  if (line.interactive) {
    const auto now = std::chrono::steady_clock::now();
    if (line.drawn && !r.last && now - line.last_draw < std::chrono::milliseconds(100)) return;
    line.last_draw = now;
    const double fraction = r.total_steps > 0 ? double(r.step) / double(r.total_steps) : 0;
    const int width = 20, filled = int(fraction * width + 0.5);
    std::string bar(filled, '#');
    bar.resize(width, '.');
    std::fprintf(stderr, "\r[%s] step %lld/%s  loss %.4f  %.3f bpb  %s tok/s  ETA %s\033[K",
                 bar.c_str(), (long long)r.step, total.c_str(), r.loss, r.bits_per_byte, rate,
                 duration_words(r.eta_seconds).c_str());
    std::fflush(stderr);
    line.drawn = true;
    return;
  }
  if (r.step % log_every != 0 && r.step != r.total_steps && r.step != 1 && !r.last) return;
  std::printf(
      "step %lld/%s  loss %.4f  bpb %.4f  lr %.3g  grad_norm %.3g  %s tok/s  "
      "elapsed %s  ETA %s\n",
      (long long)r.step, total.c_str(), r.loss, r.bits_per_byte, r.lr, r.grad_norm, rate,
      duration_words(r.elapsed_seconds).c_str(), duration_words(r.eta_seconds).c_str());
  std::fflush(stdout);
}

void progress_line_message(ProgressLine& line, const std::string& message) {
  if (line.drawn) {
    std::fprintf(stderr, "\r\033[K");
    std::fflush(stderr);
    line.drawn = false;
  }
  std::printf("%s\n", message.c_str());
  std::fflush(stdout);
}

void progress_line_finish(ProgressLine& line) {
  if (line.drawn) {
    std::fprintf(stderr, "\n");
    std::fflush(stderr);
    line.drawn = false;
  }
}

}  // namespace infini
