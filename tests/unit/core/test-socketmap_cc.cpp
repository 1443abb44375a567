// Postfix socketmap replies for smtp_tls_policy_maps (design §2.3, Postfix socketmap_table(5)
// and TLSRPT_README "MTA-STS Support via smtp_tls_policy_maps").
#include "core/socketmap.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "unit/core/answers.hpp"

namespace mtasts {
namespace {

const std::string kPolicy =
    "version: STSv1\nmode: enforce\nmx: mx2.example.com\nmx: *.mail.example.com\n"
    "mx: mx1.example.com\nmax_age: 86400\n";

using test_support::of_kind;
using test_support::policy;

const std::vector<std::string> kMx = {"mx2.example.com", "*.mail.example.com", "mx1.example.com",
                                      "mx2.example.com"};

SocketmapMapOptions options(bool enforce_testing, bool servername, bool tlsrpt,
                            bool report_testing = false) {
  return SocketmapMapOptions{enforce_testing, servername, tlsrpt, report_testing};
}

struct Row {
  const char* name;
  Answer answer;
  SocketmapMapOptions options;
  std::string last_error;
  std::string reply;
};

TEST(SocketmapReply, table) {
  const std::string match = "match=*.mail.example.com:mx1.example.com:mx2.example.com";
  const std::string tlsrpt =
      " policy_type=sts policy_domain=example.com mx_host_pattern=mx2.example.com"
      " mx_host_pattern=*.mail.example.com mx_host_pattern=mx1.example.com"
      " { policy_string = version: STSv1 } { policy_string = mode: enforce }"
      " { policy_string = mx: mx2.example.com } { policy_string = mx: *.mail.example.com }"
      " { policy_string = mx: mx1.example.com } { policy_string = max_age: 86400 }";
  const std::vector<Row> rows = {
      {"enforce: names sorted, duplicates dropped, SNI (design §6: deterministic order)",
       policy(Mode::enforce, kMx), options(false, true, false), "",
       "OK secure " + match + " servername=hostname"},
      {"enforce without SNI", policy(Mode::enforce, kMx), options(false, false, false), "",
       "OK secure " + match},
      {"enforce with TLSRPT attributes (Postfix >= 3.10)", policy(Mode::enforce, kMx),
       options(false, true, true), "", "OK secure " + match + " servername=hostname" + tlsrpt},
      {"testing: deliver as usual (RFC 8461 §5)", policy(Mode::testing, kMx),
       options(false, true, false), "", "NOTFOUND "},
      {"testing with TLSRPT but without report_testing keeps Postfix's level",
       policy(Mode::testing, kMx), options(false, true, true), "", "NOTFOUND "},
      {"testing enforced on this map", policy(Mode::testing, kMx), options(true, true, false), "",
       "OK secure " + match + " servername=hostname"},
      {"testing reported", policy(Mode::testing, kMx), options(false, false, true, true), "",
       "OK may" + tlsrpt},
      {"mode none", policy(Mode::none, {"mx1.example.com"}), options(true, true, true), "",
       "NOTFOUND "},
      {"no policy", of_kind(AnswerKind::no_policy), options(true, true, true), "", "NOTFOUND "},
      {"strict fail: delivery waits", of_kind(AnswerKind::fail), options(false, true, false),
       "fetch_failed: HTTP 404 from mta-sts.example.com",
       "TEMP MTA-STS policy of example.com is published but unavailable: fetch_failed: HTTP 404 "
       "from mta-sts.example.com"},
      {"strict fail with TLSRPT: policy_failure", of_kind(AnswerKind::fail),
       options(false, false, true), "webpki_invalid: certificate expired",
       "OK secure policy_type=sts policy_domain=example.com policy_failure=sts-webpki-invalid"},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    EXPECT_EQ(socketmap_reply("example.com", row.answer, kPolicy, row.last_error, row.options),
              row.reply);
  }
}

TEST(SocketmapReply, policy_failure_types) {
  EXPECT_EQ(sts_policy_failure("webpki_invalid: x"), "sts-webpki-invalid");
  EXPECT_EQ(sts_policy_failure("policy_syntax: line 2"), "sts-policy-invalid");
  EXPECT_EQ(sts_policy_failure("fetch_failed: HTTP 500"), "sts-policy-fetch-error");
  EXPECT_EQ(sts_policy_failure("dns_temporary: timeout"), "sts-policy-fetch-error");
  EXPECT_EQ(sts_policy_failure(""), "sts-policy-fetch-error");
}

TEST(SocketmapReply, policy_lines_postfix_cannot_carry_are_left_out) {
  const std::string text =
      "version: STSv1\r\nmode: enforce\r\nx-note: {braces}\r\n\r\n"
      "x-utf8: b\xc3\xa4r\r\nmx: mx1.example.com\r\nmax_age: 600";
  const std::string reply =
      socketmap_reply("example.com", policy(Mode::enforce, {"mx1.example.com"}), text, "",
                      options(false, false, true));
  EXPECT_EQ(reply,
            "OK secure match=mx1.example.com policy_type=sts policy_domain=example.com"
            " mx_host_pattern=mx1.example.com { policy_string = version: STSv1 }"
            " { policy_string = mode: enforce } { policy_string = mx: mx1.example.com }"
            " { policy_string = max_age: 600 }");
}

TEST(SocketmapReply, stays_below_postfix_reply_limit) {
  std::vector<std::string> mx;
  std::string text = "version: STSv1\nmode: enforce\nmax_age: 600\n";
  for (int i = 0; i < 1500; ++i) {
    mx.push_back("mx" + std::to_string(i) + ".a-rather-long-domain-name.example.com");
    text += "mx: " + mx.back() + "\n";
  }
  const std::string reply = socketmap_reply("example.com", policy(Mode::enforce, mx), text, "",
                                            options(false, true, true));
  EXPECT_LE(reply.size(), kSocketmapMaxReply);
  EXPECT_TRUE(reply.starts_with("OK secure match="));
  EXPECT_NE(reply.find("policy_type=sts policy_domain=example.com"), std::string::npos);
  EXPECT_EQ(reply.find("policy_string"), std::string::npos);

  for (int i = 1500; i < 5000; ++i) mx.push_back("mx" + std::to_string(i) + ".example.com");
  EXPECT_TRUE(socketmap_reply("example.com", policy(Mode::enforce, mx), text, "",
                              options(false, true, false))
                  .starts_with("TEMP "));
}

TEST(SocketmapReply, reasons_are_one_printable_line) {
  EXPECT_EQ(socketmap_temp("a\nb\x01"), "TEMP a?b?");
  EXPECT_EQ(socketmap_perm("unknown map"), "PERM unknown map");
  EXPECT_LE(socketmap_perm(std::string(5000, 'x')).size(), 410u);
}

struct RequestRow {
  const char* name;
  std::string payload;
  bool ok;
  std::string map;
  std::string key;
};

TEST(SocketmapRequest, table) {
  const std::vector<RequestRow> rows = {
      {"map and domain", "postfix example.com", true, "postfix", "example.com"},
      {"key keeps further spaces", "postfix a b", true, "postfix", "a b"},
      {"no key", "postfix", false, "", ""},
      {"empty key", "postfix ", false, "", ""},
      {"empty name", " example.com", false, "", ""},
      {"empty payload", "", false, "", ""},
      {"control character", "postfix exa\nmple.com", false, "", ""},
  };
  for (const RequestRow& row : rows) {
    SCOPED_TRACE(row.name);
    auto parsed = parse_socketmap_request(row.payload);
    ASSERT_EQ(parsed.has_value(), row.ok);
    if (row.ok) {
      EXPECT_EQ(parsed->map, row.map);
      EXPECT_EQ(parsed->key, row.key);
    } else {
      EXPECT_FALSE(parsed.error().empty());
    }
  }
}

TEST(SocketmapRequest, keys_answered_without_lookup) {
  // design §2.3: parent-domain probes and address literals get NOTFOUND with no lookup.
  EXPECT_EQ(classify_socketmap_key("example.com"), SocketmapKey::domain);
  EXPECT_EQ(classify_socketmap_key("m\xc3\xbcnchen.example"), SocketmapKey::domain);
  EXPECT_EQ(classify_socketmap_key(".example.com"), SocketmapKey::parent_probe);
  EXPECT_EQ(classify_socketmap_key("[192.0.2.1]"), SocketmapKey::explicit_nexthop);
  EXPECT_EQ(classify_socketmap_key("[ipv6:2001:db8::1]"), SocketmapKey::explicit_nexthop);
  EXPECT_EQ(classify_socketmap_key("[mail.example.com]:587"), SocketmapKey::explicit_nexthop);
  EXPECT_EQ(classify_socketmap_key("example.com:587"), SocketmapKey::explicit_nexthop);
  EXPECT_EQ(classify_socketmap_key("2001:db8::1"), SocketmapKey::explicit_nexthop);
  EXPECT_EQ(classify_socketmap_key("/var/run/lmtp"), SocketmapKey::explicit_nexthop);
}

}  // namespace
}  // namespace mtasts

namespace mtasts {
namespace {

struct MatchRow {
  const char* name;
  std::vector<std::string> patterns;
  std::vector<std::string> mx_hosts;
  std::vector<std::string> names;
};

TEST(PostfixMatchNames, WildcardsBecomeTheMxHostsTheyMatch) {
  const std::vector<MatchRow> rows = {
      {"exact patterns stay, sorted",
       {"mx2.x.example", "mx1.x.example"},
       {},
       {"mx1.x.example", "mx2.x.example"}},
      {"STS-33: *. matches exactly one label",
       {"*.mail.example"},
       {"a.mail.example", "b.a.mail.example", "mail.example", "c.mail.example"},
       {"a.mail.example", "c.mail.example"}},
      {"a wildcard with no matching MX stays as written (fails closed in Postfix)",
       {"*.mail.example", "mx1.example"},
       {"mx1.example"},
       {"*.mail.example", "mx1.example"}},
      {"no MX hosts known: the patterns as written", {"*.mail.example"}, {}, {"*.mail.example"}},
      {"an MX outside the policy is never added",
       {"*.mail.example"},
       {"rogue.example", "x.mail.example"},
       {"x.mail.example"}},
      {"duplicates dropped",
       {"*.mail.example", "x.mail.example"},
       {"x.mail.example"},
       {"x.mail.example"}},
      // Issue 10: a weird MX name never makes the request fail; it is just not put in match=
      // (it could carry ':' or blanks into the reply).
      {"STS-33: MX names that are not hostnames are left out of match=",
       {"*.mail.example"},
       {"x_1.mail.example", "a:b.mail.example", "a b.mail.example", "-x.mail.example",
        "ok.mail.example"},
       {"ok.mail.example"}},
      {"only weird MX names: the wildcard stays as written (fails closed)",
       {"*.mail.example", "mx1.example"},
       {"x_1.mail.example", "X.MAIL.EXAMPLE"},
       {"*.mail.example", "mx1.example"}},
      {"STS-14: a one-label wildcard suffix (*.com)",
       {"*.com"},
       {"example.com", "mx.example.com"},
       {"example.com"}},
  };
  for (const auto& row : rows) {
    EXPECT_EQ(postfix_match_names(row.patterns, row.mx_hosts), row.names) << row.name;
  }
  EXPECT_TRUE(has_wildcard_pattern({"mx1.example", "*.mail.example"}));
  EXPECT_FALSE(has_wildcard_pattern({"mx1.example"}));
}

TEST(PostfixMatchNames, ReplyListsTheMatchingMxHosts) {
  Answer answer;
  answer.kind = AnswerKind::policy;
  answer.mode = Mode::enforce;
  answer.mx = {"*.mail.example.com", "mx1.example.com"};
  const SocketmapMapOptions plain{false, true, false, false};
  EXPECT_EQ(socketmap_reply("example.com", answer, "", "", plain,
                            {"a.mail.example.com", "mx1.example.com", "other.example.net"}),
            "OK secure match=a.mail.example.com:mx1.example.com servername=hostname");
}

}  // namespace
}  // namespace mtasts

namespace mtasts {
namespace {

// DANE before MTA-STS (docs/dane.md "Answers"): failed holds the mail, all-usable or mandatory
// DANE hands the domain to Postfix's dane-only, partial to its per-host dane (dane-only under an
// enforce policy, so a host without TLSA never falls back to "may").
Answer dane_answer(Answer answer, DaneVerdict verdict, bool required = false,
                   std::string reason = "MX host mx1.example.com: TLSA lookup failed") {
  answer.dane = verdict;
  answer.dane_required = required;
  answer.dane_reason = std::move(reason);
  return answer;
}

TEST(SocketmapReplyDane, table) {
  using V = DaneVerdict;
  const Answer enforce = policy(Mode::enforce, kMx);
  const Answer testing = policy(Mode::testing, kMx);
  const Answer none = policy(Mode::none, {"mx1.example.com"});
  const Answer no_policy = of_kind(AnswerKind::no_policy);
  const Answer strict_fail = of_kind(AnswerKind::fail);
  const SocketmapMapOptions plain = options(false, true, false);
  const SocketmapMapOptions all = options(true, true, true, true);
  const std::string temp =
      "TEMP DANE lookup for example.com failed: MX host mx1.example.com: TLSA lookup failed";
  const std::string match = "match=*.mail.example.com:mx1.example.com:mx2.example.com";
  const std::vector<Row> rows = {
      {"DANE-01 I-2 I-5 failed DANE + enforce: TEMP", dane_answer(enforce, V::failed), plain, "",
       temp},
      {"DANE-01 I-3 failed DANE + testing: TEMP", dane_answer(testing, V::failed), plain, "", temp},
      {"DANE-04 failed DANE + testing enforced, TLSRPT: TEMP", dane_answer(testing, V::failed), all,
       "", temp},
      {"DANE-04 failed DANE + none: TEMP", dane_answer(none, V::failed), plain, "", temp},
      {"DANE-04 failed DANE + no policy: TEMP", dane_answer(no_policy, V::failed), plain, "", temp},
      {"failed DANE + strict fail with TLSRPT: TEMP (DANE first)",
       dane_answer(strict_fail, V::failed), all, "fetch_failed: HTTP 404", temp},
      {"DANE-15 failed DANE + required: TEMP", dane_answer(enforce, V::failed, true), plain, "",
       temp},
      {"I-1 DANE-03a all usable + enforce: dane-only", dane_answer(enforce, V::all_usable), plain,
       "", "OK dane-only"},
      {"all usable + enforce with TLSRPT: dane-only", dane_answer(enforce, V::all_usable), all, "",
       "OK dane-only"},
      {"all usable + testing: dane-only", dane_answer(testing, V::all_usable), plain, "",
       "OK dane-only"},
      {"all usable + none: dane-only", dane_answer(none, V::all_usable), plain, "", "OK dane-only"},
      {"I-10 all usable + no policy (fetch failing): dane-only",
       dane_answer(no_policy, V::all_usable), plain, "", "OK dane-only"},
      {"all usable + strict fail: dane-only (every host DANE-authenticated)",
       dane_answer(strict_fail, V::all_usable), plain, "fetch_failed: HTTP 404", "OK dane-only"},
      {"DANE-05 I-6 partial + enforce: dane-only (no fallback to may)",
       dane_answer(enforce, V::partial), plain, "", "OK dane-only"},
      {"partial + testing: per-host dane", dane_answer(testing, V::partial), plain, "", "OK dane"},
      {"partial + testing reported: per-host dane", dane_answer(testing, V::partial),
       options(false, false, true, true), "", "OK dane"},
      {"partial + testing enforced on this map: dane-only, as for enforce",
       dane_answer(testing, V::partial), options(true, true, false), "", "OK dane-only"},
      {"partial + none: per-host dane", dane_answer(none, V::partial), plain, "", "OK dane"},
      {"partial + no policy: per-host dane", dane_answer(no_policy, V::partial), plain, "",
       "OK dane"},
      {"partial + strict fail: held as without DANE", dane_answer(strict_fail, V::partial), plain,
       "fetch_failed: HTTP 404",
       "TEMP MTA-STS policy of example.com is published but unavailable: fetch_failed: HTTP 404"},
      {"partial + strict fail with TLSRPT: the policy failure",
       dane_answer(strict_fail, V::partial), options(false, false, true), "webpki_invalid: expired",
       "OK secure policy_type=sts policy_domain=example.com policy_failure=sts-webpki-invalid"},
      {"I-8 not applicable + enforce: the policy's reply", dane_answer(enforce, V::not_applicable),
       plain, "", "OK secure " + match + " servername=hostname"},
      {"I-8 not applicable + testing: NOTFOUND", dane_answer(testing, V::not_applicable), plain, "",
       "NOTFOUND "},
      {"not applicable + no policy: NOTFOUND", dane_answer(no_policy, V::not_applicable), plain, "",
       "NOTFOUND "},
      {"DANE-15 I-11 required, no TLSA, enforce: dane-only",
       dane_answer(enforce, V::not_applicable, true), plain, "", "OK dane-only"},
      {"DANE-15 required + testing: dane-only", dane_answer(testing, V::not_applicable, true),
       plain, "", "OK dane-only"},
      {"DANE-15 required + partial: dane-only", dane_answer(testing, V::partial, true), plain, "",
       "OK dane-only"},
      {"DANE-15 required + no policy: dane-only", dane_answer(no_policy, V::not_applicable, true),
       plain, "", "OK dane-only"},
      {"DANE-15 required + strict fail: dane-only",
       dane_answer(strict_fail, V::not_applicable, true), plain, "fetch_failed: x", "OK dane-only"},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    EXPECT_EQ(socketmap_reply("example.com", row.answer, kPolicy, row.last_error, row.options),
              row.reply);
  }
}

TEST(SocketmapReplyDane, failure_reason_is_one_bounded_printable_line) {
  const Answer answer = dane_answer(policy(Mode::enforce, {"mx1.example.com"}), DaneVerdict::failed,
                                    false, "bogus\nTEMP injected\r" + std::string(2000, 'x'));
  const std::string reply =
      socketmap_reply("example.com", answer, "", "", options(false, true, false));
  EXPECT_TRUE(reply.starts_with("TEMP DANE lookup for example.com failed: bogus?TEMP injected?"))
      << reply;
  EXPECT_EQ(reply.find_first_of("\r\n"), std::string::npos);
  EXPECT_LE(reply.size(), 410u);
}

}  // namespace
}  // namespace mtasts
