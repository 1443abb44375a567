// Where cache entries live. LMDB by default (lmdb_store.hpp); Redis for fleets later.
// Calls are short and synchronous: no transaction is ever held across a co_await.
#pragma once

#include <expected>
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

}  // namespace mtasts::store
