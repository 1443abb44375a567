#include "core/exim_answers.hpp"

#include "core/mx_match.hpp"

namespace mtasts {
namespace {

bool is_enforce(const Answer& answer) {
  return answer.kind == AnswerKind::policy && answer.mode == Mode::enforce;
}

// An anchored regex for one mx pattern. Patterns are LDH (checked by the parser), so "." is the
// only character that needs escaping; "*." stands for exactly one non-empty label (STS-33),
// never more.
std::string pattern_regex(const std::string& pattern) {
  std::string regex = "^";
  std::string_view rest = pattern;
  if (rest.starts_with("*.")) {
    regex += "[^.]+\\.";
    rest.remove_prefix(2);
  }
  for (char c : rest) {
    if (c == '.') {
      regex += "\\.";
    } else {
      regex += c;
    }
  }
  regex += '$';
  return regex;
}

}  // namespace

std::string getmta_answer(const Answer& answer) {
  // DANE first (RFC 8461 §2): a failed DANE lookup holds the mail whatever the policy says.
  if (answer.dane == DaneVerdict::failed) return "fail";
  if (answer.dane == DaneVerdict::all_usable) return "dane";
  // Mandatory DANE without usable TLSA on every host (DANE-15): hold the mail. "dane" would
  // send it to hosts_require_dane, which fails a host without TLSA for good (a bounce).
  if (answer.dane_required) return "fail";
  switch (answer.kind) {
    case AnswerKind::policy:
      return std::string(to_string(answer.mode));
    case AnswerKind::no_policy:
      return "none";
    case AnswerKind::fail:
      return "fail";
  }
  return "fail";
}

std::string getmta_host_answer(const Answer& answer, std::string_view host) {
  // Design §2.1, RFC 8461 §4.1: only an enforce policy refuses a host, and any host it does not
  // allow is refused, whatever its form; the host is never an error (it comes from an MX record
  // someone else published).
  if (is_enforce(answer) && !mx_host_allowed(answer.mx, host)) return "0";
  return "";
}

std::string getmx_answer(const Answer& answer) {
  if (answer.kind != AnswerKind::policy) return "";
  std::string list;
  for (const std::string& pattern : answer.mx) {
    if (!list.empty()) list += ':';
    list += pattern;
  }
  return list;
}

std::string ignorelist_answer(const Answer& answer) {
  if (!is_enforce(answer) || answer.mx.empty()) return "";
  // "<;" switches the list separator to ";" so regexes may contain ":" safely; every allowed
  // pattern is negated, and the final "*" ignores everything else.
  std::string list = "<;";
  for (const std::string& pattern : answer.mx) {
    list += " ! ";
    list += pattern_regex(pattern);
    list += " ;";
  }
  list += " *";
  return list;
}

}  // namespace mtasts
