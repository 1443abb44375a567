#include "core/tlsrpt_datagram.hpp"

#include <cstdint>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/domain.hpp"
#include "core/mx_match.hpp"
#include "core/text_quote.hpp"

namespace mtasts {
namespace {

using Json = nlohmann::json;
using tlsrpt::clean_report_text;
using tlsrpt::FailureKey;
using tlsrpt::PolicyOutcome;
using tlsrpt::PolicyType;
using tlsrpt::Session;

// A malformed datagram: thrown inside this file only, turned into an Error at its one entry.
struct Rejected {
  std::string reason;
};

[[noreturn]] void reject(std::string_view path, std::string_view what) {
  throw Rejected{fmt::format("{}: {}", path, what)};
}

// The datagram's deepest legitimate value is a failure detail's field: object, policies array,
// policy object, failure-details array, detail object.
constexpr std::size_t kMaxNesting = 8;

// Follows the parser's events to refuse a key seen twice in one object (I-JSON, RFC 7493 §2.3),
// which nlohmann would silently resolve to the last value, and to bound the nesting.
class DuplicateKeyGuard {
 public:
  bool operator()(int /*depth*/, Json::parse_event_t event, Json& parsed) {
    switch (event) {
      case Json::parse_event_t::object_start:
      case Json::parse_event_t::array_start:
        count_element();
        if (frames_.size() >= kMaxNesting) {
          reject(path(), fmt::format("nested deeper than {} levels", kMaxNesting));
        }
        frames_.push_back(Frame{event == Json::parse_event_t::array_start, 0, {}, {}});
        break;
      case Json::parse_event_t::object_end:
      case Json::parse_event_t::array_end:
        if (!frames_.empty()) frames_.pop_back();
        break;
      case Json::parse_event_t::key: {
        Frame& frame = frames_.back();
        frame.key = parsed.get<std::string>();
        if (!frame.keys.insert(frame.key).second) reject(path(), "duplicate key");
        break;
      }
      case Json::parse_event_t::value:
        count_element();
        break;
    }
    return true;
  }

 private:
  struct Frame {
    bool array = false;
    std::size_t elements = 0;  // arrays: elements seen so far
    std::string key;           // objects: the key being read
    std::set<std::string, std::less<>> keys;
  };

  void count_element() {
    if (!frames_.empty() && frames_.back().array) ++frames_.back().elements;
  }

  // "policies[0].failure-details[1].c" for the value being read.
  std::string path() const {
    std::string out;
    for (const Frame& frame : frames_) {
      if (frame.array) {
        out += fmt::format("[{}]", frame.elements == 0 ? 0 : frame.elements - 1);
      } else if (!frame.key.empty()) {
        if (!out.empty()) out += '.';
        out += clean_report_text(frame.key, 64);
      }
    }
    return out.empty() ? "datagram" : out;
  }

  std::vector<Frame> frames_;
};

// nlohmann's messages start with "[json.exception.parse_error.101] " and may quote input.
std::string parse_error_text(const Json::exception& error) {
  std::string_view text = error.what();
  if (text.starts_with("[json.exception.")) {
    const std::size_t end = text.find("] ");
    if (end != std::string_view::npos) text.remove_prefix(end + 2);
  }
  return "not JSON: " + clean_report_text(text, 200);
}

std::string_view type_name(const Json& value) {
  return value.type_name();
}

std::optional<std::int64_t> integer_of(const Json& value) {
  if (value.is_number_unsigned()) {
    const auto number = value.get<std::uint64_t>();
    if (number > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      return std::nullopt;
    }
    return static_cast<std::int64_t>(number);
  }
  if (value.is_number_integer()) return value.get<std::int64_t>();
  return std::nullopt;
}

std::int64_t integer_field(const Json& value, const std::string& path) {
  const std::optional<std::int64_t> number = integer_of(value);
  if (!number) reject(path, fmt::format("expected an integer, found {}", type_name(value)));
  return *number;
}

const std::string& raw_string(const Json& value, const std::string& path, std::size_t max) {
  if (!value.is_string())
    reject(path, fmt::format("expected a string, found {}", type_name(value)));
  const auto& text = value.get_ref<const std::string&>();
  if (text.size() > max) reject(path, fmt::format("longer than {} octets", max));
  return text;
}

std::string text_field(const Json& value, const std::string& path,
                       std::size_t max = kMaxDatagramString) {
  return clean_report_text(raw_string(value, path, max), max);
}

std::string domain_field(const Json& value, const std::string& path) {
  const std::string& text = raw_string(value, path, kMaxDatagramString);
  auto domain = normalize_domain(text);
  if (!domain) reject(path, domain.error().reason);
  return std::move(*domain);
}

std::string ip_field(const Json& value, const std::string& path) {
  const std::string& text = raw_string(value, path, kMaxDatagramString);
  if (text.empty()) return {};
  std::optional<std::string> ip = tlsrpt::normalize_ip_text(text);
  if (!ip) reject(path, fmt::format("not an IPv4 or IPv6 address: {}", quote_input(text, 60)));
  return std::move(*ip);
}

const Json* find(const Json& object, std::string_view key) {
  const auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

const Json& array_field(const Json& value, const std::string& path, std::size_t max,
                        bool allow_empty) {
  if (!value.is_array()) reject(path, fmt::format("expected an array, found {}", type_name(value)));
  if (value.empty() && !allow_empty) reject(path, "empty array");
  if (value.size() > max) {
    reject(path, fmt::format("{} entries, at most {} allowed", value.size(), max));
  }
  return value;
}

std::vector<std::string> string_list(const Json& value, const std::string& path) {
  std::vector<std::string> out;
  const Json& list = array_field(value, path, kMaxDatagramListEntries, true);
  for (std::size_t i = 0; i < list.size(); ++i) {
    out.push_back(text_field(list[i], fmt::format("{}[{}]", path, i)));
  }
  return out;
}

FailureKey failure_detail(const Json& detail, const std::string& path) {
  if (!detail.is_object()) {
    reject(path, fmt::format("expected an object, found {}", type_name(detail)));
  }
  FailureKey failure;
  const Json* code = find(detail, "c");
  if (code == nullptr) reject(path + ".c", "missing (the result code)");
  const std::int64_t number = integer_field(*code, path + ".c");
  const auto result = tlsrpt::result_type_from_code(number);
  if (!result) reject(path + ".c", fmt::format("unknown result code {}", number));
  failure.result = *result;
  if (const Json* v = find(detail, "s")) failure.sending_mta_ip = ip_field(*v, path + ".s");
  if (const Json* v = find(detail, "n")) {
    const std::string name = text_field(*v, path + ".n");
    if (!name.empty()) failure.receiving_mx_hostname = mx_host_name(name);
  }
  if (const Json* v = find(detail, "h")) failure.receiving_mx_helo = text_field(*v, path + ".h");
  if (const Json* v = find(detail, "r")) failure.receiving_ip = ip_field(*v, path + ".r");
  if (const Json* v = find(detail, "a")) {
    failure.additional_information = text_field(*v, path + ".a");
  }
  if (const Json* v = find(detail, "f")) failure.failure_reason_code = text_field(*v, path + ".f");
  return failure;
}

PolicyOutcome policy_outcome(const Json& policy, const std::string& path,
                             const std::string& report_domain) {
  if (!policy.is_object()) {
    reject(path, fmt::format("expected an object, found {}", type_name(policy)));
  }
  PolicyOutcome outcome;
  const Json* type = find(policy, "policy-type");
  if (type == nullptr) reject(path + ".policy-type", "missing");
  const std::int64_t type_code = integer_field(*type, path + ".policy-type");
  const auto policy_type = tlsrpt::policy_type_from_code(type_code);
  if (!policy_type) {
    reject(path + ".policy-type",
           fmt::format("unknown policy type {} (expected 1 tlsa, 2 sts or 9 no-policy-found)",
                       type_code));
  }
  outcome.policy.type = *policy_type;
  if (const Json* domain = find(policy, "policy-domain")) {
    outcome.policy.domain = domain_field(*domain, path + ".policy-domain");
  } else if (*policy_type == PolicyType::no_policy_found) {
    outcome.policy.domain = report_domain;
  } else {
    reject(path + ".policy-domain", fmt::format("missing; required for policy-type {} ({})",
                                                type_code, tlsrpt::to_string(*policy_type)));
  }
  if (const Json* strings = find(policy, "policy-string")) {
    outcome.policy.policy_strings = string_list(*strings, path + ".policy-string");
  }
  if (const Json* hosts = find(policy, "mx-host")) {
    outcome.policy.mx_hosts = string_list(*hosts, path + ".mx-host");
  }
  if (const Json* details = find(policy, "failure-details")) {
    const std::string list_path = path + ".failure-details";
    const Json& list = array_field(*details, list_path, kMaxDatagramFailures, true);
    for (std::size_t i = 0; i < list.size(); ++i) {
      outcome.failures.push_back(failure_detail(list[i], fmt::format("{}[{}]", list_path, i)));
    }
  }
  const Json* count = find(policy, "t");
  if (count == nullptr) reject(path + ".t", "missing (the number of failure details)");
  const std::int64_t counted = integer_field(*count, path + ".t");
  if (counted < 0 || static_cast<std::uint64_t>(counted) != outcome.failures.size()) {
    reject(path + ".t", fmt::format("says {} failure details, the policy has {}", counted,
                                    outcome.failures.size()));
  }
  const Json* final_result = find(policy, "f");
  if (final_result == nullptr) reject(path + ".f", "missing (the final result)");
  const std::int64_t result = integer_field(*final_result, path + ".f");
  if (result != 0 && result != 1) {
    reject(path + ".f", fmt::format("final result {} (expected 0 success or 1 failure)", result));
  }
  outcome.failed = result == 1;
  return outcome;
}

Session session_of(const Json& root) {
  if (!root.is_object()) {
    reject("datagram", fmt::format("expected a JSON object, found {}", type_name(root)));
  }
  if (const Json* version = find(root, "dpv")) {
    if (!version->is_string() || version->get_ref<const std::string&>() != "1") {
      reject("dpv", fmt::format("unsupported datagram protocol version {} (expected \"1\")",
                                clean_report_text(version->dump(), 40)));
    }
  }
  Session session;
  const Json* domain = find(root, "d");
  if (domain == nullptr) reject("d", "missing (the recipient domain)");
  session.report_domain = domain_field(*domain, "d");
  if (const Json* record = find(root, "pr")) {
    session.tlsrpt_record = text_field(*record, "pr", kMaxDatagramRecord);
  }
  const Json* policies = find(root, "policies");
  if (policies == nullptr) reject("policies", "missing");
  const Json& list = array_field(*policies, "policies", kMaxDatagramPolicies, false);
  for (std::size_t i = 0; i < list.size(); ++i) {
    session.policies.push_back(
        policy_outcome(list[i], fmt::format("policies[{}]", i), session.report_domain));
  }
  return session;
}

}  // namespace

std::expected<Session, Error> parse_tlsrpt_datagram(std::string_view datagram) {
  const auto failure = [](std::string reason) {
    return std::unexpected(Error{ErrorCategory::session_report, std::move(reason)});
  };
  if (datagram.size() > kMaxTlsrptDatagram) {
    return failure(fmt::format("datagram: {} octets, at most {} allowed", datagram.size(),
                               kMaxTlsrptDatagram));
  }
  // JSON text never holds a raw NUL, and nlohmann's lexer would take one for the end of input.
  if (const std::size_t nul = datagram.find('\0'); nul != std::string_view::npos) {
    return failure(fmt::format("datagram: NUL octet at offset {}", nul));
  }
  try {
    DuplicateKeyGuard guard;
    const Json root = Json::parse(
        datagram.begin(), datagram.end(),
        [&guard](int depth, Json::parse_event_t event, Json& parsed) {
          return guard(depth, event, parsed);
        },
        /*allow_exceptions=*/true, /*ignore_comments=*/false);
    return session_of(root);
  } catch (const Rejected& rejected) {
    return failure(rejected.reason);
  } catch (const Json::exception& error) {
    return failure(parse_error_text(error));
  }
}

}  // namespace mtasts
