// The fleet's shared cache on Redis (store::SharedCache; design §8, docs/fleet.md).
//
//   PREFIX "v1:" DOMAIN        the domain's entry (shared_entry_codec.hpp), expiring with it
//   PREFIX "v1:lock:" DOMAIN   "<member token>" while one member looks the domain up (SET NX PX)
//
// Reads and locks have a deadline of a few milliseconds; writes are not waited for. A lock is
// released only by the member that took it (compared in a Lua script), and expires by itself.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include <spdlog/logger.h>

#include "adapters/redis/redis_client.hpp"
#include "adapters/store/shared_cache.hpp"

namespace mtasts::redis {

struct SharedCacheOptions {
  std::string prefix = "mtasts:";
  std::chrono::milliseconds read_timeout{10};
  std::chrono::milliseconds write_timeout{1000};
  std::chrono::milliseconds lock_ttl{10000};  // no longer than the fetch timeout
};

class RedisSharedCache final : public store::SharedCache {
 public:
  RedisSharedCache(asio::any_io_executor executor, ClientOptions client, SharedCacheOptions options,
                   std::shared_ptr<spdlog::logger> logger);
  ~RedisSharedCache() override;

  asio::awaitable<store::SharedRead> read(std::string domain) override;
  asio::awaitable<store::SharedRead> lock_and_read(std::string domain) override;
  void write(std::string domain, const CacheEntry& entry, std::chrono::seconds ttl) override;
  void release(std::string domain) override;
  [[nodiscard]] std::chrono::milliseconds lock_ttl() const override { return options_.lock_ttl; }
  [[nodiscard]] store::SharedCacheStats stats() const override;
  void stop() override;

  // The keys, for docs and tests.
  [[nodiscard]] std::string entry_key(std::string_view domain) const;
  [[nodiscard]] std::string lock_key(std::string_view domain) const;

 private:
  struct Counts;
  // Sends `commands` without waiting for the replies; failures are counted and logged.
  void send(std::vector<std::vector<std::string>> commands, bool is_write);
  static asio::awaitable<void> deliver(std::shared_ptr<Client> client,
                                       std::shared_ptr<Counts> counts,
                                       std::shared_ptr<spdlog::logger> logger,
                                       std::vector<std::vector<std::string>> commands,
                                       std::chrono::milliseconds deadline, bool is_write);
  store::SharedRead decode(const std::string& domain, const Reply& reply);

  asio::any_io_executor executor_;
  std::shared_ptr<Client> client_;
  SharedCacheOptions options_;
  std::shared_ptr<spdlog::logger> logger_;
  std::string token_;  // this member's lock value
  std::shared_ptr<Counts> counts_;
};

}  // namespace mtasts::redis
