#include "adapters/store/lmdb_layout.hpp"

#include <algorithm>
#include <charconv>
#include <exception>
#include <system_error>
#include <type_traits>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/domain.hpp"
#include "core/policy.hpp"
#include "core/sts_record.hpp"

namespace mtasts::store::layout {

namespace {

using nlohmann::json;

constexpr std::string_view kFieldNames[] = {"mode", "mx", "expire", "id", "report"};

std::string_view field_name(Field field) {
  return field == Field::extras ? std::string_view("extras")
                                : kFieldNames[static_cast<std::size_t>(field)];
}

// A value cut to 60 octets for a log line, control and non-ASCII octets escaped.
std::string quote(std::string_view value) {
  constexpr std::size_t kShown = 60;
  std::string out = "\"";
  for (const char c : value.substr(0, kShown)) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte >= 0x7f || c == '"' || c == '\\') {
      out += fmt::format("\\x{:02x}", byte);
    } else {
      out += c;
    }
  }
  out += '"';
  if (value.size() > kShown) out += fmt::format("... ({} octets)", value.size());
  return out;
}

bool is_report(std::string_view report) {
  if (report.empty() || report.size() > kMaxReport) return false;
  for (const char c : report) {
    if (c < 0x21 || c > 0x7e) return false;  // visible ASCII: URIs, %-escapes and commas
  }
  return true;
}

bool in_range(std::int64_t value, std::int64_t max) {
  return value >= 0 && value <= max;
}

// Plain decimal digits (no sign, no space), within [0, max].
std::optional<std::int64_t> parse_decimal(std::string_view text, std::int64_t max) {
  if (text.empty() || text.size() > 19) return std::nullopt;
  for (const char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
  }
  std::int64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size() || !in_range(value, max)) {
    return std::nullopt;
  }
  return value;
}

// The four policy seed keys. Errors are the problem sentence.
std::expected<CachedPolicy, std::string> decode_seed(const RawRecord& raw) {
  const auto& mode_value = raw[Field::mode];
  const auto& mx_value = raw[Field::mx];
  const auto& expire_value = raw[Field::expire];
  const auto& id_value = raw[Field::id];
  if (!mode_value) return std::unexpected("the :mode key is missing");
  // The policy file's mode words, case-sensitive: "ENFORCE" is garbage.
  const auto mode = mode_from_string(*mode_value);
  if (!mode)
    return std::unexpected(fmt::format(":mode {} is not enforce|testing|none", quote(*mode_value)));
  if (!expire_value) return std::unexpected("the :expire key is missing");
  const auto expire = parse_decimal(*expire_value, kMaxTime);
  if (!expire) {
    return std::unexpected(
        fmt::format(":expire {} is not a decimal Unix time", quote(*expire_value)));
  }
  if (!id_value) return std::unexpected("the :id key is missing");
  if (!is_sts_id(*id_value)) {
    return std::unexpected(fmt::format(":id {} is not 1-32 letters and digits", quote(*id_value)));
  }
  CachedPolicy cached;
  cached.policy.mode = *mode;
  cached.id = std::string(*id_value);
  cached.expires_at = *expire;
  if (mx_value && mx_value->size() > kMaxMxValue) {
    return std::unexpected(fmt::format(":mx is {} octets long", mx_value->size()));
  }
  if (!mx_value || mx_value->empty()) {
    // STS-14: only mode none may come without mx patterns.
    if (*mode != Mode::none) {
      return std::unexpected(
          fmt::format(":mx is {} for mode {}", mx_value ? "empty" : "missing", to_string(*mode)));
    }
    return cached;
  }
  std::size_t start = 0;
  for (;;) {
    const auto colon = mx_value->find(':', start);
    const auto part = mx_value->substr(
        start, colon == std::string_view::npos ? std::string_view::npos : colon - start);
    auto pattern = check_mx_pattern(part);
    if (!pattern) {
      return std::unexpected(
          fmt::format(":mx pattern {} is not [\"*.\"] followed by an LDH name", quote(part)));
    }
    cached.policy.mx.push_back(std::move(*pattern));
    if (colon == std::string_view::npos) break;
    start = colon + 1;
  }
  return cached;
}

// The DNSSEC status of the last _mta-sts answer as dns::to_string writes it ("" when unknown).
bool is_dnssec_status(std::string_view status) {
  return status.empty() || status == "secure" || status == "insecure" || status == "bogus" ||
         status == "indeterminate";
}

struct Extras {
  std::int64_t checked_at = 0;
  std::int64_t next_check = 0;
  std::int64_t txt_expires_at = 0;
  bool has_txt_expires_at = false;  // written by a version that tracks the TXT TTL
  bool unavailable = false;
  std::string failed_id;
  int failures = 0;
  std::int64_t retry_fetch_at = 0;
  std::string last_error;
  std::string txt_dnssec;
  bool has_policy = false;  // the record was written with a policy
  std::int64_t fetched_at = 0;
  std::int64_t max_age = 0;
  std::string text;
  bool has_dane = false;  // the record holds a DANE state ("dane" key)
  DaneVerdict dane = DaneVerdict::not_applicable;
  std::string dane_reason;
  std::vector<DaneHost> dane_hosts;
  std::int64_t dane_checked_at = 0;
  std::int64_t dane_expires_at = 0;
  bool dane_required = false;
};

// Reads the extras object with nlohmann's SAX interface: no DOM is built (this runs on every
// load, i.e. on the Exim hot path), and every value is checked as it arrives. The object must be
// flat; a known key must have its type and range and appear once; unknown scalar keys are
// ignored. Returning false stops the parse; `problem` then says why.
class ExtrasReader {
 public:
  using number_integer_t = json::number_integer_t;
  using number_unsigned_t = json::number_unsigned_t;
  using number_float_t = json::number_float_t;
  using string_t = json::string_t;
  using binary_t = json::binary_t;

  Extras extras;
  std::string problem;

  bool null() { return scalar("null"); }
  bool boolean(bool value) {
    if (key_ == Key::unavailable) {
      extras.unavailable = value;
      return true;
    }
    if (key_ == Key::dane_required) {
      extras.dane_required = value;
      return true;
    }
    return scalar("a boolean");
  }
  bool number_integer(number_integer_t value) {
    if (value < 0) return key_ == Key::unknown || fail("is negative");
    return number_unsigned(static_cast<number_unsigned_t>(value));
  }
  bool number_unsigned(number_unsigned_t value) {
    auto store = [&](std::int64_t& out, std::int64_t max) {
      if (value > static_cast<number_unsigned_t>(max)) {
        return fail(fmt::format("is not in [0, {}]", max));
      }
      out = static_cast<std::int64_t>(value);
      return true;
    };
    switch (key_) {
      case Key::v:
        version_ = value;
        return true;
      case Key::checked_at:
        return store(extras.checked_at, kMaxTime);
      case Key::next_check:
        return store(extras.next_check, kMaxTime);
      case Key::txt_expires_at:
        extras.has_txt_expires_at = true;
        return store(extras.txt_expires_at, kMaxTime);
      case Key::retry_fetch_at:
        return store(extras.retry_fetch_at, kMaxTime);
      case Key::fetched_at:
        return store(extras.fetched_at, kMaxTime);
      case Key::max_age:
        return store(extras.max_age, kMaxAgeCap);
      case Key::dane_checked_at:
        return store(extras.dane_checked_at, kMaxTime);
      case Key::dane_expires_at:
        return store(extras.dane_expires_at, kMaxTime);
      case Key::failures: {
        std::int64_t failures = 0;
        if (!store(failures, kMaxFailures)) return false;
        extras.failures = static_cast<int>(failures);
        return true;
      }
      case Key::unknown:
        return true;
      default:
        return fail("has the wrong type (a number)");
    }
  }
  bool number_float(number_float_t, const string_t&) { return scalar("a fraction"); }
  bool string(string_t& value) {
    // Strings that went through JSON's invalid-UTF-8 replacement may have grown up to 3x.
    auto store = [&](std::string& out, std::size_t max) {
      if (value.size() > max) return fail("is too long");
      out = std::move(value);
      return true;
    };
    switch (key_) {
      case Key::failed_id:
        if (!value.empty() && !is_sts_id(value)) return fail("is not 1-32 letters and digits");
        return store(extras.failed_id, 32);
      case Key::last_error:
        return store(extras.last_error, 3 * kMaxLastError);
      case Key::txt_dnssec:
        if (!is_dnssec_status(value)) return fail("is not a DNSSEC status");
        return store(extras.txt_dnssec, 16);
      case Key::text:
        // encode() refuses a longer text, so a longer one could never be stored back. (The
        // policy parser only lets valid UTF-8 through: the JSON dump does not grow it.)
        return store(extras.text, kMaxPolicyText);
      case Key::dane: {
        const auto verdict = dane_verdict_from(value);
        if (!verdict) return fail("is not a DANE verdict");
        extras.dane = *verdict;
        return true;
      }
      case Key::dane_reason:
        return store(extras.dane_reason, 3 * kMaxLastError);
      case Key::dane_hosts: {
        auto hosts = value.size() <= kMaxDaneHostsText ? parse_dane_hosts(value) : std::nullopt;
        // Exactly what encode() writes: no control octets or over-long reasons in a host line.
        if (!hosts || format_dane_hosts(*hosts) != value ||
            !std::all_of(hosts->begin(), hosts->end(),
                         [](const DaneHost& host) { return is_storable_host_name(host.name); })) {
          return fail("is not a list of MX hosts");
        }
        extras.dane_hosts = std::move(*hosts);
        return true;
      }
      case Key::unknown:
        return true;
      default:
        return fail("is a string");
    }
  }
  bool binary(binary_t&) { return fail("is binary"); }
  bool start_object(std::size_t) {
    if (depth_++ == 0) return true;
    return fail("is an object (records are flat)");
  }
  bool end_object() {
    --depth_;
    return true;
  }
  bool start_array(std::size_t) {
    if (depth_ == 0) return fail("the record is an array, not an object");
    return fail("is an array (records are flat)");
  }
  bool end_array() { return true; }
  bool key(string_t& name) {
    name_ = std::move(name);
    key_ = Key::unknown;
    for (std::size_t i = 0; i < std::size(kKeyNames); ++i) {
      if (name_ == kKeyNames[i]) key_ = static_cast<Key>(i);
    }
    if (key_ == Key::unknown) return true;
    const unsigned bit = 1U << static_cast<unsigned>(key_);
    if ((seen_ & bit) != 0) return fail("appears twice");
    seen_ |= bit;
    if (key_ == Key::fetched_at || key_ == Key::max_age || key_ == Key::text) {
      extras.has_policy = true;
    }
    if (key_ == Key::dane) extras.has_dane = true;
    return true;
  }
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception&) {
    problem = fmt::format("is not JSON (error at octet {})", position);
    return false;
  }

  [[nodiscard]] bool version_ok() const {
    return (seen_ & (1U << static_cast<unsigned>(Key::v))) != 0 && version_ == kExtrasVersion;
  }

 private:
  enum class Key : unsigned {
    v,
    checked_at,
    next_check,
    unavailable,
    failed_id,
    failures,
    retry_fetch_at,
    last_error,
    fetched_at,
    max_age,
    text,
    txt_dnssec,
    dane,
    dane_reason,
    dane_hosts,
    dane_checked_at,
    dane_expires_at,
    dane_required,
    txt_expires_at,
    unknown
  };
  static constexpr std::string_view kKeyNames[] = {"v",
                                                   "checked_at",
                                                   "next_check",
                                                   "unavailable",
                                                   "failed_id",
                                                   "failures",
                                                   "retry_fetch_at",
                                                   "last_error",
                                                   "fetched_at",
                                                   "max_age",
                                                   "text",
                                                   "txt_dnssec",
                                                   "dane",
                                                   "dane_reason",
                                                   "dane_hosts",
                                                   "dane_checked_at",
                                                   "dane_expires_at",
                                                   "dane_required",
                                                   "txt_expires_at"};

  bool scalar(std::string_view what) {
    if (key_ == Key::unknown) return true;
    return fail(fmt::format("is {}", what));
  }
  bool fail(std::string_view what) {
    if (depth_ == 0 || name_.empty()) {
      problem = std::string(what);
    } else {
      problem = fmt::format("{} {}", quote(name_.substr(0, 40)), what);
    }
    return false;
  }

  int depth_ = 0;
  Key key_ = Key::unknown;
  std::string name_;
  unsigned seen_ = 0;
  number_unsigned_t version_ = 0;
};

std::expected<Extras, std::string> decode_extras(std::string_view text) {
  if (text.size() > kMaxExtras) return std::unexpected(fmt::format("{} octets long", text.size()));
  if (text.empty() || text.front() != '{') {
    return std::unexpected(fmt::format("{} is not a JSON object", quote(text)));
  }
  ExtrasReader reader;
  bool parsed = false;
  try {
    parsed = json::sax_parse(text, &reader);
  } catch (const std::exception& e) {  // bad_alloc; the SAX path reports errors by value
    return std::unexpected(fmt::format("not readable: {}", e.what()));
  }
  if (!parsed) {
    return std::unexpected(reader.problem.empty() ? std::string("is not a JSON object")
                                                  : std::move(reader.problem));
  }
  if (!reader.version_ok()) {
    return std::unexpected(fmt::format("schema version \"v\" is not {}", kExtrasVersion));
  }
  return std::move(reader.extras);
}

Error refuse(std::string reason) {
  return Error{ErrorCategory::store, fmt::format("refusing to store the entry: {}", reason)};
}

}  // namespace

bool is_storable_host_name(std::string_view name) {
  // An MX target as DNS gave it (lower-cased, no root dot): LDH labels, at least two. Looser
  // than a normalized domain on purpose: an MX naming "192.0.2.1" or a malformed A-label is the
  // receiver's problem, and refusing to store it would leave the domain uncached, looked up
  // again on every delivery.
  if (name.empty() || name.size() > 253) return false;
  int labels = 0;
  for (std::size_t start = 0;;) {
    const auto dot = name.find('.', start);
    const auto label = name.substr(start, dot == std::string_view::npos ? name.npos : dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    for (const char c : label) {
      if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
    }
    ++labels;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return labels >= 2;
}

bool is_storable_domain(std::string_view domain) {
  // What normalize_domain returns: an LDH hostname in A-label form, already lower-case.
  const auto checked = check_ldh_hostname(domain);
  return checked && *checked == domain;
}

std::string key(std::string_view domain, Field field) {
  // Built by hand rather than with fmt: this runs six times on every cache read.
  std::string out;
  if (field == Field::extras) {
    out.reserve(kExtrasPrefix.size() + domain.size());
    out.append(kExtrasPrefix).append(domain);
    return out;
  }
  const std::string_view name = field_name(field);
  out.reserve(domain.size() + 1 + name.size());
  out.append(domain).append(1, ':').append(name);
  return out;
}

std::optional<KeyRef> parse_key(std::string_view key) {
  if (key.starts_with(kExtrasPrefix)) {
    const auto domain = key.substr(kExtrasPrefix.size());
    if (!is_storable_domain(domain)) return std::nullopt;  // the schema key, foreign keys
    return KeyRef{domain, Field::extras};
  }
  const auto colon = key.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  const auto domain = key.substr(0, colon);
  const auto name = key.substr(colon + 1);
  if (!is_storable_domain(domain)) return std::nullopt;
  for (std::size_t i = 0; i < std::size(kFieldNames); ++i) {
    if (name == kFieldNames[i]) return KeyRef{domain, static_cast<Field>(i)};
  }
  return std::nullopt;
}

bool RawRecord::empty() const {
  for (const auto& value : values) {
    if (value) return false;
  }
  return true;
}

Decoded decode(const RawRecord& raw) {
  Decoded out;
  if (raw.empty()) return out;
  CacheEntry entry;
  bool recheck = false;  // something was off: have the service consult DNS at once

  std::optional<Extras> extras;
  if (const auto& text = raw[Field::extras]) {
    if (auto decoded = decode_extras(*text)) {
      extras = std::move(*decoded);
    } else {
      out.problems.push_back(fmt::format("extras record ignored: {}", decoded.error()));
      recheck = true;
    }
  }

  const bool has_seed = raw[Field::mode] || raw[Field::mx] || raw[Field::expire] || raw[Field::id];
  if (has_seed) {
    if (auto seed = decode_seed(raw)) {
      entry.policy = std::move(*seed);
    } else {
      out.problems.push_back(fmt::format("policy ignored: {}", seed.error()));
      recheck = true;
    }
  } else if (extras && extras->has_policy) {
    out.problems.push_back("policy ignored: the extras record has one but the seed keys are gone");
    recheck = true;
  }

  if (const auto& report = raw[Field::report]) {
    if (is_report(*report)) {
      entry.report = std::string(*report);
    } else {
      out.problems.push_back(fmt::format(":report {} ignored: not a list of URIs", quote(*report)));
    }
  }

  if (extras) {
    if (entry.policy && extras->has_policy) {
      entry.policy->fetched_at = extras->fetched_at;
      entry.policy->policy.max_age = extras->max_age;
      entry.policy->text = std::move(extras->text);
    }
    entry.checked_at = extras->checked_at;
    entry.next_check = extras->next_check;
    entry.txt_expires_at = extras->txt_expires_at;
    // A policy cached by a version that re-checked the id only daily: look at the TXT record
    // now rather than up to a day later (RFC 8461 §8.1); same id, no fetch.
    if (entry.policy && !extras->has_txt_expires_at) recheck = true;
    entry.unavailable = extras->unavailable;
    entry.failed_id = std::move(extras->failed_id);
    entry.failures = extras->failures;
    entry.retry_fetch_at = extras->retry_fetch_at;
    entry.last_error = std::move(extras->last_error);
    entry.txt_dnssec = std::move(extras->txt_dnssec);
    if (extras->has_dane) {
      DaneState dane;
      dane.verdict = extras->dane;
      dane.reason = std::move(extras->dane_reason);
      dane.hosts = std::move(extras->dane_hosts);
      dane.checked_at = extras->dane_checked_at;
      dane.expires_at = extras->dane_expires_at;
      dane.required = extras->dane_required;
      entry.dane = std::move(dane);
    }
  }
  // Without extras (a file written by the Perl tool) every other field stays 0/empty:
  // fetched_at unknown, next_check 0 so the service re-checks DNS before trusting it.
  if (recheck) entry.next_check = 0;
  out.entry = std::move(entry);
  return out;
}

std::expected<Encoded, Error> encode(const CacheEntry& entry) {
  Encoded out;
  auto set = [&out](Field field, std::string value) {
    out.values[static_cast<std::size_t>(field)] = std::move(value);
  };
  for (const auto time :
       {entry.checked_at, entry.next_check, entry.txt_expires_at, entry.retry_fetch_at}) {
    if (!in_range(time, kMaxTime))
      return std::unexpected(refuse(fmt::format("time {} is out of range", time)));
  }
  if (entry.failures < 0 || entry.failures > kMaxFailures) {
    return std::unexpected(refuse(fmt::format("failures {} is out of range", entry.failures)));
  }
  if (!entry.failed_id.empty() && !is_sts_id(entry.failed_id)) {
    return std::unexpected(
        refuse(fmt::format("failed_id {} is not 1-32 letters and digits", quote(entry.failed_id))));
  }
  if (!entry.report.empty()) {
    if (!is_report(entry.report)) {
      return std::unexpected(
          refuse(fmt::format("report {} is not a list of URIs", quote(entry.report))));
    }
    set(Field::report, entry.report);
  }

  try {
    json extras = json::object();
    extras["v"] = kExtrasVersion;
    extras["checked_at"] = entry.checked_at;
    extras["next_check"] = entry.next_check;
    extras["txt_expires_at"] = entry.txt_expires_at;
    extras["unavailable"] = entry.unavailable;
    extras["failed_id"] = entry.failed_id;
    extras["failures"] = entry.failures;
    extras["retry_fetch_at"] = entry.retry_fetch_at;
    extras["last_error"] = std::string_view(entry.last_error).substr(0, kMaxLastError);
    if (!is_dnssec_status(entry.txt_dnssec)) {
      return std::unexpected(
          refuse(fmt::format("txt_dnssec {} is not a DNSSEC status", quote(entry.txt_dnssec))));
    }
    extras["txt_dnssec"] = entry.txt_dnssec;
    if (entry.dane) {
      const DaneState& dane = *entry.dane;
      if (!in_range(dane.checked_at, kMaxTime) || !in_range(dane.expires_at, kMaxTime)) {
        return std::unexpected(refuse("DANE times out of range"));
      }
      std::string hosts = format_dane_hosts(dane.hosts);
      const bool hosts_ok =
          hosts.size() <= kMaxDaneHostsText && dane.hosts.size() <= kMaxDaneHosts &&
          std::all_of(dane.hosts.begin(), dane.hosts.end(),
                      [](const DaneHost& host) { return is_storable_host_name(host.name); });
      if (!hosts_ok) return std::unexpected(refuse("DANE host list is not storable"));
      extras["dane"] = to_string(dane.verdict);
      extras["dane_reason"] = std::string_view(dane.reason).substr(0, kMaxLastError);
      extras["dane_hosts"] = std::move(hosts);
      extras["dane_checked_at"] = dane.checked_at;
      extras["dane_expires_at"] = dane.expires_at;
      extras["dane_required"] = dane.required;
    }

    if (entry.policy) {
      const CachedPolicy& cached = *entry.policy;
      const Policy& policy = cached.policy;
      if (!is_sts_id(cached.id)) {
        return std::unexpected(
            refuse(fmt::format("policy id {} is not 1-32 letters and digits", quote(cached.id))));
      }
      if (!in_range(cached.expires_at, kMaxTime) || !in_range(cached.fetched_at, kMaxTime)) {
        return std::unexpected(refuse("policy times out of range"));
      }
      if (!in_range(policy.max_age, kMaxAgeCap)) {
        return std::unexpected(refuse(fmt::format("max_age {} is out of range", policy.max_age)));
      }
      if (cached.text.size() > kMaxPolicyText) {
        return std::unexpected(
            refuse(fmt::format("policy text is {} octets long", cached.text.size())));
      }
      if (policy.mode != Mode::none && policy.mx.empty()) {
        return std::unexpected(
            refuse(fmt::format("mode {} without mx patterns", to_string(policy.mode))));
      }
      std::string mx;
      for (const auto& pattern : policy.mx) {
        const auto lower = check_mx_pattern(pattern);
        if (!lower) {
          return std::unexpected(refuse(fmt::format(
              "mx pattern {} is not [\"*.\"] followed by an LDH name", quote(pattern))));
        }
        if (!mx.empty()) mx += ':';
        mx += *lower;
      }
      if (mx.size() > kMaxMxValue) return std::unexpected(refuse("the mx list is too long"));
      set(Field::mode, std::string(to_string(policy.mode)));
      set(Field::mx, std::move(mx));
      set(Field::expire, fmt::format("{}", cached.expires_at));
      set(Field::id, cached.id);
      extras["fetched_at"] = cached.fetched_at;
      extras["max_age"] = policy.max_age;
      extras["text"] = cached.text;
    }
    set(Field::extras, extras.dump(-1, ' ', false, json::error_handler_t::replace));
  } catch (const std::exception& e) {  // only std::bad_alloc is expected here
    return std::unexpected(
        Error{ErrorCategory::store, fmt::format("encoding the entry: {}", e.what())});
  }
  return out;
}

}  // namespace mtasts::store::layout
