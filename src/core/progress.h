// A progress line for long work: done/total, tokens per second and the time left.
//
// On a terminal the line redraws itself in place (stderr, about 10 times a second); when stderr is
// not a terminal it prints nothing until finish(), so logs and pipes stay clean.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace infini {

class Progress {
 public:
  Progress(std::string label, int64_t total, std::string unit = "tok");
  void update(int64_t done);
  void finish();  // final line on a terminal; nothing otherwise
  double seconds() const;
  bool interactive() const { return interactive_; }

 private:
  void draw(bool final_line);
  std::string label_, unit_;
  int64_t total_, done_ = 0;
  bool interactive_, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

// Peak resident set size of this process in bytes (getrusage).
int64_t peak_rss_bytes();
// "12.3 MB" style.
std::string human_bytes(double bytes);

}  // namespace infini
