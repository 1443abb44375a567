#include "adapters/store/shared_entry_codec.hpp"

#include <algorithm>
#include <array>
#include <optional>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "adapters/store/lmdb_layout.hpp"
#include "core/policy.hpp"

namespace mtasts::store {
namespace {

using layout::Field;

constexpr std::array<std::pair<Field, std::string_view>, 6> kNames = {{
    {Field::mode, "mode"},
    {Field::mx, "mx"},
    {Field::expire, "expire"},
    {Field::id, "id"},
    {Field::report, "report"},
    {Field::extras, "extras"},
}};

// The policy's fields must be what its own text says: a writer cannot pair an enforce text with
// other mx patterns, or a text with another mode.
std::optional<std::string> policy_problem(const CachedPolicy& cached) {
  if (cached.text.empty()) return "the policy comes without its text";
  auto parsed = parse_policy(cached.text);
  if (!parsed)
    return fmt::format("the policy text is not a valid policy: {}", parsed.error().reason);
  if (*parsed != cached.policy) return "the policy's fields differ from its text";
  if (cached.expires_at != cached.fetched_at + cached.policy.max_age) {
    return "the policy's expiry is not fetched_at + max_age";
  }
  return std::nullopt;
}

}  // namespace

std::expected<std::string, Error> encode_shared(std::string_view domain, const CacheEntry& entry) {
  CacheEntry shared = entry;
  shared.dane.reset();  // each member validates DNSSEC itself
  auto encoded = layout::encode(shared);
  if (!encoded) return std::unexpected(encoded.error());
  nlohmann::json json = {{"format", kSharedFormat}, {"v", kSharedVersion}, {"domain", domain}};
  for (const auto& [field, name] : kNames) {
    if (const auto& value = (*encoded)[field]) json[std::string(name)] = *value;
  }
  // Never throws: text that is not UTF-8 (it came from the network) is replaced, not refused.
  return json.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::expected<CacheEntry, std::string> decode_shared(std::string_view domain,
                                                     std::string_view value) {
  if (value.size() > kMaxSharedValue) {
    return std::unexpected(
        fmt::format("{} octets, over the {} allowed", value.size(), kMaxSharedValue));
  }
  const nlohmann::json json = nlohmann::json::parse(value, nullptr, false);
  if (json.is_discarded() || !json.is_object()) return std::unexpected("not a JSON object");
  const auto text = [&json](std::string_view key) -> std::optional<std::string> {
    const auto found = json.find(key);
    if (found == json.end() || !found->is_string()) return std::nullopt;
    return found->get<std::string>();
  };
  if (text("format") != kSharedFormat) return std::unexpected("not an mtasts-entry value");
  const auto version = json.find("v");
  if (version == json.end() || !version->is_number_integer() ||
      version->get<std::int64_t>() != kSharedVersion) {
    return std::unexpected(fmt::format("format version is not {}", kSharedVersion));
  }
  if (text("domain") != domain) return std::unexpected("the value names another domain");
  for (const auto& [key, item] : json.items()) {
    const bool known = key == "format" || key == "v" || key == "domain" ||
                       std::any_of(kNames.begin(), kNames.end(),
                                   [&key](const auto& named) { return named.second == key; });
    if (!known) return std::unexpected(fmt::format("unknown key \"{}\"", key));
    if (key != "v" && !item.is_string())
      return std::unexpected(fmt::format("\"{}\" is not a string", key));
  }

  std::array<std::optional<std::string>, kNames.size()> values;
  layout::RawRecord raw;
  for (std::size_t i = 0; i < kNames.size(); ++i) {
    values[i] = text(kNames[i].second);
    if (values[i]) raw[kNames[i].first] = *values[i];
  }
  if (!raw[Field::extras]) return std::unexpected("the value has no extras");
  layout::Decoded decoded = layout::decode(raw);
  if (!decoded.problems.empty()) return std::unexpected(decoded.problems.front());
  if (!decoded.entry) return std::unexpected("the value holds no entry");
  if (decoded.entry->dane) return std::unexpected("the value holds a DANE state");
  if (decoded.entry->policy) {
    if (auto problem = policy_problem(*decoded.entry->policy)) return std::unexpected(*problem);
  }
  return std::move(*decoded.entry);
}

}  // namespace mtasts::store
