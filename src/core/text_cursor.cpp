// The TXT record productions shared by core/sts_record.cpp and core/tlsrpt_record.cpp.
#include "core/text_cursor.hpp"

#include "core/text_quote.hpp"

namespace mtasts::text {

namespace {

constexpr std::size_t kMaxNameLength = 32;  // ext-name: 1 + *31 characters

std::string expected_at(std::string_view what, const Cursor& cursor) {
  return "expected " + std::string(what) + ", found " + quote_input(cursor.rest());
}

}  // namespace

bool begins_with_version(std::string_view record, std::string_view version) {
  if (!record.starts_with(version)) return false;
  Cursor after(record, version.size());
  return after.at_end() || after.next_is(';') || after.next_is(is_wsp);
}

std::optional<std::string> version_problem(std::string_view record, std::string_view version) {
  if (!is_ascii(record)) {
    return "expected US-ASCII only, found a non-ASCII byte in " + quote_input(record);
  }
  if (!record.starts_with(version)) {
    return expected_at("the record to begin with \"" + std::string(version) + "\"", Cursor(record));
  }
  return std::nullopt;
}

std::optional<std::string> read_field_name(Cursor& cursor, std::string_view& name) {
  name = {};
  cursor.skip_wsp();
  if (cursor.at_end()) return std::nullopt;
  if (!cursor.consume(';')) return expected_at("\";\" between fields", cursor);
  cursor.skip_wsp();
  if (cursor.at_end()) return std::nullopt;

  if (!cursor.next_is(is_alnum)) {
    return expected_at("a field name starting with a letter or digit", cursor);
  }
  const std::string_view read = cursor.take_while(is_name_char);
  if (read.size() > kMaxNameLength) {
    return "expected a field name of at most 32 characters, found " + quote_input(read);
  }
  if (!cursor.consume('='))
    return expected_at("\"=\" after field name " + quote_input(read), cursor);
  name = read;
  return std::nullopt;
}

std::optional<std::string> read_ext_value(Cursor& cursor, std::string_view name,
                                          std::string_view& value) {
  value = cursor.take_while(is_ext_value_char);
  if (value.empty()) return expected_at("a value after \"" + std::string(name) + "=\"", cursor);
  return std::nullopt;
}

}  // namespace mtasts::text
