// The Exim contract strings (design §2.1).
#include "core/exim_answers.hpp"

#include <gtest/gtest.h>

#include <string_view>
#include <vector>

#include "unit/core/answers.hpp"

namespace mtasts {
namespace {

using test_support::of_kind;
using test_support::policy;

TEST(EximAnswers, getmta_words) {
  EXPECT_EQ(getmta_answer(policy(Mode::enforce, {"a.example"})), "enforce");
  EXPECT_EQ(getmta_answer(policy(Mode::testing, {"a.example"})), "testing");
  EXPECT_EQ(getmta_answer(policy(Mode::none, {})), "none");
  EXPECT_EQ(getmta_answer(of_kind(AnswerKind::no_policy)), "none");
  EXPECT_EQ(getmta_answer(of_kind(AnswerKind::fail)), "fail");
}

TEST(EximAnswers, getmta_host_is_zero_only_for_enforce_mismatch) {
  Answer enforce = policy(Mode::enforce, {"mx1.example.com", "*.example.net"});
  EXPECT_EQ(getmta_host_answer(enforce, "mx1.example.com"), "");
  EXPECT_EQ(getmta_host_answer(enforce, "a.example.net"), "");
  EXPECT_EQ(getmta_host_answer(enforce, "evil.example.org"), "0");
  // STS-33 and design §6: unanchored matching of the Perl tool is not repeated.
  EXPECT_EQ(getmta_host_answer(enforce, "xmx1.example.com"), "0");
  EXPECT_EQ(getmta_host_answer(enforce, "a.b.example.net"), "0");
  EXPECT_EQ(getmta_host_answer(enforce, "example.net"), "0");
  EXPECT_EQ(getmta_host_answer(policy(Mode::testing, {"mx1.example.com"}), "evil.example"), "");
  EXPECT_EQ(getmta_host_answer(of_kind(AnswerKind::no_policy), "evil.example"), "");
}

struct HostRow {
  const char* name;
  std::string_view host;
  std::string_view enforce;  // the answer under an enforce policy
};

// Design §2.1 with RFC 8461 §4.1 (issue 10): getmta(D, H) answers for every H. Under an enforce
// policy a malformed H gets "0" unless it equals a pattern or is one label more than a "*."
// pattern; under anything else it gets "", as every host does. Never an error.
TEST(EximAnswers, getmta_host_answers_every_host) {
  const std::vector<HostRow> rows = {
      {"STS-33 §4.1 allowed exact host", "mx1.example.com", ""},
      {"STS-33 §4.1 leading dot", ".example.com", "0"},
      {"STS-33 §4.1 leading dot under a wildcard", ".example.net", "0"},
      {"§6.11 two root dots", "mx1.example.com..", "0"},
      {"§6.11 one root dot, upper case", "MX1.Example.COM.", ""},
      {"STS-33 §4.1 underscore label, exact pattern", "mx_1.example.com", "0"},
      {"STS-33 §4.1 underscore label under a wildcard", "mx_1.example.net", ""},
      {"STS-33 §4.1 leading hyphen under a wildcard", "-mx.example.net", ""},
      {"STS-33 §4.1 leading hyphen, exact pattern", "-mx1.example.com", "0"},
      {"STS-33 §4.1 trailing hyphen under a wildcard", "mx-.example.net", ""},
      {"STS-33 §4.1 64-octet label under a wildcard",
       "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.example.net", ""},
      {"STS-33 §4.1 64-octet label elsewhere",
       "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.example.org", "0"},
      {"STS-33 §4.1 one label", "com", "0"},
      {"STS-33 App. B star host equal to a pattern", "*.example.net", ""},
      {"STS-33 §4.1 star host not equal to a pattern", "*.example.com", "0"},
      {"STS-51 §3.2 U-label host", "MX.M\xc3\x9cNCHEN.example", ""},
      {"not a host at all", "not a host!", "0"},
      {"empty host", "", "0"},
      {"STS-30 §3.4 address literal host", "[192.0.2.1]", "0"},
  };
  const Answer enforce =
      policy(Mode::enforce, {"mx1.example.com", "*.example.net", "*.xn--mnchen-3ya.example"});
  const Answer testing = policy(Mode::testing, {"mx1.example.com"});
  const Answer none = policy(Mode::none, {});
  for (const HostRow& row : rows) {
    SCOPED_TRACE(row.name);
    EXPECT_EQ(getmta_host_answer(enforce, row.host), row.enforce);
    EXPECT_EQ(getmta_host_answer(testing, row.host), "");
    EXPECT_EQ(getmta_host_answer(none, row.host), "");
    EXPECT_EQ(getmta_host_answer(of_kind(AnswerKind::no_policy), row.host), "");
    EXPECT_EQ(getmta_host_answer(of_kind(AnswerKind::fail), row.host), "");
  }
}

TEST(EximAnswers, one_label_wildcard_pattern) {
  // STS-14: "mx: *.com" is grammatical (no public-suffix rule); it allows one label under com.
  const Answer enforce = policy(Mode::enforce, {"*.com"});
  EXPECT_EQ(getmta_host_answer(enforce, "example.com"), "");
  EXPECT_EQ(getmta_host_answer(enforce, "mx.example.com"), "0");
  EXPECT_EQ(getmta_host_answer(enforce, "com"), "0");
  EXPECT_EQ(getmx_answer(enforce), "*.com");
  EXPECT_EQ(ignorelist_answer(enforce), "<; ! ^[^.]+\\.com$ ; *");
}

TEST(EximAnswers, getmx_is_a_colon_list) {
  EXPECT_EQ(getmx_answer(policy(Mode::enforce, {"mx1.example.com", "*.example.net"})),
            "mx1.example.com:*.example.net");
  EXPECT_EQ(getmx_answer(policy(Mode::testing, {"mx1.example.com"})), "mx1.example.com");
  EXPECT_EQ(getmx_answer(of_kind(AnswerKind::no_policy)), "");
}

TEST(EximAnswers, ignorelist_anchors_and_limits_wildcards_to_one_label) {
  EXPECT_EQ(ignorelist_answer(policy(Mode::enforce, {"mx1.example.com", "*.example.net"})),
            "<; ! ^mx1\\.example\\.com$ ; ! ^[^.]+\\.example\\.net$ ; *");
  EXPECT_EQ(ignorelist_answer(policy(Mode::testing, {"mx1.example.com"})), "");
  EXPECT_EQ(ignorelist_answer(policy(Mode::none, {})), "");
  EXPECT_EQ(ignorelist_answer(of_kind(AnswerKind::no_policy)), "");
  EXPECT_EQ(ignorelist_answer(of_kind(AnswerKind::fail)), "");
}

}  // namespace
}  // namespace mtasts

namespace mtasts {
namespace {

// DANE before MTA-STS (docs/dane.md "Answers", rfc-checklist §4): the verdict picks the getmta
// word; getmx and ignorelist stay the policy's (the enforce mx filter still applies under DANE).
Answer with_dane(Answer answer, DaneVerdict verdict, bool required = false) {
  answer.dane = verdict;
  answer.dane_required = required;
  answer.dane_reason = "reason";
  return answer;
}

struct DaneRow {
  const char* name;
  Answer answer;
  std::string getmta;
};

TEST(EximAnswersDane, getmta_table) {
  const Answer enforce = policy(Mode::enforce, {"mx1.example.com"});
  const Answer testing = policy(Mode::testing, {"mx1.example.com"});
  const Answer none = policy(Mode::none, {});
  const Answer no_policy = of_kind(AnswerKind::no_policy);
  const Answer strict_fail = of_kind(AnswerKind::fail);
  using V = DaneVerdict;
  const std::vector<DaneRow> rows = {
      {"DANE-01 I-2 I-5 failed DANE + enforce: fail (STS never rescues DANE)",
       with_dane(enforce, V::failed), "fail"},
      {"DANE-01 I-3 failed DANE + testing: fail", with_dane(testing, V::failed), "fail"},
      {"DANE-04 failed DANE + mode none: fail", with_dane(none, V::failed), "fail"},
      {"DANE-04 failed DANE + no policy: fail", with_dane(no_policy, V::failed), "fail"},
      {"failed DANE + strict fail: fail", with_dane(strict_fail, V::failed), "fail"},
      {"DANE-15 failed DANE + required: fail (failed wins)", with_dane(enforce, V::failed, true),
       "fail"},
      {"I-1 DANE-03a all usable + enforce: dane", with_dane(enforce, V::all_usable), "dane"},
      {"all usable + testing: dane", with_dane(testing, V::all_usable), "dane"},
      {"all usable + none: dane", with_dane(none, V::all_usable), "dane"},
      {"I-10 all usable + no policy (fetch failing): dane", with_dane(no_policy, V::all_usable),
       "dane"},
      {"all usable + strict fail: dane", with_dane(strict_fail, V::all_usable), "dane"},
      {"DANE-05 I-6 partial + enforce: the policy's word", with_dane(enforce, V::partial),
       "enforce"},
      {"DANE-05 partial + testing: the policy's word", with_dane(testing, V::partial), "testing"},
      {"partial + none: the policy's word", with_dane(none, V::partial), "none"},
      {"partial + no policy: none (hosts_try_dane covers the TLSA hosts)",
       with_dane(no_policy, V::partial), "none"},
      {"partial + strict fail: still fail", with_dane(strict_fail, V::partial), "fail"},
      {"I-8 not applicable + enforce: enforce", with_dane(enforce, V::not_applicable), "enforce"},
      {"I-8 not applicable + testing: testing", with_dane(testing, V::not_applicable), "testing"},
      {"not applicable + no policy: none", with_dane(no_policy, V::not_applicable), "none"},
      // DANE-15 I-11: mandatory DANE holds the mail unless every MX host has usable TLSA
      // (Exim's hosts_require_dane would bounce a host without TLSA, test_e2e_dane.py).
      {"DANE-15 I-11 required, no TLSA, enforce: fail", with_dane(enforce, V::not_applicable, true),
       "fail"},
      {"DANE-15 required + partial + testing: fail", with_dane(testing, V::partial, true), "fail"},
      {"DANE-15 required + partial + enforce: fail", with_dane(enforce, V::partial, true), "fail"},
      {"DANE-15 required + no policy: fail", with_dane(no_policy, V::not_applicable, true), "fail"},
      {"DANE-15 required + strict fail: fail", with_dane(strict_fail, V::not_applicable, true),
       "fail"},
      {"DANE-15 required + all usable + enforce: dane", with_dane(enforce, V::all_usable, true),
       "dane"},
  };
  for (const DaneRow& row : rows) {
    SCOPED_TRACE(row.name);
    EXPECT_EQ(getmta_answer(row.answer), row.getmta);
  }
}

TEST(EximAnswersDane, enforce_mx_filter_stays_under_dane) {
  const Answer enforce = policy(Mode::enforce, {"mx1.example.com", "*.example.net"});
  const std::string list = "<; ! ^mx1\\.example\\.com$ ; ! ^[^.]+\\.example\\.net$ ; *";
  for (DaneVerdict verdict : {DaneVerdict::all_usable, DaneVerdict::partial, DaneVerdict::failed,
                              DaneVerdict::not_applicable}) {
    for (bool required : {false, true}) {
      SCOPED_TRACE(std::string(to_string(verdict)) + (required ? " required" : ""));
      const Answer answer = with_dane(enforce, verdict, required);
      // I-9 (docs/dane.md): the mtasts_dane router keeps the policy's mx filter.
      EXPECT_EQ(ignorelist_answer(answer), list);
      EXPECT_EQ(getmx_answer(answer), "mx1.example.com:*.example.net");
      EXPECT_EQ(getmta_host_answer(answer, "mx1.example.com"), "");
      EXPECT_EQ(getmta_host_answer(answer, "evil.example.org"), "0");
    }
  }
  // A testing policy or no policy never filters, DANE or not.
  const Answer testing =
      with_dane(policy(Mode::testing, {"mx1.example.com"}), DaneVerdict::all_usable);
  EXPECT_EQ(ignorelist_answer(testing), "");
  EXPECT_EQ(getmta_host_answer(testing, "evil.example.org"), "");
  EXPECT_EQ(ignorelist_answer(with_dane(of_kind(AnswerKind::no_policy), DaneVerdict::all_usable)),
            "");
  EXPECT_EQ(getmx_answer(with_dane(of_kind(AnswerKind::no_policy), DaneVerdict::all_usable)), "");
}

}  // namespace
}  // namespace mtasts
