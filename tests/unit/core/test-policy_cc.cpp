// parse_policy, mode strings and is_text_plain: the policy file (RFC 8461 §3.2).
#include <gtest/gtest.h>

#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "core/policy.hpp"
#include "unit/row_name.hpp"

namespace mtasts {
namespace {

using namespace std::string_view_literals;

using test_support::row_name;

struct PolicyRow {
  const char* name;
  std::string_view body;
  std::optional<Policy> expected;     // nullopt: policy_syntax
  std::string_view reason_part = "";  // for errors: part of the expected reason
};

void PrintTo(const PolicyRow& row, std::ostream* os) {
  *os << row.name;
}

Policy enforce(std::int64_t max_age, std::vector<std::string> mx) {
  return Policy{Mode::enforce, max_age, std::move(mx)};
}

// The RFC 8461 §3.2 example, with LF line ends.
constexpr std::string_view kRfcExample =
    "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\n"
    "mx: backupmx.example.com\nmax_age: 604800\n";
const Policy kRfcPolicy =
    enforce(604800, {"mail.example.com", "*.example.net", "backupmx.example.com"});
const Policy kSimple = enforce(86400, {"mx.example.com"});

const std::string kKey32 = std::string(32, 'k') +
                           ": v\nversion: STSv1\nmode: enforce\n"
                           "mx: mx.example.com\nmax_age: 86400\n";
const std::string kKey33 = std::string(33, 'k') +
                           ": v\nversion: STSv1\nmode: enforce\n"
                           "mx: mx.example.com\nmax_age: 86400\n";

const PolicyRow kPolicyRows[] = {
    // STS-13: required fields and their values.
    {"STS-13 §3.2 RFC example", kRfcExample, kRfcPolicy},
    {"STS-13 §3.2 pol-version-lowercase",
     "version: stsv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n", std::nullopt,
     "version: STSv1"},
    {"STS-13 §3.2 pol-version-stsv2",
     "version: STSv2\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n", std::nullopt,
     "version: STSv1"},
    {"STS-13 §3.2 pol-version-with-suffix",
     "version: STSv1x\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n", std::nullopt,
     "version: STSv1"},
    {"STS-13 §3.2 pol-missing-version", "mode: enforce\nmx: mx.example.com\nmax_age: 86400\n",
     std::nullopt, "\"version: STSv1\" line"},
    {"STS-13 §3.2 pol-missing-mode", "version: STSv1\nmx: mx.example.com\nmax_age: 86400\n",
     std::nullopt, "\"mode:\" line"},
    {"STS-13 §3.2 pol-missing-max-age", "version: STSv1\nmode: enforce\nmx: mx.example.com\n",
     std::nullopt, "\"max_age:\" line"},
    {"STS-13 §3.2 pol-mode-testing",
     "version: STSv1\nmode: testing\nmx: mx.example.com\nmax_age: 86400\n",
     Policy{Mode::testing, 86400, {"mx.example.com"}}},
    {"STS-13 §3.2 pol-mode-none", "version: STSv1\nmode: none\nmax_age: 86400\n",
     Policy{Mode::none, 86400, {}}},
    {"STS-13 §3.2 pol-mode-uppercase",
     "version: STSv1\nmode: ENFORCE\nmx: mx.example.com\nmax_age: 86400\n", std::nullopt,
     "enforce, testing or none"},
    {"STS-13 §3.2 pol-mode-unknown",
     "version: STSv1\nmode: report\nmx: mx.example.com\nmax_age: 86400\n", std::nullopt,
     "enforce, testing or none"},
    {"STS-13 §3.2 pol-mode-empty", "version: STSv1\nmode:\nmx: mx.example.com\nmax_age: 86400\n",
     std::nullopt, "value after \"mode:\""},
    {"STS-13 §3.2 pol-key-capitalised",
     "version: STSv1\nMode: enforce\nmx: mx.example.com\nmax_age: 86400\n", std::nullopt,
     "\"mode:\" line"},
    {"STS-13 §3.2 pol-key-capitalised-version",
     "Version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n", std::nullopt,
     "\"version: STSv1\" line"},
    {"STS-13 §3.2 pol-max-age-zero (§6.8)",
     "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 0\n",
     enforce(0, {"mx.example.com"})},
    {"STS-13 §3.2 pol-max-age-leading-zeros",
     "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 0086400\n", kSimple},
    {"STS-13 §3.2 pol-max-age-at-limit",
     "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 31557600\n",
     enforce(31557600, {"mx.example.com"})},
    {"STS-13 §6.2 pol-max-age-over-limit clamped",
     "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 31557601\n",
     enforce(kMaxAgeCap, {"mx.example.com"})},
    {"STS-13 §6.2 pol-max-age-10-digits clamped",
     "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 9999999999\n",
     enforce(kMaxAgeCap, {"mx.example.com"})},
    {"STS-13 §3.2 pol-max-age-11-digits",
     "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 10000000000\n", std::nullopt,
     "1 to 10 digits"},
    {"STS-13 §3.2 pol-max-age-negative",
     "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: -1\n", std::nullopt,
     "1 to 10 digits"},
    {"STS-13 §3.2 pol-max-age-plus-sign",
     "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: +86400\n", std::nullopt,
     "1 to 10 digits"},
    {"STS-13 §3.2 pol-max-age-fraction",
     "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400.5\n", std::nullopt,
     "1 to 10 digits"},
    {"STS-13 §3.2 pol-max-age-inner-space",
     "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86 400\n", std::nullopt,
     "1 to 10 digits"},
    // STS-10: first occurrence wins for every field but mx.
    {"STS-10 §3.2 pol-duplicate-mode-first-wins",
     "version: STSv1\nmode: testing\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n",
     Policy{Mode::testing, 86400, {"mx.example.com"}}},
    {"STS-10 §3.2 pol-duplicate-max-age-first-wins",
     "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\nmax_age: 600\n", kSimple},
    {"STS-10 §3.2 pol-duplicate-version-first-wins",
     "version: STSv1\nversion: STSv2\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n",
     kSimple},
    {"STS-10 §3.2 duplicate with bad value is ignored",
     "version: STSv1\nmode: enforce\nmode: bogus\nmx: mx.example.com\nmax_age: 86400\n", kSimple},
    {"STS-10 §3.2 first occurrence bad, later good: invalid",
     "version: STSv1\nmode: bogus\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n",
     std::nullopt, "enforce, testing or none"},
    // STS-14: mx values.
    {"STS-14 §3.2 pol-enforce-no-mx", "version: STSv1\nmode: enforce\nmax_age: 86400\n",
     std::nullopt, "at least one \"mx:\""},
    {"STS-14 §3.2 pol-testing-no-mx", "version: STSv1\nmode: testing\nmax_age: 86400\n",
     std::nullopt, "at least one \"mx:\""},
    {"STS-14 §3.2 pol-none-no-mx", "version: STSv1\nmode: none\nmax_age: 86400\n",
     Policy{Mode::none, 86400, {}}},
    {"STS-14 §3.2 pol-none-with-mx",
     "version: STSv1\nmode: none\nmx: mx.example.com\nmax_age: 86400\n",
     Policy{Mode::none, 86400, {"mx.example.com"}}},
    {"STS-14 §3.2 pol-mx-wildcard",
     "version: STSv1\nmode: enforce\nmx: *.example.net\nmax_age: 86400\n",
     enforce(86400, {"*.example.net"})},
    {"STS-14 §3.2 pol-mx-uppercase lower-cased",
     "version: STSv1\nmode: enforce\nmx: MX.Example.COM\nmx: *.EXAMPLE.net\nmax_age: 86400\n",
     enforce(86400, {"mx.example.com", "*.example.net"})},
    {"STS-14 §3.2 pol-mx-a-label",
     "version: STSv1\nmode: enforce\nmx: mx.xn--mnchen-3ya.example\nmax_age: 86400\n",
     enforce(86400, {"mx.xn--mnchen-3ya.example"})},
    {"STS-14 §3.2 pol-mx-u-label",
     "version: STSv1\nmode: enforce\nmx: mx.m\xc3\xbcnchen.example\nmax_age: 86400\n", std::nullopt,
     "A-label"},
    {"STS-14 §3.2 pol-mx-bad-a-label",
     "version: STSv1\nmode: enforce\nmx: mx.xn--zz.example\nmax_age: 86400\n", std::nullopt,
     "A-label"},
    {"STS-14 §6.11 pol-mx-trailing-dot",
     "version: STSv1\nmode: enforce\nmx: mx.example.com.\nmax_age: 86400\n", std::nullopt,
     "trailing dot"},
    // RFC 8461 §3.2 mx = ["*."] Domain and RFC 5321 §4.1.2 Domain = sub-domain *("." sub-domain):
    // one label is grammatical, and there is no public-suffix rule (issue 10).
    {"STS-14 §3.2 pol-mx-wildcard-one-label-suffix",
     "version: STSv1\nmode: enforce\nmx: *.com\nmax_age: 86400\n", enforce(86400, {"*.com"})},
    {"STS-14 §3.2 pol-mx-wildcard-one-label-suffix upper-case",
     "version: STSv1\nmode: enforce\nmx: *.COM\nmx: mx.example.com\nmax_age: 86400\n",
     enforce(86400, {"*.com", "mx.example.com"})},
    {"STS-14 §3.2 pol-mx-single-label",
     "version: STSv1\nmode: enforce\nmx: localhost\nmax_age: 86400\n",
     enforce(86400, {"localhost"})},
    {"STS-14 §3.2 pol-mx-single-label-tld",
     "version: STSv1\nmode: enforce\nmx: com\nmax_age: 86400\n", enforce(86400, {"com"})},
    {"STS-14 §3.2 pol-mx-wildcard-one-label-a-label",
     "version: STSv1\nmode: enforce\nmx: *.xn--mnchen-3ya\nmax_age: 86400\n",
     enforce(86400, {"*.xn--mnchen-3ya"})},
    {"STS-14 §3.2 pol-mx-wildcard-numeric-suffix",
     "version: STSv1\nmode: enforce\nmx: *.123\nmax_age: 86400\n", std::nullopt, "all-numeric"},
    {"STS-14 §3.2 pol-mx-single-numeric-label",
     "version: STSv1\nmode: enforce\nmx: 123\nmax_age: 86400\n", std::nullopt, "all-numeric"},
    {"STS-14 §3.2 pol-mx-star-dot-alone", "version: STSv1\nmode: enforce\nmx: *.\nmax_age: 86400\n",
     std::nullopt, "empty string"},
    {"STS-14 §6.11 pol-mx-wildcard-one-label-trailing-dot",
     "version: STSv1\nmode: enforce\nmx: *.com.\nmax_age: 86400\n", std::nullopt, "trailing dot"},
    {"STS-14 §3.2 pol-mx-wildcard-one-label-hyphen",
     "version: STSv1\nmode: enforce\nmx: *.-com\nmax_age: 86400\n", std::nullopt, "hyphen"},
    {"STS-14 §3.2 pol-mx-wildcard-one-label-underscore",
     "version: STSv1\nmode: enforce\nmx: *.c_m\nmax_age: 86400\n", std::nullopt,
     "letters, digits and hyphens"},
    {"STS-14 §3.2 pol-mx-leading-dot",
     "version: STSv1\nmode: enforce\nmx: .example.com\nmax_age: 86400\n", std::nullopt,
     "empty label"},
    {"STS-14 §3.2 pol-mx-label-64-octets",
     "version: STSv1\nmode: enforce\nmx: "
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.example.com\n"
     "max_age: 86400\n",
     std::nullopt, "longer than 63"},
    {"STS-14 §3.2 pol-mx-label-trailing-hyphen",
     "version: STSv1\nmode: enforce\nmx: mx-.example.com\nmax_age: 86400\n", std::nullopt,
     "hyphen"},
    {"STS-14 §3.2 pol-mx-star-alone", "version: STSv1\nmode: enforce\nmx: *\nmax_age: 86400\n",
     std::nullopt, "letters, digits and hyphens"},
    {"STS-14 §3.2 pol-mx-double-wildcard",
     "version: STSv1\nmode: enforce\nmx: *.*.example.net\nmax_age: 86400\n", std::nullopt,
     "letters, digits and hyphens"},
    {"STS-14 §3.2 pol-mx-inner-wildcard",
     "version: STSv1\nmode: enforce\nmx: mx.*.example.net\nmax_age: 86400\n", std::nullopt,
     "letters, digits and hyphens"},
    {"STS-14 §3.2 pol-mx-partial-wildcard",
     "version: STSv1\nmode: enforce\nmx: mx*.example.net\nmax_age: 86400\n", std::nullopt,
     "letters, digits and hyphens"},
    {"STS-14 §3.2 pol-mx-underscore",
     "version: STSv1\nmode: enforce\nmx: mx_1.example.net\nmax_age: 86400\n", std::nullopt,
     "letters, digits and hyphens"},
    {"STS-14 §3.2 pol-mx-ip-address",
     "version: STSv1\nmode: enforce\nmx: 192.0.2.1\nmax_age: 86400\n", std::nullopt, "all-numeric"},
    {"STS-14 §3.2 pol-mx-address-literal",
     "version: STSv1\nmode: enforce\nmx: [192.0.2.1]\nmax_age: 86400\n", std::nullopt,
     "letters, digits and hyphens"},
    {"STS-14 §3.2 pol-mx-two-on-one-line",
     "version: STSv1\nmode: enforce\nmx: a.example.com b.example.com\nmax_age: 86400\n",
     std::nullopt, "letters, digits and hyphens"},
    {"STS-14 §3.2 pol-mx-comma-list",
     "version: STSv1\nmode: enforce\nmx: a.example.com,b.example.com\nmax_age: 86400\n",
     std::nullopt, "letters, digits and hyphens"},
    {"STS-14 §3.2 pol-mx-empty", "version: STSv1\nmode: enforce\nmx:\nmax_age: 86400\n",
     std::nullopt, "value after \"mx:\""},
    {"STS-14 §3.2 pol-mx-label-leading-hyphen",
     "version: STSv1\nmode: enforce\nmx: -mx.example.com\nmax_age: 86400\n", std::nullopt,
     "hyphen"},
    {"STS-14 §6.5 pol-mx-one-invalid-one-valid",
     "version: STSv1\nmode: enforce\nmx: mx.example.com\nmx: bad_mx.example.com\n"
     "max_age: 86400\n",
     std::nullopt, "line 4"},
    {"STS-14 §6.5 pol-mx-invalid-under-none",
     "version: STSv1\nmode: none\nmx: bad_mx.example.com\nmax_age: 86400\n", std::nullopt, "mx:"},
    {"STS-14 §3.2 pol-mx-duplicates-kept",
     "version: STSv1\nmode: enforce\nmx: mx.example.com\nmx: mx.example.com\nmax_age: 86400\n",
     enforce(86400, {"mx.example.com", "mx.example.com"})},
    // STS-15: line structure.
    {"STS-15 §3.2 pol-lf-only",
     "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n", kSimple},
    {"STS-15 §3.2 pol-crlf",
     "version: STSv1\r\nmode: enforce\r\nmx: mx.example.com\r\nmax_age: 86400\r\n", kSimple},
    {"STS-15 §3.2 pol-mixed-crlf-lf",
     "version: STSv1\r\nmode: enforce\nmx: mx.example.com\r\nmax_age: 86400\n", kSimple},
    {"STS-15 §3.2 pol-no-final-newline",
     "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400", kSimple},
    {"STS-15 §3.2 pol-no-final-crlf",
     "version: STSv1\r\nmode: enforce\r\nmx: mx.example.com\r\nmax_age: 86400", kSimple},
    {"STS-15 §3.2 pol-trailing-space",
     "version: STSv1 \nmode: enforce  \nmx: mx.example.com \nmax_age: 86400 \n", kSimple},
    {"STS-15 §3.2 pol-trailing-tab",
     "version: STSv1\t\nmode: enforce\t\nmx: mx.example.com\t\nmax_age: 86400\t\r\n", kSimple},
    {"STS-15 §3.2 pol-trailing-space-no-final-newline",
     "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400  ", kSimple},
    {"STS-15 §3.2 pol-no-space-after-colon",
     "version:STSv1\nmode:enforce\nmx:mx.example.com\nmax_age:86400\n", kSimple},
    {"STS-15 §3.2 pol-tab-after-colon",
     "version:\tSTSv1\nmode:\tenforce\nmx:\tmx.example.com\nmax_age:\t86400\n", kSimple},
    {"STS-15 §3.2 pol-many-spaces-after-colon",
     "version:   STSv1\nmode: \t enforce\nmx:  mx.example.com\nmax_age:    86400\n", kSimple},
    {"STS-15 §3.2 pol-cr-only",
     "version: STSv1\rmode: enforce\rmx: mx.example.com\rmax_age: 86400\r", std::nullopt,
     "CR not followed by LF"},
    {"STS-15 §3.2 pol-cr-at-end-without-lf",
     "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\r", std::nullopt,
     "CR not followed by LF"},
    {"STS-15 §3.2 pol-cr-cr-lf",
     "version: STSv1\r\r\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n", std::nullopt,
     "line 1: expected LF or CRLF"},
    {"STS-15 §3.2 pol-space-before-colon",
     "version : STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n", std::nullopt,
     "not whitespace before it"},
    {"STS-15 §3.2 pol-leading-whitespace",
     "version: STSv1\n mode: enforce\nmx: mx.example.com\nmax_age: 86400\n", std::nullopt,
     "line 2: expected a key at the start of the line"},
    {"STS-15 §3.2 pol-leading-tab",
     "\tversion: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n", std::nullopt,
     "line 1: expected a key at the start"},
    {"STS-15 §3.2 pol-comment-line",
     "# MTA-STS policy\nversion: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n",
     std::nullopt, "line 1: expected a key starting with a letter or digit"},
    {"STS-15 §3.2 pol-no-colon",
     "version STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n", std::nullopt,
     "not whitespace before it"},
    {"STS-15 §3.2 pol-equals-instead-of-colon",
     "version=STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n", std::nullopt,
     "\"key: value\""},
    {"STS-15 §6.4 pol-blank-line (strict)",
     "version: STSv1\n\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n", std::nullopt,
     "line 2: expected \"key: value\", not a blank line"},
    {"STS-15 §6.4 pol-double-final-newline (strict)",
     "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n\n", std::nullopt,
     "line 5"},
    {"STS-15 §6.4 pol-double-final-crlf (strict)",
     "version: STSv1\r\nmode: enforce\r\nmx: mx.example.com\r\nmax_age: 86400\r\n\r\n",
     std::nullopt, "blank line"},
    {"STS-15 §6.4 pol-blank-line-of-spaces (strict)",
     "version: STSv1\n  \nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n", std::nullopt,
     "line 2"},
    {"STS-15 §6.4 pol-bom (strict)",
     "\xef\xbb\xbfversion: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n",
     std::nullopt, "byte-order mark"},
    {"STS-15 §6.4 pol-leading-newline (strict)",
     "\nversion: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n", std::nullopt,
     "line 1"},
    {"STS-15 §3.2 pol-empty-body", "", std::nullopt, "empty body"},
    {"STS-15 §3.2 pol-only-newline", "\n", std::nullopt, "blank line"},
    {"STS-15 §3.2 pol-nul-in-value",
     "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\nx: a\0b\n"sv, std::nullopt,
     "control character"},
    {"STS-15 §3.2 pol-html-body", "<html><body>policy</body></html>\n", std::nullopt,
     "letter or digit"},
    // STS-16: unknown keys and field order.
    {"STS-16 §3.2 pol-unknown-keys",
     "version: STSv1\nmode: enforce\nfoo: bar\nx-extension.v2_a: some value with spaces\n"
     "mx: mx.example.com\nmax_age: 86400\n",
     kSimple},
    {"STS-16 §3.2 pol-unknown-key-utf8-value",
     "version: STSv1\nmode: enforce\ncomment: M\xc3\xbcnchen \xe2\x9c\x93 \xf0\x9f\x93\xa7\n"
     "mx: mx.example.com\nmax_age: 86400\n",
     kSimple},
    {"STS-16 §3.2 pol-unknown-key-malformed-utf8",
     "version: STSv1\nmode: enforce\ncomment: M\xfcnchen\nmx: mx.example.com\nmax_age: 86400\n",
     std::nullopt, "malformed UTF-8"},
    {"STS-16 §3.2 pol-unknown-key-overlong-utf8",
     "version: STSv1\nmode: enforce\ncomment: \xc0\xaf\nmx: mx.example.com\nmax_age: 86400\n",
     std::nullopt, "malformed UTF-8"},
    {"STS-16 §3.2 pol-unknown-key-surrogate-utf8",
     "version: STSv1\nmode: enforce\ncomment: \xed\xa0\x80\nmx: mx.example.com\nmax_age: 86400\n",
     std::nullopt, "malformed UTF-8"},
    {"STS-16 §3.2 pol-unknown-key-truncated-utf8",
     "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\ncomment: \xe2\x9c",
     std::nullopt, "malformed UTF-8"},
    {"STS-16 §3.2 pol-unknown-key-inner-tab",
     "version: STSv1\nmode: enforce\nfoo: a\tb\nmx: mx.example.com\nmax_age: 86400\n", std::nullopt,
     "tab inside the value"},
    {"STS-16 §3.2 pol-unknown-key-empty-value",
     "version: STSv1\nmode: enforce\nfoo:\nmx: mx.example.com\nmax_age: 86400\n", std::nullopt,
     "value after \"foo:\""},
    {"STS-16 §3.2 pol-unknown-key-32-chars", kKey32, kSimple},
    {"STS-16 §3.2 pol-unknown-key-33-chars", kKey33, std::nullopt, "at most 32"},
    {"STS-16 §3.2 pol-unknown-key-leading-underscore",
     "_foo: bar\nversion: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n", std::nullopt,
     "letter or digit"},
    {"STS-16 §3.2 pol-unknown-key-digit-first",
     "1foo: bar\nversion: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n", kSimple},
    {"STS-16 §3.2 pol-unknown-key-with-colon-in-value",
     "foo: a:b: c\nversion: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n", kSimple},
    {"STS-16 §3.2 pol-fields-any-order",
     "max_age: 86400\nmx: mx.example.com\nmode: enforce\nversion: STSv1\n", kSimple},
    {"STS-16 §3.2 pol-mx-interleaved",
     "mx: a.example.com\nversion: STSv1\nmx: b.example.com\nmode: enforce\nmx: *.example.net\n"
     "max_age: 86400\nmx: c.example.com\n",
     enforce(86400, {"a.example.com", "b.example.com", "*.example.net", "c.example.com"})},
};

class ParsePolicyTest : public ::testing::TestWithParam<PolicyRow> {};

TEST_P(ParsePolicyTest, Parses) {
  const PolicyRow& row = GetParam();
  const auto result = parse_policy(row.body);
  if (row.expected) {
    ASSERT_TRUE(result.has_value()) << row.name << ": " << result.error().reason;
    EXPECT_EQ(result->mode, row.expected->mode) << row.name;
    EXPECT_EQ(result->max_age, row.expected->max_age) << row.name;
    EXPECT_EQ(result->mx, row.expected->mx) << row.name;
  } else {
    ASSERT_FALSE(result.has_value()) << row.name;
    EXPECT_EQ(result.error().category, ErrorCategory::policy_syntax) << row.name;
    const std::string& reason = result.error().reason;
    EXPECT_NE(reason.find(row.reason_part), std::string::npos) << row.name << ": " << reason;
    EXPECT_NE(reason.find("expected"), std::string::npos) << row.name << ": " << reason;
    EXPECT_EQ(reason.find('\n'), std::string::npos) << row.name << ": " << reason;
    EXPECT_EQ(reason.find('\r'), std::string::npos) << row.name << ": " << reason;
  }
}

INSTANTIATE_TEST_SUITE_P(Rows, ParsePolicyTest, ::testing::ValuesIn(kPolicyRows),
                         [](const auto& p) { return row_name(p.param.name, p.index); });

TEST(PolicyReason, NamesTheLineAndQuotesIt) {
  const auto result =
      parse_policy("version: STSv1\nmode: enforce\nmx: bad_mx.example.com\nmax_age: 86400\n");
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().reason.find("policy line 3: "), 0u) << result.error().reason;
  EXPECT_NE(result.error().reason.find("found \"mx: bad_mx.example.com\""), std::string::npos)
      << result.error().reason;
}

TEST(PolicyReason, LongLineIsCut) {
  const std::string body =
      "version: STSv1\nmode: enforce\nmx: " + std::string(5000, 'a') + ".example\nmax_age: 86400\n";
  const auto result = parse_policy(body);
  ASSERT_FALSE(result.has_value());
  EXPECT_LT(result.error().reason.size(), 600u) << result.error().reason;
}

struct ModeRow {
  const char* name;
  std::string_view text;
  std::optional<Mode> mode;
};

void PrintTo(const ModeRow& row, std::ostream* os) {
  *os << row.name;
}

const ModeRow kModeRows[] = {
    {"STS-13 §3.2 enforce", "enforce", Mode::enforce},
    {"STS-13 §3.2 testing", "testing", Mode::testing},
    {"STS-13 §3.2 none", "none", Mode::none},
    {"STS-13 §3.2 case-sensitive", "Enforce", std::nullopt},
    {"STS-13 §3.2 no trimming", " none", std::nullopt},
    {"STS-13 §3.2 empty", "", std::nullopt},
};

class ModeTest : public ::testing::TestWithParam<ModeRow> {};

TEST_P(ModeTest, RoundTrips) {
  const ModeRow& row = GetParam();
  EXPECT_EQ(mode_from_string(row.text), row.mode) << row.name;
  if (row.mode) {
    EXPECT_EQ(to_string(*row.mode), row.text) << row.name;
  }
}

INSTANTIATE_TEST_SUITE_P(Rows, ModeTest, ::testing::ValuesIn(kModeRows),
                         [](const auto& p) { return row_name(p.param.name, p.index); });

struct ContentTypeRow {
  const char* name;
  std::string_view content_type;
  bool expected;
};

void PrintTo(const ContentTypeRow& row, std::ostream* os) {
  *os << row.name;
}

const ContentTypeRow kContentTypeRows[] = {
    {"STS-12 §3.2 ct-text-plain", "text/plain", true},
    {"STS-12 §3.2 ct-text-plain-charset-utf-8", "text/plain; charset=utf-8", true},
    {"STS-12 §3.2 ct-text-plain-charset-us-ascii", "text/plain; charset=us-ascii", true},
    {"STS-12 §3.2 ct-text-plain-charset-latin1", "text/plain; charset=latin1", true},
    {"STS-12 §3.2 ct-text-plain-mixed-case", "Text/PLAIN; Charset=UTF-8", true},
    {"STS-12 §3.2 ct-text-plain-extra-parameters", "text/plain; charset=utf-8; format=flowed",
     true},
    {"STS-12 §3.2 ct-text-plain-ows-before-semicolon", "text/plain ; charset=utf-8", true},
    {"STS-12 §3.2 ct-text-plain-surrounding-ows", " text/plain\t", true},
    {"STS-12 §3.2 ct-text-html", "text/html", false},
    {"STS-12 §3.2 ct-text-html-charset", "text/html; charset=utf-8", false},
    {"STS-12 §6.6 ct-missing", "", false},
    {"STS-12 §3.2 ct-application-octet-stream", "application/octet-stream", false},
    {"STS-12 §3.2 ct-text-plain-prefix", "text/plainx", false},
    {"STS-12 §3.2 ct-text-alone", "text", false},
    {"STS-12 §3.2 ct-space-inside", "text / plain", false},
    {"STS-12 §3.2 ct-subtype-suffix", "text/plain/x", false},
};

class ContentTypeTest : public ::testing::TestWithParam<ContentTypeRow> {};

TEST_P(ContentTypeTest, Checks) {
  const ContentTypeRow& row = GetParam();
  EXPECT_EQ(is_text_plain(row.content_type), row.expected) << row.name;
}

INSTANTIATE_TEST_SUITE_P(Rows, ContentTypeTest, ::testing::ValuesIn(kContentTypeRows),
                         [](const auto& p) { return row_name(p.param.name, p.index); });

}  // namespace
}  // namespace mtasts
