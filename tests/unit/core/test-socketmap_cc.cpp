// Postfix socketmap replies for smtp_tls_policy_maps (design §2.3, Postfix socketmap_table(5)
// and TLSRPT_README "MTA-STS Support via smtp_tls_policy_maps").
#include "core/socketmap.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace mtasts {
namespace {

const std::string kPolicy =
    "version: STSv1\nmode: enforce\nmx: mx2.example.com\nmx: *.mail.example.com\n"
    "mx: mx1.example.com\nmax_age: 86400\n";

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
