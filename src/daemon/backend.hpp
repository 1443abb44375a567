// What answers the daemon's requests: the LMDB store (shared with the CLI and the Exim module),
// the resolver, the fetcher and the PolicyService, built from one Config. A reload builds a new
// Backend; requests and lookups still running keep the old one alive through shared_ptr.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <spdlog/logger.h>
#include <boost/asio/steady_timer.hpp>

#include "adapters/dns/unbound_resolver.hpp"
#include "adapters/https/beast_policy_fetcher.hpp"
#include "adapters/store/write_behind_store.hpp"
#include "daemon/activity.hpp"
#include "daemon/counting_fetcher.hpp"
#include "service/asio.hpp"
#include "service/config.hpp"
#include "service/policy_service.hpp"

namespace mtasts::daemon {

// Counts work in progress and wakes waiters when it changes (connections, background lookups).
class Counter {
 public:
  explicit Counter(asio::any_io_executor executor)
      : changed_(std::move(executor), asio::steady_timer::time_point::max()) {}
  void add() { ++count_; }
  void remove() {
    --count_;
    changed_.cancel();
  }
  [[nodiscard]] std::size_t value() const { return count_; }
  // Waits until the count is zero (true) or the deadline passes (false).
  asio::awaitable<bool> wait_zero(std::chrono::steady_clock::time_point deadline);
  // Waits for the next remove() (or the deadline).
  asio::awaitable<void> wait_change(std::chrono::steady_clock::time_point deadline);

 private:
  std::size_t count_ = 0;
  asio::steady_timer changed_;  // never expires; cancelled on every remove()
};

class Backend : public std::enable_shared_from_this<Backend> {
 public:
  // `lookups` counts lookups running in the background (it must outlive them); `activity`
  // hears of every answered request and counts the fetches.
  Backend(asio::any_io_executor executor, const Config& config,
          std::shared_ptr<store::WriteBehindStore> store, std::shared_ptr<spdlog::logger> logger,
          std::shared_ptr<Counter> lookups, std::shared_ptr<Activity> activity);
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  // The answer for a normalized domain: from the cache when fresh (no suspension); from an
  // unexpired cached policy whose TXT TTL has passed at once too, while one background lookup
  // re-checks its id (the next request sees the outcome); else from a PolicyService lookup
  // within lookup_timeout. A lookup that takes longer goes on in the
  // background (its result is cached for the next request) while this request is answered from
  // the cache as for a temporary DNS failure, never a silent downgrade of a cached policy.
  asio::awaitable<LookupResult> lookup(std::string domain);

  // The proactive refresh of one cached domain: DNS now, a fetch when should_fetch() says so,
  // shared with a lookup of the same domain in flight. No deadline of its own beyond the DNS
  // and fetch deadlines; the caller runs it in the background.
  asio::awaitable<LookupResult> refresh(std::string domain);

  // The domain's MX host names (normalized), for Postfix's match= where the policy has "*."
  // patterns. Empty when the lookup fails or times out (the resolver's deadline): the pattern is
  // then passed as written, which matches no certificate, so Postfix defers. Answers are kept
  // in memory for their TTL (bounded), so a warm socketmap lookup makes no DNS query.
  asio::awaitable<std::vector<std::string>> mx_hosts(std::string domain);

  [[nodiscard]] const std::shared_ptr<store::WriteBehindStore>& store() const { return store_; }

 private:
  struct Pending;
  static asio::awaitable<void> run(std::shared_ptr<Backend> self, std::string domain,
                                   std::shared_ptr<Pending> pending);
  // Resumes when every entry saved so far is committed to the LMDB file (group commit).
  asio::awaitable<void> committed();
  // Starts a background lookup of `domain` unless one started here is still running.
  void revalidate(const std::string& domain);

  struct MxMemo {
    std::vector<std::string> hosts;
    std::chrono::steady_clock::time_point until;
  };
  static constexpr std::size_t kMxMemoEntries = 65536;
  static constexpr std::chrono::seconds kMxMemoMinimum{30};
  static constexpr std::chrono::seconds kMxMemoMaximum{3600};

  asio::any_io_executor executor_;
  ServiceOptions options_;
  std::chrono::milliseconds lookup_timeout_;
  std::shared_ptr<store::WriteBehindStore> store_;
  std::shared_ptr<spdlog::logger> logger_;
  std::shared_ptr<Counter> lookups_;
  std::shared_ptr<Activity> activity_;
  dns::UnboundResolver resolver_;
  https::BeastPolicyFetcher fetcher_;
  CountingFetcher counting_fetcher_;
  PolicyService service_;
  std::unordered_map<std::string, MxMemo> mx_memo_;  // event loop thread only
  std::unordered_set<std::string> revalidating_;     // event loop thread only
};

}  // namespace mtasts::daemon
