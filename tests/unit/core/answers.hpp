// Answers for tests of what the front-ends make of them (Exim strings, socketmap replies).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "core/decide.hpp"

namespace mtasts::test_support {

// A policy answer: `mode` with the policy's mx patterns.
inline Answer policy(Mode mode, std::vector<std::string> mx) {
  Answer answer;
  answer.kind = AnswerKind::policy;
  answer.mode = mode;
  answer.mx = std::move(mx);
  return answer;
}

// An answer of `kind` with nothing else set (no_policy, fail).
inline Answer of_kind(AnswerKind kind) {
  Answer answer;
  answer.kind = kind;
  return answer;
}

}  // namespace mtasts::test_support
