// Fuzzes parse_tlsrpt_request (Exim's `tlsrpt …` line on mtastsd's readsocket socket) and the
// completion of what it accepts from a cache entry.
#include "core/tlsrpt_mta_request.hpp"
#include "fuzz_check.hpp"

using namespace mtasts;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto request = parse_tlsrpt_request(fuzz::as_text(data, size));
  if (!request) {
    FUZZ_CHECK(fuzz::one_line(request.error()));
    return 0;
  }
  FUZZ_CHECK(!request->domain.empty());
  CacheEntry entry;
  entry.policy = CachedPolicy{Policy{Mode::enforce, 86400, {"mx.example.net", "*.example.org"}},
                              "id1", 0, 86400, "version: STSv1\nmode: enforce\n"};
  for (const auto& cached : {std::optional<CacheEntry>{}, std::optional<CacheEntry>{entry}}) {
    const tlsrpt::Session session = session_from_mta_report(*request, cached, 100);
    FUZZ_CHECK(session.policies.size() == 1);
    const tlsrpt::PolicyOutcome& outcome = session.policies.front();
    FUZZ_CHECK(outcome.failed == !outcome.failures.empty());
  }
  return 0;
}
