// How a Config becomes the parts a service runs on: the cache store, the resolver and the
// fetcher. The one place that names the concrete adapters (LMDB, libunbound, Boost.Beast); the
// front-ends get them from here behind the adapters' interfaces, and a test passes its own
// Wiring of fakes.
#pragma once

#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <string>

#include <spdlog/logger.h>

#include "adapters/dns/resolver.hpp"
#include "adapters/https/policy_fetcher.hpp"
#include "adapters/report/report_sender.hpp"
#include "adapters/smtp/starttls_probe.hpp"
#include "adapters/store/policy_store.hpp"
#include "adapters/store/shared_cache.hpp"
#include "adapters/store/tlsrpt_store.hpp"
#include "core/error.hpp"
#include "service/asio.hpp"
#include "service/config.hpp"

namespace mtasts {

// Who runs the lookups: one at a time (the CLI, an Exim delivery process) or many at once
// (mtastsd), which needs far more DNS queries in flight.
enum class Concurrency { one_lookup, many_lookups };

// What a lookup goes to the network with. The fetcher resolves the policy host through the
// resolver, so the resolver must outlive it (members are destroyed in reverse order).
struct Network {
  std::unique_ptr<dns::Resolver> resolver;
  std::unique_ptr<https::PolicyFetcher> fetcher;
  std::unique_ptr<store::SharedCache> shared;  // the fleet's shared cache (mtastsd); may be null
};

// What TLSRPT reports are delivered with; the poster resolves through a resolver that must
// outlive it.
struct ReportSenders {
  std::unique_ptr<report::MailSubmitter> mail;
  std::unique_ptr<report::HttpsPoster> https;
};

class Wiring {
 public:
  virtual ~Wiring() = default;
  // The cache for one-shot processes (CLI, Exim module): opened read-only until the first write,
  // so a cache hit costs one read. Errors: store.
  [[nodiscard]] virtual std::expected<std::unique_ptr<store::PolicyStore>, Error> open_store(
      const Config& config, std::function<void(const std::string&)> notice) = 0;
  // The cache for mtastsd: writes go through a writer thread (group commit), so a sync never
  // blocks the event loop. `on_error` hears of commits that failed (on the writer thread).
  [[nodiscard]] virtual std::expected<std::shared_ptr<store::SharedStore>, Error> open_shared_store(
      const Config& config, std::function<void(const std::string&)> on_error) = 0;
  // The resolver and fetcher on `executor`.
  [[nodiscard]] virtual Network network(asio::any_io_executor executor, const Config& config,
                                        Concurrency concurrency) = 0;
  // The TLSRPT counts file (tlsrpt_store_path(config), bounded by tlsrpt.max_store_bytes).
  // Errors: store.
  [[nodiscard]] virtual std::expected<std::unique_ptr<store::TlsrptStore>, Error> open_tlsrpt_store(
      const Config& config) = 0;
  // Report delivery on `executor`: tlsrpt.sendmail for mailto:, HTTPS POST (ca_file) for https:.
  [[nodiscard]] virtual ReportSenders report_senders(asio::any_io_executor executor,
                                                     dns::Resolver& resolver,
                                                     const Config& config) = 0;
  // The fleet's shared cache named by config.shared_cache, connecting in the background on
  // `executor`; nullptr when none is configured. Errors: config (a password file that cannot be
  // read).
  [[nodiscard]] virtual std::expected<std::unique_ptr<store::SharedCache>, Error> shared_cache(
      asio::any_io_executor executor, const Config& config,
      std::shared_ptr<spdlog::logger> logger) {
    (void)executor, (void)config, (void)logger;
    return nullptr;
  }
  // The STARTTLS prober of `mtasts check --smtp` (ca_file, fetch_timeout) on `port`; it
  // resolves through `resolver`, which must outlive it. None by default (test wirings).
  [[nodiscard]] virtual std::unique_ptr<smtp::StarttlsProber> starttls_prober(
      dns::Resolver& resolver, const Config& config, std::uint16_t port) {
    (void)resolver, (void)config, (void)port;
    return nullptr;
  }
};

// LMDB, libunbound and Boost.Beast, set up from the config's keys.
[[nodiscard]] Wiring& system_wiring();

}  // namespace mtasts
