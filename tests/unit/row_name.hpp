// Test names for table-driven (TEST_P) rows: a gtest-safe name made from a row's description.
#pragma once

#include <cctype>
#include <cstddef>
#include <string>
#include <string_view>

namespace mtasts::test_support {

// "r<index>_" then `name` with each run of non-alphanumeric characters as one '_' and no '_'
// at the end, e.g. row_name("STS-02 §3.1 RFC example", 0) == "r0_STS_02_3_1_RFC_example".
inline std::string row_name(const char* name, std::size_t index) {
  std::string out = "r" + std::to_string(index) + "_";
  for (const unsigned char c : std::string_view(name)) {
    if (std::isalnum(c) != 0) {
      out.push_back(static_cast<char>(c));
    } else if (out.back() != '_') {
      out.push_back('_');
    }
  }
  while (out.back() == '_') out.pop_back();
  return out;
}

}  // namespace mtasts::test_support
