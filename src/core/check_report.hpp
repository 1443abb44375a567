// The result of `mtasts check DOMAIN`: a diagnosis of a domain's published MTA-STS, TLSRPT and
// DANE setup as steps, each with findings a postmaster can act on, and its rendering as text
// (symbols and colour for a terminal, plain words otherwise) and as JSON for scripts. Pure.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace mtasts {

// Ordered by severity: a step is as bad as its worst finding, a report as its worst step.
enum class CheckStatus { ok, warning, error };

// "ok", "warning", "error": the JSON names.
[[nodiscard]] std::string_view to_string(CheckStatus status);

struct CheckFinding {
  CheckStatus status = CheckStatus::ok;
  std::string text;  // one line, plain words
  friend bool operator==(const CheckFinding&, const CheckFinding&) = default;
};

struct CheckStep {
  std::string step;   // stable id: txt, policy-fetch, policy, mx, tlsrpt, dane, smtp
  std::string title;  // what was looked at, for a person
  std::string rfc;    // the governing section, "RFC 8461 §3.1"
  std::vector<CheckFinding> findings;

  [[nodiscard]] CheckStatus status() const;
  void ok(std::string text);
  void warn(std::string text);
  void fail(std::string text);
};

struct CheckReport {
  std::string domain;
  std::vector<CheckStep> steps;
  [[nodiscard]] CheckStatus status() const;
};

// Terminal: ✓ ! ✗ in colour. Plain: OK, WARN, FAIL words, no escape sequences.
enum class CheckStyle { terminal, plain };

// One line per step ("<mark> <title> (<rfc>)") followed by its findings, indented, each with its
// own mark; a last line "result: ok|warning|error".
[[nodiscard]] std::string render_check_text(const CheckReport& report, CheckStyle style);

// {"domain", "status", "steps": [{"step", "status", "title", "rfc",
//   "findings": [{"status", "text"}]}]}, pretty-printed with a final newline.
[[nodiscard]] std::string render_check_json(const CheckReport& report);

}  // namespace mtasts
