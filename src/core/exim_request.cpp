#include "core/exim_request.hpp"

#include <algorithm>
#include <vector>

#include <fmt/format.h>

#include "core/exim_answers.hpp"
#include "core/text_quote.hpp"

namespace mtasts {
namespace {

LineStep invalid(std::string reason) {
  LineStep step;
  step.status = LineStatus::invalid;
  step.reason = std::move(reason);
  return step;
}

LineStep done(std::string_view line, std::size_t consumed, std::size_t max_line) {
  if (line.ends_with('\r')) line.remove_suffix(1);
  if (line.size() > max_line) {
    return invalid(fmt::format("request line longer than {} octets", max_line));
  }
  LineStep step;
  step.status = LineStatus::done;
  step.consumed = consumed;
  step.line = line;
  return step;
}

bool is_blank(char c) {
  return c == ' ' || c == '\t';
}

bool has_control_character(std::string_view text) {
  return std::ranges::any_of(text, [](char c) {
    const auto byte = static_cast<unsigned char>(c);
    return byte < 0x20 || byte == 0x7f;
  });
}

bool equals_ignoring_case(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (x != b[i]) return false;
  }
  return true;
}

}  // namespace

LineStep read_exim_line(std::string_view input, bool at_eof, std::size_t max_line) {
  // Look no further than a line of the maximum length, its CR and its LF could reach.
  const std::size_t window = max_line + 2;
  const std::size_t newline = input.substr(0, window).find('\n');
  if (newline != std::string_view::npos) {
    return done(input.substr(0, newline), newline + 1, max_line);
  }
  // No LF yet. One octet more than the limit may still be the CR of a line end.
  if (input.size() > max_line + 1) {
    return invalid(fmt::format("request line longer than {} octets", max_line));
  }
  if (!at_eof) return {};
  if (input.empty()) return invalid("the client closed the connection without a request");
  return done(input, input.size(), max_line);
}

std::expected<EximRequest, std::string> parse_exim_request(std::string_view line) {
  std::vector<std::string_view> words;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && is_blank(line[i])) ++i;
    const std::size_t start = i;
    while (i < line.size() && !is_blank(line[i])) ++i;
    if (i > start) words.push_back(line.substr(start, i - start));
  }
  // Control characters are refused in the command and the domain; the host of "getmta D H" is
  // only compared (RFC 8461 §4.1), so it is taken whatever it holds.
  const std::size_t checked = words.size() == 3 ? 2 : words.size();
  for (std::size_t w = 0; w < checked; ++w) {
    if (has_control_character(words[w])) {
      return std::unexpected(fmt::format("control character in request {}", quote_input(line)));
    }
  }
  if (words.empty()) {
    return std::unexpected(
        std::string("empty request; expected getmta, getmx or ignorelist and a domain"));
  }
  EximRequest request;
  const std::size_t arguments = words.size() - 1;
  if (equals_ignoring_case(words[0], "getmta")) {
    request.command = EximCommand::getmta;
    if (arguments != 1 && arguments != 2) {
      return std::unexpected(
          fmt::format("getmta takes 1 or 2 arguments (domain [host]), got {} in {}", arguments,
                      quote_input(line)));
    }
  } else if (equals_ignoring_case(words[0], "getmx") ||
             equals_ignoring_case(words[0], "ignorelist")) {
    const bool getmx = equals_ignoring_case(words[0], "getmx");
    request.command = getmx ? EximCommand::getmx : EximCommand::ignorelist;
    if (arguments != 1) {
      return std::unexpected(fmt::format("{} takes 1 argument (domain), got {} in {}",
                                         getmx ? "getmx" : "ignorelist", arguments,
                                         quote_input(line)));
    }
  } else {
    return std::unexpected(fmt::format("unknown command {}; expected getmta, getmx or ignorelist",
                                       quote_input(words[0], 40)));
  }
  request.domain = std::string(words[1]);
  if (arguments == 2) request.host = std::string(words[2]);
  return request;
}

std::string exim_answer(const EximRequest& request, const Answer& answer) {
  switch (request.command) {
    case EximCommand::getmta:
      // RFC 8461 §4.1: any host is matched, never refused (getmta_host_answer).
      if (request.host) return getmta_host_answer(answer, *request.host);
      return getmta_answer(answer);
    case EximCommand::getmx:
      return getmx_answer(answer);
    case EximCommand::ignorelist:
      return ignorelist_answer(answer);
  }
  return getmta_answer(answer);
}

std::string exim_error_answer(std::string_view reason) {
  constexpr std::size_t kMax = 300;
  std::string out = "error: ";
  for (char c : reason) {
    if (out.size() >= kMax) {
      out += "...";
      break;
    }
    const auto byte = static_cast<unsigned char>(c);
    out += (byte < 0x20 || byte == 0x7f) ? ' ' : c;
  }
  return out;
}

}  // namespace mtasts
