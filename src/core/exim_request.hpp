// The daemon's Exim protocol for ${readsocket} (design §2.1; docs/protocol-readsocket.md): one
// request line in, one answer without a trailing newline out, then the connection is closed.
// Pure parts only: framing of the line, parsing of the request, and the answer strings.
#pragma once

#include <cstddef>
#include <expected>
#include <optional>
#include <string>
#include <string_view>

#include "core/decide.hpp"

namespace mtasts {

enum class LineStatus {
  done,       // a request line is at the start of the input
  need_more,  // no line end yet and the line may still fit: wait for more octets or EOF
  invalid,    // the line is longer than the limit, or the client closed without sending one
};

struct LineStep {
  LineStatus status = LineStatus::need_more;
  std::size_t consumed = 0;  // done: octets used, including the line end
  std::string_view line;     // done: without LF and without a CR before it
  std::string reason;        // invalid: one line
};

// Reads the first request line of `input` (the octets received so far). A line ends at LF (a CR
// before it is dropped); when the client has closed its side (`at_eof`), whatever was sent
// without a line end is the line (Exim's readsocket sends no newline unless told to). The line
// may hold at most `max_line` octets, not counting its end.
[[nodiscard]] LineStep read_exim_line(std::string_view input, bool at_eof, std::size_t max_line);

enum class EximCommand { getmta, getmx, ignorelist };

struct EximRequest {
  EximCommand command = EximCommand::getmta;
  std::string domain;               // as sent; not yet normalized
  std::optional<std::string> host;  // getmta D H only; as sent, never checked
  friend bool operator==(const EximRequest&, const EximRequest&) = default;
};

// Parses "getmta D", "getmta D H", "getmx D" or "ignorelist D": words separated by spaces or
// tabs, leading and trailing blanks ignored, the command in any case. Control characters (other
// than tab) are refused in the command and the domain; the host H is taken as sent, whatever it
// holds ("-mx.example.com", "mx_1.example.com", "*.example.net"): it is only ever matched
// (RFC 8461 §4.1). The error is a one-line reason quoting the offending input.
[[nodiscard]] std::expected<EximRequest, std::string> parse_exim_request(std::string_view line);

// The answer for a request, given the engine's answer for its (normalized) domain: the strings
// of core/exim_answers.hpp. For getmta D H the host is matched by getmta_host_answer: normalized
// when it is a hostname, otherwise lower-cased with one root dot stripped and matched literally,
// never refused (an enforce policy answers "0" unless a pattern allows it).
[[nodiscard]] std::string exim_answer(const EximRequest& request, const Answer& answer);

// Every answer to a request that cannot be served starts with this; no real answer does
// (enforce|testing|none|fail|dane, "0", "", mx lists and "<;" host lists). Exim configs test
// `${if match{$value}{\N^error:\N}...}`.
inline constexpr std::string_view kEximErrorPrefix = "error:";

// "error: <reason>", one line, at most ~300 octets, control characters replaced.
[[nodiscard]] std::string exim_error_answer(std::string_view reason);

}  // namespace mtasts
