// Quoting untrusted input for one-line error reasons (style.md §2.2): bounded, escaped, so a
// hostile record can neither flood a log nor forge a second line.
#include "core/text_quote.hpp"

namespace mtasts {

std::string quote_input(std::string_view input, std::size_t max_bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  const bool cut = input.size() > max_bytes;
  const std::string_view shown = cut ? input.substr(0, max_bytes) : input;

  std::string out;
  out.reserve(shown.size() + 8);
  out.push_back('"');
  for (const char ch : shown) {
    const auto byte = static_cast<unsigned char>(ch);
    switch (ch) {
      case '\n':
        out += "\\n";
        continue;
      case '\r':
        out += "\\r";
        continue;
      case '\t':
        out += "\\t";
        continue;
      case '"':
        out += "\\\"";
        continue;
      case '\\':
        out += "\\\\";
        continue;
      default:
        break;
    }
    if (byte < 0x20 || byte >= 0x7f) {
      out += "\\x";
      out.push_back(kHex[byte >> 4]);
      out.push_back(kHex[byte & 0x0f]);
    } else {
      out.push_back(ch);
    }
  }
  out.push_back('"');
  // The ellipsis sits outside the quotes: it is ours, not part of the input.
  if (cut) out += "...";
  return out;
}

}  // namespace mtasts
