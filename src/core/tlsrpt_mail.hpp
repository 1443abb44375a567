// The mail that carries a TLSRPT report to a `mailto:` rua (RFC 8460 §5.3; rfc-checklist
// RPT-28, RPT-29, RPT-30). Pure: the same input gives the same bytes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/tlsrpt_report.hpp"

namespace mtasts::tlsrpt {

struct MailEnvelope {
  std::string from;               // From: the report sender's address (config)
  std::string to;                 // To: the rua's address
  std::int64_t date = 0;          // Date:, Unix seconds (the caller's clock)
  std::string message_id_domain;  // right-hand side of the Message-ID
};

// The whole message, headers and body, lines ended by LF (it goes to a local sendmail command,
// which expects local line ends; run it with -i so that no line ends the input early):
// - From, To, Date (RFC 5322, UTC "+0000"), Subject (report.subject, folded at spaces to lines
//   of at most 78 characters), Message-ID ("<" hash(report-id) "." hash(to) "@" domain ">":
//   a resend of the same report to the same rua has the same id), MIME-Version,
//   TLS-Report-Domain, TLS-Report-Submitter (RPT-29), TLS-Required: No (RFC 8689: deliver it
//   even when TLS to the rua fails, RPT-09), Auto-Submitted: auto-generated (RFC 3834: no
//   replies, no loops);
// - Content-Type: multipart/report; report-type="tlsrpt" (RPT-28) with a boundary derived from
//   the report-id that occurs in neither part: a text/plain us-ascii part saying what this is,
//   then the report as application/tlsrpt+gzip, base64 in lines of 76, named report.filename.
// Header injection: values from config or DNS (addresses, domains, the file name) have every
// control character (CR and LF included) stripped, so none can end a header line or start a
// new one; quotes and backslashes are also stripped from the quoted file name. Callers should
// still refuse such values where they are read (config, DNS) with a message for the admin.
[[nodiscard]] std::string build_report_mail(const Report& report, std::string_view gzipped_json,
                                            std::string_view policy_domain,
                                            std::string_view submitter,
                                            const MailEnvelope& envelope);

// RFC 5322 §3.3 date-time of a Unix time in UTC: "Mon, 07 Dec 2026 00:00:00 +0000". Times
// before 1970 or after 9999-12-31T23:59:59Z are clamped to those bounds.
[[nodiscard]] std::string rfc5322_date(std::int64_t unix_seconds);

}  // namespace mtasts::tlsrpt
