// What answers the daemon's requests: the AnswerService (the one way into the engine, shared
// with the CLI and the Exim module through the Engine) over the shared store, with what only the
// daemon needs on top: waiting for the group commit before answering, the MX memo for Postfix's
// match lists, and the metrics. A reload builds a new Backend; requests and lookups still
// running keep the old one alive through shared_ptr.
#pragma once

#include <chrono>
#include <cstddef>
#include <expected>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <spdlog/logger.h>
#include <boost/asio/steady_timer.hpp>

#include "daemon/activity.hpp"
#include "service/answer_service.hpp"
#include "service/asio.hpp"
#include "service/config.hpp"
#include "service/wiring.hpp"

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

class Backend final : public std::enable_shared_from_this<Backend>, private AnswerEvents {
 public:
  // `lookups` counts lookups running in the background (it must outlive them); `activity`
  // hears of every answered request and counts the fetches.
  Backend(asio::any_io_executor executor, const Config& config,
          std::shared_ptr<store::SharedStore> store,
          std::unique_ptr<store::SharedCache> shared_cache, Wiring& wiring,
          std::shared_ptr<spdlog::logger> logger, std::shared_ptr<Counter> lookups,
          std::shared_ptr<Activity> activity);
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  // Where every request is answered (AnswerService::answer()): a fresh entry (no suspension), an
  // unexpired cached policy whose TXT TTL has passed (re-checked in the background), or a lookup
  // within lookup_timeout; one that takes longer goes on in the background while the cache
  // answers, never a silent downgrade. Each answer is counted in the metrics. The caller holds
  // the Backend (a shared_ptr) until the answer is in: a reload must not end it mid-answer.
  [[nodiscard]] AnswerService& service() { return service_; }

  // The proactive refresh of one cached domain: DNS now, a fetch when should_fetch() says so,
  // shared with a lookup of the same domain in flight. No deadline of its own beyond the DNS
  // and fetch deadlines; the caller runs it in the background.
  asio::awaitable<LookupResult> refresh(std::string domain);

  // The domain's MX host names (normalized), for Postfix's match= where the policy has "*."
  // patterns. Empty when the lookup fails or times out (the resolver's deadline): the pattern is
  // then passed as written, which matches no certificate, so Postfix defers. Answers are kept
  // in memory for their TTL (bounded), so a warm socketmap lookup makes no DNS query.
  asio::awaitable<std::vector<std::string>> mx_hosts(std::string domain);

  [[nodiscard]] const std::shared_ptr<store::SharedStore>& store() const { return store_; }

  // The fleet tier's metrics (Prometheus text); empty without a shared cache.
  [[nodiscard]] std::string fleet_metrics() const;

 private:
  // AnswerEvents
  std::shared_ptr<void> background_started() override;
  void background_finished() override;
  asio::awaitable<void> stored(const LookupResult& result) override;
  void fetched(std::string_view outcome) override;
  void answered(const Answered& answered, std::chrono::steady_clock::duration took) override;

  // Resumes when every entry saved so far is committed to the LMDB file (group commit).
  asio::awaitable<void> committed();

  struct MxMemo {
    std::vector<std::string> hosts;
    std::chrono::steady_clock::time_point until;
  };
  static constexpr std::size_t kMxMemoEntries = 65536;
  static constexpr std::chrono::seconds kMxMemoMinimum{30};
  static constexpr std::chrono::seconds kMxMemoMaximum{3600};

  asio::any_io_executor executor_;
  std::shared_ptr<store::SharedStore> store_;
  std::shared_ptr<spdlog::logger> logger_;
  std::shared_ptr<Counter> lookups_;
  std::shared_ptr<Activity> activity_;
  AnswerService service_;
  std::unordered_map<std::string, MxMemo> mx_memo_;  // event loop thread only
};

}  // namespace mtasts::daemon
