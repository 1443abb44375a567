// Where cache entries live. LMDB by default (lmdb_store.hpp); Redis for fleets later.
// Calls are short and synchronous: no transaction is ever held across a co_await.
#pragma once

#include <expected>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/decide.hpp"
#include "core/error.hpp"

namespace mtasts::store {

class PolicyStore {
 public:
  virtual ~PolicyStore() = default;
  // nullopt when nothing is stored for the domain. Errors: category store.
  [[nodiscard]] virtual std::expected<std::optional<CacheEntry>, Error> load(
      std::string_view domain) = 0;
  // Durable when it returns (the write transaction is committed and synced).
  [[nodiscard]] virtual std::expected<void, Error> save(std::string_view domain,
                                                        const CacheEntry& entry) = 0;
  // true when something was removed.
  [[nodiscard]] virtual std::expected<bool, Error> erase(std::string_view domain) = 0;
  // Every stored domain in key order.
  [[nodiscard]] virtual std::expected<std::vector<std::pair<std::string, CacheEntry>>, Error>
  list() = 0;
};

// A store one long-running process writes for many lookups at once (mtastsd): save() queues, a
// writer commits many entries per transaction (group commit), and a caller that must not go on
// before its entry is durable asks when_committed(). See write_behind_store.hpp.
class SharedStore : public PolicyStore {
 public:
  // Blocks until everything saved before the call is committed (or failed).
  virtual void flush() = 0;
  // Calls `done` (on the writer thread, or at once when nothing is pending) when everything
  // saved before the call is committed or failed. `done` must be quick and must not call back
  // into this store (post it to an event loop).
  virtual void when_committed(std::function<void()> done) = 0;
  // The file, for log lines and files kept beside it.
  [[nodiscard]] virtual const std::string& path() const = 0;
  // Conditions found on opening worth a log line (a corrupt file moved aside, ...).
  [[nodiscard]] virtual std::vector<std::string> take_notices() = 0;
};

}  // namespace mtasts::store
