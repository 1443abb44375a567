#include "service/warm.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "service/answer_service.hpp"
#include "service/daemon_client.hpp"
#include "service/engine.hpp"

namespace mtasts {

WarmResult warm_result(std::string domain, const Answer& answer,
                       const std::optional<CacheEntry>& entry, bool finished) {
  if (!finished) {
    return {std::move(domain), WarmOutcome::failed,
            answer.reason.empty() ? "lookup did not finish" : answer.reason};
  }
  if (answer.kind == AnswerKind::policy) return {std::move(domain), WarmOutcome::policy, {}};
  const bool trouble = answer.kind == AnswerKind::fail ||
                       (entry && (entry->unavailable || !entry->last_error.empty()));
  if (!trouble) return {std::move(domain), WarmOutcome::no_policy, {}};
  std::string reason = entry && !entry->last_error.empty() ? entry->last_error : answer.reason;
  if (reason.empty()) reason = "a policy is published but could not be had";
  return {std::move(domain), WarmOutcome::failed, std::move(reason)};
}

namespace {

// The results so far, counted as they come in.
class Tally {
 public:
  explicit Tally(const std::vector<std::string>& domains) {
    progress_.total = domains.size();
    results_.reserve(domains.size());
    for (const std::string& domain : domains) {
      results_.push_back({domain, WarmOutcome::failed, "not looked up"});
    }
  }
  void add(std::size_t index, WarmResult result) {
    ++progress_.done;
    switch (result.outcome) {
      case WarmOutcome::policy:
        ++progress_.policy;
        break;
      case WarmOutcome::no_policy:
        ++progress_.no_policy;
        break;
      case WarmOutcome::failed:
        ++progress_.failed;
        break;
    }
    results_[index] = std::move(result);
  }
  [[nodiscard]] const WarmProgress& progress() const { return progress_; }
  [[nodiscard]] std::vector<WarmResult> take() { return std::move(results_); }

 private:
  WarmProgress progress_;
  std::vector<WarmResult> results_;
};

// ---- Directly: the AnswerService on an event loop of our own, `concurrency` workers. ----

// An io_context whose queued work can be dropped while the service it refers to still exists
// (as in the Engine).
class WarmIo : public asio::io_context {
 public:
  using asio::io_context::io_context;
  void drop_pending_work() { shutdown(); }
};

struct DirectRun final : AnswerEvents {
  DirectRun(const std::vector<std::string>& to_warm, const WarmProgressFn& on_progress)
      : domains(to_warm), progress(on_progress), tally(to_warm), ticker(io) {}

  std::shared_ptr<void> background_started() override {
    ++running;
    return nullptr;
  }
  void background_finished() override {
    --running;
    if (workers == 0 && running == 0) io.stop();
  }
  // After the last answer, lookups a deadline left running get `grace` to finish and be stored.
  void worker_done() {
    if (--workers > 0) return;
    ticker.cancel();
    if (running == 0) {
      io.stop();
      return;
    }
    last.expires_after(grace);
    last.async_wait([this](const boost::system::error_code&) { io.stop(); });
  }

  const std::vector<std::string>& domains;
  const WarmProgressFn& progress;
  Tally tally;
  WarmIo io{1};
  asio::steady_timer ticker;
  asio::steady_timer last{io};
  std::chrono::milliseconds grace{0};
  std::size_t next = 0;
  std::size_t workers = 0;
  int running = 0;  // lookups in flight, also those a deadline left running
};

asio::awaitable<void> direct_worker(DirectRun& run, AnswerService& service) {
  while (run.next < run.domains.size()) {
    const std::size_t index = run.next++;
    const std::string& domain = run.domains[index];
    auto answered = co_await service.answer(domain);
    if (!answered) {
      run.tally.add(index, {domain, WarmOutcome::failed, answered.error().reason});
    } else {
      run.tally.add(index, warm_result(domain, answered->result.answer, answered->result.entry,
                                       answered->path != AnswerPath::timeout));
    }
    run.progress(run.tally.progress());
  }
}

asio::awaitable<void> direct_ticker(DirectRun& run, std::chrono::milliseconds tick) {
  while (run.workers > 0) {
    run.ticker.expires_after(tick);
    co_await run.ticker.async_wait(asio::as_tuple(asio::use_awaitable));
    if (run.workers > 0) run.progress(run.tally.progress());
  }
}

std::expected<std::vector<WarmResult>, Error> warm_directly(const Config& config,
                                                            std::shared_ptr<spdlog::logger> logger,
                                                            const std::vector<std::string>& domains,
                                                            const WarmOptions& options,
                                                            const WarmProgressFn& progress,
                                                            Wiring& wiring) {
  // Group commit: one sync for many entries, not one per domain.
  auto store = wiring.open_shared_store(config, [logger](const std::string& failure) {
    logger->error("cache write failed: {}", failure);
  });
  if (!store) return std::unexpected(store.error());
  DirectRun run(domains, progress);
  run.grace = config.lookup_timeout;
  std::string failure;
  {
    AnswerService service(run.io.get_executor(), **store,
                          wiring.network(run.io.get_executor(), config, Concurrency::many_lookups),
                          system_now, AnswerOptions{service_options(config), false}, logger, run);
    run.workers =
        std::clamp<std::size_t>(options.concurrency, 1, std::max<std::size_t>(domains.size(), 1));
    for (std::size_t i = 0, n = run.workers; i < n; ++i) {
      asio::co_spawn(run.io, direct_worker(run, service), [&](std::exception_ptr error) {
        if (error) failure = exception_text(error);
        run.worker_done();
      });
    }
    asio::co_spawn(run.io, direct_ticker(run, options.tick), asio::detached);
    // Every answer comes within lookup_timeout, and the grace after the last one is as long.
    run.io.run();
    run.io.drop_pending_work();
  }
  (*store)->flush();
  if (!failure.empty()) logger->error("warm: a worker stopped: {}", failure);
  return run.tally.take();
}

// ---- Through mtastsd: `getmta DOMAIN` on its Exim socket, then the answer from the cache. ----

struct DaemonAnswer {
  std::size_t index;
  std::expected<std::string, DaemonError> answer;
};

WarmResult daemon_result(const std::string& domain,
                         const std::expected<std::string, DaemonError>& answer,
                         store::PolicyStore& store, const Config& config) {
  if (!answer) return {domain, WarmOutcome::failed, answer.error().reason};
  if (answer->starts_with("error:")) return {domain, WarmOutcome::failed, "mtastsd: " + *answer};
  auto entry = store.load(domain);
  if (!entry) return {domain, WarmOutcome::failed, entry.error().reason};
  if (!*entry) {
    return {domain, WarmOutcome::failed,
            fmt::format("mtastsd answered \"{}\" but stored nothing (its lookup did not finish in "
                        "time)",
                        *answer)};
  }
  return warm_result(domain, answer_from_entry(**entry, system_now(), config.strict), *entry, true);
}

std::vector<WarmResult> warm_through_daemon(const Config& config,
                                            const std::vector<std::string>& domains,
                                            const WarmOptions& options,
                                            const WarmProgressFn& progress,
                                            store::PolicyStore& store, DaemonAnswer first) {
  const std::string& socket = config.daemon.exim_socket;
  // mtastsd answers within lookup_timeout (plus its commit); the margin covers a busy machine.
  const auto timeout = config.lookup_timeout + std::chrono::seconds(5);
  Tally tally(domains);
  tally.add(first.index, daemon_result(domains[first.index], first.answer, store, config));
  progress(tally.progress());

  std::mutex mutex;
  std::condition_variable arrived;
  std::deque<DaemonAnswer> answers;
  std::atomic<std::size_t> next{1};
  {
    std::vector<std::jthread> workers;
    const std::size_t count =
        std::min(std::max<std::size_t>(options.concurrency, 1), domains.size() - 1);
    for (std::size_t i = 0; i < count; ++i) {
      workers.emplace_back([&] {
        for (std::size_t index = next++; index < domains.size(); index = next++) {
          auto answer = ask_daemon(socket, "getmta " + domains[index], timeout);
          const std::lock_guard lock(mutex);
          answers.push_back({index, std::move(answer)});
          arrived.notify_one();
        }
      });
    }
    // The cache is read on this thread only; each worker's wait is bounded by `timeout`.
    while (tally.progress().done < domains.size()) {
      std::deque<DaemonAnswer> batch;
      {
        std::unique_lock lock(mutex);
        arrived.wait_for(lock, options.tick, [&] { return !answers.empty(); });
        batch.swap(answers);
      }
      for (DaemonAnswer& answer : batch) {
        tally.add(answer.index, daemon_result(domains[answer.index], answer.answer, store, config));
      }
      progress(tally.progress());
    }
  }
  return tally.take();
}

}  // namespace

std::expected<WarmReport, Error> warm_cache(const Config& config,
                                            std::shared_ptr<spdlog::logger> logger,
                                            const std::vector<std::string>& domains,
                                            const WarmOptions& options,
                                            const WarmProgressFn& progress, Wiring& wiring) {
  WarmReport report;
  const std::string& socket = config.daemon.exim_socket;
  if (domains.empty()) {
    report.how = "nothing to warm";
    return report;
  }
  if (!options.through_daemon) {
    report.how = "directly (--direct)";
  } else if (socket.empty()) {
    report.how = "directly ([daemon] exim_socket is empty)";
  } else {
    // The first request tells whether mtastsd runs; it is a real one.
    auto first = ask_daemon(socket, "getmta " + domains.front(),
                            config.lookup_timeout + std::chrono::seconds(5));
    if (first || first.error().failure != DaemonFailure::unreachable) {
      auto store = wiring.open_store(
          config, [&logger](const std::string& notice) { logger->warn("{}", notice); });
      if (!store) return std::unexpected(store.error());
      report.through_daemon = true;
      report.how = fmt::format("through mtastsd at {}", socket);
      report.results = warm_through_daemon(config, domains, options, progress, **store,
                                           DaemonAnswer{0, std::move(first)});
      return report;
    }
    report.how = fmt::format("directly: mtastsd is not running ({})", first.error().reason);
  }
  auto results = warm_directly(config, std::move(logger), domains, options, progress, wiring);
  if (!results) return std::unexpected(results.error());
  report.results = std::move(*results);
  return report;
}

}  // namespace mtasts
