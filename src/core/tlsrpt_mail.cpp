// RFC 8460 §5.3 report mail: RFC 5322 headers, RFC 2045/2046 MIME, RFC 6522 multipart/report.
#include "core/tlsrpt_mail.hpp"

#include <algorithm>
#include <array>
#include <chrono>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace mtasts::tlsrpt {

namespace {

constexpr std::size_t kFoldAt = 78;        // RFC 5322 §2.1.1: lines SHOULD be at most 78
constexpr std::size_t kBase64Line = 76;    // RFC 2045 §6.8: encoded lines at most 76
constexpr std::size_t kMaxBodyText = 200;  // how much of a config string the text part shows
constexpr std::int64_t kLastSecond = 253402300799;  // 9999-12-31T23:59:59Z

bool is_control(char c) {
  const auto byte = static_cast<unsigned char>(c);
  return byte < 0x20 || byte == 0x7f;
}

// A header value from config or DNS: control characters (CR, LF, NUL, TAB, ...) stripped, so
// it cannot end its header line.
std::string header_text(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (const char c : value) {
    if (!is_control(c)) out += c;
  }
  return out;
}

// The content of a quoted-string parameter (RFC 2045 §5.1): header_text without '"' and '\'.
std::string quoted_text(std::string_view value) {
  std::string out = header_text(value);
  std::erase_if(out, [](char c) { return c == '"' || c == '\\'; });
  return out;
}

// A line of the us-ascii text part: printable ASCII only, cut to a readable length.
std::string body_text(std::string_view value) {
  std::string out;
  for (const char c : value.substr(0, kMaxBodyText)) {
    const auto byte = static_cast<unsigned char>(c);
    out += byte >= 0x20 && byte < 0x7f ? c : '?';
  }
  return out;
}

// A Message-ID right-hand side (RFC 5322 dot-atom-text): letters, digits, "." and "-" kept.
std::string id_domain(std::string_view domain) {
  std::string out;
  for (const char c : domain) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
        (c == '.' && !out.empty() && out.back() != '.')) {
      out += c;
    }
  }
  while (!out.empty() && out.back() == '.') out.pop_back();
  return out;
}

// "Name: value\n", folded (RFC 5322 §2.2.3) before a space wherever the line would pass 78
// characters; unfolding (removing the LFs) gives back "Name: value". A word longer than a line
// stays whole on its own line. No line of only white space is made.
std::string header(std::string_view name, std::string_view value) {
  std::string out(name);
  out += ':';
  std::size_t line = out.size();
  std::size_t start = 0;
  for (;;) {
    const std::size_t space = value.find(' ', start);
    const std::string_view word = value.substr(
        start, space == std::string_view::npos ? std::string_view::npos : space - start);
    if (!word.empty() && line > 0 && line + 1 + word.size() > kFoldAt) {
      out += '\n';
      line = 0;
    }
    out += ' ';
    out += word;
    line += 1 + word.size();
    if (space == std::string_view::npos) break;
    start = space + 1;
  }
  out += '\n';
  return out;
}

std::string base64_lines(std::string_view data) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string encoded;
  encoded.reserve((data.size() + 2) / 3 * 4);
  for (std::size_t i = 0; i < data.size(); i += 3) {
    const std::size_t n = std::min<std::size_t>(3, data.size() - i);
    std::uint32_t group = 0;
    for (std::size_t k = 0; k < 3; ++k) {
      group <<= 8;
      if (k < n) group |= static_cast<unsigned char>(data[i + k]);
    }
    encoded += kAlphabet[(group >> 18) & 0x3f];
    encoded += kAlphabet[(group >> 12) & 0x3f];
    encoded += n > 1 ? kAlphabet[(group >> 6) & 0x3f] : '=';
    encoded += n > 2 ? kAlphabet[group & 0x3f] : '=';
  }
  std::string out;
  out.reserve(encoded.size() + encoded.size() / kBase64Line + 1);
  for (std::size_t i = 0; i < encoded.size(); i += kBase64Line) {
    out.append(encoded, i, kBase64Line);
    out += '\n';
  }
  return out;
}

// The report's organization-name, for the text part ("" when the JSON does not say).
std::string organization_of(const Report& report) {
  const auto json = nlohmann::json::parse(report.json, nullptr, false);
  if (!json.is_object()) return "";
  const auto it = json.find("organization-name");
  return it != json.end() && it->is_string() ? it->get<std::string>() : "";
}

std::string explanation(const Report& report, std::string_view policy_domain,
                        std::string_view submitter) {
  const std::string organization = organization_of(report);
  const std::string from = body_text(organization.empty() ? submitter : organization);
  return fmt::format(
      "This is an aggregate SMTP TLS report (TLSRPT, RFC 8460).\n"
      "\n"
      "Organization:  {}\n"
      "Submitter:     {}\n"
      "Policy domain: {}\n"
      "Day:           {} (00:00:00 to 23:59:59 UTC)\n"
      "Report-ID:     {}\n"
      "\n"
      "The report is the attached gzip-compressed JSON file\n"
      "{}\n",
      from, body_text(submitter), body_text(policy_domain), format_day(day_of(report.begin)),
      body_text(report.report_id), body_text(report.filename));
}

// "=_" cannot occur in base64, and the text part is checked: the first candidate it does not
// contain wins, so the boundary is stable for a report and never inside a part (RFC 2046 §5.1.1).
std::string boundary_for(std::string_view report_id, std::string_view text_part) {
  for (unsigned attempt = 0;; ++attempt) {
    std::string boundary =
        "=_tlsrpt_" + hash_hex16(fmt::format("{}#boundary{}", report_id, attempt));
    if (text_part.find(boundary) == std::string_view::npos) return boundary;
  }
}

}  // namespace

std::string rfc5322_date(std::int64_t unix_seconds) {
  using namespace std::chrono;
  static constexpr std::array<const char*, 7> kWeekdays = {"Sun", "Mon", "Tue", "Wed",
                                                           "Thu", "Fri", "Sat"};
  static constexpr std::array<const char*, 12> kMonths = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const sys_seconds instant{seconds{std::clamp<std::int64_t>(unix_seconds, 0, kLastSecond)}};
  const sys_days day = floor<days>(instant);
  const year_month_day date{day};
  const hh_mm_ss time{instant - day};
  return fmt::format("{}, {:02} {} {:04} {:02}:{:02}:{:02} +0000",
                     kWeekdays[weekday{day}.c_encoding()], static_cast<unsigned>(date.day()),
                     kMonths[static_cast<unsigned>(date.month()) - 1],
                     static_cast<int>(date.year()), time.hours().count(), time.minutes().count(),
                     time.seconds().count());
}

std::string build_report_mail(const Report& report, std::string_view gzipped_json,
                              std::string_view policy_domain, std::string_view submitter,
                              const MailEnvelope& envelope) {
  const std::string text_part = explanation(report, policy_domain, submitter);
  const std::string boundary =
      boundary_for(report.report_id, text_part + "\n" + quoted_text(report.filename));
  std::string message_domain = id_domain(envelope.message_id_domain);
  if (message_domain.empty()) message_domain = id_domain(submitter);
  if (message_domain.empty()) message_domain = "localhost";
  const std::string message_id = fmt::format("<{}.{}@{}>", hash_hex16(report.report_id),
                                             hash_hex16(envelope.to), message_domain);

  std::string mail;
  mail += header("From", header_text(envelope.from));
  mail += header("To", header_text(envelope.to));
  mail += header("Date", rfc5322_date(envelope.date));
  mail += header("Subject", header_text(report.subject));
  mail += header("Message-ID", message_id);
  mail += header("MIME-Version", "1.0");
  mail += header("TLS-Report-Domain", header_text(policy_domain));
  mail += header("TLS-Report-Submitter", header_text(submitter));
  mail += header("TLS-Required", "No");
  mail += header("Auto-Submitted", "auto-generated");
  mail +=
      header("Content-Type",
             fmt::format("multipart/report; report-type=\"tlsrpt\"; boundary=\"{}\"", boundary));
  mail += "\n";
  mail += "This is a MIME-formatted message.\n";
  mail += fmt::format("--{}\n", boundary);
  mail += header("Content-Type", "text/plain; charset=us-ascii");
  mail += header("Content-Transfer-Encoding", "7bit");
  mail += "\n";
  mail += text_part;
  mail += fmt::format("--{}\n", boundary);
  mail += header("Content-Type", "application/tlsrpt+gzip");
  mail += header("Content-Transfer-Encoding", "base64");
  mail += header("Content-Disposition",
                 fmt::format("attachment; filename=\"{}\"", quoted_text(report.filename)));
  mail += "\n";
  mail += base64_lines(gzipped_json);
  mail += fmt::format("--{}--\n", boundary);
  return mail;
}

}  // namespace mtasts::tlsrpt
