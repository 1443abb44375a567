// A bound on how many log lines one kind of event may write, for events a remote party can
// cause at will (mtastsd's clients sending malformed requests, holding connections past the
// deadlines): at most `burst` lines in each window of `window`; further lines in the same window
// are left out and counted, and the count is reported once, with the first line of a later
// window, or by take_suppressed() when the window is over and no line came. A flood of N events
// thus writes at most burst + 1 lines per window, whatever N.
//
// Pure: the caller passes the (monotonic) time; no locks (mtastsd's sessions share one instance
// on the event loop's thread).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace mtasts {

class LogLimiter {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  using Duration = std::chrono::steady_clock::duration;

  struct Admission {
    bool log = false;              // write this line
    std::uint64_t suppressed = 0;  // before it, say that this many earlier lines were left out
    // " (N similar lines left out)" to end the admitted line with, or nothing.
    [[nodiscard]] std::string left_out() const {
      return suppressed == 0 ? std::string()
                             : " (" + std::to_string(suppressed) + " similar lines left out)";
    }
  };

  LogLimiter(std::uint32_t burst, Duration window) : burst_(burst), window_(window) {}

  // One event that would write a line at `now`.
  [[nodiscard]] Admission admit(TimePoint now) {
    Admission admission;
    if (!started_ || now - window_start_ >= window_) {
      started_ = true;
      window_start_ = now;
      in_window_ = 0;
      admission.suppressed = suppressed_;
      suppressed_ = 0;
    }
    if (in_window_ < burst_) {
      ++in_window_;
      admission.log = true;
      return admission;
    }
    // Left out; a count carried over from an earlier window (burst 0) stays to be reported.
    suppressed_ += admission.suppressed + 1;
    admission.suppressed = 0;
    return admission;
  }

  // Lines left out in a window that is over by `now`, reported once (0 when there are none or
  // the window is still open): for a summary line when no new event comes.
  [[nodiscard]] std::uint64_t take_suppressed(TimePoint now) {
    if (suppressed_ == 0 || now - window_start_ < window_) return 0;
    const std::uint64_t count = suppressed_;
    suppressed_ = 0;
    return count;
  }

  [[nodiscard]] std::uint32_t burst() const { return burst_; }
  [[nodiscard]] Duration window() const { return window_; }

 private:
  std::uint32_t burst_;
  Duration window_;
  bool started_ = false;
  TimePoint window_start_{};
  std::uint32_t in_window_ = 0;
  std::uint64_t suppressed_ = 0;
};

}  // namespace mtasts
