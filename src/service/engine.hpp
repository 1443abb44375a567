// Engine: the blocking runner of the AnswerService for the CLI and the Exim module. Opens the
// store from the config at once (cheap) and builds the network parts (resolver, fetcher, event
// loop) only when a lookup has to go to the network, so a cache hit in a fresh Exim process
// costs one LMDB read.
#pragma once

#include <expected>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <spdlog/logger.h>

#include "adapters/store/policy_store.hpp"
#include "service/answer_service.hpp"
#include "service/config.hpp"
#include "service/policy_service.hpp"
#include "service/wiring.hpp"

namespace mtasts {

class Engine {
 public:
  // Opens (creating if needed) the cache named by the config. Errors: store, config.
  [[nodiscard]] static std::expected<std::unique_ptr<Engine>, Error> open(
      Config config, std::shared_ptr<spdlog::logger> logger, Wiring& wiring = system_wiring());
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // AnswerService::answer(), blocking: a domain as typed (an address literal too).
  [[nodiscard]] std::expected<Answered, Error> answer(std::string_view raw_domain);
  // The answer for `domain` (normalized): from the cache when fresh, else from the network within
  // config.lookup_timeout. Blocking.
  [[nodiscard]] LookupResult lookup(const std::string& domain);
  // Same, but always consults DNS first (`mtasts refresh`).
  [[nodiscard]] LookupResult refresh(const std::string& domain);
  // The answer from the cache alone (no network) when it is fresh; nullopt otherwise.
  [[nodiscard]] std::optional<LookupResult> cached(const std::string& domain);

  [[nodiscard]] store::PolicyStore& store();
  [[nodiscard]] const Config& config() const;

 private:
  struct Network;
  Engine(Config config, std::shared_ptr<spdlog::logger> logger,
         std::unique_ptr<store::PolicyStore> store, Wiring& wiring);
  Network& network();
  Answered answer_domain(const std::string& domain);
  Answered run(const std::string& domain, bool force);

  Config config_;
  ServiceOptions options_;  // from config_, built once: cached() runs on every Exim call
  std::shared_ptr<spdlog::logger> logger_;
  std::unique_ptr<store::PolicyStore> store_;
  Wiring& wiring_;
  std::unique_ptr<Network> network_;
};

// The service's options from the config. DANE is on when the config allows it and a trust
// anchor makes validation possible.
[[nodiscard]] ServiceOptions service_options(const Config& config);

// Current Unix time from the system clock; the only clock read in the engine.
[[nodiscard]] UnixTime system_now();

}  // namespace mtasts
