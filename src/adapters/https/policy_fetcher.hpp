// Fetching https://mta-sts.<domain>/.well-known/mta-sts.txt under RFC 8461 §3.3.
#pragma once

#include <expected>
#include <string>
#include <utility>

#include "adapters/asio.hpp"
#include "core/check_steps.hpp"
#include "core/error.hpp"

namespace mtasts::https {

class PolicyFetcher {
 public:
  virtual ~PolicyFetcher() = default;
  // Returns the body of a 200 text/plain response. Errors: fetch_failed (connect, DNS, timeout,
  // status other than 200, redirect, body over the cap, protocol), webpki_invalid (certificate
  // not valid for mta-sts.<domain>), policy_syntax (wrong media type). `policy_domain` is
  // normalized.
  virtual asio::awaitable<std::expected<std::string, Error>> fetch(std::string policy_domain) = 0;
  // fetch(), also recording what it saw on the way (address, TLS, response header) for
  // `mtasts check`. A fetcher that records nothing leaves `facts` as it is.
  virtual asio::awaitable<std::expected<std::string, Error>> fetch_with_facts(
      std::string policy_domain, PolicyFetchFacts& facts) {
    (void)facts;
    co_return co_await fetch(std::move(policy_domain));
  }
};

}  // namespace mtasts::https
