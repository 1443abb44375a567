// Typed readers for one key of a toml++ table, each failing with "FILE:LINE: KEY: WHAT" (style
// §2.2). Internal to the config reader (service/config*.cpp); front-ends include config.hpp only.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "core/error.hpp"

namespace mtasts::detail {

// "SOURCE:LINE: KEY: WHAT", the line taken from `where`.
[[nodiscard]] Error config_error(std::string_view source, const toml::source_region& where,
                                 std::string_view key, std::string_view what);

// A key of the file as an error message shows it: bare keys as they are, any other (a quoted
// TOML key may hold newlines, control bytes or megabytes) quoted, escaped and cut, so the reason
// stays one line (style §2.2).
[[nodiscard]] std::string key_text(std::string_view key);

// toml++'s description of a syntax error, which can repeat keys of the input verbatim: control
// bytes escaped and cut to a bound, so the reason stays one line.
[[nodiscard]] std::string description_text(std::string_view description);

// Reads an integer key within [low, high]; absent keys leave `out` untouched.
template <class T>
std::optional<Error> read_integer(const toml::table& table, std::string_view source,
                                  std::string_view key, std::int64_t low, std::int64_t high,
                                  T& out) {
  const toml::node* node = table.get(key);
  if (node == nullptr) return std::nullopt;
  const auto* value = node->as_integer();
  if (value == nullptr) return config_error(source, node->source(), key, "expected an integer");
  std::int64_t number = value->get();
  if (number < low || number > high) {
    return config_error(source, node->source(), key,
                        fmt::format("{} is out of range [{}, {}]", number, low, high));
  }
  out = static_cast<T>(number);
  return std::nullopt;
}

// A string without NUL characters; absent keys leave `out` untouched.
std::optional<Error> read_string(const toml::table& table, std::string_view source,
                                 std::string_view key, std::string& out);

// A string that is one of `allowed`; absent keys leave `out` untouched.
std::optional<Error> read_choice(const toml::table& table, std::string_view source,
                                 std::string_view key,
                                 std::initializer_list<std::string_view> allowed, std::string& out);

// true or false; absent keys leave `out` untouched.
// `key` as a string or an array of strings (out: each string; untouched when `key` is absent).
std::optional<Error> read_string_list(const toml::table& table, std::string_view source,
                                      std::string_view key, std::vector<std::string>& out);

std::optional<Error> read_bool(const toml::table& table, std::string_view source,
                               std::string_view key, bool& out);

// Every key of `table` must be in `known`; `where` names the table in the message.
std::optional<Error> check_keys(const toml::table& table, std::string_view source,
                                const std::set<std::string_view>& known, std::string_view where);

// A Unix socket path: "" (none), or absolute and short enough for sockaddr_un.
std::optional<Error> read_socket_path(const toml::table& table, std::string_view source,
                                      std::string_view key, std::string& out);

// Permission bits: "0660" (octal digits, as in systemd units) or a TOML integer such as 0o660.
std::optional<Error> read_mode(const toml::table& table, std::string_view source,
                               std::string_view key, std::uint32_t& out);

}  // namespace mtasts::detail
