#include "adapters/redis/redis_shared_cache.hpp"

#include <unistd.h>

#include <exception>
#include <random>
#include <utility>

#include <fmt/format.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include "adapters/store/shared_entry_codec.hpp"
#include "core/log_limiter.hpp"

namespace mtasts::redis {
namespace {

// Deletes the lock only while it still holds this member's token: a lock that expired and was
// taken by another member is not ours to release.
constexpr std::string_view kReleaseScript =
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end "
    "return 0";

std::string member_token() {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  std::random_device random;
  const std::uint64_t nonce = (std::uint64_t{random()} << 32) | random();
  return fmt::format("{}/{}/{:016x}", host, getpid(), nonce);
}

}  // namespace

struct RedisSharedCache::Counts {
  store::SharedCacheStats stats;
  LogLimiter write_log{5, std::chrono::minutes(1)};
};

RedisSharedCache::RedisSharedCache(asio::any_io_executor executor, ClientOptions client,
                                   SharedCacheOptions options,
                                   std::shared_ptr<spdlog::logger> logger)
    : executor_(executor),
      client_(std::make_shared<Client>(executor, std::move(client), logger)),
      options_(std::move(options)),
      logger_(std::move(logger)),
      token_(member_token()),
      counts_(std::make_shared<Counts>()) {
  client_->start();
}

RedisSharedCache::~RedisSharedCache() {
  stop();
}

void RedisSharedCache::stop() {
  client_->stop();
}

std::string RedisSharedCache::entry_key(std::string_view domain) const {
  return fmt::format("{}v1:{}", options_.prefix, domain);
}

std::string RedisSharedCache::lock_key(std::string_view domain) const {
  return fmt::format("{}v1:lock:{}", options_.prefix, domain);
}

store::SharedRead RedisSharedCache::decode(const std::string& domain, const Reply& reply) {
  store::SharedRead read;
  store::SharedCacheStats& stats = counts_->stats;
  switch (reply.type) {
    case Reply::Type::nil:
      read.status = store::SharedRead::Status::absent;
      ++stats.absent;
      return read;
    case Reply::Type::string: {
      auto entry = store::decode_shared(domain, reply.text);
      if (entry) {
        read.status = store::SharedRead::Status::found;
        read.entry = std::move(*entry);
        ++stats.found;
      } else {
        read.status = store::SharedRead::Status::invalid;
        read.problem = std::move(entry.error());
        ++stats.invalid;
      }
      return read;
    }
    case Reply::Type::error:
      read.status = store::SharedRead::Status::unavailable;
      read.problem = fmt::format("Redis said: {}", reply.text);
      ++stats.unavailable;
      return read;
    default:
      // Another type under our key (a list, a number): somebody else's data; never ours.
      read.status = store::SharedRead::Status::invalid;
      read.problem = "the key holds no string";
      ++stats.invalid;
      return read;
  }
}

asio::awaitable<store::SharedRead> RedisSharedCache::read(std::string domain) {
  ++counts_->stats.reads;
  std::shared_ptr<Client> client = client_;
  std::vector<std::vector<std::string>> commands;
  commands.push_back({"GET", entry_key(domain)});
  auto replies = co_await client->run(std::move(commands), options_.read_timeout);
  if (!replies || replies->size() != 1) {
    ++counts_->stats.unavailable;
    store::SharedRead read;
    read.problem = replies ? "unexpected reply count" : replies.error().reason;
    co_return read;
  }
  co_return decode(domain, replies->front());
}

asio::awaitable<store::SharedRead> RedisSharedCache::lock_and_read(std::string domain) {
  ++counts_->stats.reads;
  std::shared_ptr<Client> client = client_;
  // Built first: g++ 12 rejects a braced list of string literals as a coroutine's argument.
  std::vector<std::vector<std::string>> commands;
  commands.push_back(
      {"SET", lock_key(domain), token_, "NX", "PX", std::to_string(options_.lock_ttl.count())});
  commands.push_back({"GET", entry_key(domain)});
  commands.push_back({"PTTL", lock_key(domain)});
  auto replies = co_await client->run(std::move(commands), options_.read_timeout);
  if (!replies || replies->size() != 3 || (*replies)[0].type == Reply::Type::error) {
    ++counts_->stats.unavailable;
    store::SharedRead read;
    read.problem = !replies               ? replies.error().reason
                   : replies->size() != 3 ? "unexpected reply count"
                                          : "Redis said: " + (*replies)[0].text;
    co_return read;
  }
  store::SharedRead read = decode(domain, (*replies)[1]);
  read.lock_acquired = (*replies)[0].type == Reply::Type::status && (*replies)[0].text == "OK";
  if ((*replies)[2].type == Reply::Type::integer) read.lock_left_ms = (*replies)[2].integer;
  ++(read.lock_acquired ? counts_->stats.locks_acquired : counts_->stats.locks_busy);
  co_return read;
}

void RedisSharedCache::write(std::string domain, const CacheEntry& entry,
                             std::chrono::seconds ttl) {
  auto value = store::encode_shared(domain, entry);
  std::vector<std::vector<std::string>> commands;
  if (value) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(ttl).count();
    commands.push_back({"SET", entry_key(domain), std::move(*value), "PX", std::to_string(ms)});
  } else {
    logger_->warn("{}: not shared: {}", domain, value.error().reason);
  }
  commands.push_back({"EVAL", std::string(kReleaseScript), "1", lock_key(domain), token_});
  send(std::move(commands), value.has_value());
}

void RedisSharedCache::release(std::string domain) {
  send({{"EVAL", std::string(kReleaseScript), "1", lock_key(domain), token_}}, false);
}

asio::awaitable<void> RedisSharedCache::deliver(std::shared_ptr<Client> client,
                                                std::shared_ptr<Counts> counts,
                                                std::shared_ptr<spdlog::logger> logger,
                                                std::vector<std::vector<std::string>> commands,
                                                std::chrono::milliseconds deadline, bool is_write) {
  auto replies = co_await client->run(std::move(commands), deadline);
  std::string failure;
  if (!replies) {
    failure = replies.error().reason;
  } else {
    for (const Reply& reply : *replies) {
      if (reply.type == Reply::Type::error) failure = "Redis said: " + reply.text;
    }
  }
  if (failure.empty()) co_return;
  if (is_write) ++counts->stats.write_failures;
  const auto admission = counts->write_log.admit(std::chrono::steady_clock::now());
  if (admission.log) {
    logger->warn("shared cache write failed (this member goes on alone): {}{}", failure,
                 admission.left_out());
  }
}

void RedisSharedCache::send(std::vector<std::vector<std::string>> commands, bool is_write) {
  if (is_write) ++counts_->stats.writes;
  asio::co_spawn(
      executor_,
      deliver(client_, counts_, logger_, std::move(commands), options_.write_timeout, is_write),
      [](std::exception_ptr) {});
}

store::SharedCacheStats RedisSharedCache::stats() const {
  store::SharedCacheStats stats = counts_->stats;
  stats.connected = client_->state() == State::up;
  const Client::Stats client = client_->stats();
  stats.connects = client.connects;
  stats.connect_failures = client.connect_failures;
  stats.timeouts = client.timeouts;
  stats.disconnects = client.disconnects;
  return stats;
}

}  // namespace mtasts::redis
