#include "service/wiring.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <utility>

#include <fmt/format.h>

#include "adapters/dns/unbound_resolver.hpp"
#include "adapters/https/beast_policy_fetcher.hpp"
#include "adapters/redis/redis_shared_cache.hpp"
#include "adapters/redis/redis_target.hpp"
#include "adapters/report/beast_https_poster.hpp"
#include "adapters/report/sendmail_submitter.hpp"
#include "adapters/store/lmdb_store.hpp"
#include "adapters/store/lmdb_tlsrpt_store.hpp"
#include "adapters/store/write_behind_store.hpp"

namespace mtasts {
namespace {

dns::UnboundOptions resolver_options(const Config& config, Concurrency concurrency) {
  dns::UnboundOptions options;
  options.servers = config.resolvers;
  if (!config.trust_anchor_file.empty()) options.trust_anchor_file = config.trust_anchor_file;
  options.timeout = config.dns_timeout;
  // Many lookups at once: a few domains with dead DNS must not hold every query slot.
  if (concurrency == Concurrency::many_lookups) options.max_outstanding_queries = 4096;
  return options;
}

https::BeastPolicyFetcherOptions fetcher_options(const Config& config) {
  https::BeastPolicyFetcherOptions options;
  options.port = config.https_port;
  if (!config.ca_file.empty()) options.ca_file = config.ca_file;
  options.timeout = config.fetch_timeout;
  options.max_body = config.max_policy_bytes;
  return options;
}

// The first line of the shared cache's password file (kept out of the config file, which every
// user of the CLI may read, and out of `ps`).
std::expected<std::string, Error> read_password(const std::string& path) {
  constexpr std::size_t kMaxLine = 4096;
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    return std::unexpected(Error{ErrorCategory::config,
                                 fmt::format("shared_cache_password_file {}: cannot be read: {}",
                                             path, std::strerror(errno))});
  }
  // Bounded: only the first line matters, however big the file is.
  std::string text(kMaxLine + 2, '\0');
  file.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<std::size_t>(file.gcount()));
  std::string line = text.substr(0, text.find('\n'));
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (line.empty() || line.size() > kMaxLine) {
    return std::unexpected(Error{
        ErrorCategory::config,
        fmt::format("shared_cache_password_file {}: the first line must hold the password", path)});
  }
  return line;
}

class SystemWiring final : public Wiring {
 public:
  std::expected<std::unique_ptr<store::PolicyStore>, Error> open_store(
      const Config& config, std::function<void(const std::string&)> notice) override {
    store::LmdbStore::Options options;
    options.max_map_size = config.max_map_bytes;
    // Most calls are cache hits that only read; the first write reopens the file read-write.
    options.read_only_until_write = true;
    auto opened = store::LmdbStore::open(config.cache_path, options);
    if (!opened) return std::unexpected(opened.error());
    for (const std::string& line : (*opened)->take_notices()) notice(line);
    return std::unique_ptr<store::PolicyStore>(std::move(*opened));
  }

  std::expected<std::shared_ptr<store::SharedStore>, Error> open_shared_store(
      const Config& config, std::function<void(const std::string&)> on_error) override {
    store::LmdbStore::Options options;
    options.max_map_size = config.max_map_bytes;
    // Every active domain stays decoded (about 2 KiB each): a warm lookup then reads no LMDB
    // record and parses no JSON while nothing was committed (bench/daemon_bench.py).
    options.memo_entries = std::size_t{1} << 16;
    auto opened = store::LmdbStore::open(config.cache_path, options);
    if (!opened) return std::unexpected(opened.error());
    return std::make_shared<store::WriteBehindStore>(
        std::shared_ptr<store::LmdbStore>(std::move(*opened)), std::move(on_error));
  }

  Network network(asio::any_io_executor executor, const Config& config,
                  Concurrency concurrency) override {
    auto resolver = std::make_unique<dns::UnboundResolver>(std::move(executor),
                                                           resolver_options(config, concurrency));
    auto fetcher = std::make_unique<https::BeastPolicyFetcher>(*resolver, fetcher_options(config));
    return Network{std::move(resolver), std::move(fetcher), nullptr};
  }

  std::expected<std::unique_ptr<store::TlsrptStore>, Error> open_tlsrpt_store(
      const Config& config) override {
    store::LmdbTlsrptStoreOptions options;
    options.max_bytes = config.tlsrpt.max_store_bytes;
    return store::open_lmdb_tlsrpt_store(tlsrpt_store_path(config), options);
  }

  ReportSenders report_senders(asio::any_io_executor executor, dns::Resolver& resolver,
                               const Config& config) override {
    report::SendmailOptions mail;
    mail.command = config.tlsrpt.sendmail;
    report::HttpsPostOptions https;
    if (!config.ca_file.empty()) https.ca_file = config.ca_file;
    // https_port exists for test worlds, whose one HTTPS server also plays the rua endpoints.
    if (config.https_port != 443) https.port_override = config.https_port;
    return ReportSenders{std::make_unique<report::SendmailSubmitter>(executor, mail),
                         std::make_unique<report::BeastHttpsPoster>(resolver, https)};
  }

  std::expected<std::unique_ptr<store::SharedCache>, Error> shared_cache(
      asio::any_io_executor executor, const Config& config,
      std::shared_ptr<spdlog::logger> logger) override {
    const SharedCacheConfig& shared = config.shared_cache;
    if (shared.url.empty()) return nullptr;
    auto target = redis::parse_target(shared.url);
    if (!target) return std::unexpected(target.error());
    redis::ClientOptions client;
    client.target = std::move(*target);
    client.username = shared.user;
    client.ca_file = shared.ca_file;
    if (!shared.password_file.empty()) {
      auto password = read_password(shared.password_file);
      if (!password) return std::unexpected(password.error());
      client.password = std::move(*password);
    }
    redis::SharedCacheOptions options;
    options.prefix = shared.prefix;
    options.read_timeout = shared.timeout;
    // A lookup that outlives its lock lets the others go ahead: the lock is no longer than the
    // fetch timeout (design §8).
    options.lock_ttl = config.fetch_timeout;
    return std::make_unique<redis::RedisSharedCache>(std::move(executor), std::move(client),
                                                     std::move(options), std::move(logger));
  }

  std::unique_ptr<smtp::StarttlsProber> starttls_prober(dns::Resolver& resolver,
                                                        const Config& config,
                                                        std::uint16_t port) override {
    smtp::StarttlsProbeOptions options;
    options.port = port;
    if (!config.ca_file.empty()) options.ca_file = config.ca_file;
    options.timeout = config.fetch_timeout;
    return smtp::make_starttls_prober(resolver, std::move(options));
  }
};

}  // namespace

Wiring& system_wiring() {
  static SystemWiring wiring;
  return wiring;
}

}  // namespace mtasts
