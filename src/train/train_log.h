// What a training run shows and records: the metrics file and the progress line.
//
// metrics.jsonl holds one JSON object per optimizer step, written and flushed as soon as the step
// is done (a killed run leaves whole lines, and at worst one partial last line):
//   {"step", "loss", "bits_per_byte", "lr", "grad_norm", "tokens", "tokens_per_second",
//    "elapsed_seconds", "memory_gates": [[sigmoid(beta_h) for each head] for each layer],
//    and after a held-out evaluation "val_loss", "val_bits_per_byte"}
// Losses are mean cross entropies in nats, printed with enough digits to read back the same
// double, so two runs can be compared bit for bit.
//
// The progress line: on a terminal, one line redrawn in place on stderr (step, loss, bits/byte,
// tokens/s, ETA); otherwise a plain line on stdout every `log_every` steps.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

namespace infini {

struct MetricsFile {
  std::string path;
  std::FILE* file = nullptr;
};

// Opens `path` for appending. A resumed run first drops every line of a step after `keep_through`
// (what was logged after the checkpoint it resumes from) and any partial line; 0 starts afresh.
MetricsFile metrics_open(const std::string& path, int64_t keep_through, bool resume);
// Appends one line and flushes it; a failed write (disk full) throws naming the file.
void metrics_write(MetricsFile& metrics, const nlohmann::json& line);
void metrics_close(MetricsFile& metrics);

struct StepReport {
  int64_t step = 0, total_steps = 0;  // total 0: not known yet
  double loss = 0, bits_per_byte = 0, lr = 0, grad_norm = 0, tokens_per_second = 0;
  double elapsed_seconds = 0, eta_seconds = -1;  // < 0: unknown
  bool last = false;                             // the run's last step (always printed)
};

struct ProgressLine {
  bool interactive = false;  // stderr is a terminal
  bool drawn = false;        // a line is on screen and must be cleared before other output
  std::chrono::steady_clock::time_point last_draw{};  // redrawn at most 10 times a second
};

ProgressLine progress_line_create();
// Draws (terminal) or prints every log_every steps (otherwise).
void progress_line_show(ProgressLine& line, const StepReport& r, int64_t log_every);
// Prints a message line (stdout) without garbling the live line; it is redrawn on the next step.
void progress_line_message(ProgressLine& line, const std::string& message);
void progress_line_finish(ProgressLine& line);

// Text safe to print on a terminal: malformed UTF-8 and control characters other than newline
// and tab (which an early byte-level model samples freely) become U+FFFD.
std::string printable_text(const std::string& text);

// "1h02m", "3m12s", "42s"
std::string duration_words(double seconds);

}  // namespace infini
