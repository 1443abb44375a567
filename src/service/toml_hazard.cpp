#include "service/toml_hazard.hpp"

#include <algorithm>
#include <vector>

namespace mtasts::detail {

std::optional<TomlHazard> find_toml_hazard(std::string_view text) {
  // Outside strings and comments: what comes next. `token` is a bare value (number, date, bool,
  // or junk) that toml++ reads up to a value terminator, quotes included.
  enum class Mode { key, value, token, after };
  enum class Lex { outside, comment, basic, multi_basic, literal, multi_literal };
  enum class Nest { array, inline_table, header };
  constexpr std::string_view kOutside = "non-ASCII character outside a quoted string or comment";
  constexpr std::string_view kEscape =
      "non-ASCII character right after a backslash or a line-ending backslash in a string; "
      "write it as \\uXXXX";
  const auto non_ascii = [&](std::size_t at) {
    return at < text.size() && static_cast<unsigned char>(text[at]) >= 0x80;
  };
  // Consecutive `quote` characters from `at`.
  const auto run = [&](std::size_t at, char quote) {
    std::size_t end = at;
    while (end < text.size() && text[end] == quote) ++end;
    return end - at;
  };
  Mode mode = Mode::key;
  Mode resume = Mode::key;  // the mode after the current string or comment
  Lex lex = Lex::outside;
  std::vector<Nest> nests;
  const auto in = [&](Nest nest) { return !nests.empty() && nests.back() == nest; };
  std::size_t i = text.starts_with("\xEF\xBB\xBF") ? 3 : 0;  // toml++ skips a UTF-8 BOM
  while (i < text.size()) {
    const char ch = text[i];
    switch (lex) {
      case Lex::outside: {
        if (non_ascii(i)) return TomlHazard{i, kOutside};
        const bool blank = ch == ' ' || ch == '\t' || ch == '\r' || ch == '\v' || ch == '\f';
        if (mode == Mode::token) {
          if (blank || ch == '\n' || ch == ']' || ch == '}' || ch == ',' || ch == '#') {
            mode = Mode::after;  // a value terminator: look at it again below
            continue;
          }
          break;
        }
        if (blank) break;
        if (ch == '#') {
          resume = mode;
          lex = Lex::comment;
          break;
        }
        if (ch == '\n') {
          if (mode == Mode::key || (mode == Mode::value && !in(Nest::array)) ||
              (mode == Mode::after && !in(Nest::array))) {
            mode = Mode::key;
          }
          break;
        }
        if (mode == Mode::key) {
          if (ch == '"' || ch == '\'') {
            resume = Mode::key;
          } else {
            if (ch == '=') mode = Mode::value;
            if (ch == '[') nests.push_back(Nest::header);
            if ((ch == ']' && in(Nest::header)) || (ch == '}' && in(Nest::inline_table))) {
              nests.pop_back();
              mode = Mode::after;
            }
            break;
          }
        } else if (mode == Mode::value) {
          if (ch == '"' || ch == '\'') {
            resume = Mode::after;
          } else {
            if (ch == '[') {
              nests.push_back(Nest::array);
            } else if (ch == '{') {
              nests.push_back(Nest::inline_table);
              mode = Mode::key;
            } else if (ch == ']' || ch == '}') {
              if (in(ch == ']' ? Nest::array : Nest::inline_table)) nests.pop_back();
              mode = Mode::after;
            } else if (ch != ',') {
              mode = Mode::token;
            }
            break;
          }
        } else {  // Mode::after
          if (ch == ',') {
            if (in(Nest::array)) mode = Mode::value;
            if (in(Nest::inline_table)) mode = Mode::key;
          } else if (ch == ']' || ch == '}') {
            if ((ch == ']' && (in(Nest::array) || in(Nest::header))) ||
                (ch == '}' && in(Nest::inline_table))) {
              nests.pop_back();
            }
          } else {
            mode = Mode::token;  // junk after a value, quotes included: toml++ refuses it
          }
          break;
        }
        // A quote where a key or a value begins opens a string.
        const std::size_t quotes = run(i, ch);
        const bool multi = quotes >= 3;
        if (ch == '"') lex = multi ? Lex::multi_basic : Lex::basic;
        if (ch == '\'') lex = multi ? Lex::multi_literal : Lex::literal;
        i += multi ? 3 : 1;
        continue;
      }
      case Lex::comment:
        if (ch == '\n') {
          lex = Lex::outside;
          mode = resume;
          continue;  // the line break, outside
        }
        break;
      case Lex::basic:
      case Lex::literal:
        if (ch == '\\' && lex == Lex::basic) {
          if (non_ascii(i + 1)) return TomlHazard{i + 1, kEscape};
          if (i + 1 < text.size() && text[i + 1] != '\n') {
            i += 2;
            continue;
          }
          break;
        }
        if (ch == '\n') {  // toml++ stops there
          lex = Lex::outside;
          mode = resume;
          continue;
        }
        if (ch == (lex == Lex::basic ? '"' : '\'')) {
          lex = Lex::outside;
          mode = resume;
        }
        break;
      case Lex::multi_basic:
      case Lex::multi_literal: {
        if (ch == '\\' && lex == Lex::multi_basic) {
          // An escape, or a line-ending backslash: toml++ then skips blanks and line breaks and
          // asks about the first other character.
          std::size_t next = i + 1;
          while (next < text.size() && (text[next] == ' ' || text[next] == '\t' ||
                                        text[next] == '\r' || text[next] == '\n')) {
            ++next;
          }
          if (non_ascii(next)) return TomlHazard{next, kEscape};
          i = next == i + 1 ? i + 2 : next;
          continue;
        }
        const char quote = lex == Lex::multi_basic ? '"' : '\'';
        if (ch == quote) {
          // Three quotes close the string; up to two more before them belong to it.
          const std::size_t quotes = run(i, quote);
          if (quotes >= 3) {
            lex = Lex::outside;
            mode = resume;
          }
          i += std::min<std::size_t>(quotes, 5);
          continue;
        }
        break;
      }
    }
    ++i;
  }
  return std::nullopt;
}

}  // namespace mtasts::detail
