#include "daemon/activity.hpp"

namespace mtasts::daemon {

void Activity::answered(const LookupResult& result, AnswerPath path,
                        std::chrono::steady_clock::duration took) {
  metrics.lookup(result.answer, path, std::chrono::duration<double>(took).count());
  if (listeners_.used) listeners_.used(result.domain);
}

void Activity::stored(const LookupResult& result) {
  if (listeners_.learnt && result.entry) listeners_.learnt(result.domain, *result.entry);
  cache_written();
}

void Activity::cache_written() {
  if (listeners_.cache_written) listeners_.cache_written();
}

}  // namespace mtasts::daemon
