// Fuzzes parse_tlsrpt_record and select_tlsrpt_record (RFC 8460 §3).
// Input: one TXT record; for select_tlsrpt_record, the input split at NUL bytes into records.
#include <algorithm>

#include "core/tlsrpt_record.hpp"
#include "fuzz_check.hpp"

using namespace mtasts;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input = fuzz::as_text(data, size);

  const auto record = parse_tlsrpt_record(input);
  if (record) {
    // RPT-03: at least one usable URI, each mailto: or https:, none with CTL or space.
    FUZZ_CHECK(!record->rua.empty());
    for (const std::string& uri : record->rua) {
      FUZZ_CHECK(uri.starts_with("mailto:") || uri.starts_with("https://"));
      FUZZ_CHECK(std::ranges::none_of(uri, [](char c) {
        const auto byte = static_cast<unsigned char>(c);
        return byte <= 0x20 || byte >= 0x7f;
      }));
    }
  } else {
    FUZZ_CHECK(record.error().category == ErrorCategory::record_syntax);
    FUZZ_CHECK(fuzz::one_line(record.error().reason));
  }

  const auto selected = select_tlsrpt_record(fuzz::split_records(input));
  if (!selected) FUZZ_CHECK(fuzz::one_line(selected.error().reason));
  return 0;
}
