// How the config's keys set up the adapters a PolicyService runs on: the one place that turns a
// Config into resolver and fetcher settings, for the Engine (CLI, Exim module) and mtastsd alike.
#pragma once

#include "adapters/dns/unbound_resolver.hpp"
#include "adapters/https/beast_policy_fetcher.hpp"
#include "service/config.hpp"

namespace mtasts {

// Who runs the lookups: one at a time (the CLI, an Exim delivery process) or many at once
// (mtastsd), which needs far more DNS queries in flight.
enum class Concurrency { one_lookup, many_lookups };

[[nodiscard]] dns::UnboundOptions resolver_options(const Config& config, Concurrency concurrency);
[[nodiscard]] https::BeastPolicyFetcherOptions fetcher_options(const Config& config);

}  // namespace mtasts
