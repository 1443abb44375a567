#include "service/wiring.hpp"

namespace mtasts {

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

}  // namespace mtasts
