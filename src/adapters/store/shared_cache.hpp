// The fleet's shared tier (design §8): a cache several mtastsd share (Redis;
// redis_shared_cache.hpp) beside each one's own LMDB file. Only the daemon uses it, never on the
// hot path: it is read when the local entry is missing or stale, and written after a lookup went to
// the network. Every call has a deadline; a call that fails says so and the daemon carries on
// alone. What comes back is validated like network input (shared_entry_codec.hpp); whether it may
// be used is the service's decision (core/shared_entry.hpp).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "adapters/asio.hpp"
#include "core/decide.hpp"

namespace mtasts::store {

struct SharedRead {
  enum class Status {
    found,        // `entry` holds a well-formed value stored for this domain
    absent,       // nothing stored
    invalid,      // something is stored but fails validation (`problem` says what): ignored
    unavailable,  // the shared cache could not be asked in time (`problem` says why)
  };
  Status status = Status::unavailable;
  std::optional<CacheEntry> entry;
  std::string problem;
  bool lock_acquired = false;  // lock_and_read(): this member now holds the domain's lock
  // lock_and_read(): the lock's remaining life in ms (Redis PTTL): -1 when it never expires
  // (no member sets such a lock: garbage), -2 when it is already gone.
  std::int64_t lock_left_ms = -2;
};

struct SharedCacheStats {
  bool connected = false;
  std::uint64_t reads = 0, found = 0, absent = 0, invalid = 0, unavailable = 0;
  std::uint64_t writes = 0, write_failures = 0;
  std::uint64_t locks_acquired = 0, locks_busy = 0;
  std::uint64_t connects = 0, connect_failures = 0, timeouts = 0, disconnects = 0;
};

class SharedCache {
 public:
  virtual ~SharedCache() = default;
  // The domain's shared entry (the domain is normalized).
  virtual asio::awaitable<SharedRead> read(std::string domain) = 0;
  // Takes the domain's lock if nobody holds it (it expires by itself after lock_ttl()) and reads
  // the entry in the same round trip.
  virtual asio::awaitable<SharedRead> lock_and_read(std::string domain) = 0;
  // Stores `entry` (expiring `ttl` from now) and then releases this member's lock on the domain,
  // if it holds it. Does not wait: a write that fails is counted and logged.
  virtual void write(std::string domain, const CacheEntry& entry, std::chrono::seconds ttl) = 0;
  // Releases this member's lock on the domain, if it holds it. Does not wait.
  virtual void release(std::string domain) = 0;
  // How long a lock lives at most: a member that takes it and dies holds nobody up longer.
  [[nodiscard]] virtual std::chrono::milliseconds lock_ttl() const = 0;
  [[nodiscard]] virtual SharedCacheStats stats() const = 0;
  // Stops connecting; calls still running fail. Called before destruction.
  virtual void stop() = 0;
};

}  // namespace mtasts::store
