// The `_smtp._tls.<domain>` TLSRPT record (RFC 8460 §3).
#pragma once

#include <expected>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"

namespace mtasts {

struct TlsrptRecord {
  // Usable report URIs in published order: "mailto:" + the percent-decoded address (hfields
  // dropped), or an https: URI verbatim (decoding would change its meaning). Scheme lower-cased.
  std::vector<std::string> rua;
  friend bool operator==(const TlsrptRecord&, const TlsrptRecord&) = default;
};

// Strict grammar: "v=TLSRPTv1" first (case-sensitive, RPT-02), fields separated by
// *WSP ";" *WSP, "rua" required with one or more URIs separated by *WSP "," *WSP (RPT-03),
// unknown extension fields ignored (RPT-06). URIs keep only mailto: and https: schemes; in a
// mailto: address "%2C" etc. are decoded. A repeated rua: the first wins (as STS-10). A record
// whose first rua has no usable URI is record_syntax.
[[nodiscard]] std::expected<TlsrptRecord, Error> parse_tlsrpt_record(std::string_view record);

// RPT-04: keeps records beginning with "v=TLSRPTv1" followed by ";", WSP or end; exactly one.
[[nodiscard]] std::expected<TlsrptRecord, Error> select_tlsrpt_record(
    const std::vector<std::string>& records);

}  // namespace mtasts
