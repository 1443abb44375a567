// A resolver's answer as the pure DANE decisions (core/dane.hpp) see it: records, none or
// failed, and how far DNSSEC vouches for it. One conversion for the lookups and `mtasts check`.
#pragma once

#include "adapters/dns/resolver.hpp"
#include "core/dane.hpp"

namespace mtasts {

template <class Record>
DnsResult dns_result(const dns::Answer<Record>& answer) {
  DnsResult result;
  switch (answer.status) {
    case dns::Status::ok:
      result.outcome = DnsOutcome::records;
      break;
    case dns::Status::nxdomain:
    case dns::Status::nodata:
      result.outcome = DnsOutcome::none;
      break;
    default:
      result.outcome = DnsOutcome::failed;
      break;
  }
  switch (answer.security) {
    case dns::Security::secure:
      result.trust = DnsTrust::secure;
      break;
    case dns::Security::insecure:
      result.trust = DnsTrust::insecure;
      break;
    case dns::Security::bogus:
      result.trust = DnsTrust::bogus;
      break;
    case dns::Security::indeterminate:
      result.trust = DnsTrust::indeterminate;
      break;
  }
  result.ttl = answer.ttl;
  result.detail = answer.detail;
  if (result.outcome == DnsOutcome::failed && result.detail.empty()) {
    result.detail = dns::to_string(answer.status);
  }
  return result;
}

}  // namespace mtasts
