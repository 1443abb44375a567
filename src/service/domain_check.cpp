#include "service/domain_check.hpp"

#include <algorithm>
#include <chrono>
#include <exception>
#include <limits>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "core/check_steps.hpp"
#include "core/dane.hpp"
#include "core/error.hpp"
#include "service/dns_result.hpp"
#include "service/engine.hpp"

namespace mtasts {
namespace {

// An io_context whose pending work (coroutine frames that refer to the network parts) can be
// destroyed before those parts are.
class CheckIo : public asio::io_context {
 public:
  using asio::io_context::io_context;
  void drop_pending_work() { shutdown(); }
};

// RFC 7672 §2.2: MX, then per host its addresses and (when those are secure) its TLSA RRset.
asio::awaitable<DaneState> dane_of(dns::Resolver& resolver, const std::string& domain,
                                   const dns::Answer<dns::MxRecord>& mx, const Config& config) {
  std::vector<MxHostName> names;
  for (const dns::MxRecord& record : mx.records) names.push_back({record.preference, record.host});
  DaneMxStep step =
      dane_mx_step(domain, dns_result(mx), std::move(names), system_now(), config.dane_timing);
  if (step.final_state) co_return std::move(*step.final_state);
  std::vector<DaneHost> hosts;
  std::uint32_t ttl = mx.ttl;
  for (const MxHostName& host : step.hosts) {
    auto addresses = co_await resolver.addresses(host.name);
    ttl = std::min(ttl, addresses.ttl);
    std::optional<DaneHost> result = dane_address_step(host, dns_result(addresses));
    if (!result) {
      auto tlsa = co_await resolver.tlsa("_25._tcp." + host.name);
      std::vector<TlsaParams> records;
      for (const dns::TlsaRecord& record : tlsa.records) {
        records.push_back(
            {record.usage, record.selector, record.matching_type, record.data.size()});
      }
      result = dane_tlsa_step(host, dns_result(tlsa), records);
      ttl = std::min(ttl, tlsa.ttl);
    }
    hosts.push_back(std::move(*result));
  }
  co_return dane_verdict(std::move(hosts), step.truncated, ttl, system_now(), config.dane_timing);
}

// The probes of all hosts run at once; `done` is cancelled when the last one is in.
struct Probes {
  Probes(asio::any_io_executor executor, std::size_t count)
      : done(std::move(executor), asio::steady_timer::time_point::max()),
        facts(count),
        left(count) {}
  asio::steady_timer done;
  std::vector<SmtpProbeFacts> facts;
  std::size_t left;
};

asio::awaitable<std::vector<SmtpProbeFacts>> probe_all(smtp::StarttlsProber& prober,
                                                       std::vector<std::string> hosts) {
  auto executor = co_await asio::this_coro::executor;
  auto probes = std::make_shared<Probes>(executor, hosts.size());
  if (hosts.empty()) co_return std::vector<SmtpProbeFacts>{};
  for (std::size_t i = 0; i < hosts.size(); ++i) {
    probes->facts[i].host = hosts[i];
    probes->facts[i].failure = "the probe did not finish";
    asio::co_spawn(
        executor,
        [&prober, probes, i, host = hosts[i]]() -> asio::awaitable<void> {
          probes->facts[i] = co_await prober.probe(host);
        },
        [probes](std::exception_ptr) {
          if (--probes->left == 0) probes->done.cancel();
        });
  }
  co_await probes->done.async_wait(asio::as_tuple(asio::use_awaitable));
  co_return std::move(probes->facts);
}

struct CheckRun {
  const Config& config;
  const std::string& domain;
  const DomainCheckOptions& options;
  dns::Resolver& resolver;
  https::PolicyFetcher& fetcher;
  smtp::StarttlsProber* prober;
  CheckReport& report;

  asio::awaitable<void> run() {
    using namespace asio::experimental::awaitable_operators;
    auto [sts_txt, tlsrpt_txt, mx] =
        co_await (resolver.txt("_mta-sts." + domain) && resolver.txt("_smtp._tls." + domain) &&
                  resolver.mx(domain));
    std::vector<MxHostName> mx_hosts;
    for (const dns::MxRecord& record : mx.records) {
      mx_hosts.push_back({record.preference, record.host});
    }

    std::optional<DaneState> dane;
    if (config.dane && !config.trust_anchor_file.empty()) {
      dane = co_await dane_of(resolver, domain, mx, config);
    }
    const bool dane_governs = dane && dane->verdict == DaneVerdict::all_usable;

    TxtCheck txt = check_sts_txt(domain, dns_result(sts_txt), sts_txt.records, dane_governs);
    report.steps.push_back(std::move(txt.step));
    if (txt.record) {
      PolicyFetchFacts facts;
      auto body = co_await fetcher.fetch_with_facts(domain, facts);
      std::optional<std::string> failure;
      if (!body) failure = body.error().reason;
      report.steps.push_back(check_policy_fetch(facts, failure, system_now()));
      if (body) {
        PolicyCheck policy = check_policy_body(*body);
        report.steps.push_back(std::move(policy.step));
        if (policy.policy) {
          report.steps.push_back(
              check_mx_coverage(domain, *policy.policy, dns_result(mx), mx_hosts));
        }
      }
    }
    report.steps.push_back(check_tlsrpt_txt(domain, dns_result(tlsrpt_txt), tlsrpt_txt.records));

    report.steps.push_back(check_dane_state(dane, txt.record.has_value()));

    if (options.smtp) co_await smtp_step(mx, mx_hosts);
  }

  asio::awaitable<void> smtp_step(const dns::Answer<dns::MxRecord>& mx,
                                  const std::vector<MxHostName>& mx_hosts) {
    std::vector<std::string> hosts;
    for (const MxHostName& host : mx_hosts) {
      if (!host.name.empty()) hosts.push_back(host.name);
    }
    // No MX: mail goes to the domain itself (RFC 5321 §5.1).
    if (mx.status == dns::Status::nxdomain || mx.status == dns::Status::nodata) {
      hosts.push_back(domain);
    }
    std::vector<std::string> skipped;
    if (hosts.size() > kMaxProbedMxHosts) {
      skipped.assign(hosts.begin() + kMaxProbedMxHosts, hosts.end());
      hosts.resize(kMaxProbedMxHosts);
    }
    if (prober == nullptr) {
      CheckStep step{"smtp", "STARTTLS on each MX host", "RFC 3207, RFC 8461 §4.2", {}};
      step.warn("SMTP probes are not available in this build");
      report.steps.push_back(std::move(step));
      co_return;
    }
    CheckStep step = check_smtp_probes(co_await probe_all(*prober, hosts), system_now());
    if (options.smtp_port != 25) {
      step.title = fmt::format("STARTTLS on each MX host, port {}", options.smtp_port);
    }
    for (const std::string& host : skipped) {
      step.warn(fmt::format("{}: not probed (more than {} MX hosts)", host, kMaxProbedMxHosts));
    }
    report.steps.push_back(std::move(step));
  }
};

}  // namespace

CheckReport check_domain(const Config& config, const std::string& domain,
                         const DomainCheckOptions& options, Wiring& wiring) {
  CheckReport report;
  report.domain = domain;
  CheckIo io{1};
  {
    Network network = wiring.network(io.get_executor(), config, Concurrency::one_lookup);
    std::unique_ptr<smtp::StarttlsProber> prober;
    if (options.smtp) prober = wiring.starttls_prober(*network.resolver, config, options.smtp_port);
    CheckRun run{config,           domain,       options, *network.resolver,
                 *network.fetcher, prober.get(), report};
    bool finished = false;
    std::string failure;
    asio::co_spawn(io, run.run(), [&](std::exception_ptr error) {
      finished = true;
      if (error) failure = exception_text(error);
    });
    // Every wait inside has its own timeout; this bound only guards against a bug.
    const auto bound = config.lookup_timeout + config.fetch_timeout + config.dns_timeout * 40 +
                       std::chrono::seconds(options.smtp ? 30 : 0) + std::chrono::seconds(5);
    io.run_for(bound);
    if (!finished || !failure.empty()) {
      CheckStep step{"internal", "the check itself", "", {}};
      step.fail(finished ? fmt::format("the check stopped: {}", failure)
                         : "the check did not finish in time");
      report.steps.push_back(std::move(step));
    }
    // Work still queued refers to the network parts: drop it before they go.
    io.drop_pending_work();
  }
  return report;
}

}  // namespace mtasts
