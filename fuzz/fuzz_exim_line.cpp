// Fuzzes the daemon's Exim protocol (design §2.1): read_exim_line framing with and without EOF,
// parse_exim_request, and exim_answer / exim_error_answer on what it accepts.
#include <string>

#include "core/exim_request.hpp"
#include "fuzz_check.hpp"

using namespace mtasts;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  constexpr std::size_t kMax = 1024;
  const std::string_view input = fuzz::as_text(data, size);
  for (const bool eof : {false, true}) {
    const LineStep step = read_exim_line(input, eof, kMax);
    if (step.status == LineStatus::need_more) {
      FUZZ_CHECK(!eof);
      FUZZ_CHECK(input.find('\n') == std::string_view::npos && input.size() <= kMax + 1);
      continue;
    }
    if (step.status == LineStatus::invalid) {
      FUZZ_CHECK(fuzz::one_line(step.reason));
      const std::string answer = exim_error_answer(step.reason);
      FUZZ_CHECK(answer.starts_with(kEximErrorPrefix) && answer.find('\n') == std::string::npos);
      continue;
    }
    FUZZ_CHECK(step.consumed <= input.size() && step.line.size() <= kMax);
    FUZZ_CHECK(step.line.find('\n') == std::string_view::npos);
    auto request = parse_exim_request(step.line);
    if (!request) {
      FUZZ_CHECK(fuzz::one_line(request.error()));
      const std::string answer = exim_error_answer(request.error());
      FUZZ_CHECK(answer.starts_with(kEximErrorPrefix) && answer.size() <= 310);
      FUZZ_CHECK(answer.find('\n') == std::string::npos && answer.find('\r') == std::string::npos);
      continue;
    }
    FUZZ_CHECK(!request->domain.empty());
    FUZZ_CHECK(request->domain.find_first_of(" \t") == std::string::npos);
    // Real answers never look like error answers (design §2.1: Exim configs test the prefix).
    Answer enforce;
    enforce.kind = AnswerKind::policy;
    enforce.mode = Mode::enforce;
    enforce.mx = {"mx1.example.com", "*.example.net"};
    for (const Answer& answer : {Answer{}, enforce}) {
      const std::string reply = exim_answer(*request, answer);
      FUZZ_CHECK(!reply.starts_with(kEximErrorPrefix));
      FUZZ_CHECK(reply.find('\n') == std::string::npos);
    }
  }
  return 0;
}
