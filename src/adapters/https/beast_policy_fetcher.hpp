// PolicyFetcher on Boost.Beast and OpenSSL 3: GET https://mta-sts.<domain>/.well-known/mta-sts.txt
// under RFC 8461 §3.3.
//
// Rules it applies (rfc-checklist.md):
// - STS-11: the host is always mta-sts.<policy domain>, resolved through our dns::Resolver (never
//   getaddrinfo); each address is tried in order.
// - STS-18: the certificate must chain to a trusted root (the system store plus `ca_file`), be
//   unexpired and name the host in a SAN DNS-ID; the subject CN is never consulted and a
//   wildcard counts only as the whole left-most label.
// - STS-45/46: SNI = the host; TLS 1.2 or newer.
// - STS-20/21: status 200 only; 3xx is an error and is never followed.
// - STS-22: no conditional or caching request headers; nothing is cached here.
// - STS-12: Content-Type must be text/plain (mtasts::is_text_plain).
// - STS-24: one deadline for the whole fetch (DNS, connect, handshake, request, response), a
//   body cap and a header cap.
// Errors: fetch_failed, webpki_invalid (with OpenSSL's verify error), policy_syntax (media type).
// Every reason names the host.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "adapters/dns/resolver.hpp"
#include "adapters/https/policy_fetcher.hpp"

namespace mtasts::https {

struct BeastPolicyFetcherOptions {
  // TCP port of the policy host. RFC 8461 fixes 443; tests use another.
  std::uint16_t port = 443;
  // Extra trusted CA certificates (PEM), in addition to the system store.
  std::optional<std::string> ca_file;
  // One deadline for the whole fetch: resolve + connect + handshake + write + read.
  std::chrono::milliseconds timeout{10000};
  // Largest accepted body (RFC 8461 §3.3 suggests 64 KiB).
  std::size_t max_body = 64 * 1024;
  // Largest accepted response header block.
  std::size_t max_header = 8 * 1024;
};

class BeastPolicyFetcher final : public PolicyFetcher {
 public:
  // `resolver` must outlive the fetcher. The TLS context (system store, `ca_file`) is built on
  // the first fetch and reused; a CA file that cannot be loaded fails every fetch with a reason.
  explicit BeastPolicyFetcher(dns::Resolver& resolver, BeastPolicyFetcherOptions options = {});
  ~BeastPolicyFetcher() override;
  BeastPolicyFetcher(const BeastPolicyFetcher&) = delete;
  BeastPolicyFetcher& operator=(const BeastPolicyFetcher&) = delete;

  asio::awaitable<std::expected<std::string, Error>> fetch(std::string policy_domain) override;
  asio::awaitable<std::expected<std::string, Error>> fetch_with_facts(
      std::string policy_domain, PolicyFetchFacts& facts) override;

 private:
  // The fetch; `facts` (may be null) records what was seen.
  asio::awaitable<std::expected<std::string, Error>> run_fetch(std::string policy_domain,
                                                               PolicyFetchFacts* facts);
  struct Tls;
  dns::Resolver& resolver_;
  BeastPolicyFetcherOptions options_;
  std::unique_ptr<Tls> tls_;
};

}  // namespace mtasts::https
