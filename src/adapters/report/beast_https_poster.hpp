// HttpsPoster on Boost.Beast and OpenSSL 3: POSTs a TLSRPT report to an https: rua
// (RFC 8460 §5.4) under the PKIX rules of policy fetches (adapters/https/tls_client.hpp).
//
// - The URI: scheme https only; the host an LDH name (compared lower-case) or an IP literal; an
//   optional port; path and query sent as written. User info and fragments are refused.
// - Addresses come from our dns::Resolver, each tried in order; an IP literal is used as is.
// - TLS 1.2+, SNI, a SAN DNS-ID (or IP SAN for a literal) chaining to the system store or
//   `ca_file`.
// - POST with Content-Type, Content-Length and Connection: close. Any 2xx is success; 1xx
//   interim responses are skipped; 3xx is an error and never followed; any other status is an
//   error quoting the status and the first bytes of the body.
// - One deadline for the whole exchange, a cap on the response header and body.
// Errors: report_delivery; every reason names the URI.
#pragma once

#include <memory>
#include <string>

#include "adapters/dns/resolver.hpp"
#include "adapters/report/report_sender.hpp"

namespace mtasts::report {

class BeastHttpsPoster final : public HttpsPoster {
 public:
  // `resolver` must outlive the poster. The TLS context (system store, `ca_file`) is built on
  // the first post and reused; a CA file that cannot be loaded fails every post with a reason.
  BeastHttpsPoster(dns::Resolver& resolver, HttpsPostOptions options);
  ~BeastHttpsPoster() override;
  BeastHttpsPoster(const BeastHttpsPoster&) = delete;
  BeastHttpsPoster& operator=(const BeastHttpsPoster&) = delete;

  asio::awaitable<std::expected<void, Error>> post(std::string uri, std::string content_type,
                                                   std::string body) override;

 private:
  struct Tls;
  dns::Resolver& resolver_;
  HttpsPostOptions options_;
  std::unique_ptr<Tls> tls_;
};

}  // namespace mtasts::report
