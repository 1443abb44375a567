// `mtasts check DOMAIN`: a diagnosis of a domain's published MTA-STS, TLSRPT and DANE setup,
// step by step (core/check_steps.hpp), from live DNS, a policy fetch and, when asked, STARTTLS
// probes of the MX hosts. It never reads or writes the cache.
#pragma once

#include <cstdint>
#include <string>

#include "core/check_report.hpp"
#include "service/config.hpp"
#include "service/wiring.hpp"

namespace mtasts {

struct DomainCheckOptions {
  bool smtp = false;             // connect to each MX host and try STARTTLS (never sends mail)
  std::uint16_t smtp_port = 25;  // test worlds use another
};

// Most MX hosts probed with --smtp; the rest are named as not probed.
inline constexpr std::size_t kMaxProbedMxHosts = 10;

// Runs every step for `domain` (normalized). Blocking; bounded by the config's DNS, fetch and
// lookup timeouts (and the probe timeout with --smtp).
[[nodiscard]] CheckReport check_domain(const Config& config, const std::string& domain,
                                       const DomainCheckOptions& options,
                                       Wiring& wiring = system_wiring());

}  // namespace mtasts
