// Fuzzes read_netstring (the socketmap request framing, design §2.3) the way the daemon drives
// it: the input is consumed netstring by netstring, and also fed in two parts split at a point
// taken from the first byte, which must give the same outcome as the whole.
#include <string>
#include <vector>

#include "core/netstring.hpp"
#include "core/socketmap.hpp"
#include "fuzz_check.hpp"

using namespace mtasts;

namespace {

constexpr std::size_t kMax = 1024;

struct Outcome {
  std::vector<std::string> payloads;
  bool invalid = false;
  std::size_t left = 0;  // octets waiting for more
};

// Drives the reader over `input` like the daemon's session loop does.
Outcome drain(std::string_view input) {
  Outcome outcome;
  std::string buffer(input);
  for (;;) {
    const NetstringStep step = read_netstring(buffer, kMax);
    if (step.status == NetstringStatus::need_more) break;
    if (step.status == NetstringStatus::invalid) {
      FUZZ_CHECK(fuzz::one_line(step.reason));
      outcome.invalid = true;
      break;
    }
    FUZZ_CHECK(step.consumed > 0 && step.consumed <= buffer.size());
    FUZZ_CHECK(step.payload.size() <= kMax);
    // Round trip: the framing of the payload is exactly what was consumed.
    FUZZ_CHECK(format_netstring(step.payload) == buffer.substr(0, step.consumed));
    // The request parser and the reply formatter never fail on any payload.
    if (auto request = parse_socketmap_request(step.payload)) {
      (void)classify_socketmap_key(request->key);
    } else {
      FUZZ_CHECK(fuzz::one_line(request.error()));
    }
    outcome.payloads.emplace_back(step.payload);
    buffer.erase(0, step.consumed);
  }
  outcome.left = buffer.size();
  // Waiting input is bounded by the limit (length digits, ':', payload, ',').
  if (!outcome.invalid) FUZZ_CHECK(outcome.left <= kMax + 6);
  return outcome;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input = fuzz::as_text(data, size);
  const Outcome whole = drain(input);
  // Any prefix never yields more than the whole, and the results agree where both finish.
  if (!input.empty()) {
    const std::size_t cut = static_cast<unsigned char>(input[0]) % (input.size() + 1);
    const Outcome prefix = drain(input.substr(0, cut));
    FUZZ_CHECK(prefix.payloads.size() <= whole.payloads.size());
    for (std::size_t i = 0; i < prefix.payloads.size(); ++i) {
      FUZZ_CHECK(prefix.payloads[i] == whole.payloads[i]);
    }
    if (prefix.invalid) FUZZ_CHECK(whole.invalid);
  }
  return 0;
}
