#include "daemon/activity.hpp"

#include "daemon/cdb_export.hpp"
#include "daemon/refresher.hpp"

namespace mtasts::daemon {

void Activity::answered(const LookupResult& result, LookupPath path,
                        std::chrono::steady_clock::duration took) {
  metrics.lookup(result.answer, path, std::chrono::duration<double>(took).count());
  if (refresher != nullptr) refresher->used(result.domain);
}

void Activity::stored(const LookupResult& result) {
  if (refresher != nullptr && result.entry) refresher->learn(result.domain, *result.entry);
  cache_written();
}

void Activity::cache_written() {
  if (exporter != nullptr) exporter->changed();
}

}  // namespace mtasts::daemon
