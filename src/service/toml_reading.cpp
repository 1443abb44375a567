#include "service/toml_reading.hpp"

#include <fmt/format.h>

#include "core/text_quote.hpp"

namespace mtasts::detail {

Error config_error(std::string_view source, const toml::source_region& where, std::string_view key,
                   std::string_view what) {
  return Error{ErrorCategory::config,
               fmt::format("{}:{}: {}: {}", source, where.begin.line, key, what)};
}

std::string key_text(std::string_view key) {
  const bool bare = !key.empty() && key.size() <= 64 &&
                    key.find_first_not_of(
                        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                        "0123456789_-") == std::string_view::npos;
  return bare ? std::string(key) : quote_input(key, 64);
}

std::string description_text(std::string_view description) {
  constexpr std::size_t kMax = 200;
  std::string out;
  for (const char ch : description.substr(0, kMax)) {
    const auto byte = static_cast<unsigned char>(ch);
    if (byte < 0x20 || byte == 0x7f) {
      out += fmt::format("\\x{:02x}", byte);
    } else {
      out.push_back(ch);
    }
  }
  if (description.size() > kMax) out += "...";
  return out;
}

std::optional<Error> read_string(const toml::table& table, std::string_view source,
                                 std::string_view key, std::string& out) {
  const toml::node* node = table.get(key);
  if (node == nullptr) return std::nullopt;
  const auto* value = node->as_string();
  if (value == nullptr) return config_error(source, node->source(), key, "expected a string");
  // Every string ends up in a C API (open, bind, getpwnam), which would cut it at a NUL.
  if (value->get().find('\0') != std::string::npos) {
    return config_error(source, node->source(), key, "contains a NUL character");
  }
  out = value->get();
  return std::nullopt;
}

std::optional<Error> read_choice(const toml::table& table, std::string_view source,
                                 std::string_view key,
                                 std::initializer_list<std::string_view> allowed,
                                 std::string& out) {
  std::string value = out;
  if (auto error = read_string(table, source, key, value)) return error;
  for (std::string_view choice : allowed) {
    if (value == choice) {
      out = value;
      return std::nullopt;
    }
  }
  return config_error(
      source, table.get(key)->source(), key,
      fmt::format("{} is not one of: {}", quote_input(value), fmt::join(allowed, ", ")));
}

std::optional<Error> read_bool(const toml::table& table, std::string_view source,
                               std::string_view key, bool& out) {
  const toml::node* node = table.get(key);
  if (node == nullptr) return std::nullopt;
  const auto* value = node->as_boolean();
  if (value == nullptr) return config_error(source, node->source(), key, "expected true or false");
  out = value->get();
  return std::nullopt;
}

std::optional<Error> check_keys(const toml::table& table, std::string_view source,
                                const std::set<std::string_view>& known, std::string_view where) {
  for (const auto& [key, node] : table) {
    if (!known.contains(key.str())) {
      return config_error(source, node.source(), fmt::format("{}{}", where, key_text(key.str())),
                          "unknown key (see mtastsd.toml(5))");
    }
  }
  return std::nullopt;
}

std::optional<Error> read_string_list(const toml::table& table, std::string_view source,
                                      std::string_view key, std::vector<std::string>& out) {
  const toml::node* node = table.get(key);
  if (node == nullptr) return std::nullopt;
  std::vector<std::string> texts;
  if (const auto* single = node->as_string()) {
    texts.push_back(single->get());
  } else if (const auto* list = node->as_array()) {
    for (const toml::node& item : *list) {
      const auto* text = item.as_string();
      if (text == nullptr) return config_error(source, item.source(), key, "expected strings");
      texts.push_back(text->get());
    }
  } else {
    return config_error(source, node->source(), key, "expected a string or an array");
  }
  out = std::move(texts);
  return std::nullopt;
}

// A Unix socket path: "" (none) or absolute and short enough for sockaddr_un.
std::optional<Error> read_socket_path(const toml::table& table, std::string_view source,
                                      std::string_view key, std::string& out) {
  std::string value = out;
  if (auto error = read_string(table, source, key, value)) return error;
  if (!value.empty()) {
    constexpr std::size_t kMaxPath = 107;  // sizeof(sockaddr_un::sun_path) - 1
    if (!value.starts_with('/')) {
      return config_error(source, table.get(key)->source(), key,
                          "must be an absolute path (or \"\" for none)");
    }
    if (value.size() > kMaxPath) {
      return config_error(source, table.get(key)->source(), key,
                          fmt::format("longer than {} octets", kMaxPath));
    }
  }
  out = value;
  return std::nullopt;
}

// "0660" (a string of octal digits, as in systemd units) or a TOML integer such as 0o660.
std::optional<Error> read_mode(const toml::table& table, std::string_view source,
                               std::string_view key, std::uint32_t& out) {
  const toml::node* node = table.get(key);
  if (node == nullptr) return std::nullopt;
  std::int64_t mode = -1;
  if (const auto* text = node->as_string()) {
    const std::string& digits = text->get();
    if (!digits.empty() && digits.size() <= 4 &&
        digits.find_first_not_of("01234567") == std::string::npos) {
      mode = std::stoll(digits, nullptr, 8);
    }
  } else if (const auto* number = node->as_integer()) {
    mode = number->get();
  }
  if (mode < 0 || mode > 0777) {
    return config_error(source, node->source(), key,
                        "expected permission bits as an octal string such as \"0660\"");
  }
  out = static_cast<std::uint32_t>(mode);
  return std::nullopt;
}

}  // namespace mtasts::detail
