// Fetching https://mta-sts.<domain>/.well-known/mta-sts.txt under RFC 8461 §3.3.
#pragma once

#include <expected>
#include <string>

#include "adapters/asio.hpp"
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
};

}  // namespace mtasts::https
