// Counts policy fetches by outcome for the metrics, passing everything through. A body that is
// not a valid policy counts as policy_syntax (the PolicyService parses it again; parsing is
// cheap next to a fetch).
#pragma once

#include <string>

#include "adapters/https/policy_fetcher.hpp"
#include "core/policy.hpp"
#include "daemon/metrics.hpp"

namespace mtasts::daemon {

class CountingFetcher final : public https::PolicyFetcher {
 public:
  CountingFetcher(https::PolicyFetcher& inner, Metrics& metrics)
      : inner_(inner), metrics_(metrics) {}

  asio::awaitable<std::expected<std::string, Error>> fetch(std::string policy_domain) override {
    auto body = co_await inner_.fetch(std::move(policy_domain));
    if (!body) {
      metrics_.fetch(to_string(body.error().category));
    } else if (!parse_policy(*body)) {
      metrics_.fetch(to_string(ErrorCategory::policy_syntax));
    } else {
      metrics_.fetch("ok");
    }
    co_return body;
  }

 private:
  https::PolicyFetcher& inner_;
  Metrics& metrics_;
};

}  // namespace mtasts::daemon
