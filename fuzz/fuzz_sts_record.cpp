// Fuzzes parse_sts_record and select_sts_record (RFC 8461 §3.1).
// Input: one TXT record; for select_sts_record, the input split at NUL bytes into records.
#include <algorithm>

#include "core/sts_record.hpp"
#include "fuzz_check.hpp"

using namespace mtasts;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input = fuzz::as_text(data, size);

  const auto record = parse_sts_record(input);
  if (record) {
    // STS-03: the id is 1-32 letters or digits, and a canonical record carrying it parses back.
    FUZZ_CHECK(!record->id.empty() && record->id.size() <= 32);
    FUZZ_CHECK(std::ranges::all_of(record->id, [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    }));
    FUZZ_CHECK(input.starts_with("v=STSv1"));
    const auto again = parse_sts_record("v=STSv1; id=" + record->id);
    FUZZ_CHECK(again && *again == *record);
  } else {
    FUZZ_CHECK(record.error().category == ErrorCategory::record_syntax);
    FUZZ_CHECK(fuzz::one_line(record.error().reason));
  }

  const auto selected = select_sts_record(fuzz::split_records(input));
  if (!selected) FUZZ_CHECK(fuzz::one_line(selected.error().reason));
  return 0;
}
