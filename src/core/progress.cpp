#include "core/progress.h"

#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>

namespace infini {

Progress::Progress(std::string label, int64_t total, std::string unit)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_(total),
      interactive_(isatty(STDERR_FILENO) != 0),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

double Progress::seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::update(int64_t done) {
  done_ = done;
  if (!interactive_) return;
  auto now = std::chrono::steady_clock::now();
  if (now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  draw(false);
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  if (interactive_) draw(true);
}

void Progress::draw(bool final_line) {
  const double elapsed = seconds(), rate = elapsed > 0 ? double(done_) / elapsed : 0;
  const double fraction = total_ > 0 ? double(done_) / double(total_) : 0;
  char eta[32] = "--:--";
  if (rate > 0 && total_ > 0) {
    const int64_t left = int64_t(double(total_ - done_) / rate);
    std::snprintf(eta, sizeof eta, "%02lld:%02lld", (long long)(left / 60), (long long)(left % 60));
  }
  const int width = 30, filled = int(fraction * width + 0.5);
  std::string bar(filled, '#');
  bar.resize(width, '.');
  std::fprintf(stderr, "\r%s [%s] %3.0f%% %lld/%lld %s  %.0f %s/s  ETA %s\033[K%s",
               label_.c_str(), bar.c_str(), fraction * 100, (long long)done_, (long long)total_,
               unit_.c_str(), rate, unit_.c_str(), eta, final_line ? "\n" : "");
  std::fflush(stderr);
}

int64_t peak_rss_bytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return int64_t(usage.ru_maxrss) * 1024;
}

std::string human_bytes(double bytes) {
  const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  int u = 0;
  while (bytes >= 1000 && u < 4) {
    bytes /= 1000;
    ++u;
  }
  char out[32];
  std::snprintf(out, sizeof out, u ? "%.1f %s" : "%.0f %s", bytes, units[u]);
  return out;
}

}  // namespace infini
