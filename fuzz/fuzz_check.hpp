// Shared helpers for the fuzz targets: invariant checks that crash loudly, and input splitting.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

// An invariant of the code under test failed: print it and abort so libFuzzer keeps the input.
#define FUZZ_CHECK(cond)                                                                \
  do {                                                                                  \
    if (!(cond)) {                                                                      \
      std::fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                     \
    }                                                                                   \
  } while (false)

namespace mtasts::fuzz {

inline std::string_view as_text(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Splits at NUL bytes: the TXT RRs of one lookup (an RR's strings are already concatenated).
inline std::vector<std::string> split_records(std::string_view text) {
  std::vector<std::string> out;
  while (true) {
    const std::size_t nul = text.find('\0');
    out.emplace_back(text.substr(0, nul));
    if (nul == std::string_view::npos) break;
    text.remove_prefix(nul + 1);
  }
  return out;
}

// Error reasons are one line (style.md §2.2).
inline bool one_line(std::string_view reason) {
  return !reason.empty() && reason.find('\n') == std::string_view::npos &&
         reason.find('\r') == std::string_view::npos;
}

}  // namespace mtasts::fuzz
