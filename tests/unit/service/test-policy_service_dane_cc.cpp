// PolicyService with DANE on (ServiceOptions.dane) over the map-driven fakes: which DNS queries
// are made, in which order, what is cached and for how long, and the answers the front-ends get.
// Rows carry the rfc-checklist §4 ids.
#include <gtest/gtest.h>
#include <spdlog/sinks/null_sink.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/exim_answers.hpp"
#include "core/socketmap.hpp"
#include "service/policy_service.hpp"
#include "unit/service/fakes.hpp"

namespace mtasts {
namespace {

constexpr UnixTime kT0 = 1'700'000'000;
constexpr DaneTiming kDaneTiming{/*min_ttl=*/60, /*max_ttl=*/3600, /*failure_retry=*/60};

std::string enforce_body(const std::string& domain) {
  return "version: STSv1\nmode: enforce\nmx: mx1." + domain + "\nmx: mx2." + domain +
         "\nmax_age: 86400\n";
}

dns::Answer<dns::MxRecord> mx_answer(dns::Security security, std::vector<dns::MxRecord> records,
                                     std::uint32_t ttl = 900) {
  const dns::Status status = records.empty() ? dns::Status::nxdomain : dns::Status::ok;
  return {status, security, std::move(records), ttl, "", ""};
}

dns::Answer<std::string> address_answer(dns::Security security, std::uint32_t ttl = 900) {
  return {dns::Status::ok, security, {"192.0.2.25"}, ttl, "", ""};
}

dns::TlsaRecord dane_ee() {
  return dns::TlsaRecord{3, 1, 1, std::vector<std::uint8_t>(32, 0xab)};
}
dns::TlsaRecord pkix_ee() {
  return dns::TlsaRecord{1, 1, 1, std::vector<std::uint8_t>(32, 0xcd)};
}

dns::Answer<dns::TlsaRecord> tlsa_answer(dns::Security security,
                                         std::vector<dns::TlsaRecord> records,
                                         std::uint32_t ttl = 900) {
  const dns::Status status = records.empty() ? dns::Status::nodata : dns::Status::ok;
  return {status, security, std::move(records), ttl, "", ""};
}

template <class Record>
dns::Answer<Record> failure(dns::Status status, dns::Security security) {
  return {status, security, {}, 0, "", "injected"};
}

class DaneServiceTest : public ::testing::Test {
 protected:
  DaneServiceTest() {
    options.dane = true;
    options.dane_timing = kDaneTiming;
  }

  PolicyService& service() {
    if (!service_) {
      service_.emplace(
          io.get_executor(), store, resolver, fetcher, [this] { return now; }, options,
          std::make_shared<spdlog::logger>("test",
                                           std::make_shared<spdlog::sinks::null_sink_mt>()));
    }
    return *service_;
  }
  // The next lookup runs with these options (as after a restart with another config).
  void restart_with(ServiceOptions changed) {
    service_.reset();
    options = std::move(changed);
  }

  LookupResult lookup(const std::string& domain) {
    std::optional<LookupResult> result;
    asio::co_spawn(
        io, [&]() -> asio::awaitable<void> { result = co_await service().lookup(domain); },
        asio::detached);
    io.restart();
    io.run();
    EXPECT_TRUE(result);
    return result ? *result : LookupResult{};
  }

  // An enforce policy for `domain` listing mx1 and mx2.
  void publish_policy(const std::string& domain) {
    resolver.set_txt("_mta-sts." + domain, {"v=STSv1; id=abc"});
    fetcher.bodies[domain] = enforce_body(domain);
  }
  // A DNSSEC-signed domain whose MX hosts all have secure addresses and a usable TLSA record.
  void sign_domain(const std::string& domain, std::vector<std::string> hosts, std::uint32_t ttl) {
    std::vector<dns::MxRecord> records;
    std::uint16_t preference = 10;
    for (const std::string& host : hosts) {
      records.push_back(dns::MxRecord{preference, host});
      preference += 10;
      resolver.address_answers[host] = address_answer(dns::Security::secure, ttl);
      resolver.tlsa_answers["_25._tcp." + host] =
          tlsa_answer(dns::Security::secure, {dane_ee()}, ttl);
    }
    resolver.mx_answers[domain] = mx_answer(dns::Security::secure, std::move(records), ttl);
  }

  int dane_queries() const {
    int total = 0;
    for (const std::string& entry : resolver.log) {
      if (!entry.starts_with("TXT ")) ++total;
    }
    return total;
  }
  long position(const std::string& query) const {
    const auto it = std::find(resolver.log.begin(), resolver.log.end(), query);
    EXPECT_NE(it, resolver.log.end()) << query;
    return it - resolver.log.begin();
  }

  asio::io_context io;
  testing::MemoryStore store;
  testing::FakeResolver resolver;
  testing::FakeFetcher fetcher;
  UnixTime now = kT0;
  ServiceOptions options;

 private:
  std::optional<PolicyService> service_;
};

// ---- the verdicts ----

TEST_F(DaneServiceTest, DANE03a_I1_secure_mx_addresses_and_usable_tlsa_is_all_usable) {
  publish_policy("example.com");
  sign_domain("example.com", {"mx1.example.com", "mx2.example.com"}, 300);
  const LookupResult result = lookup("example.com");
  EXPECT_EQ(result.source, AnswerSource::network);
  EXPECT_EQ(result.answer.kind, AnswerKind::policy);
  EXPECT_EQ(result.answer.mode, Mode::enforce);
  EXPECT_EQ(result.answer.dane, DaneVerdict::all_usable);
  EXPECT_FALSE(result.answer.dane_required);
  EXPECT_EQ(getmta_answer(result.answer), "dane");
  EXPECT_EQ(socketmap_reply("example.com", result.answer, "", "", SocketmapMapOptions{}),
            "OK dane-only");

  ASSERT_TRUE(store.entries.contains("example.com"));
  const CacheEntry& stored = store.entries["example.com"];
  ASSERT_TRUE(stored.dane);
  EXPECT_EQ(stored, *result.entry);
  EXPECT_EQ(stored.dane->verdict, DaneVerdict::all_usable);
  EXPECT_EQ(stored.dane->checked_at, kT0);
  EXPECT_EQ(stored.dane->expires_at, kT0 + 300);
  EXPECT_EQ(stored.dane->hosts,
            (std::vector<DaneHost>{
                {10, "mx1.example.com", DaneHostState::usable, "1 of 1 TLSA records usable"},
                {20, "mx2.example.com", DaneHostState::usable, "1 of 1 TLSA records usable"}}));
  EXPECT_TRUE(stored.policy);  // the MTA-STS part ran beside it
  EXPECT_EQ(fetcher.fetches["example.com"], 1);
}

TEST_F(DaneServiceTest, state_is_kept_for_the_smallest_ttl_clamped) {
  struct Row {
    const char* domain;
    std::uint32_t mx_ttl;
    std::uint32_t address_ttl;
    std::uint32_t tlsa_ttl;
    UnixTime lifetime;
  };
  const std::vector<Row> rows = {
      {"smallest-is-tlsa.example", 900, 800, 700, 700},
      {"smallest-is-address.example", 900, 500, 700, 500},
      {"smallest-is-mx.example", 400, 800, 700, 400},
      {"below-min.example", 900, 900, 5, kDaneTiming.min_ttl},
      {"zero.example", 0, 900, 900, kDaneTiming.min_ttl},
      {"above-max.example", 86400, 86400, 86400, kDaneTiming.max_ttl},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.domain);
    const std::string domain = row.domain;
    const std::string host = "mx1." + domain;
    resolver.mx_answers[domain] = mx_answer(dns::Security::secure, {{10, host}}, row.mx_ttl);
    resolver.address_answers[host] = address_answer(dns::Security::secure, row.address_ttl);
    resolver.tlsa_answers["_25._tcp." + host] =
        tlsa_answer(dns::Security::secure, {dane_ee()}, row.tlsa_ttl);
    const LookupResult result = lookup(domain);
    EXPECT_EQ(result.answer.dane, DaneVerdict::all_usable);
    ASSERT_TRUE(result.entry && result.entry->dane);
    EXPECT_EQ(result.entry->dane->expires_at, kT0 + row.lifetime);
  }
}

struct VerdictRow {
  const char* domain;
  dns::Answer<dns::MxRecord> mx;  // naming mx1.<domain> (and mx2.<domain>)
  std::optional<dns::Answer<std::string>> mx1_addresses;
  std::optional<dns::Answer<dns::TlsaRecord>> mx1_tlsa;
  DaneVerdict verdict;
  std::string getmta;  // under the enforce policy
};

TEST_F(DaneServiceTest, verdicts_from_dns_through_the_service) {
  using S = dns::Security;
  using St = dns::Status;
  auto mx = [](const std::string& domain, S security) {
    return mx_answer(security, {{10, "mx1." + domain}});
  };
  const std::vector<VerdictRow> rows = {
      {"d06.example", mx("d06.example", S::insecure), address_answer(S::secure),
       tlsa_answer(S::secure, {dane_ee()}), DaneVerdict::not_applicable, "enforce"},
      {"d02-mx.example", mx("d02-mx.example", S::indeterminate), std::nullopt, std::nullopt,
       DaneVerdict::failed, "fail"},
      {"d04-mx.example", mx("d04-mx.example", S::bogus), std::nullopt, std::nullopt,
       DaneVerdict::failed, "fail"},
      {"d04-mx-servfail.example", failure<dns::MxRecord>(St::servfail, S::indeterminate),
       std::nullopt, std::nullopt, DaneVerdict::failed, "fail"},
      {"d04-addr.example", mx("d04-addr.example", S::secure),
       failure<std::string>(St::timeout, S::indeterminate), std::nullopt, DaneVerdict::failed,
       "fail"},
      {"d04-addr-bogus.example", mx("d04-addr-bogus.example", S::secure), address_answer(S::bogus),
       std::nullopt, DaneVerdict::failed, "fail"},
      {"d07.example", mx("d07.example", S::secure), address_answer(S::insecure),
       tlsa_answer(S::secure, {dane_ee()}), DaneVerdict::not_applicable, "enforce"},
      {"d03b.example", mx("d03b.example", S::secure), address_answer(S::secure),
       tlsa_answer(S::secure, {pkix_ee()}), DaneVerdict::partial, "enforce"},
      {"d03c.example", mx("d03c.example", S::secure), address_answer(S::secure),
       tlsa_answer(S::secure, {}), DaneVerdict::not_applicable, "enforce"},
      {"d03c-insecure.example", mx("d03c-insecure.example", S::secure), address_answer(S::secure),
       tlsa_answer(S::insecure, {dane_ee()}), DaneVerdict::not_applicable, "enforce"},
      {"d03d.example", mx("d03d.example", S::secure), address_answer(S::secure),
       failure<dns::TlsaRecord>(St::servfail, S::indeterminate), DaneVerdict::failed, "fail"},
      {"d02-tlsa.example", mx("d02-tlsa.example", S::secure), address_answer(S::secure),
       tlsa_answer(S::indeterminate, {dane_ee()}), DaneVerdict::failed, "fail"},
      {"d04-tlsa-bogus.example", mx("d04-tlsa-bogus.example", S::secure), address_answer(S::secure),
       tlsa_answer(S::bogus, {dane_ee()}), DaneVerdict::failed, "fail"},
  };
  const std::vector<std::string> names = {
      "DANE-06 insecure MX RRset: not applicable",
      "DANE-02 indeterminate MX: failed",
      "DANE-04 bogus MX: failed",
      "DANE-04 MX SERVFAIL: failed",
      "DANE-04 address timeout: failed",
      "DANE-04 bogus addresses: failed",
      "DANE-07 insecure addresses: not applicable, TLSA never asked",
      "DANE-03b DANE-10 only PKIX-EE: partial (TLS required)",
      "DANE-03c secure denial of TLSA: not applicable",
      "DANE-03c insecure TLSA: not applicable",
      "DANE-03d I-5 TLSA SERVFAIL: failed",
      "DANE-02 indeterminate TLSA: failed",
      "DANE-04 bogus TLSA: failed",
  };
  ASSERT_EQ(rows.size(), names.size());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const VerdictRow& row = rows[i];
    SCOPED_TRACE(names[i]);
    const std::string domain = row.domain;
    publish_policy(domain);
    resolver.mx_answers[domain] = row.mx;
    if (row.mx1_addresses) resolver.address_answers["mx1." + domain] = *row.mx1_addresses;
    if (row.mx1_tlsa) resolver.tlsa_answers["_25._tcp.mx1." + domain] = *row.mx1_tlsa;
    const LookupResult result = lookup(domain);
    EXPECT_EQ(result.answer.kind, AnswerKind::policy);  // the MTA-STS part is unaffected
    EXPECT_EQ(result.answer.dane, row.verdict) << result.answer.dane_reason;
    EXPECT_EQ(getmta_answer(result.answer), row.getmta);
    ASSERT_TRUE(result.entry && result.entry->dane);
    EXPECT_EQ(result.entry->dane->verdict, row.verdict);
    if (row.verdict == DaneVerdict::failed) {
      EXPECT_EQ(result.entry->dane->expires_at, kT0 + kDaneTiming.failure_retry);
      EXPECT_FALSE(result.answer.dane_reason.empty());
    }
    // No host lookups unless the MX RRset was secure (DANE-06), no TLSA query unless the
    // addresses were secure too (DANE-07).
    const bool secure_mx = row.mx.status == St::ok && row.mx.security == S::secure;
    const bool secure_addresses = secure_mx && row.mx1_addresses &&
                                  row.mx1_addresses->status == St::ok &&
                                  row.mx1_addresses->security == S::secure;
    EXPECT_EQ(resolver.queries["mx1." + domain], secure_mx ? 1 : 0);
    EXPECT_EQ(resolver.queries["_25._tcp.mx1." + domain], secure_addresses ? 1 : 0);
  }
}

TEST_F(DaneServiceTest, DANE05_preference_order_and_partial_coverage) {
  publish_policy("example.com");
  resolver.mx_answers["example.com"] =
      mx_answer(dns::Security::secure, {{20, "mx2.example.com"}, {10, "mx1.example.com"}});
  resolver.address_answers["mx1.example.com"] = address_answer(dns::Security::secure);
  resolver.address_answers["mx2.example.com"] = address_answer(dns::Security::secure);
  // The better MX has no TLSA (secure denial), the worse one has.
  resolver.tlsa_answers["_25._tcp.mx1.example.com"] = tlsa_answer(dns::Security::secure, {});
  resolver.tlsa_answers["_25._tcp.mx2.example.com"] =
      tlsa_answer(dns::Security::secure, {dane_ee()});
  const LookupResult result = lookup("example.com");
  EXPECT_EQ(result.answer.dane, DaneVerdict::partial);
  // Exim keeps the policy's word (hosts_try_dane covers mx2, mx1 stays first); Postfix gets
  // dane-only under the enforce policy.
  EXPECT_EQ(getmta_answer(result.answer), "enforce");
  EXPECT_EQ(socketmap_reply("example.com", result.answer, "", "", SocketmapMapOptions{}),
            "OK dane-only");
  ASSERT_TRUE(result.entry && result.entry->dane);
  ASSERT_EQ(result.entry->dane->hosts.size(), 2u);
  EXPECT_EQ(result.entry->dane->hosts[0].name, "mx1.example.com");
  EXPECT_EQ(result.entry->dane->hosts[0].state, DaneHostState::no_tlsa);
  EXPECT_EQ(result.entry->dane->hosts[1].name, "mx2.example.com");
  EXPECT_EQ(result.entry->dane->hosts[1].state, DaneHostState::usable);
}

TEST_F(DaneServiceTest, implicit_mx_on_secure_denial_and_null_mx) {
  // RFC 5321 §5.1: no MX records (securely denied): the domain itself is the MX host.
  resolver.mx_answers["implicit.example"] = mx_answer(dns::Security::secure, {}, 600);
  resolver.address_answers["implicit.example"] = address_answer(dns::Security::secure);
  resolver.tlsa_answers["_25._tcp.implicit.example"] =
      tlsa_answer(dns::Security::secure, {dane_ee()});
  const LookupResult implicit = lookup("implicit.example");
  EXPECT_EQ(implicit.answer.dane, DaneVerdict::all_usable);
  EXPECT_LT(position("MX implicit.example"), position("A/AAAA implicit.example"));
  EXPECT_LT(position("A/AAAA implicit.example"), position("TLSA _25._tcp.implicit.example"));
  EXPECT_EQ(resolver.queries["_25._tcp.implicit.example"], 1);

  // RFC 7505 null MX: nothing to look at further.
  resolver.mx_answers["null.example"] = mx_answer(dns::Security::secure, {{0, ""}});
  const LookupResult null_mx = lookup("null.example");
  EXPECT_EQ(null_mx.answer.dane, DaneVerdict::not_applicable);
  EXPECT_EQ(std::count_if(resolver.log.begin(), resolver.log.end(),
                          [](const std::string& q) {
                            return q.ends_with("null.example") && !q.starts_with("TXT ");
                          }),
            1);
}

// ---- DANE-07: addresses before TLSA ----

TEST_F(DaneServiceTest, DANE07_addresses_looked_up_before_tlsa_and_no_tlsa_when_insecure) {
  publish_policy("example.com");
  resolver.mx_answers["example.com"] =
      mx_answer(dns::Security::secure,
                {{10, "mx1.example.com"}, {20, "mx2.example.com"}, {30, "mx3.example.com"}});
  resolver.address_answers["mx1.example.com"] = address_answer(dns::Security::secure);
  resolver.address_answers["mx2.example.com"] = address_answer(dns::Security::insecure);
  // mx3 has no addresses at all (NXDOMAIN): ignored, and no TLSA lookup either.
  for (const char* host : {"mx1.example.com", "mx2.example.com", "mx3.example.com"}) {
    // Published for every host, so only the lookup order keeps mx2's and mx3's from being asked.
    resolver.tlsa_answers["_25._tcp." + std::string(host)] =
        tlsa_answer(dns::Security::secure, {dane_ee()});
  }
  const LookupResult result = lookup("example.com");

  EXPECT_LT(position("MX example.com"), position("A/AAAA mx1.example.com"));
  EXPECT_LT(position("A/AAAA mx1.example.com"), position("TLSA _25._tcp.mx1.example.com"));
  EXPECT_EQ(resolver.queries["mx1.example.com"], 1);
  EXPECT_EQ(resolver.queries["_25._tcp.mx1.example.com"], 1);
  EXPECT_EQ(resolver.queries["mx2.example.com"], 1);
  EXPECT_EQ(resolver.queries["_25._tcp.mx2.example.com"], 0) << "DANE-07: insecure addresses";
  EXPECT_EQ(resolver.queries["mx3.example.com"], 1);
  EXPECT_EQ(resolver.queries["_25._tcp.mx3.example.com"], 0) << "no addresses";

  // mx1 usable, mx2 insecure, mx3 ignored: partial.
  EXPECT_EQ(result.answer.dane, DaneVerdict::partial);
  ASSERT_TRUE(result.entry && result.entry->dane);
  ASSERT_EQ(result.entry->dane->hosts.size(), 3u);
  EXPECT_EQ(result.entry->dane->hosts[0].state, DaneHostState::usable);
  EXPECT_EQ(result.entry->dane->hosts[1].state, DaneHostState::insecure);
  EXPECT_EQ(result.entry->dane->hosts[2].state, DaneHostState::no_address);
}

TEST_F(DaneServiceTest, DANE06_insecure_mx_rrset_stops_before_any_host_lookup) {
  publish_policy("example.com");
  sign_domain("example.com", {"mx1.example.com"}, 300);
  resolver.mx_answers["example.com"].security = dns::Security::insecure;
  const LookupResult result = lookup("example.com");
  EXPECT_EQ(result.answer.dane, DaneVerdict::not_applicable);
  EXPECT_EQ(getmta_answer(result.answer), "enforce");  // I-8: pure MTA-STS
  EXPECT_EQ(resolver.queries["example.com"], 1);
  EXPECT_EQ(resolver.queries["mx1.example.com"], 0);
  EXPECT_EQ(resolver.queries["_25._tcp.mx1.example.com"], 0);
}

// ---- failures: held, retried, never remembered as "no DANE" ----

TEST_F(DaneServiceTest, DANE04_I5_tlsa_servfail_fails_and_is_rechecked_after_failure_retry) {
  publish_policy("example.com");
  sign_domain("example.com", {"mx1.example.com"}, 300);
  resolver.tlsa_answers["_25._tcp.mx1.example.com"] =
      failure<dns::TlsaRecord>(dns::Status::servfail, dns::Security::indeterminate);

  LookupResult result = lookup("example.com");
  EXPECT_EQ(result.answer.kind, AnswerKind::policy);
  EXPECT_EQ(result.answer.dane, DaneVerdict::failed);
  EXPECT_NE(result.answer.dane_reason.find("mx1.example.com"), std::string::npos)
      << result.answer.dane_reason;
  // DANE-01: the passing enforce policy does not rescue it.
  EXPECT_EQ(getmta_answer(result.answer), "fail");
  EXPECT_TRUE(socketmap_reply("example.com", result.answer, "", "", SocketmapMapOptions{})
                  .starts_with("TEMP DANE lookup for example.com failed: "));
  EXPECT_EQ(store.entries["example.com"].dane->verdict, DaneVerdict::failed);
  EXPECT_EQ(store.entries["example.com"].dane->expires_at, kT0 + kDaneTiming.failure_retry);

  // Within failure_retry: answered from the cache, still failed, no DNS at all.
  now = kT0 + kDaneTiming.failure_retry - 1;
  const std::size_t queries_before = resolver.log.size();
  result = lookup("example.com");
  EXPECT_EQ(result.source, AnswerSource::cache);
  EXPECT_EQ(result.answer.dane, DaneVerdict::failed);
  EXPECT_EQ(resolver.log.size(), queries_before);

  // From failure_retry on: DANE is looked at again (and only DANE: the policy is fresh). Still
  // failing: still failed, never cached as not-applicable.
  now = kT0 + kDaneTiming.failure_retry;
  result = lookup("example.com");
  EXPECT_EQ(result.source, AnswerSource::network);
  EXPECT_EQ(result.answer.dane, DaneVerdict::failed);
  EXPECT_EQ(resolver.queries["_25._tcp.mx1.example.com"], 2);
  EXPECT_EQ(resolver.queries["_mta-sts.example.com"], 1);
  EXPECT_EQ(store.entries["example.com"].dane->verdict, DaneVerdict::failed);
  EXPECT_EQ(store.entries["example.com"].dane->expires_at, kT0 + 2 * kDaneTiming.failure_retry);

  // The TLSA RRset answers again: all usable.
  resolver.tlsa_answers["_25._tcp.mx1.example.com"] =
      tlsa_answer(dns::Security::secure, {dane_ee()}, 300);
  now = kT0 + 2 * kDaneTiming.failure_retry;
  result = lookup("example.com");
  EXPECT_EQ(result.answer.dane, DaneVerdict::all_usable);
  EXPECT_EQ(store.entries["example.com"].dane->expires_at, now + 300);
  EXPECT_EQ(resolver.queries["_mta-sts.example.com"], 1);
  EXPECT_EQ(fetcher.fetches["example.com"], 1);
}

TEST_F(DaneServiceTest, DANE04_one_failed_host_fails_the_domain) {
  publish_policy("example.com");
  sign_domain("example.com", {"mx1.example.com", "mx2.example.com"}, 300);
  resolver.address_answers["mx2.example.com"] =
      failure<std::string>(dns::Status::timeout, dns::Security::indeterminate);
  const LookupResult result = lookup("example.com");
  EXPECT_EQ(result.answer.dane, DaneVerdict::failed);
  EXPECT_NE(result.answer.dane_reason.find("mx2.example.com"), std::string::npos)
      << result.answer.dane_reason;
  EXPECT_EQ(resolver.queries["_25._tcp.mx2.example.com"], 0);
}

// ---- freshness: the DANE state has its own ----

TEST_F(DaneServiceTest, fresh_dane_state_answers_with_no_dns) {
  publish_policy("example.com");
  sign_domain("example.com", {"mx1.example.com"}, 300);
  lookup("example.com");
  const std::vector<std::string> first = resolver.log;
  const int saves = store.saves;

  for (UnixTime later : {UnixTime{1}, UnixTime{150}, UnixTime{299}}) {
    SCOPED_TRACE(later);
    now = kT0 + later;
    const LookupResult result = lookup("example.com");
    EXPECT_EQ(result.source, AnswerSource::cache);
    EXPECT_EQ(result.answer.dane, DaneVerdict::all_usable);
    EXPECT_EQ(result.answer.mode, Mode::enforce);
    EXPECT_EQ(getmta_answer(result.answer), "dane");
  }
  EXPECT_EQ(resolver.log, first);
  EXPECT_EQ(store.saves, saves);
  EXPECT_EQ(fetcher.fetches["example.com"], 1);
}

TEST_F(DaneServiceTest, expired_dane_state_with_fresh_policy_reruns_only_the_dane_lookups) {
  publish_policy("example.com");
  sign_domain("example.com", {"mx1.example.com"}, 300);
  lookup("example.com");
  const CacheEntry before = store.entries["example.com"];
  ASSERT_GT(before.next_check, kT0 + 300) << "the policy must outlive the DANE state";

  // The zone changed meanwhile: the TLSA record is gone (secure denial).
  resolver.tlsa_answers["_25._tcp.mx1.example.com"] = tlsa_answer(dns::Security::secure, {}, 600);
  now = kT0 + 300;
  resolver.log.clear();
  const LookupResult result = lookup("example.com");
  EXPECT_EQ(result.source, AnswerSource::network);
  EXPECT_EQ(resolver.log, (std::vector<std::string>{"MX example.com", "A/AAAA mx1.example.com",
                                                    "TLSA _25._tcp.mx1.example.com"}))
      << "no TXT query: the policy is fresh";
  EXPECT_EQ(fetcher.fetches["example.com"], 1);
  EXPECT_EQ(result.answer.dane, DaneVerdict::not_applicable);
  EXPECT_EQ(getmta_answer(result.answer), "enforce");

  // The MTA-STS part of the entry is untouched; the DANE part is new.
  const CacheEntry& after = store.entries["example.com"];
  EXPECT_EQ(after.policy, before.policy);
  EXPECT_EQ(after.next_check, before.next_check);
  EXPECT_EQ(after.checked_at, before.checked_at);
  ASSERT_TRUE(after.dane);
  EXPECT_EQ(after.dane->checked_at, now);
  EXPECT_EQ(after.dane->expires_at, now + 300);  // the MX and address TTLs are smaller
}

TEST_F(DaneServiceTest, expired_policy_with_fresh_dane_state_reruns_only_the_sts_lookups) {
  // A negative MTA-STS entry (no TXT record) lives negative_ttl; the DANE state outlives it.
  options.timing.negative_ttl = 600;
  sign_domain("example.com", {"mx1.example.com"}, 3600);
  lookup("example.com");
  ASSERT_EQ(store.entries["example.com"].next_check, kT0 + 600);
  ASSERT_EQ(store.entries["example.com"].dane->expires_at, kT0 + 3600);

  now = kT0 + 600;
  resolver.log.clear();
  const LookupResult result = lookup("example.com");
  EXPECT_EQ(result.source, AnswerSource::network);
  std::vector<std::string> log = resolver.log;
  std::sort(log.begin(), log.end());
  EXPECT_EQ(log,
            (std::vector<std::string>{"TXT _mta-sts.example.com", "TXT _smtp._tls.example.com"}))
      << "no DANE query: the DANE state is fresh";
  EXPECT_EQ(result.answer.kind, AnswerKind::no_policy);
  EXPECT_EQ(result.answer.dane, DaneVerdict::all_usable);  // the cached state still answers
  EXPECT_EQ(getmta_answer(result.answer), "dane");
  ASSERT_TRUE(store.entries["example.com"].dane);
  EXPECT_EQ(store.entries["example.com"].dane->expires_at, kT0 + 3600);
  EXPECT_EQ(store.entries["example.com"].next_check, now + 600);
}

TEST_F(DaneServiceTest, I10_policy_fetch_failing_dane_still_answers) {
  resolver.set_txt("_mta-sts.example.com", {"v=STSv1; id=abc"});  // no body: HTTP 404
  sign_domain("example.com", {"mx1.example.com"}, 300);
  const LookupResult result = lookup("example.com");
  EXPECT_EQ(result.answer.kind, AnswerKind::no_policy);
  EXPECT_EQ(result.answer.dane, DaneVerdict::all_usable);
  EXPECT_EQ(getmta_answer(result.answer), "dane");
  EXPECT_EQ(socketmap_reply("example.com", result.answer, "", "", SocketmapMapOptions{}),
            "OK dane-only");
}

TEST_F(DaneServiceTest, refresh_rechecks_dane_even_when_fresh) {
  publish_policy("example.com");
  sign_domain("example.com", {"mx1.example.com"}, 3600);
  lookup("example.com");
  std::optional<LookupResult> result;
  asio::co_spawn(
      io, [&]() -> asio::awaitable<void> { result = co_await service().refresh("example.com"); },
      asio::detached);
  io.restart();
  io.run();
  ASSERT_TRUE(result);
  EXPECT_EQ(resolver.queries["example.com"], 2);
  EXPECT_EQ(resolver.queries["_25._tcp.mx1.example.com"], 2);
  EXPECT_EQ(result->answer.dane, DaneVerdict::all_usable);
}

// ---- mandatory DANE (DANE-15, I-11) ----

TEST_F(DaneServiceTest, DANE15_I11_required_without_tlsa) {
  ServiceOptions required = options;
  required.dane_required = {"example.com"};
  restart_with(required);
  publish_policy("example.com");
  sign_domain("example.com", {"mx1.example.com"}, 300);
  resolver.tlsa_answers["_25._tcp.mx1.example.com"] = tlsa_answer(dns::Security::secure, {});
  const LookupResult result = lookup("example.com");
  EXPECT_EQ(result.answer.dane, DaneVerdict::not_applicable);
  EXPECT_TRUE(result.answer.dane_required);
  // Exim holds the mail: hosts_require_dane would bounce a host without TLSA (DANE-15).
  EXPECT_EQ(getmta_answer(result.answer), "fail");
  EXPECT_EQ(socketmap_reply("example.com", result.answer, "", "", SocketmapMapOptions{}),
            "OK dane-only");
  ASSERT_TRUE(store.entries["example.com"].dane);
  EXPECT_TRUE(store.entries["example.com"].dane->required);

  // Another domain is not affected.
  publish_policy("other.example");
  const LookupResult other = lookup("other.example");
  EXPECT_FALSE(other.answer.dane_required);
  EXPECT_EQ(getmta_answer(other.answer), "enforce");
}

TEST_F(DaneServiceTest, DANE06_DANE15_required_with_insecure_mx_waits) {
  // RFC 7672 §2.2.1: under mandatory DANE, delivery waits while the MX RRset is not secure.
  ServiceOptions required = options;
  required.dane_required = {"example.com"};
  restart_with(required);
  publish_policy("example.com");
  resolver.mx_answers["example.com"] =
      mx_answer(dns::Security::insecure, {{10, "mx1.example.com"}});
  const LookupResult result = lookup("example.com");
  EXPECT_EQ(result.answer.dane, DaneVerdict::not_applicable);
  EXPECT_TRUE(result.answer.dane_required);
  EXPECT_EQ(getmta_answer(result.answer), "fail");
  EXPECT_EQ(socketmap_reply("example.com", result.answer, "", "", SocketmapMapOptions{}),
            "OK dane-only");
}

TEST_F(DaneServiceTest, DANE15_changing_dane_required_rechecks_a_fresh_state) {
  publish_policy("example.com");
  sign_domain("example.com", {"mx1.example.com"}, 3600);
  EXPECT_FALSE(lookup("example.com").answer.dane_required);

  ServiceOptions required = options;
  required.dane_required = {"example.com"};
  restart_with(required);
  now = kT0 + 10;
  LookupResult result = lookup("example.com");
  EXPECT_EQ(result.source, AnswerSource::network);
  EXPECT_TRUE(result.answer.dane_required);
  EXPECT_EQ(result.answer.dane, DaneVerdict::all_usable);
  EXPECT_EQ(getmta_answer(result.answer), "dane");  // required and every host usable
  EXPECT_EQ(resolver.queries["example.com"], 2);
  EXPECT_EQ(resolver.queries["_mta-sts.example.com"], 1);

  ServiceOptions relaxed = options;
  relaxed.dane_required.clear();
  restart_with(relaxed);
  now = kT0 + 20;
  result = lookup("example.com");
  EXPECT_EQ(result.source, AnswerSource::network);
  EXPECT_FALSE(result.answer.dane_required);
  EXPECT_EQ(resolver.queries["example.com"], 3);
}

// ---- DANE off ----

TEST_F(DaneServiceTest, dane_off_makes_no_mx_query_at_all) {
  ServiceOptions off = options;
  off.dane = false;
  restart_with(off);
  publish_policy("example.com");
  sign_domain("example.com", {"mx1.example.com"}, 300);
  resolver.tlsa_answers["_25._tcp.mx1.example.com"] =
      failure<dns::TlsaRecord>(dns::Status::servfail, dns::Security::bogus);
  const LookupResult result = lookup("example.com");
  EXPECT_EQ(dane_queries(), 0) << "no MX, A/AAAA or TLSA query";
  EXPECT_EQ(resolver.queries.count("example.com"), 0u);
  EXPECT_EQ(result.answer.dane, DaneVerdict::not_applicable);
  EXPECT_FALSE(result.answer.dane_required);
  EXPECT_EQ(getmta_answer(result.answer), "enforce");
  ASSERT_TRUE(result.entry);
  EXPECT_FALSE(result.entry->dane);
  EXPECT_FALSE(store.entries["example.com"].dane);
}

TEST_F(DaneServiceTest, dane_off_drops_a_state_cached_while_it_was_on) {
  // DANE was on and failed for a domain; the admin turns it off (dane = false, or no
  // trust_anchor) while the policy is still fresh: the old state must not hold the mail.
  publish_policy("example.com");
  sign_domain("example.com", {"mx1.example.com"}, 300);
  resolver.tlsa_answers["_25._tcp.mx1.example.com"] =
      failure<dns::TlsaRecord>(dns::Status::servfail, dns::Security::indeterminate);
  ASSERT_EQ(lookup("example.com").answer.dane, DaneVerdict::failed);

  ServiceOptions off = options;
  off.dane = false;
  restart_with(off);
  for (UnixTime later : {UnixTime{10}, UnixTime{3000}}) {  // before and after the state expired
    SCOPED_TRACE(later);
    now = kT0 + later;
    resolver.log.clear();
    const LookupResult result = lookup("example.com");
    EXPECT_EQ(result.answer.dane, DaneVerdict::not_applicable);
    EXPECT_EQ(getmta_answer(result.answer), "enforce");
    EXPECT_TRUE(resolver.log.empty()) << "no DNS at all: the policy is fresh and DANE is off";
    EXPECT_FALSE(store.entries["example.com"].dane);
  }
}

// ---- the pure helpers the front-ends share ----

TEST(DaneFreshness, dane_is_fresh) {
  ServiceOptions on;
  on.dane = true;
  ServiceOptions required = on;
  required.dane_required = {"example.com"};
  ServiceOptions off;
  CacheEntry with_state;
  with_state.dane = DaneState{DaneVerdict::all_usable, "r", {}, kT0, kT0 + 300, false};
  CacheEntry required_state = with_state;
  required_state.dane->required = true;
  const CacheEntry without_state;

  struct Row {
    const char* name;
    std::optional<CacheEntry> cached;
    UnixTime now;
    const ServiceOptions* options;
    bool fresh;
  };
  const std::vector<Row> rows = {
      {"DANE off, nothing cached", std::nullopt, kT0, &off, true},
      {"DANE off, entry without a state", without_state, kT0, &off, true},
      {"DANE off, a state left from when it was on: dropped", with_state, kT0, &off, false},
      {"nothing cached", std::nullopt, kT0, &on, false},
      {"entry without a state", without_state, kT0, &on, false},
      {"unexpired", with_state, kT0 + 299, &on, true},
      {"expires now", with_state, kT0 + 300, &on, false},
      {"expired", with_state, kT0 + 301, &on, false},
      {"DANE-15 made optional, now required", with_state, kT0, &required, false},
      {"DANE-15 made required, still required", required_state, kT0, &required, true},
      {"DANE-15 made required, now optional", required_state, kT0, &on, false},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    EXPECT_EQ(dane_is_fresh(row.cached, row.now, *row.options, "example.com"), row.fresh);
  }
  EXPECT_FALSE(dane_is_fresh(required_state, kT0, required, "other.example"));
}

TEST(DaneFreshness, dane_fallback_never_reads_as_no_dane) {
  ServiceOptions on;
  on.dane = true;
  on.dane_required = {"example.com"};
  CacheEntry entry;
  EXPECT_FALSE(dane_fallback(entry, kT0, ServiceOptions{}, "example.com", "timeout"));

  // Nothing cached: failed, expiring at once so the next lookup tries again.
  auto state = dane_fallback(entry, kT0, on, "example.com", "lookup did not finish");
  ASSERT_TRUE(state);
  EXPECT_EQ(state->verdict, DaneVerdict::failed);
  EXPECT_EQ(state->reason, "DANE check did not finish: lookup did not finish");
  EXPECT_EQ(state->expires_at, kT0);
  EXPECT_TRUE(state->required);
  EXPECT_FALSE(dane_fallback(entry, kT0, on, "other.example", "x")->required);

  // A fresh state is used as it is.
  entry.dane = DaneState{DaneVerdict::all_usable, "r", {}, kT0, kT0 + 300, true};
  EXPECT_EQ(dane_fallback(entry, kT0 + 10, on, "example.com", "x"), entry.dane);
  // An expired one is not: failed.
  EXPECT_EQ(dane_fallback(entry, kT0 + 300, on, "example.com", "x")->verdict, DaneVerdict::failed);
}

}  // namespace
}  // namespace mtasts
