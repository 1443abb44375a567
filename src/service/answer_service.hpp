// The one way into the engine: every front-end (mtastsd's sessions, the CLI and the Exim module
// through the blocking Engine) asks answer() and gets the same answer for the same cache and
// DNS. It owns the literal rule (STS-30), the cache-hit check, the lookup deadline, the fallback
// to the cache after a lookup that did not finish, and stale-while-revalidate. PolicyService
// below it owns single flight, DNS, fetch, decide and the store write.
#pragma once

#include <chrono>
#include <expected>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>

#include <spdlog/logger.h>

#include "service/asio.hpp"
#include "service/cached_answers.hpp"
#include "service/policy_service.hpp"
#include "service/wiring.hpp"

namespace mtasts {

// How an answer was had.
enum class AnswerPath {
  hit,      // a fresh cache entry: no network
  miss,     // a lookup (DNS, maybe a fetch) within the deadline
  timeout,  // the lookup outlasted the deadline (or failed); answered from the cache
  stale,    // the TXT TTL had passed: answered from the unexpired cached policy at once while
            // the id is re-checked in the background (stale-while-revalidate)
  literal,  // an address literal: no policy can apply (STS-30); no cache, no network
};

struct Answered {
  LookupResult result;  // for a literal: no domain, no entry
  AnswerPath path = AnswerPath::hit;
};

// answer()'s first step, which needs neither cache nor network: an input that is not a hostname
// is an error naming it; an address literal is answered (STS-30); anything else becomes the
// normalized domain to look up. A front-end that must not even open the cache for such input
// (the CLI's contract) asks this first.
struct Asked {
  std::string domain;                // normalized; empty when answered
  std::optional<Answered> answered;  // set for an address literal
};
[[nodiscard]] std::expected<Asked, Error> ask(std::string_view raw_domain);

// What the service tells its front-end about work it does beyond one answer. Every call is on
// the service's executor.
class AnswerEvents {
 public:
  virtual ~AnswerEvents() = default;
  // A lookup runs on without a caller waiting (after a deadline, or a stale entry's re-check);
  // mtastsd's stop waits for these. The returned object is held until background_finished(): it
  // keeps whatever owns the service alive that long.
  virtual std::shared_ptr<void> background_started() { return nullptr; }
  virtual void background_finished() {}
  // A lookup stored `result.entry` from the network. Nobody is answered with it before this
  // returns: mtastsd waits for its group commit here, so the CLI and Exim see what it answered.
  virtual asio::awaitable<void> stored(const LookupResult& /*result*/) { co_return; }
  // A policy fetch ended: "ok", or an ErrorCategory name (policy_syntax for a bad body).
  virtual void fetched(std::string_view /*outcome*/) {}
  // answer() gave `answered` (not an address literal), `took` after it was asked.
  virtual void answered(const Answered& /*answered*/,
                        std::chrono::steady_clock::duration /*took*/) {}
};

struct AnswerOptions {
  ServiceOptions service;
  // Answer a stale entry whose policy holds at once and re-check it in the background: for a
  // long-running process (mtastsd). A one-shot process (CLI, an Exim delivery) re-checks inline.
  bool serve_stale = false;
};

class AnswerService {
 public:
  // `events` must outlive the service.
  AnswerService(asio::any_io_executor executor, store::PolicyStore& store, Network network,
                Clock clock, AnswerOptions options, std::shared_ptr<spdlog::logger> logger,
                AnswerEvents& events);
  AnswerService(const AnswerService&) = delete;
  AnswerService& operator=(const AnswerService&) = delete;
  ~AnswerService();

  // The answer for a domain as a front-end received it (any case, a root dot, U-labels, or an
  // address literal). An input that is not a hostname is an error naming it. Within the
  // deadline (lookup_timeout) always: a lookup that takes longer goes on in the background and
  // the cache answers as for a temporary DNS failure, never a silent downgrade.
  // One coroutine frame for an answer from the cache: this runs on every request.
  asio::awaitable<std::expected<Answered, Error>> answer(std::string_view raw_domain);
  // The network half of answer(), for a caller that found the cache wanting itself (the
  // blocking Engine, which reads the cache before it builds an event loop). With `force`, DNS is
  // consulted even for a fresh entry (`mtasts refresh`).
  asio::awaitable<Answered> answer_from_network(std::string domain, bool force = false);

  // The answer without the network: a literal, a fresh entry, or (with serve_stale) a stale one
  // whose policy holds, whose re-check this starts. Nothing when a lookup is needed. Cheap: the
  // blocking Engine answers most Exim calls with it and never builds an event loop.
  [[nodiscard]] std::optional<Answered> answer_at_once(const std::string& domain);

  // The proactive refresh of one domain (`mtasts refresh`, mtastsd's refresher): DNS now, a
  // fetch when needed, shared with a lookup in flight. No deadline beyond DNS's and HTTPS's.
  asio::awaitable<LookupResult> refresh(std::string domain);

  [[nodiscard]] dns::Resolver& resolver() { return *network_.resolver; }
  // Stops the shared cache's connection (mtastsd's stop); lookups after it go on alone.
  void stop_shared_cache() {
    if (network_.shared) network_.shared->stop();
  }
  // The fleet tier (shared cache) in use; nullptr without one.
  [[nodiscard]] const FleetTier* fleet() const { return policy_.fleet(); }

 private:
  struct Pending;
  static asio::awaitable<void> look_up(AnswerService& self, std::string domain, bool force,
                                       std::shared_ptr<Pending> pending);
  void revalidate(const std::string& domain);

  asio::any_io_executor executor_;
  store::PolicyStore& store_;
  Network network_;
  Clock clock_;
  AnswerOptions options_;
  std::shared_ptr<spdlog::logger> logger_;
  AnswerEvents& events_;
  PolicyService policy_;
  std::unordered_set<std::string> revalidating_;  // executor thread only
};

}  // namespace mtasts
