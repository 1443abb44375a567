#include "core/check_report.hpp"

#include <algorithm>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace mtasts {

std::string_view to_string(CheckStatus status) {
  switch (status) {
    case CheckStatus::ok:
      return "ok";
    case CheckStatus::warning:
      return "warning";
    case CheckStatus::error:
      return "error";
  }
  return "error";
}

CheckStatus CheckStep::status() const {
  CheckStatus worst = CheckStatus::ok;
  for (const CheckFinding& finding : findings) worst = std::max(worst, finding.status);
  return worst;
}

void CheckStep::ok(std::string text) {
  findings.push_back({CheckStatus::ok, std::move(text)});
}
void CheckStep::warn(std::string text) {
  findings.push_back({CheckStatus::warning, std::move(text)});
}
void CheckStep::fail(std::string text) {
  findings.push_back({CheckStatus::error, std::move(text)});
}

CheckStatus CheckReport::status() const {
  CheckStatus worst = CheckStatus::ok;
  for (const CheckStep& step : steps) worst = std::max(worst, step.status());
  return worst;
}

namespace {

// Plain words are padded to one width so that the texts line up in a pipe or a log.
std::string mark(CheckStatus status, CheckStyle style) {
  if (style == CheckStyle::plain) {
    switch (status) {
      case CheckStatus::ok:
        return "OK  ";
      case CheckStatus::warning:
        return "WARN";
      case CheckStatus::error:
        return "FAIL";
    }
  }
  switch (status) {
    case CheckStatus::ok:
      return "\x1b[32m✓\x1b[0m";
    case CheckStatus::warning:
      return "\x1b[33m!\x1b[0m";
    case CheckStatus::error:
      return "\x1b[31m✗\x1b[0m";
  }
  return "?";
}

}  // namespace

std::string render_check_text(const CheckReport& report, CheckStyle style) {
  std::string out = fmt::format("{}\n", report.domain);
  for (const CheckStep& step : report.steps) {
    out += fmt::format("{} {}{}\n", mark(step.status(), style), step.title,
                       step.rfc.empty() ? "" : fmt::format(" ({})", step.rfc));
    for (const CheckFinding& finding : step.findings) {
      out += fmt::format("    {} {}\n", mark(finding.status, style), finding.text);
    }
  }
  out += fmt::format("result: {}\n", to_string(report.status()));
  return out;
}

std::string render_check_json(const CheckReport& report) {
  nlohmann::json steps = nlohmann::json::array();
  for (const CheckStep& step : report.steps) {
    nlohmann::json findings = nlohmann::json::array();
    for (const CheckFinding& finding : step.findings) {
      findings.push_back(
          {{"status", std::string(to_string(finding.status))}, {"text", finding.text}});
    }
    steps.push_back({{"step", step.step},
                     {"status", std::string(to_string(step.status()))},
                     {"title", step.title},
                     {"rfc", step.rfc},
                     {"findings", std::move(findings)}});
  }
  nlohmann::json json = {{"domain", report.domain},
                         {"status", std::string(to_string(report.status()))},
                         {"steps", std::move(steps)}};
  // Server-supplied text may hold invalid UTF-8; it is replaced rather than thrown on.
  return json.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

}  // namespace mtasts
