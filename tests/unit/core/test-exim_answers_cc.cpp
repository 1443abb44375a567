// The Exim contract strings (design §2.1).
#include "core/exim_answers.hpp"

#include <gtest/gtest.h>

namespace mtasts {
namespace {

Answer policy(Mode mode, std::vector<std::string> mx) {
  Answer answer;
  answer.kind = AnswerKind::policy;
  answer.mode = mode;
  answer.mx = std::move(mx);
  return answer;
}

Answer of_kind(AnswerKind kind) {
  Answer answer;
  answer.kind = kind;
  return answer;
}

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
